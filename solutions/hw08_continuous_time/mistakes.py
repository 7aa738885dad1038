"""Plausible wrong answers to homework 08. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""

_EULER = '''
def euler_step(f, t, x, h):
    return x + h * f(t, x)
'''


def _heun(body):
    return _EULER + f'''
def heun_step(f, t, x, h):
    k1 = f(t, x)
{body}
'''


def _div(autograd_body, hutch_probe="(2 * torch.randint(0, 2, x.shape, generator=generator) - 1).to(x.dtype)",
         hutch_sign="", hutch_avg="total / n_probes"):
    return f'''
def divergence_autograd(f, t, x):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        fx = f(t, x)
{autograd_body}


def divergence_hutchinson(f, t, x, n_probes=1, generator=None):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        fx = f(t, x)
        total = torch.zeros(len(x), dtype=x.dtype)
        for _ in range(n_probes):
            eps = {hutch_probe}
            total = total {hutch_sign or "+"} (torch.autograd.grad(fx, x, eps, retain_graph=True)[0] * eps).sum(1)
        return {hutch_avg}
'''


_DIV_OK = "        return sum(torch.autograd.grad(fx[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))"


def _logp(dl="-divergence_autograd(f, t, y)", t0="1.0", h="-1.0 / steps", ret="_std_normal_log_prob(s[:, :d]) - s[:, d]",
          t_i="{t0} + i * h"):
    return f'''
def ode_log_prob(f, x, steps=50):
    d = x.shape[1]

    def augmented(t, s):
        y = s[:, :d]
        return torch.cat([f(t, y).detach(), ({dl}).detach()[:, None]], 1)

    s = torch.cat([x, torch.zeros(len(x), 1, dtype=x.dtype)], 1)
    h = torch.tensor({h}, dtype=x.dtype)
    for i in range(steps):
        s = heun_step(augmented, {t_i.format(t0=t0)}, s, h)
    return {ret}
'''


# the state integrated in reverse time s = 1 - t (from the data at s = 0), but f evaluated at s instead of t = 1 - s
_LOGP_REVERSE_TIME = '''
def ode_log_prob(f, x, steps=50):
    d = x.shape[1]

    def reverse(s, state):                        # d(x, l)/ds = (-f, +div f), with f's time argument forgotten
        y = state[:, :d]
        return torch.cat([-f(s, y).detach(), divergence_autograd(f, s, y).detach()[:, None]], 1)

    state = torch.cat([x, torch.zeros(len(x), 1, dtype=x.dtype)], 1)
    h = torch.tensor(1.0 / steps, dtype=x.dtype)
    for i in range(steps):
        state = heun_step(reverse, i * h, state, h)
    return _std_normal_log_prob(state[:, :d]) - state[:, d]
'''


def _pf(expr):
    return f'''
def pf_ode_drift(x, t, score_fn, beta_min=0.1, beta_max=20.0):
    beta = beta_min + t * (beta_max - beta_min)
    return {expr}
'''


def _cfm(xt="(1 - tb) * x0 + tb * x1", ut="x1 - x0", loss="((model(t, xt) - ut) ** 2).sum(1).mean()"):
    return f'''
def cfm_sample(x0, x1, t):
    tb = t[:, None]
    return {xt}, {ut}


def cfm_loss(model, x0, x1, t):
    xt, ut = cfm_sample(x0, x1, t)
    return {loss}
'''


def _train(x0="torch.randn_like(x1)", t="torch.rand(len(x1))", steps=2000, pair="x0, x1"):
    return f'''
def train_flow_matching(x_train):
    torch.manual_seed(0)
    model = VelocityMLP(2, hidden=128, depth=3)

    def loss():
        x1 = x_train[torch.randint(len(x_train), (256,))]
        x0 = {x0}
        a, b = {pair}
        return cfm_loss(model, a, b, {t})

    fit(loss, model, steps={steps}, lr=3e-3, progress=False)
    return model
'''


MISTAKES = [
    # task 1: Euler and Heun
    dict(task="task1", name="Euler without the step size", says="you left out h", code='''
def euler_step(f, t, x, h):
    return x + f(t, x)
'''),
    dict(task="task1", name="Euler with the slope at the end", says="slope at the start", code='''
def euler_step(f, t, x, h):
    return x + h * f(t + h, x)
'''),
    dict(task="task1", name="Heun's second slope at t", says="time t + h (you used t)",
         code=_heun("    return x + 0.5 * h * (k1 + f(t, x + h * k1))")),
    dict(task="task1", name="midpoint instead of Heun", says="midpoint method",
         code=_heun("    return x + h * f(t + h / 2, x + h / 2 * k1)")),
    dict(task="task1", name="Heun returns the Euler step", says="you returned the Euler step",
         code=_heun("    return x + h * k1")),
    dict(task="task1", name="Heun sums the slopes without the 1/2", says="average the two slopes",
         code=_heun("    return x + h * (k1 + f(t + h, x + h * k1))")),
    # task 2: divergences
    dict(task="task2", name="sum of the whole Jacobian", says="sum of ALL entries",
         code=_div("        return sum(torch.autograd.grad(fx[:, i].sum(), x, retain_graph=True)[0].sum(1) for i in range(x.shape[1]))")),
    dict(task="task2", name="divergence with the wrong sign", says="wrong sign",
         code=_div("        return -sum(torch.autograd.grad(fx[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))")),
    dict(task="task2", name="Hutchinson probes in float32 for float64 input", says="x's dtype",
         code=_div(_DIV_OK, hutch_probe="(2 * torch.randint(0, 2, x.shape, generator=generator) - 1).float()")
         .replace("total = torch.zeros(len(x), dtype=x.dtype)", "total = torch.zeros(len(x))")
         .replace("torch.autograd.grad(fx, x, eps, retain_graph=True)[0] * eps", "torch.autograd.grad(fx, x, eps.to(x.dtype), retain_graph=True)[0].float() * eps")),
    dict(task="task2", name="Gaussian probes", says="Gaussian probes",
         code=_div(_DIV_OK, hutch_probe="torch.randn(x.shape, generator=generator, dtype=x.dtype)")),
    dict(task="task2", name="Hutchinson sums over probes instead of averaging", says="average over the probes",
         code=_div(_DIV_OK, hutch_avg="total")),
    dict(task="task2", name="Hutchinson with the wrong sign", says="sign is wrong",
         code=_div(_DIV_OK, hutch_sign="-")),
    # task 3: the ODE log-likelihood (sign and time direction, as PITFALLS names them, and the time passed to f)
    dict(task="task3", name="divergence integrated with the wrong sign", says="wrong sign",
         code=_logp(dl="divergence_autograd(f, t, y)")),
    dict(task="task3", name="integrated forwards in time", says="time runs the wrong way",
         code=_logp(t0="0.0", h="1.0 / steps")),
    dict(task="task3", name="wrong sign and wrong direction", says="both the time direction",
         code=_logp(dl="divergence_autograd(f, t, y)", t0="0.0", h="1.0 / steps")),
    dict(task="task3", name="the divergence term dropped", says="subtract the integrated divergence",
         code=_logp(ret="_std_normal_log_prob(s[:, :d])")),
    dict(task="task3", name="the time argument without the start time (t = 0, -h, ..., -1)", says="you left out the start time",
         code=_logp(t0="0.0")),
    dict(task="task3", name="reverse time s passed to f as the time", says="evaluate it at t = 1 - s", code=_LOGP_REVERSE_TIME),
    dict(task="task3", name="the time argument never advanced (always t = 1)", says="stays at t = 1",
         code=_logp(t_i="torch.tensor(1.0, dtype=x.dtype)")),
    # task 4: the probability-flow drift
    dict(task="task4", name="reverse-SDE drift (no 1/2)", says="takes half",
         code=_pf("-0.5 * beta * x - beta * score_fn(x, t)")),
    dict(task="task4", name="score term with the wrong sign", says="wrong sign",
         code=_pf("-0.5 * beta * x + 0.5 * beta * score_fn(x, t)")),
    dict(task="task4", name="g where g^2 belongs (std for variance)", says="enters squared",
         code=_pf("-0.5 * beta * x - 0.5 * math.sqrt(beta) * score_fn(x, t)")),
    dict(task="task4", name="forward drift left out", says="you left it out",
         code=_pf("-0.5 * beta * score_fn(x, t)")),
    # task 5: the conditional flow-matching target and loss
    dict(task="task5", name="path runs from data to noise", says="wrong way", code=_cfm(xt="tb * x0 + (1 - tb) * x1")),
    dict(task="task5", name="velocity x0 - x1", says="you have x0 - x1", code=_cfm(ut="x0 - x1")),
    dict(task="task5", name="velocity scaled by t", says="does not depend on t", code=_cfm(ut="tb * (x1 - x0)")),
    dict(task="task5", name="loss averaged over dimensions too", says="averaged over both",
         code=_cfm(loss="((model(t, xt) - ut) ** 2).mean()")),
    # task 6: training to a KL gap
    dict(task="task6", name="noise and data swapped in the pairs", says="noise is x0 at t = 0", code=_train(pair="x1, x0")),
    dict(task="task6", name="times only near t = 0", says="KL gap", code=_train(t="0.1 * torch.rand(len(x1))", steps=300)),
    dict(task="task6", name="far too few steps", says="train longer", code=_train(steps=50)),
    dict(task="task6", name="the closed-form marginal velocity returned as the trained model", says="closed-form", code='''
def train_flow_matching(x_train):
    from course_utils.flow_matching import gmm_marginal_velocity
    eight = toy("8gaussians")
    return lambda t, x: gmm_marginal_velocity(x, torch.as_tensor(t, dtype=x.dtype), eight.centers, eight.std)
'''),
    dict(task="task6", name="the closed form wrapped in a module with a dummy parameter", says="closed-form", code='''
class _ClosedForm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))
        self.eight = toy("8gaussians")

    def forward(self, t, x):
        from course_utils.flow_matching import gmm_marginal_velocity
        t = torch.as_tensor(t, dtype=x.dtype)
        return gmm_marginal_velocity(x, t, self.eight.centers, self.eight.std) + 0 * self.dummy


def train_flow_matching(x_train):
    return _ClosedForm()
'''),
    dict(task="task6", name="a fixed function, not a trained network", says="return the network you trained", code='''
def train_flow_matching(x_train):
    return lambda t, x: 0.1 * x
'''),
]
