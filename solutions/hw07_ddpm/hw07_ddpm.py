# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Homework 07 — DDPM
#
# Follows lecture notebook `07_ddpm` (lectures 8 and 9.1 of the course notes). Six coded tasks (14 points, graded
# automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `q_sample`: a sample of $q(x_t\mid x_0)$ | 2 |
# | 2 | `posterior`: mean and variance of $q(x_{t-1}\mid x_t, x_0)$ | 3 |
# | 3 | `eps_mean`: the ε-parameterised reverse mean $\mu_\theta$ | 2 |
# | 4 | `ancestral_step`: one step of ancestral sampling | 2 |
# | 5 | `train_toy_ddpm`: a small DDPM on `8gaussians`, to a stated sample distance | 3 |
# | 6 | `cfg_combine`: classifier-free guidance's combined prediction | 2 |
# | 7 | written: why $L_{\text{simple}}$ drops the ELBO's weights, and what that costs | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and run the check cell below it: it prints
# `✓ ...` or one line saying what was expected. Hidden checks of the same kind use other inputs. Do not rename functions
# or delete cells; the notebook must run top to bottom in about a minute on a laptop CPU. Write the maths yourself: do
# not call `course_utils.diffusion`.
#
# **Notation** (the notes' indexing). The schedule below is given as tensors of length $T + 1$ indexed by $t = 0..T$:
# `betas[t]` $= \beta_t$ (with $\beta_0 = 0$), `alphas[t]` $= \alpha_t = 1 - \beta_t$, `alpha_bars[t]` $= \bar\alpha_t = \prod_{s\le t}\alpha_s$
# ($\bar\alpha_0 = 1$); $t = 1$ is the first noising step. A time `t` is an `int` or a batch `[B]` of ints (one per
# data point); data have any shape `[B, ...]`, so reshape per-sample coefficients to `[B, 1, ..., 1]`.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import call, diagnose, expect, expect_close, expect_tensor, hidden_test, passed
from course_utils.data import toy
from course_utils.metrics import relative_to_noise_floor, sliced_wasserstein
from course_utils.training import fit

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)

T = 100
betas = torch.zeros(T + 1, dtype=torch.float64)
betas[1:] = torch.linspace(1e-3, 0.1, T, dtype=torch.float64)        # a short linear chain that reaches noise
alphas = 1 - betas
alpha_bars = torch.cumprod(alphas, 0)
print(f"T = {T}, alpha_bar_T = {alpha_bars[T].item():.2e}")


def _diagnose(out, right, wrong, **tol):
    """diagnose() with only the wrong answers that differ from the right one (at t = 1, say, abar_1 = alpha_1)."""
    diagnose(out, {msg: w for msg, w in wrong.items()
                   if not torch.allclose(torch.as_tensor(w).double(), torch.as_tensor(right).double(), atol=1e-9, rtol=1e-7)},
             **tol)


def coef(values, t, x):
    """values[t] shaped to broadcast against x [B, ...]: a number for an int t, [B, 1, ..., 1] for a batch t."""
    v = values[torch.as_tensor(t)]
    return v.reshape(-1, *([1] * (x.ndim - 1))).to(x) if v.ndim else v.to(x)


# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — a sample of $q(x_t\mid x_0)$ (2 points)
#
# $q(x_t\mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t)\,I\big)$. Return the sample that uses the given standard-normal
# noise `eps` (same shape as `x0`). `coef(alpha_bars, t, x0)` gives $\bar\alpha_t$ in a shape that broadcasts.

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def q_sample(x0, t, eps):
    """x0 [B, ...], t int or [B], eps like x0 -> x_t like x0."""
    ### BEGIN SOLUTION
    ab = coef(alpha_bars, t, x0)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task1_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_q_sample(fn, seed, shape, t):
    """Check fn = q_sample against sqrt(abar_t) x0 + sqrt(1 - abar_t) eps on seeded inputs."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    out = call(fn, x0, t, eps, name="q_sample")
    expect_tensor(out, shape=shape, name=f"q_sample(x0 {tuple(shape)}, t = {t if isinstance(t, int) else 'a batch'}, eps)")
    tt = torch.as_tensor(t)
    view = (-1,) + (1,) * (len(shape) - 1) if tt.ndim else ()
    ab, ab_prev, a = alpha_bars[tt].reshape(view), alpha_bars[(tt - 1).clamp(min=0)].reshape(view), alphas[tt].reshape(view)
    _diagnose(out, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, {"q_sample uses alpha_bar_(t-1): the marginal at step t needs alpha_bar_t (off-by-one in t)":
                   ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps,
                   "q_sample uses alpha_t (one step) instead of the cumulative product alpha_bar_t":
                   a.sqrt() * x0 + (1 - a).sqrt() * eps,
                   "q_sample scales eps by the variance 1 - alpha_bar_t; the standard deviation is its square root":
                   ab.sqrt() * x0 + (1 - ab) * eps,
                   "q_sample scales x0 by alpha_bar_t; the mean is sqrt(alpha_bar_t) x0":
                   ab * x0 + (1 - ab).sqrt() * eps}, atol=1e-9)
    expect_close(out, ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-8, name="q_sample")


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_q_sample(q_sample, 0, (6, 2), 37)
_check_q_sample(q_sample, 1, (4, 1, 8, 8), torch.tensor([1, 2, 50, 100]))
x0c = torch.ones(1, 1, dtype=torch.float64)
expect_close(call(q_sample, x0c, 0, torch.zeros_like(x0c)), x0c, name="q_sample at t = 0 (x_0 itself)")
passed("q_sample is sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, for an int t and a batch of t, on any shape")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_q_sample(student.q_sample, 11, (9, 3), 1)
    _check_q_sample(student.q_sample, 12, (3, 2, 2, 2), torch.tensor([100, 7, 63]))
    _check_q_sample(student.q_sample, 13, (5, 4), 0)                          # t = 0: x_0 itself
    _check_q_sample(student.q_sample, 14, (4, 3), torch.tensor([0, 1, 99, 30]))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — the posterior $q(x_{t-1}\mid x_t, x_0)$ (3 points)
#
# Return `(mean, var)` of $q(x_{t-1}\mid x_t, x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$ for $t \ge 1$, with `var` of the same shape as `mean`:
# $$\tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}x_0 + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}x_t,\qquad
# \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t .$$
# The check compares with the conditional of the joint Gaussian of $(x_{t-1}, x_t)$ given $x_0$ (no completed square).

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def posterior(x0, xt, t):
    """x0, xt [B, ...], t int or [B] with t >= 1 -> (mean, var), each like x0."""
    ### BEGIN SOLUTION
    tt = torch.as_tensor(t)
    ab, ab_prev = coef(alpha_bars, tt, xt), coef(alpha_bars, tt - 1, xt)
    a, b = coef(alphas, tt, xt), coef(betas, tt, xt)
    mean = ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * xt
    var = ((1 - ab_prev) / (1 - ab) * b).expand_as(mean)
    return mean, var
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task2_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_posterior(fn, seed, shape, t):
    """Check fn = posterior against the conditional of the joint Gaussian of (x_(t-1), x_t) given x_0."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    xt = torch.randn(shape, generator=g, dtype=torch.float64)
    out = call(fn, x0, xt, t, name="posterior")
    expect(isinstance(out, (tuple, list)) and len(out) == 2, f"posterior should return (mean, var), got {type(out).__name__}")
    mean, var = out
    expect_tensor(mean, shape=shape, name="the posterior mean")
    expect_tensor(var if isinstance(var, torch.Tensor) else torch.as_tensor(var), shape=shape,
                  name="the posterior variance (give it the shape of the mean, e.g. with .expand_as(mean))")
    tt = torch.as_tensor(t)
    view = (-1,) + (1,) * (len(shape) - 1) if tt.ndim else ()
    ab, ab_prev = alpha_bars[tt].reshape(view), alpha_bars[tt - 1].reshape(view)
    a, b = alphas[tt].reshape(view), betas[tt].reshape(view)
    # independent: x_(t-1) ~ N(sqrt(ab_prev) x0, 1 - ab_prev), x_t = sqrt(a) x_(t-1) + sqrt(b) noise; condition on x_t
    cov, v_t = a.sqrt() * (1 - ab_prev), 1 - ab
    ref_mean = ab_prev.sqrt() * x0 + cov / v_t * (xt - ab.sqrt() * x0)
    ref_var = ((1 - ab_prev) - cov**2 / v_t).expand(shape)
    _diagnose(var, ref_var, {"the posterior variance is beta_t; the posterior's variance is beta_tilde_t = (1 - abar_(t-1)) / (1 - abar_t) beta_t "
                   "(beta_t is the forward step's variance)": b.expand(shape)}, atol=1e-12, rtol=1e-9)
    _diagnose(var, ref_var, {"the posterior variance has alpha_bar_t and alpha_bar_(t-1) swapped (off-by-one in t)":
                   ((1 - ab) / (1 - ab_prev) * b).expand(shape)}, atol=1e-12, rtol=1e-9)
    _diagnose(mean, ref_mean, {"the posterior mean uses alpha_bar_t where alpha_bar_(t-1) belongs (off-by-one in t)":
                    ab.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab) / (1 - ab) * xt,
                    "the posterior mean has the coefficients of x0 and x_t swapped":
                    ab_prev.sqrt() * b / (1 - ab) * xt + a.sqrt() * (1 - ab_prev) / (1 - ab) * x0,
                    "the posterior mean uses alpha_t instead of sqrt(alpha_t) in front of x_t":
                    ab_prev.sqrt() * b / (1 - ab) * x0 + a * (1 - ab_prev) / (1 - ab) * xt}, atol=1e-9)
    expect_close(mean, ref_mean, atol=1e-9, name="the posterior mean")
    expect_close(var, ref_var, atol=1e-12, rtol=1e-7, name="the posterior variance")


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_check_posterior(posterior, 0, (5, 3), 20)
_check_posterior(posterior, 1, (4, 1, 8, 8), torch.tensor([1, 2, 60, 100]))
m1, v1 = call(posterior, torch.ones(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64), 1)
expect(bool((v1 == 0).all()) and torch.allclose(m1, torch.ones(2, 2, dtype=torch.float64)),
       "at t = 1 the posterior is a point mass at x_0 (variance 0, mean x_0)")
passed("posterior mean and variance match Gaussian conditioning, for an int t and a batch of t")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_posterior(student.posterior, 21, (7, 2), 2)
    _check_posterior(student.posterior, 22, (3, 2, 2), torch.tensor([99, 5, 41]))
    _check_posterior(student.posterior, 23, (4, 3), 1)                        # t = 1: a point mass at x_0
    _check_posterior(student.posterior, 24, (3, 1, 2, 2), torch.tensor([1, 100, 2]))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — the ε-parameterised mean (2 points)
#
# Substituting $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon)/\sqrt{\bar\alpha_t}$ into $\tilde\mu_t$ gives the reverse mean the network uses,
# $\mu_\theta(x_t, t) = \frac1{\sqrt{\alpha_t}}\Big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\,\varepsilon_\theta(x_t, t)\Big)$. Return it for a given `eps`.

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def eps_mean(xt, t, eps):
    """xt [B, ...], t int or [B] (t >= 1), eps like xt -> mu like xt."""
    ### BEGIN SOLUTION
    ab, a, b = coef(alpha_bars, t, xt), coef(alphas, t, xt), coef(betas, t, xt)
    return (xt - b / (1 - ab).sqrt() * eps) / a.sqrt()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task3_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_eps_mean(fn, seed, shape, t):
    """Check fn = eps_mean: with the true noise it is the posterior mean (by Gaussian conditioning)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=g, dtype=torch.float64)
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    tt = torch.as_tensor(t)
    view = (-1,) + (1,) * (len(shape) - 1) if tt.ndim else ()
    ab, ab_prev = alpha_bars[tt].reshape(view), alpha_bars[tt - 1].reshape(view)
    a, b = alphas[tt].reshape(view), betas[tt].reshape(view)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    out = call(fn, xt, t, eps, name="eps_mean")
    expect_tensor(out, shape=shape, name="eps_mean(xt, t, eps)")
    mu_ref = (xt - b / (1 - ab).sqrt() * eps) / a.sqrt()
    _diagnose(out, mu_ref, {"eps_mean divides by 1 - alpha_bar_t; it should be its square root sqrt(1 - alpha_bar_t)":
                   (xt - b / (1 - ab) * eps) / a.sqrt(),
                   "eps_mean forgets the overall factor 1 / sqrt(alpha_t)": xt - b / (1 - ab).sqrt() * eps,
                   "eps_mean adds the noise term; it is subtracted": (xt + b / (1 - ab).sqrt() * eps) / a.sqrt(),
                   "eps_mean uses alpha_bar_(t-1) (off-by-one in t)": (xt - b / (1 - ab_prev).sqrt() * eps) / a.sqrt()},
             atol=1e-9)
    # with the true noise, mu is the posterior mean (independently by Gaussian conditioning)
    cov, v_t = a.sqrt() * (1 - ab_prev), 1 - ab
    expect_close(out, ab_prev.sqrt() * x0 + cov / v_t * (xt - ab.sqrt() * x0), atol=1e-8,
                 name="eps_mean with the true noise (it should equal the posterior mean)")


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_eps_mean(eps_mean, 0, (6, 2), 30)
_check_eps_mean(eps_mean, 1, (4, 1, 8, 8), torch.tensor([2, 10, 70, 100]))
passed("eps_mean with the true noise is the posterior mean")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_eps_mean(student.eps_mean, 31, (5, 3), 2)
    _check_eps_mean(student.eps_mean, 32, (3, 2, 2), torch.tensor([100, 1, 55]))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — one step of ancestral sampling (2 points)
#
# Given $x_t$, the network's prediction `eps_pred` and standard-normal noise `z`, return
# $x_{t-1} = \mu_\theta(x_t, t) + \sigma_t z$ with $\sigma_t^2 = \tilde\beta_t$ (the posterior's variance), and **no noise at $t = 1$** (return the mean).
# Here `t` is one int (the whole batch is at the same step). You may call your `eps_mean`.

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ancestral_step(xt, t, eps_pred, z):
    """xt, eps_pred, z [B, ...], t an int >= 1 -> x_(t-1) [B, ...]."""
    ### BEGIN SOLUTION
    mean = eps_mean(xt, t, eps_pred)
    if t == 1:
        return mean
    var = (1 - alpha_bars[t - 1]) / (1 - alpha_bars[t]) * betas[t]
    return mean + var.sqrt().to(xt) * z
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task4_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_step(fn, seed, shape, t):
    """Check fn = ancestral_step against mu_theta + sqrt(beta_tilde_t) z, and the mean alone at t = 1."""
    g = torch.Generator().manual_seed(seed)
    xt, e, z = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(3))
    out = call(fn, xt, t, e, z, name="ancestral_step")
    expect_tensor(out, shape=shape, name=f"ancestral_step(xt, t = {t}, eps_pred, z)")
    ab, ab_prev, a, b = alpha_bars[t], alpha_bars[t - 1], alphas[t], betas[t]
    mu = (xt - b / (1 - ab).sqrt() * e) / a.sqrt()
    bt = (1 - ab_prev) / (1 - ab) * b
    if t == 1:
        expect(not torch.allclose(out, mu + b.sqrt() * z),
               "ancestral_step adds noise at t = 1; the last step returns the mean mu_theta(x_1, 1)")
        expect_close(out, mu, atol=1e-9, name="ancestral_step at t = 1 (the mean, no noise)")
        return
    bt_prev = (1 - alpha_bars[t - 2]) / (1 - ab_prev) * betas[t - 1]   # beta_tilde_(t-1), an off-by-one (0 at t = 2)
    _diagnose(out, mu + bt.sqrt() * z, {"ancestral_step uses sigma_t^2 = beta_t; this task asks for beta_tilde_t, the posterior variance": mu + b.sqrt() * z,
                   "ancestral_step multiplies z by the variance beta_tilde_t; use the standard deviation sqrt(beta_tilde_t)": mu + bt * z,
                   "ancestral_step uses beta_tilde_(t-1), the variance of the step before: index the schedule at t": mu + bt_prev.sqrt() * z,
                   "ancestral_step forgets the noise: x_(t-1) = mu + sigma_t z for t > 1": mu}, atol=1e-9)
    expect_close(out, mu + bt.sqrt() * z, atol=1e-9, name=f"ancestral_step at t = {t}")


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
for _t in (1, 50, 2, 100):
    _check_step(ancestral_step, _t, (5, 2), _t)
_check_step(ancestral_step, 7, (3, 1, 8, 8), 9)
passed("ancestral_step = mu_theta + sqrt(beta_tilde_t) z, with no noise at t = 1")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    for t in (1, 3, 77, 100):
        _check_step(student.ancestral_step, 100 + t, (4, 3), t)
    _check_step(student.ancestral_step, 200, (2, 1, 4, 4), 1)
    _check_step(student.ancestral_step, 201, (2, 1, 4, 4), 40)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — train a small DDPM on `8gaussians` (3 points)
#
# Write `train_toy_ddpm(x, steps)` that trains an ε-network on the points `x [N, 2]` with
# $L_{\text{simple}} = \mathbb E_{t\sim U\{1..T\},\,\varepsilon}\|\varepsilon - \varepsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}\varepsilon, t)\|^2$ and returns a
# function `eps_fn(x [B, 2], t [B] long) -> [B, 2]`. An MLP on the concatenation of $x$ and a few features of $t/T$ (e.g.
# $\sin, \cos$ of $k\pi t/T$) is enough; use `fit(loss_fn, model, steps=steps, lr=...)` from `course_utils.training`.
# The check samples 2000 points with its own ancestral sampler and requires a sliced Wasserstein distance to fresh
# data within **2.5×** its noise floor (the same distance between two fresh data sets), within `steps = 1500`. It also
# compares your network at $t = 50$ with the exact noise predictor of `8gaussians` (a Gaussian mixture, so $q_t$ is known):
# it must be nearer to step 50's than to step 49's or 51's.

# %% nbgrader={"grade": false, "grade_id": "task5_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_toy_ddpm(x, steps):
    """x [N, 2] -> eps_fn(x [B, 2], t [B] long) -> [B, 2], trained with L_simple for `steps` steps."""
    ### BEGIN SOLUTION
    torch.manual_seed(0)
    k = torch.arange(1, 9, dtype=torch.float32)

    def features(xb, t):
        u = t.float()[:, None] / T
        return torch.cat([xb, torch.sin(math.pi * k * u), torch.cos(math.pi * k * u)], 1)

    net = torch.nn.Sequential(torch.nn.Linear(18, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128), torch.nn.SiLU(),
                              torch.nn.Linear(128, 128), torch.nn.SiLU(), torch.nn.Linear(128, 2))
    ab_all = alpha_bars.float()

    def loss():
        i = torch.randint(len(x), (256,))
        t = torch.randint(1, T + 1, (256,))
        eps = torch.randn(256, 2)
        ab = ab_all[t][:, None]
        xt = ab.sqrt() * x[i] + (1 - ab).sqrt() * eps
        return (net(features(xt, t)) - eps).pow(2).mean()

    fit(loss, net, steps=steps, lr=3e-3, progress=False)
    net.eval()
    return lambda xb, t: net(features(xb, t))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task5_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
from course_utils.score import mixture_score

target = toy("8gaussians")


def _exact_eps(x, t):
    """The exact noise predictor E[eps | x_t] of 8gaussians at step t: q_t is a Gaussian mixture (lecture 07, section 4)."""
    ab = alpha_bars[t].item()
    _, score = mixture_score(x.double(), target.centers * math.sqrt(ab), math.sqrt(ab * target.std**2 + 1 - ab))
    return -math.sqrt(1 - ab) * score


@torch.no_grad()
def _sample(eps_fn, n, seed):
    """The check's own ancestral sampler (beta_tilde variance, no noise at t = 1)."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(n, 2, generator=g)
    for t in range(T, 0, -1):
        e = call(eps_fn, xs, torch.full((n,), t, dtype=torch.long), name="the returned eps_fn")
        expect_tensor(e, shape=(n, 2), name=f"eps_fn(x [{n}, 2], t) at t = {t}")
        ab, ab_prev, a, b = (float(v[t]) for v in (alpha_bars, alpha_bars.roll(1), alphas, betas))
        xs = (xs - b / math.sqrt(1 - ab) * e) / math.sqrt(a)
        if t > 1:
            xs = xs + math.sqrt((1 - ab_prev) / (1 - ab) * b) * torch.randn(n, 2, generator=g)
    return xs


@torch.no_grad()
def _check_toy_model(eps_fn, seed):
    """Check a trained eps_fn on fresh data: L_simple, its sign and target (eps, not x_0), and ancestral samples against
    fresh data (sliced W2 next to its noise floor)."""
    g = torch.Generator().manual_seed(seed)
    x0 = target.sample((2000,), generator=g).float()
    t = torch.randint(1, T + 1, (2000,), generator=g)
    eps = torch.randn(2000, 2, generator=g)
    ab = alpha_bars.float()[t][:, None]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    pred = call(eps_fn, xt, t, name="the returned eps_fn")
    expect_tensor(pred, shape=(2000, 2), name="eps_fn(x [2000, 2], t [2000])")
    mse, mse_neg, mse_x0 = ((pred - eps) ** 2).mean().item(), ((-pred - eps) ** 2).mean().item(), ((pred - x0) ** 2).mean().item()
    expect(mse_neg > mse, f"the network predicts -eps (L_simple {mse:.3f}, but {mse_neg:.3f} with the sign flipped): "
           "the target of L_simple is the noise eps itself, with a plus sign")
    expect(mse_x0 > mse, f"the network predicts x_0, not the noise eps (its error against x_0 is {mse_x0:.3f}, against "
           f"eps {mse:.3f}): L_simple regresses the noise")
    expect(mse < 0.8, f"L_simple of the returned network is {mse:.3f} on fresh data; an untrained network gives about 1: "
           "it has not learned to predict the noise (train longer, or check the loss)")
    # an off-by-one in t trains a network that, fed t, predicts the noise of step t - 1 or t + 1: compare it at t = 50
    # with the exact predictors of steps 49, 50 and 51 (a well-trained network is nearest the one of step 50)
    t_mid = 50
    ab_mid = alpha_bars[t_mid].item()
    x_mid = (math.sqrt(ab_mid) * x0.double() + math.sqrt(1 - ab_mid) * eps.double()).float()
    p_mid = call(eps_fn, x_mid, torch.full((2000,), t_mid, dtype=torch.long), name="the returned eps_fn")
    expect_tensor(p_mid, shape=(2000, 2), name=f"eps_fn(x [2000, 2], t) at t = {t_mid}")
    d = {s: ((p_mid.double() - _exact_eps(x_mid, t_mid + s)) ** 2).sum(1).mean().item() for s in (-1, 0, 1)}
    near = -1 if d[-1] < d[1] else 1
    expect(d[near] > 0.8 * d[0], f"fed t = {t_mid}, your network predicts the noise of step {t_mid + near} (mean squared "
           f"distance {d[near]:.4f} to the exact predictor of step {t_mid + near}, {d[0]:.4f} to that of step {t_mid}): an "
           f"off-by-one in t. Noise x_0 with alpha_bar[t] and give the network that same t "
           f"({'alpha_bar[t - 1]' if near < 0 else 'alpha_bar[t + 1]'} is the slip)")
    xs = _sample(eps_fn, 2000, seed + 1)
    expect(bool(torch.isfinite(xs).all()), "ancestral sampling with your eps_fn gives NaN or inf")
    gt = torch.Generator().manual_seed(seed + 2)
    rs = [relative_to_noise_floor(sliced_wasserstein, xs.double(), lambda n: target.sample((n,), generator=gt).double())
          for _ in range(3)]
    ratio = sum(r["distance"] for r in rs) / sum(r["floor"] for r in rs)
    expect(ratio < 2.5, f"samples are {ratio:.2f}x the noise floor away from the data (need < 2.5); L_simple = {mse:.3f}")
    return mse, ratio


# %% nbgrader={"grade": true, "grade_id": "task5_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
x_toy = target.sample((20_000,), generator=torch.Generator().manual_seed(0)).float()
toy_eps = call(train_toy_ddpm, x_toy, 1500)
toy_mse, toy_ratio = _check_toy_model(toy_eps, 0)
passed(f"L_simple = {toy_mse:.3f}; samples within {toy_ratio:.2f}x the noise floor")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    # the eps_fn the check above trained with the student's train_toy_ddpm, on fresh data and a fresh sampler seed
    _check_toy_model(student.toy_eps, 5)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task6_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 6 — classifier-free guidance (2 points)
#
# With the lecture's convention (the notes' $\gamma$ is our $w$), return
# $\varepsilon^w = (1 - w)\,\varepsilon_\theta(x_t, \varnothing) + w\,\varepsilon_\theta(x_t, y)$: $w = 0$ gives the unconditional model, $w = 1$ the
# conditional one, and $w > 1$ moves further along $\varepsilon_\theta(x_t, y) - \varepsilon_\theta(x_t, \varnothing)$.

# %% nbgrader={"grade": false, "grade_id": "task6_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cfg_combine(eps_uncond, eps_cond, w):
    """eps_uncond, eps_cond [B, ...], w a float -> guided eps [B, ...]."""
    ### BEGIN SOLUTION
    return eps_uncond + w * (eps_cond - eps_uncond)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task6_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_cfg(fn, seed, shape, w):
    """Check fn = cfg_combine against (1 - w) eps_uncond + w eps_cond."""
    g = torch.Generator().manual_seed(seed)
    eu, ec = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    out = call(fn, eu, ec, w, name="cfg_combine")
    expect_tensor(out, shape=shape, name=f"cfg_combine(eps_uncond, eps_cond, w = {w})")
    _diagnose(out, (1 - w) * eu + w * ec, {f"guidance with the wrong sign: at w = {w} you move away from the class (eps_uncond - w (eps_cond - eps_uncond))":
                   eu - w * (ec - eu),
                   f"cfg_combine uses the (1 + w) convention, eps_cond + w (eps_cond - eps_uncond); here w = 0 must give the "
                   "unconditional model": ec + w * (ec - eu),
                   "cfg_combine swaps the conditional and unconditional predictions": ec + w * (eu - ec)}, atol=1e-6)
    expect_close(out, (1 - w) * eu + w * ec, atol=1e-5, name=f"cfg_combine at w = {w}")


# %% nbgrader={"grade": true, "grade_id": "task6_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_cfg(cfg_combine, 0, (4, 2), 3.0)
_check_cfg(cfg_combine, 1, (3, 1, 8, 8), 0.3)
eu1, ec1 = torch.randn(5, 2), torch.randn(5, 2)
expect_close(call(cfg_combine, eu1, ec1, 0.0), eu1, atol=1e-6, name="cfg_combine at w = 0 (the unconditional model)")
expect_close(call(cfg_combine, eu1, ec1, 1.0), ec1, atol=1e-6, name="cfg_combine at w = 1 (the conditional model)")
passed("w = 0 unconditional, w = 1 conditional, w > 1 guides towards y")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_cfg(student.cfg_combine, 2, (6, 3), 7.5)
    _check_cfg(student.cfg_combine, 3, (2, 2, 2), 2.0)
    _check_cfg(student.cfg_combine, 4, (5, 2), 0.0)                           # the unconditional model
    _check_cfg(student.cfg_combine, 5, (5, 2), 1.0)                           # the conditional model
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task7_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 7 — written: what $L_{\text{simple}}$ drops (2 points, graded by hand)
#
# (a) The ELBO's diffusion terms are $L_{t-1} = \lambda_t\,\mathbb E\|\varepsilon - \varepsilon_\theta(x_t, t)\|^2$ with
# $\lambda_t = \beta_t^2/(2\tilde\beta_t\alpha_t(1-\bar\alpha_t))$. $L_{\text{simple}}$ replaces $\lambda_t$ by 1. Why does it still train a good sampler
# (what is the minimiser at each $t$, with and without the weights)?
# (b) What does dropping the weights cost? Use the lecture's measurement of the digits DDPM's ELBO next to the VAE's,
# and say at which $t$ the bound is lost.

# %% [markdown] nbgrader={"grade": true, "grade_id": "task7_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) At each $t$ both objectives are minimised by the same function, $\varepsilon_\theta(x_t, t) = \mathbb E[\varepsilon\mid x_t]$ (a
# weighted sum of per-$t$ regressions, with a separate network output for each $t$, has the same minimiser whatever the
# positive weights): the weights only decide how a network of limited capacity and a finite training budget share their
# effort between the steps. $\lambda_t$ is largest at small $t$ (nearly clean data, where the noise is hard to see and matters
# little for the look of a sample); setting it to 1 moves effort to larger $t$, where the coarse structure is decided,
# and the gradient has a smaller variance. It is DSM with the usual $\sigma^2$ weighting (lecture 9.1).
# (b) The bound: a network trained without the weights is imprecise exactly where $\lambda_t$ is large, so its
# ELBO (in nats, per image) is poor: in the lecture the DDPM's bound was far below the VAE's, and most of it is
# lost at small $t$ (and, with the cosine schedule, at the last steps where $\alpha_t \to 0$), while its samples were
# much closer than that gap suggests (a higher recall than the VAE's, though a lower precision and about twice its
# Fréchet distance): the steps that cost the bound most hardly change a sample. Samples and likelihoods measure different things; for likelihoods one trains on the true ELBO
# (or learns the variances, as Nichol and Dhariwal do).
# ### END SOLUTION
