"""Plausible wrong answers to homework 06. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""
MISTAKES = [
    # --- task 1: the score of a Gaussian mixture ---
    dict(task="task1", name="wrong sign: (x - mu) instead of (mu - x)", says="wrong sign", code='''
def mixture_score(x, means, std, weights):
    diff = x[:, None, :] - means[None, :, :]
    r = torch.softmax(weights.log()[None, :] - 0.5 * diff.pow(2).sum(-1) / std**2, dim=1)
    return (r[:, :, None] * diff).sum(1) / std**2
'''),
    dict(task="task1", name="no responsibilities: the prior weights instead", says="responsibilities", code='''
def mixture_score(x, means, std, weights):
    diff = means[None, :, :] - x[:, None, :]
    return (weights[None, :, None] * diff).sum(1) / std**2
'''),
    dict(task="task1", name="no responsibilities: an equal average of the components", says="responsibilities", code='''
def mixture_score(x, means, std, weights):
    return (means[None, :, :] - x[:, None, :]).mean(1) / std**2
'''),
    dict(task="task1", name="responsibilities without the mixture weights", says="mixture weights", code='''
def mixture_score(x, means, std, weights):
    diff = means[None, :, :] - x[:, None, :]
    r = torch.softmax(-0.5 * diff.pow(2).sum(-1) / std**2, dim=1)
    return (r[:, :, None] * diff).sum(1) / std**2
'''),
    dict(task="task1", name="divides by s instead of s^2", says="variance s^2", code='''
def mixture_score(x, means, std, weights):
    diff = means[None, :, :] - x[:, None, :]
    r = torch.softmax(weights.log()[None, :] - 0.5 * diff.pow(2).sum(-1) / std**2, dim=1)
    return (r[:, :, None] * diff).sum(1) / std
'''),
    dict(task="task1", name="responsibilities by exponentiating first (0/0 far away)", says="softmax of the log terms", code='''
def mixture_score(x, means, std, weights):
    diff = means[None, :, :] - x[:, None, :]
    p = weights[None, :] * torch.exp(-0.5 * diff.pow(2).sum(-1) / std**2)
    r = p / p.sum(1, keepdim=True)
    return (r[:, :, None] * diff).sum(1) / std**2
'''),
    # --- task 2: one Langevin step ---
    dict(task="task2", name="noise eta instead of sqrt(eta)", says="should be sqrt(eta)", code='''
def langevin_step(x, score, eta, noise):
    return x + 0.5 * eta * score(x) + eta * noise
'''),
    dict(task="task2", name="noise sqrt(2 eta) with drift eta/2", says="sqrt(2 eta)", code='''
def langevin_step(x, score, eta, noise):
    return x + 0.5 * eta * score(x) + math.sqrt(2 * eta) * noise
'''),
    dict(task="task2", name="drift eta instead of eta/2", says="should be (eta/2) s(x)", code='''
def langevin_step(x, score, eta, noise):
    return x + eta * score(x) + math.sqrt(eta) * noise
'''),
    dict(task="task2", name="drift with the wrong sign", says="wrong sign", code='''
def langevin_step(x, score, eta, noise):
    return x - 0.5 * eta * score(x) + math.sqrt(eta) * noise
'''),
    dict(task="task2", name="updates x in place", says="in place", code='''
def langevin_step(x, score, eta, noise):
    x += 0.5 * eta * score(x) + math.sqrt(eta) * noise
    return x
'''),
    # --- task 3: the stationary variance ---
    dict(task="task3", name="the target's variance s^2 (no bias)", says="target's variance", code='''
def stationary_variance(s, eta):
    return s**2
'''),
    dict(task="task3", name="s^2 / (1 - eta / (2 s^2))", says="expand a^2 again", code='''
def stationary_variance(s, eta):
    if eta >= 4 * s**2:
        raise ValueError("the chain diverges")
    return s**2 / (1 - eta / (2 * s**2))
'''),
    dict(task="task3", name="first-order only: s^2 (1 + eta / (4 s^2))", says="first-order", code='''
def stationary_variance(s, eta):
    return s**2 * (1 + eta / (4 * s**2))
'''),
    dict(task="task3", name="the standard deviation instead of the variance", says="standard deviation", code='''
def stationary_variance(s, eta):
    return s / math.sqrt(1 - eta / (4 * s**2))
'''),
    dict(task="task3", name="no error for a diverging chain", says="raise a ValueError", code='''
def stationary_variance(s, eta):
    return s**2 / abs(1 - eta / (4 * s**2))
'''),
    dict(task="task3", name="s used as the variance (the sigma vs sigma^2 slip)", says="used it as the variance", code='''
def stationary_variance(s, eta):
    if eta >= 4 * s:
        raise ValueError("the chain diverges")
    return s / (1 - eta / (4 * s))
'''),
    dict(task="task3", name="a strict > at the boundary eta = 4 s^2", says="raise a ValueError", code='''
def stationary_variance(s, eta):
    if eta > 4 * s**2:
        raise ValueError("the chain diverges")
    return s**2 / (1 - eta / (4 * s**2))
'''),
    # --- task 4: the DSM loss ---
    dict(task="task4", name="DSM target with the wrong sign (+ eps/sigma as target)", says="wrong sign", code='''
def dsm_loss(score, x, sigma, eps):
    return (score(x + sigma * eps) - eps / sigma).pow(2).sum(1).mean()
'''),
    dict(task="task4", name="DSM target eps / sigma^2", says="the target is eps / sigma^2", code='''
def dsm_loss(score, x, sigma, eps):
    return (score(x + sigma * eps) + eps / sigma**2).pow(2).sum(1).mean()
'''),
    dict(task="task4", name="mean over dimensions instead of sum", says="averaged over dimensions", code='''
def dsm_loss(score, x, sigma, eps):
    return (score(x + sigma * eps) + eps / sigma).pow(2).mean()
'''),
    dict(task="task4", name="a factor 1/2", says="factor 1/2", code='''
def dsm_loss(score, x, sigma, eps):
    return 0.5 * (score(x + sigma * eps) + eps / sigma).pow(2).sum(1).mean()
'''),
    dict(task="task4", name="sigma^2 weight included", says="weighted by sigma^2", code='''
def dsm_loss(score, x, sigma, eps):
    return sigma**2 * (score(x + sigma * eps) + eps / sigma).pow(2).sum(1).mean()
'''),
    dict(task="task4", name="score evaluated at the clean x", says="clean x", code='''
def dsm_loss(score, x, sigma, eps):
    return (score(x) + eps / sigma).pow(2).sum(1).mean()
'''),
    dict(task="task4", name="loss detached from the graph", says="no graph", code='''
def dsm_loss(score, x, sigma, eps):
    return (score(x + sigma * eps) + eps / sigma).pow(2).sum(1).mean().detach()
'''),
    # --- task 5: Tweedie ---
    dict(task="task5", name="sigma instead of sigma^2", says="sigma instead of sigma^2", code='''
def tweedie(x_noisy, score, sigma):
    return x_noisy + sigma * score(x_noisy)
'''),
    dict(task="task5", name="wrong sign", says="wrong sign", code='''
def tweedie(x_noisy, score, sigma):
    return x_noisy - sigma**2 * score(x_noisy)
'''),
    dict(task="task5", name="only the correction", says="add x_sigma", code='''
def tweedie(x_noisy, score, sigma):
    return sigma**2 * score(x_noisy)
'''),
    dict(task="task5", name="no factor sigma^2", says="without the factor", code='''
def tweedie(x_noisy, score, sigma):
    return x_noisy + score(x_noisy)
'''),
    # --- task 6: the noise-conditioned score model (cheap stand-ins for the outcomes of training mistakes) ---
    dict(task="task6", name="an untrained model", says="untrained network", code='''
def train_score_model(x, sigmas, steps):
    torch.manual_seed(0)
    return NoiseConditionalScoreNet(2, 64, 3, data_var=float(x.var(0).mean()))
'''),
    dict(task="task6", name="the model learned minus the score (DSM target with the wrong sign)", says="wrong sign", code='''
class _MinusScore(torch.nn.Module):
    def forward(self, x, sigma):
        var = eight.std**2 + float(sigma) ** 2
        diff = eight.centers.float()[None] - x[:, None]
        return -(torch.softmax(-0.5 * diff.pow(2).sum(-1) / var, 1)[..., None] * diff).sum(1) / var

def train_score_model(x, sigmas, steps):
    return _MinusScore()
'''),
    dict(task="task6", name="a model that ignores sigma (the score of the smallest level only)", says="does it see sigma", code='''
class _OneLevel(torch.nn.Module):
    def __init__(self, sigma):
        super().__init__()
        self.var = eight.std**2 + sigma**2
    def forward(self, x, sigma):
        diff = eight.centers.float()[None] - x[:, None]
        return (torch.softmax(-0.5 * diff.pow(2).sum(-1) / self.var, 1)[..., None] * diff).sum(1) / self.var

def train_score_model(x, sigmas, steps):
    return _OneLevel(float(sigmas[-1]))
'''),
    dict(task="task6", name="the exact score of q_sigma returned instead of a trained model", says="not a trained model",
         code='''
class _Exact(torch.nn.Module):
    def forward(self, x, sigma):
        var = eight.std**2 + float(sigma) ** 2
        diff = eight.centers.float()[None] - x[:, None]
        return (torch.softmax(-0.5 * diff.pow(2).sum(-1) / var, 1)[..., None] * diff).sum(1) / var

def train_score_model(x, sigmas, steps):
    return _Exact()
'''),
    dict(task="task6", name="a model with one output per point instead of a score vector", says="shape", code='''
def train_score_model(x, sigmas, steps):
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 1)
    return lambda y, s: net(y)
'''),
]
