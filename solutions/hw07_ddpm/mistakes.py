"""Plausible wrong answers to homework 07. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""


def _q_sample(body):
    return f'''
def q_sample(x0, t, eps):
    ab, ab_prev, a = coef(alpha_bars, t, x0), coef(alpha_bars, torch.as_tensor(t) - 1, x0), coef(alphas, t, x0)
    return {body}
'''


def _posterior(mean, var):
    return f'''
def posterior(x0, xt, t):
    tt = torch.as_tensor(t)
    ab, ab_prev = coef(alpha_bars, tt, xt), coef(alpha_bars, tt - 1, xt)
    a, b = coef(alphas, tt, xt), coef(betas, tt, xt)
    mean = {mean}
    var = ({var}).expand_as(mean)
    return mean, var
'''


_MEAN = "ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * xt"
_VAR = "(1 - ab_prev) / (1 - ab) * b"


def _eps_mean(body):
    return f'''
def eps_mean(xt, t, eps):
    ab, a, b = coef(alpha_bars, t, xt), coef(alphas, t, xt), coef(betas, t, xt)
    ab_prev = coef(alpha_bars, torch.as_tensor(t) - 1, xt)
    return {body}
'''


def _step(body):
    return f'''
def ancestral_step(xt, t, eps_pred, z):
    mean = eps_mean(xt, t, eps_pred)
    bt = ((1 - alpha_bars[t - 1]) / (1 - alpha_bars[t]) * betas[t]).to(xt)
    b = betas[t].to(xt)
{body}
'''


def _train(body):
    # keep the solution's trained network: the check cell rebinds `toy_eps` to each mistake's answer
    return f'''
_good_eps = globals().get("_good_eps") or toy_eps

def train_toy_ddpm(x, steps):
{body}
'''


def _cfg(body):
    return f'''
def cfg_combine(eps_uncond, eps_cond, w):
    return {body}
'''


MISTAKES = [
    # task 1: q(x_t | x_0)
    dict(task="task1", name="alpha_bar_(t-1) instead of alpha_bar_t (off-by-one)", says="off-by-one",
         code=_q_sample("ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps")),
    dict(task="task1", name="alpha_t instead of alpha_bar_t", says="cumulative product",
         code=_q_sample("a.sqrt() * x0 + (1 - a).sqrt() * eps")),
    dict(task="task1", name="variance instead of standard deviation on eps", says="standard deviation",
         code=_q_sample("ab.sqrt() * x0 + (1 - ab) * eps")),
    dict(task="task1", name="alpha_bar_t x0 instead of sqrt(alpha_bar_t) x0", says="sqrt(alpha_bar_t) x0",
         code=_q_sample("ab * x0 + (1 - ab).sqrt() * eps")),
    # task 2: the posterior
    dict(task="task2", name="beta_t instead of beta_tilde_t for the variance", says="beta_tilde_t",
         code=_posterior(_MEAN, "b")),
    dict(task="task2", name="alpha_bar_t and alpha_bar_(t-1) swapped in the variance", says="off-by-one",
         code=_posterior(_MEAN, "(1 - ab) / (1 - ab_prev) * b")),
    dict(task="task2", name="alpha_bar_t in place of alpha_bar_(t-1) in the mean", says="off-by-one",
         code=_posterior("ab.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab) / (1 - ab) * xt", _VAR)),
    dict(task="task2", name="coefficients of x0 and x_t swapped", says="swapped",
         code=_posterior("ab_prev.sqrt() * b / (1 - ab) * xt + a.sqrt() * (1 - ab_prev) / (1 - ab) * x0", _VAR)),
    dict(task="task2", name="alpha_t instead of sqrt(alpha_t)", says="instead of sqrt(alpha_t)",
         code=_posterior("ab_prev.sqrt() * b / (1 - ab) * x0 + a * (1 - ab_prev) / (1 - ab) * xt", _VAR)),
    dict(task="task2", name="variance returned as a number, not with the shape of the mean", says="shape of the mean",
         code='''
def posterior(x0, xt, t):
    tt = torch.as_tensor(t)
    ab, ab_prev = coef(alpha_bars, tt, xt), coef(alpha_bars, tt - 1, xt)
    a, b = coef(alphas, tt, xt), coef(betas, tt, xt)
    mean = ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * xt
    return mean, (1 - ab_prev) / (1 - ab) * b
'''),
    # task 3: the eps-parameterised mean
    dict(task="task3", name="1 - alpha_bar_t instead of its square root", says="square root",
         code=_eps_mean("(xt - b / (1 - ab) * eps) / a.sqrt()")),
    dict(task="task3", name="no 1/sqrt(alpha_t)", says="1 / sqrt(alpha_t)",
         code=_eps_mean("xt - b / (1 - ab).sqrt() * eps")),
    dict(task="task3", name="noise term added", says="subtracted",
         code=_eps_mean("(xt + b / (1 - ab).sqrt() * eps) / a.sqrt()")),
    dict(task="task3", name="alpha_bar_(t-1) (off-by-one)", says="off-by-one",
         code=_eps_mean("(xt - b / (1 - ab_prev).sqrt() * eps) / a.sqrt()")),
    # task 4: one ancestral step
    dict(task="task4", name="beta_t instead of beta_tilde_t", says="beta_tilde_t, the posterior variance",
         code=_step("    return mean if t == 1 else mean + b.sqrt() * z")),
    dict(task="task4", name="variance instead of standard deviation", says="standard deviation",
         code=_step("    return mean if t == 1 else mean + bt * z")),
    dict(task="task4", name="noise at t = 1 too", says="noise at t = 1",
         code=_step("    return mean + b.sqrt() * z")),
    dict(task="task4", name="beta_tilde of the step before (t - 1)", says="variance of the step before",
         code=_step('''    bt1 = ((1 - alpha_bars[max(t - 2, 0)]) / (1 - alpha_bars[t - 1]) * betas[t - 1]).to(xt)
    return mean if t == 1 else mean + bt1.sqrt() * z''')),
    dict(task="task4", name="no noise at all", says="forgets the noise",
         code=_step("    return mean")),
    # task 5: training (cheap: reuse the trained toy_eps of the solution run)
    dict(task="task5", name="untrained network", says="untrained",
         code=_train('''    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.SiLU(), torch.nn.Linear(64, 2))
    return lambda xb, t: net(torch.cat([xb, t.float()[:, None] / T], 1))''')),
    dict(task="task5", name="eps with the wrong sign", says="predicts -eps",
         code=_train("    return lambda xb, t: -_good_eps(xb, t)")),
    dict(task="task5", name="network predicts x_0 instead of the noise", says="predicts x_0",
         code=_train('''    def x0_fn(xb, t):
        ab = alpha_bars.float()[t][:, None]
        return (xb - (1 - ab).sqrt() * _good_eps(xb, t)) / ab.sqrt()
    return x0_fn''')),
    dict(task="task5", name="time rescaled at sampling (t // 2 instead of t)", says="not learned to predict the noise",
         code=_train("    return lambda xb, t: _good_eps(xb, t // 2)")),
    # trained with alpha_bar[t - 1] (or [t + 1]) for the label t: the network, fed t, is the right one at t - 1 (t + 1)
    dict(task="task5", name="off-by-one: alpha_bar[t - 1] in training", says="alpha_bar[t - 1] is the slip",
         code=_train("    return lambda xb, t: _good_eps(xb, (t - 1).clamp(min=1))")),
    dict(task="task5", name="off-by-one: alpha_bar[t + 1] in training", says="alpha_bar[t + 1] is the slip",
         code=_train("    return lambda xb, t: _good_eps(xb, (t + 1).clamp(max=T))")),
    # task 6: classifier-free guidance
    dict(task="task6", name="guidance with the wrong sign", says="wrong sign",
         code=_cfg("eps_uncond - w * (eps_cond - eps_uncond)")),
    dict(task="task6", name="the (1 + w) convention", says="(1 + w) convention",
         code=_cfg("eps_cond + w * (eps_cond - eps_uncond)")),
    dict(task="task6", name="conditional and unconditional swapped", says="swaps",
         code=_cfg("eps_cond + w * (eps_uncond - eps_cond)")),
]
