"""Plausible wrong answers to homework 01. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""

MISTAKES = [
    # task 1: planar log-det
    dict(task="task1", name="log-det without the absolute value", says="absolute value", code='''
def planar_log_det(x, u, w, b):
    h = torch.tanh(x @ w + b)
    return torch.log(1 + (1 - h**2) * (u @ w))
'''),
    dict(task="task1", name="tanh instead of its derivative", says="derivative", code='''
def planar_log_det(x, u, w, b):
    h = torch.tanh(x @ w + b)
    return torch.log(torch.abs(1 + h * (u @ w)))
'''),
    dict(task="task1", name="determinant lemma without the 1", says="drops the identity", code='''
def planar_log_det(x, u, w, b):
    h = torch.tanh(x @ w + b)
    return torch.log(torch.abs((1 - h**2) * (u @ w)))
'''),
    dict(task="task1", name="w.w instead of u.w", says="u.w", code='''
def planar_log_det(x, u, w, b):
    h = torch.tanh(x @ w + b)
    return torch.log(torch.abs(1 + (1 - h**2) * (w @ w)))
'''),
    dict(task="task1", name="one number for the batch (summed over samples)", says="shape", code='''
def planar_log_det(x, u, w, b):
    h = torch.tanh(x @ w + b)
    return torch.log(torch.abs(1 + (1 - h**2) * (u @ w))).sum()
'''),
    # task 2: log-normal density
    dict(task="task2", name="log-normal centred twice (still integrates to 1)", says="centres twice", code='''
def lognormal_log_prob(y, mu, sigma):
    x = torch.log(y) - mu
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi) - torch.log(y)
'''),
    dict(task="task2", name="no Jacobian factor", says="missing the Jacobian", code='''
def lognormal_log_prob(y, mu, sigma):
    x = torch.log(y)
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
'''),
    dict(task="task2", name="Jacobian with the wrong sign", says="subtract log y", code='''
def lognormal_log_prob(y, mu, sigma):
    x = torch.log(y)
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi) + x
'''),
    dict(task="task2", name="normaliser with the variance instead of the standard deviation", says="sigma^2", code='''
def lognormal_log_prob(y, mu, sigma):
    x = torch.log(y)
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma**2) - 0.5 * math.log(2 * math.pi) - x
'''),
    dict(task="task2", name="density of Y evaluated at exp(y) instead of log(y)", says="integrate to 1", code='''
def lognormal_log_prob(y, mu, sigma):
    x = torch.exp(y)
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi) - x
'''),
    # task 3: leaky-ReLU flow
    dict(task="task3", name="log-det uses alpha instead of log(alpha) (round trip and cancellation still hold)",
         says="log(alpha)", code='''
class LeakyReLUFlow(torch.nn.Module):
    def __init__(self, alpha=0.5):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        neg = x < 0
        return torch.where(neg, self.alpha * x, x), neg.to(x.dtype).sum(-1) * self.alpha

    def inverse(self, z):
        neg = z < 0
        return torch.where(neg, z / self.alpha, z), -neg.to(z.dtype).sum(-1) * self.alpha
'''),
    dict(task="task3", name="both log-dets with the wrong sign (still cancel)", says="wrong sign", code='''
class LeakyReLUFlow(torch.nn.Module):
    def __init__(self, alpha=0.5):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        neg = x < 0
        return torch.where(neg, self.alpha * x, x), -neg.to(x.dtype).sum(-1) * math.log(self.alpha)

    def inverse(self, z):
        neg = z < 0
        return torch.where(neg, z / self.alpha, z), neg.to(z.dtype).sum(-1) * math.log(self.alpha)
'''),
    dict(task="task3", name="log-det counts the non-negative entries", says="counts the non-negative", code='''
class LeakyReLUFlow(torch.nn.Module):
    def __init__(self, alpha=0.5):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return torch.where(x < 0, self.alpha * x, x), (x >= 0).to(x.dtype).sum(-1) * math.log(self.alpha)

    def inverse(self, z):
        return torch.where(z < 0, z / self.alpha, z), -(z >= 0).to(z.dtype).sum(-1) * math.log(self.alpha)
'''),
    dict(task="task3", name="inverse multiplies by alpha again", says="round trip", code='''
class LeakyReLUFlow(torch.nn.Module):
    def __init__(self, alpha=0.5):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        neg = x < 0
        return torch.where(neg, self.alpha * x, x), neg.to(x.dtype).sum(-1) * math.log(self.alpha)

    def inverse(self, z):
        neg = z < 0
        return torch.where(neg, self.alpha * z, z), -neg.to(z.dtype).sum(-1) * math.log(self.alpha)
'''),
    dict(task="task3", name="inverse log-det with the same sign as the forward one", says="cancel", code='''
class LeakyReLUFlow(torch.nn.Module):
    def __init__(self, alpha=0.5):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        neg = x < 0
        return torch.where(neg, self.alpha * x, x), neg.to(x.dtype).sum(-1) * math.log(self.alpha)

    def inverse(self, z):
        neg = z < 0
        return torch.where(neg, z / self.alpha, z), neg.to(z.dtype).sum(-1) * math.log(self.alpha)
'''),
    # task 4: maximum likelihood
    dict(task="task4", name="returns the true flow (rebuilt from the target's parameters)", says="true target density",
         code='''
def fit_flow(x_train):
    return Flow([ElementwiseAffine(2, log_scale=[0.3, -0.4], shift=[0.5, -0.2]),
                 SinhArcsinh(2, skew=[0.9, -0.6], log_delta=[-0.35, 0.25]),
                 ElementwiseAffine(2, log_scale=[-0.2, 0.1], shift=[0.0, 0.3])])
'''),
    dict(task="task4", name="an affine flow only (a Gaussian cannot skew)", says="KL gap should be below", code='''
def fit_flow(x_train):
    model = Flow([ElementwiseAffine(2)])
    fit(lambda: -model.log_prob(x_train).mean(), model, steps=300, lr=5e-2, progress=False)
    return model
'''),
    dict(task="task4", name="returns the flow untrained", says="KL gap should be below", code='''
def fit_flow(x_train):
    return Flow([ElementwiseAffine(2), SinhArcsinh(2), ElementwiseAffine(2)])
'''),
    dict(task="task4", name="maximises the NLL (wrong sign of the loss)", says="KL gap", code='''
def fit_flow(x_train):
    model = Flow([ElementwiseAffine(2), SinhArcsinh(2), ElementwiseAffine(2)])
    fit(lambda: model.log_prob(x_train).mean(), model, steps=100, lr=2e-2, progress=False)
    return model
'''),
    dict(task="task4", name="log_prob shifted up (not normalised: a KL gap below zero)", says="not a normalised density",
         code='''
class _Shifted(Flow):
    def log_prob(self, x):
        return super().log_prob(x) + 0.5       # not normalised: half a nat too sure everywhere
def fit_flow(x_train):
    model = _Shifted([ElementwiseAffine(2), SinhArcsinh(2), ElementwiseAffine(2)])
    with torch.no_grad():
        model.layers[0].log_scale.copy_(-x_train.std(0).log())
        model.layers[0].shift.copy_(-x_train.mean(0) / x_train.std(0))
    fit(lambda: -Flow.log_prob(model, x_train).mean(), model, steps=1500, lr=2e-2, desc="MLE")
    return model
'''),
]
