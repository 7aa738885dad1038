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
# # Homework 08 — continuous time: solvers, divergences, the probability-flow ODE and flow matching
#
# Follows lecture notebook `08_continuous_time` (lectures 9.2 and 10 of the course notes). Six coded tasks (15 points,
# graded automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `euler_step`, `heun_step`: one step of each solver | 2 |
# | 2 | `divergence_autograd`, `divergence_hutchinson`: the trace of a Jacobian, exactly and unbiasedly | 3 |
# | 3 | `ode_log_prob`: the exact log-density of an ODE flow by the instantaneous change of variables | 3 |
# | 4 | `pf_ode_drift`: the probability-flow ODE's drift from a score | 2 |
# | 5 | `cfm_sample`, `cfm_loss`: the conditional flow-matching target and loss | 2 |
# | 6 | `train_flow_matching`: a flow-matching model on `8gaussians` to a stated KL gap | 3 |
# | 7 | written: why the PF-ODE gives exact likelihoods and the SDE does not | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and run the check cell below it: it prints
# `✓ ...` or one line saying what was expected. Hidden checks of the same kind use other inputs. Do not rename functions or
# delete cells; the notebook must run top to bottom in about a minute on a laptop CPU. Write the maths yourself: do not call
# `course_utils.ode` or `course_utils.flow_matching` (the hidden checks compare against them), except where a task says so.
#
# **Conventions.** A vector field is called `f(t, x)` with `x` of shape `[B, D]` and `t` a 0-d tensor. Flow matching and
# task 3 run from noise at $t = 0$ ($\mathcal{N}(0, I)$) to data at $t = 1$; the VP-SDE of task 4 runs from data at $t = 0$ to noise at $t = 1$.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import LocalStudent, call, diagnose, expect, expect_close, expect_tensor, hidden_test, passed
from course_utils.data import toy
from course_utils.training import fit

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)

# The checks build the vector fields and scores they pass to your functions from a short source, e.g.
# _code("lambda t, x: x @ a.T", a=a); the grader's hidden checks build the same functions in your kernel.
_code = LocalStudent({}).code


def _std_normal_log_prob(z):
    return -0.5 * (z ** 2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — Euler and Heun steps (2 points)
#
# `euler_step(f, t, x, h)` returns $x + h\,f(x, t)$. `heun_step(f, t, x, h)` predicts $x' = x + h f(x, t)$ and returns
# $x + \frac h2\big(f(x, t) + f(x', t + h)\big)$. Both must work for negative `h` (integrating backwards). The checks use a
# time-dependent field, and measure the global order of your solvers (1 and 2) on $\dot x = \cos(t)\,x$.

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def euler_step(f, t, x, h):
    """One Euler step of dx/dt = f(t, x) from time t with step h (may be negative)."""
    ### BEGIN SOLUTION
    return x + h * f(t, x)
    ### END SOLUTION


def heun_step(f, t, x, h):
    """One Heun (explicit trapezoid) step of dx/dt = f(t, x) from time t with step h."""
    ### BEGIN SOLUTION
    k1 = f(t, x)
    return x + 0.5 * h * (k1 + f(t + h, x + h * k1))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task1_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
_STEP_FIELD = "lambda t, y: torch.sin(y) * torch.cos(3 * t) - 0.5 * y * t"     # nonlinear and time-dependent
_ORDER_FIELD = "lambda t, y: torch.cos(t) * y"                                  # x(t) = x(0) exp(sin t)


def _check_steps(euler_step, heun_step, seed, t0, h, code=_code):
    """One Euler and one Heun step against their formulas (code builds the field passed to them)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    f = _code(_STEP_FIELD)
    t, hh = torch.tensor(t0, dtype=torch.float64), torch.tensor(h, dtype=torch.float64)
    e = expect_tensor(call(euler_step, code(_STEP_FIELD), t, x, hh, name="euler_step"), shape=x.shape,
                      name="euler_step(f, t, x, h)")
    k1 = f(t, x)
    diagnose(e, {"euler_step: the step is x + h f(t, x); you left out h": x + k1,
                 "euler_step: the slope is taken at t + h; Euler uses the slope at the start, f(t, x)": x + hh * f(t + hh, x)},
             atol=1e-9, rtol=0)
    expect_close(e, x + hh * k1, atol=1e-10, name="euler_step(f, t, x, h)")
    hs = expect_tensor(call(heun_step, code(_STEP_FIELD), t, x, hh, name="heun_step"), shape=x.shape,
                       name="heun_step(f, t, x, h)")
    diagnose(hs, {"heun_step: the second slope must be taken at time t + h (you used t)": x + 0.5 * hh * (k1 + f(t, x + hh * k1)),
                  "heun_step: this is the midpoint method (slope at t + h/2); Heun averages the slopes at t and t + h":
                      x + hh * f(t + hh / 2, x + hh / 2 * k1),
                  "heun_step: you returned the Euler step; Heun averages f(t, x) and f(t + h, x + h f(t, x))": x + hh * k1,
                  "heun_step: average the two slopes (h/2 times their sum), not h times their sum":
                      x + hh * (k1 + f(t + hh, x + hh * k1))}, atol=1e-9, rtol=0)
    expect_close(hs, x + 0.5 * hh * (k1 + f(t + hh, x + hh * k1)), atol=1e-10, name="heun_step(f, t, x, h)")


def _order(step, name, ns=(32, 64), code=_code):
    """The global order measured on dx/dt = cos(t) x over [0, 2]: log2 of the error ratio from ns[0] to ns[1] steps."""
    f = code(_ORDER_FIELD)
    errs = []
    for n in ns:
        x, h = torch.ones(1, 1, dtype=torch.float64), torch.tensor(2.0 / n, dtype=torch.float64)
        for i in range(n):
            x = call(step, f, i * h, x, h, name=name)
        x = expect_tensor(x, shape=(1, 1), name=f"{name} after {n} steps")
        errs.append(max(abs(x.item() - math.exp(math.sin(2.0))), 1e-300))
    return math.log2(errs[0] / errs[1])


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_steps(euler_step, heun_step, 0, 0.3, 0.1)
_check_steps(euler_step, heun_step, 1, 0.8, -0.2)                       # backwards in time
orders = [_order(euler_step, "euler_step"), _order(heun_step, "heun_step")]
expect(abs(orders[0] - 1) < 0.2 and abs(orders[1] - 2) < 0.2,
       f"measured global orders {orders[0]:.2f} (Euler) and {orders[1]:.2f} (Heun); expected 1 and 2")
passed(f"Euler and Heun steps; measured orders {orders[0]:.2f} and {orders[1]:.2f}")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_steps(student.euler_step, student.heun_step, 5, 0.05, 0.05, code=student.code)
    _check_steps(student.euler_step, student.heun_step, 6, 1.0, -0.5, code=student.code)   # backwards in time
    orders = [_order(student.euler_step, "euler_step", (24, 48), code=student.code),
              _order(student.heun_step, "heun_step", (24, 48), code=student.code)]
    expect(abs(orders[0] - 1) < 0.2 and abs(orders[1] - 2) < 0.2,
           f"measured global orders {orders[0]:.2f} (Euler) and {orders[1]:.2f} (Heun) from 24 and 48 steps; expected 1 and 2")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — the divergence, exactly and by Hutchinson (3 points)
#
# `divergence_autograd(f, t, x)` returns $\operatorname{tr}\frac{\partial f}{\partial x}$ at each row of `x` `[B, D]` as a `[B]` tensor, by autograd
# (one backward pass per dimension: $\partial f_i/\partial x_i$ is entry $i$ of the gradient of $\sum_b f_i(x_b)$). Rows do not interact.
#
# `divergence_hutchinson(f, t, x, n_probes, generator)` returns the unbiased estimate $\frac1{n}\sum_k \varepsilon_k^\top\frac{\partial f}{\partial x}\varepsilon_k$ with
# **Rademacher** probes ($\pm1$ entries; draw them with `torch.randint(0, 2, ..., generator=generator)`), one
# vector–Jacobian product per probe, and **the probes in `x`'s dtype** (the checks pass float64 inputs). Returns `[B]`.

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def divergence_autograd(f, t, x):
    """Exact divergence of f(t, .) at each row of x [B, D] -> [B]."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        fx = f(t, x)
        return sum(torch.autograd.grad(fx[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(x.shape[1]))
    ### END SOLUTION


def divergence_hutchinson(f, t, x, n_probes=1, generator=None):
    """Hutchinson's estimate of the divergence with n_probes Rademacher probes -> [B]."""
    ### BEGIN SOLUTION
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        fx = f(t, x)
        total = torch.zeros(len(x), dtype=x.dtype)
        for _ in range(n_probes):
            eps = (2 * torch.randint(0, 2, x.shape, generator=generator) - 1).to(x.dtype)
            total = total + (torch.autograd.grad(fx, x, eps, retain_graph=True)[0] * eps).sum(1)
        return total / n_probes
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task2_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
_DIV_FIELD = "lambda t, y: torch.tanh(y @ w.T) + y @ a.T * t"   # nonlinear and time-dependent
_LINEAR_FIELD = "lambda t, y: y @ a.to(y.dtype).T"             # its Jacobian is a everywhere


def _check_divergence(divergence_autograd, divergence_hutchinson, seed, dim, code=_code):
    """The exact divergence on a nonlinear time-dependent field; Hutchinson's mean, variance and dtype on a linear
    field (code builds the fields passed to them)."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    w = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    f = _code(_DIV_FIELD, w=w, a=a)
    x = torch.randn(7, dim, generator=g, dtype=torch.float64)
    t = torch.tensor(0.7, dtype=torch.float64)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda y: f(t, y[None])[0], xi) for xi in x])   # [B, D, D]
    truth = jac.diagonal(dim1=1, dim2=2).sum(1)
    d = expect_tensor(call(divergence_autograd, code(_DIV_FIELD, w=w, a=a), t, x, name="divergence_autograd"), shape=(7,),
                      name="divergence_autograd(f, t, x)")
    diagnose(d, {"divergence_autograd: this is the sum of ALL entries of the Jacobian; the divergence is the trace "
                 "(only d f_i / d x_i)": jac.sum((1, 2)),
                 "divergence_autograd: the divergence has the wrong sign": -truth})
    expect_close(d, truth, atol=1e-8, name="divergence_autograd(f, t, x)")
    # Hutchinson: float64 in, float64 out; unbiased for a linear field (the Jacobian is a everywhere)
    lin = code(_LINEAR_FIELD, a=a)
    xs = torch.zeros(20_000, dim, dtype=torch.float64)
    est = expect_tensor(call(divergence_hutchinson, lin, t, xs, 1, torch.Generator().manual_seed(seed),
                             name="divergence_hutchinson"), shape=(20_000,),
                        name="divergence_hutchinson(f, t, x, 1, generator)")
    expect(est.dtype == torch.float64, f"divergence_hutchinson should return x's dtype (float64 here), got {est.dtype}: "
           "draw the probes in x's dtype")
    var_rad = ((a ** 2).sum() + torch.trace(a @ a) - 2 * (a.diagonal() ** 2).sum()).item()
    var_gauss = ((a ** 2).sum() + torch.trace(a @ a)).item()
    se = math.sqrt(var_gauss / len(est))
    expect(abs(est.mean().item() + torch.trace(a).item()) > 4 * se or abs(torch.trace(a).item()) < 4 * se,
           "divergence_hutchinson: the estimates average to -tr(A): the sign is wrong")
    expect(abs(est.mean().item() - torch.trace(a).item()) < 4 * se,
           f"divergence_hutchinson should be unbiased: its mean over 20000 probes is {est.mean().item():.3f}, "
           f"but tr(A) = {torch.trace(a).item():.3f} (± {se:.3f})")
    v = est.var().item()
    expect(v < 1e-12 or abs(v / var_gauss - 1) > 0.1 or abs(var_rad / var_gauss - 1) < 0.1,
           f"divergence_hutchinson: the variance {v:.3f} is that of Gaussian probes ({var_gauss:.3f}); use Rademacher probes "
           f"(±1 entries, variance {var_rad:.3f})")
    expect(abs(v / var_rad - 1) < 0.1, f"divergence_hutchinson: with one Rademacher probe the variance should be "
           f"{var_rad:.3f}, got {v:.3f} (one probe per estimate, a fresh probe for every row)")
    many = expect_tensor(call(divergence_hutchinson, lin, t, xs[:2000], 8, torch.Generator().manual_seed(seed + 1),
                              name="divergence_hutchinson"), shape=(2000,), name="divergence_hutchinson(f, t, x, 8, generator)")
    expect(abs(many.var().item() / (var_rad / 8) - 1) < 0.15,
           f"divergence_hutchinson with n_probes = 8 should have 1/8 of the one-probe variance ({var_rad / 8:.3f}), "
           f"got {many.var().item():.3f}: average over the probes")


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_check_divergence(divergence_autograd, divergence_hutchinson, 0, 3)
passed("exact divergence equals the Jacobian's trace; Hutchinson is unbiased with the Rademacher variance, in x's dtype")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_divergence(student.divergence_autograd, student.divergence_hutchinson, 3, 2, code=student.code)
    _check_divergence(student.divergence_autograd, student.divergence_hutchinson, 4, 5, code=student.code)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — the exact log-likelihood of an ODE flow (3 points)
#
# The flow of $\dot x = f(x, t)$ carries $p_0 = \mathcal{N}(0, I)$ at $t = 0$ to $p_1$ at $t = 1$. Write
# `ode_log_prob(f, x, steps)` $= \log p_1(x)$ for rows of `x` `[B, D]`: integrate $(x, \ell)$ with
# $\frac{d}{dt}(x, \ell) = (f, -\operatorname{div} f)$ from $(x, 0)$ at the data time to the noise time in `steps` Heun steps of your task 1
# (the divergence by your `divergence_autograd`), then return $\log\mathcal{N}(x_{\text{end}}; 0, I) - \ell_{\text{end}}$. Think about which way time runs
# and the sign, and evaluate `f` at the time the state is at. The check uses the time-dependent field
# $f(t, x) = (1 + t)Ax + t\,b$: its flow is affine, so $p_1$ is Gaussian in closed form,
# $p_1 = \mathcal{N}\big(m, e^{3A/2}e^{3A^\top/2}\big)$ with $m = \int_0^1 e^{(3/2 - s - s^2/2)A}\, s\, b\,ds$ (where the point $0$ goes).

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def ode_log_prob(f, x, steps=50):
    """log p_1(x) [B] for the flow of dx/dt = f(t, x) from N(0, I) at t = 0."""
    ### BEGIN SOLUTION
    d = x.shape[1]

    def augmented(t, s):
        y = s[:, :d]
        return torch.cat([f(t, y).detach(), -divergence_autograd(f, t, y).detach()[:, None]], 1)

    s = torch.cat([x, torch.zeros(len(x), 1, dtype=x.dtype)], 1)
    h = torch.tensor(-1.0 / steps, dtype=x.dtype)
    for i in range(steps):
        s = heun_step(augmented, 1.0 + i * h, s, h)
    return _std_normal_log_prob(s[:, :d]) - s[:, d]
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task3_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
_FLOW_FIELD = "lambda t, x: (1 + t) * (x @ a.to(x.dtype).T) + t * b.to(x.dtype)"   # f(t, x) = (1 + t) A x + t b


def _flow_path(a, b, x, t_start, speed, sign):
    """Where a solver ends that moves (y, l) from (x, 0) by d(y, l)/ds = sign * (f, -div f)(t_start + speed * s, y) for s
    from 0 to 1, for f(t, x) = (1 + t) A x + t b. Exact: with tau(s) = t_start + speed * s and P(s) = int_s^1 sign (1 + tau),
    y(1) = e^{P(0) A} x + int_0^1 e^{P(s) A} sign tau(s) b ds (A commutes with itself; the integral by Simpson's rule) and
    l(1) = -P(0) tr A. ode_log_prob is (t_start, speed, sign) = (1, -1, -1); the other paths are the mistakes named below."""
    s = torch.linspace(0.0, 1.0, 401, dtype=torch.float64)
    p = sign * ((1 + t_start) * (1 - s) + speed * (1 - s ** 2) / 2)
    w = torch.ones(401, dtype=torch.float64)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    w = w / (3 * 400)
    drift = ((w * sign * (t_start + speed * s))[:, None, None] * torch.linalg.matrix_exp(p[:, None, None] * a)).sum(0) @ b
    return x @ torch.linalg.matrix_exp(p[0] * a).T + drift, -p[0].item() * torch.trace(a).item()


def _check_ode_log_prob(ode_log_prob, seed, steps=50, code=_code):
    """ode_log_prob on f(t, x) = (1 + t) A x + t b against the closed-form Gaussian p_1 (code builds the field)."""
    g = torch.Generator().manual_seed(seed)
    a = 0.4 * torch.randn(2, 2, generator=g, dtype=torch.float64) + torch.diag(torch.tensor([0.4, 0.3], dtype=torch.float64))
    b = torch.randn(2, generator=g, dtype=torch.float64)
    x = 1.5 * torch.randn(40, 2, generator=g, dtype=torch.float64)
    m, e = _flow_path(a, b, torch.zeros(1, 2, dtype=torch.float64), 0.0, 1.0, 1)[0][0], torch.linalg.matrix_exp(1.5 * a)
    truth = torch.distributions.MultivariateNormal(m, e @ e.T).log_prob(x)
    lp = expect_tensor(call(ode_log_prob, code(_FLOW_FIELD, a=a, b=b), x, steps, name="ode_log_prob"), shape=(40,),
                       name=f"ode_log_prob(f, x, {steps})")

    def ending(t_start, speed, sign, l_sign=-1):                    # log N(y(1); 0, I) + l_sign * l(1) on that path
        y, l_end = _flow_path(a, b, x, t_start, speed, sign)
        return _std_normal_log_prob(y) + l_sign * l_end

    l_true = _flow_path(a, b, x, 1.0, -1.0, -1)[1]
    diagnose(lp, {"ode_log_prob: the divergence enters with the wrong sign (log p_data = log p_noise(x_end) - l_end with "
                  "dl/dt = -div f, integrated from the data time to the noise time)": ending(1.0, -1.0, -1, +1),
                  "ode_log_prob: time runs the wrong way: you integrated from t = 0 to t = 1 (noise to data); start at the "
                  "data point at t = 1 and integrate back to t = 0": ending(0.0, 1.0, 1),
                  "ode_log_prob: both the time direction and the divergence's sign are wrong (they do not cancel)":
                      ending(0.0, 1.0, 1, +1),
                  "ode_log_prob: you returned log N(x_end) only; subtract the integrated divergence l_end":
                      ending(1.0, -1.0, -1, 0),
                  "ode_log_prob: this is log N(x; 0, I) at the data point; integrate the ODE to the noise end first":
                      _std_normal_log_prob(x) - l_true,
                  "ode_log_prob: the wrong time argument: f is evaluated at t = 0, -h, ..., -1 (you left out the start time); "
                  "the data sit at t = 1, so the time passed to f runs 1, 1 - h, ..., 0": ending(0.0, -1.0, -1),
                  "ode_log_prob: the wrong time argument: the state steps back from the data but f is evaluated at the reverse "
                  "time s = 0, h, ..., 1; evaluate it at t = 1 - s": ending(0.0, 1.0, -1),
                  "ode_log_prob: the wrong time argument: the time passed to f stays at t = 1; it must move with the state, "
                  "from 1 down to 0": ending(1.0 - 0.5 / steps, 0.0, -1)},   # Heun also looks at t + h = 1 - 1/steps
             atol=2e-3, rtol=5e-3)                                   # the solver's error grows with |x_end|
    expect_close(lp, truth, atol=2e-3, rtol=0, name=f"ode_log_prob(f, x, {steps})")


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_check_ode_log_prob(ode_log_prob, 0)
passed("ODE log-likelihood of the time-dependent field (1 + t) A x + t b matches its closed-form Gaussian p_1")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_ode_log_prob(student.ode_log_prob, 7, code=student.code)
    _check_ode_log_prob(student.ode_log_prob, 8, code=student.code)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — the probability-flow drift (2 points)
#
# For the VP-SDE $dx = -\tfrac12\beta(t)x\,dt + \sqrt{\beta(t)}\,dw$ with $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$, write
# `pf_ode_drift(x, t, score_fn, beta_min=0.1, beta_max=20.0)`: the drift of the ODE that has the same marginals, for `x` of any shape `[B, ...]`,
# `t` a float, and `score_fn(x, t)` returning $\nabla_x\log p_t(x)$ of `x`'s shape. The check uses Gaussian data, whose score is exact.

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def pf_ode_drift(x, t, score_fn, beta_min=0.1, beta_max=20.0):
    """Drift f - g^2/2 * score of the VP-SDE's probability-flow ODE at (x, t)."""
    ### BEGIN SOLUTION
    beta = beta_min + t * (beta_max - beta_min)
    return -0.5 * beta * x - 0.5 * beta * score_fn(x, t)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task4_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
# the exact score at time tt of data N(0, s2 I) under the VP-SDE with the default betas: x_t ~ N(0, (1 - (1 - s2) alpha^2) I)
_VP_SCORE = "lambda y, tt: -y / (1 - (1 - s2) * math.exp(-0.5 * float(tt) ** 2 * (20.0 - 0.1) - float(tt) * 0.1))"


def _check_pf(pf_ode_drift, seed, shape, t, s2, code=_code):
    """pf_ode_drift against f - g^2/2 * score for Gaussian data (code builds the score passed to it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    score = _code(_VP_SCORE, s2=s2)
    beta = 0.1 + t * 19.9
    out = expect_tensor(call(pf_ode_drift, x, t, code(_VP_SCORE, s2=s2), name="pf_ode_drift"), shape=shape,
                        name="pf_ode_drift(x, t, score_fn)")
    f, sc = -0.5 * beta * x, score(x, t)
    diagnose(out, {"pf_ode_drift: this is the reverse SDE's drift f - g^2 score; the probability-flow ODE takes half: f - g^2/2 score":
                       f - beta * sc,
                   "pf_ode_drift: the score term has the wrong sign (f - g^2/2 score)": f + 0.5 * beta * sc,
                   "pf_ode_drift: g = sqrt(beta) enters squared: you used g instead of g^2": f - 0.5 * math.sqrt(beta) * sc,
                   "pf_ode_drift: the forward drift is -beta(t) x / 2; you left it out": -0.5 * beta * sc})
    expect_close(out, f - 0.5 * beta * sc, atol=1e-8, name="pf_ode_drift(x, t, score_fn)")


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_pf(pf_ode_drift, 0, (5, 2), 0.4, 0.25)
_check_pf(pf_ode_drift, 1, (3, 1, 4, 4), 0.9, 2.0)
passed("probability-flow drift f - g^2/2 * score, on 2-D points and on image-shaped tensors")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_pf(student.pf_ode_drift, 2, (7, 3), 0.05, 0.5, code=student.code)
    _check_pf(student.pf_ode_drift, 3, (2, 8), 0.6, 1.0, code=student.code)
    _check_pf(student.pf_ode_drift, 4, (2, 3, 2, 2), 0.3, 3.0, code=student.code)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — the conditional flow-matching target and loss (2 points)
#
# `cfm_sample(x0, x1, t)` returns `(x_t, u_t)` on the straight path $x_t = (1 - t)x_0 + t x_1$ (noise $x_0$, data $x_1$, both
# `[B, D]`, times `t` `[B]`), with the conditional velocity $u_t = \frac{d}{dt}x_t$. `cfm_loss(model, x0, x1, t)` returns the scalar
# $\frac1B\sum_b\|v(t_b, x_{t,b}) - u_{t,b}\|^2$ (**summed** over dimensions, averaged over the batch), with `model(t, x)`.

# %% nbgrader={"grade": false, "grade_id": "task5_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def cfm_sample(x0, x1, t):
    """(x_t, u_t) of the straight path from noise x0 (t = 0) to data x1 (t = 1)."""
    ### BEGIN SOLUTION
    tb = t[:, None]
    return (1 - tb) * x0 + tb * x1, x1 - x0
    ### END SOLUTION


def cfm_loss(model, x0, x1, t):
    """Conditional flow-matching loss: mean over the batch of ||v(t, x_t) - u_t||^2."""
    ### BEGIN SOLUTION
    xt, ut = cfm_sample(x0, x1, t)
    return ((model(t, xt) - ut) ** 2).sum(1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task5_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
_CFM_MODEL = "lambda tt, y: y @ w.T + tt[:, None]"                 # a velocity "model" v(t, x) that depends on t


def _check_cfm(cfm_sample, cfm_loss, seed, n, d, code=_code):
    """The straight path, its velocity and the CFM loss (code builds the model passed to cfm_loss)."""
    g = torch.Generator().manual_seed(seed)
    x0, x1, t = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g) + 2, torch.rand(n, generator=g)
    out = call(cfm_sample, x0, x1, t, name="cfm_sample")
    expect(isinstance(out, (tuple, list)) and len(out) == 2, "cfm_sample should return a tuple (x_t, u_t)")
    xt = expect_tensor(out[0], shape=(n, d), name="x_t")
    ut = expect_tensor(out[1], shape=(n, d), name="u_t")
    tb = t[:, None]
    diagnose(xt, {"cfm_sample: x_t runs the wrong way: x_t = (1 - t) x0 + t x1 is noise at t = 0 and data at t = 1": tb * x0 + (1 - tb) * x1})
    expect_close(xt, (1 - tb) * x0 + tb * x1, atol=1e-5, name="x_t")
    diagnose(ut, {"cfm_sample: u_t = d x_t / dt = x1 - x0 (you have x0 - x1)": x0 - x1,
                  "cfm_sample: u_t is the velocity x1 - x0, not the data point x1": x1,
                  "cfm_sample: u_t = x1 - x0 does not depend on t on the straight path (you scaled it by t)": tb * (x1 - x0)})
    expect_close(ut, x1 - x0, atol=1e-5, name="u_t")
    w = torch.randn(d, d, generator=g)
    model = _code(_CFM_MODEL, w=w)
    loss = call(cfm_loss, code(_CFM_MODEL, w=w), x0, x1, t, name="cfm_loss")
    expect_tensor(loss, shape=(), name="cfm_loss(...)")
    per = ((model(t, (1 - tb) * x0 + tb * x1) - (x1 - x0)) ** 2)
    diagnose(loss, {"cfm_loss: sum the squared error over dimensions and average over the batch (you averaged over both)": per.mean(),
                    "cfm_loss: average over the batch, not sum": per.sum()}, rtol=1e-4)
    expect_close(loss, per.sum(1).mean(), atol=1e-4, rtol=1e-4, name="cfm_loss(...)")


# %% nbgrader={"grade": true, "grade_id": "task5_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_cfm(cfm_sample, cfm_loss, 0, 64, 2)
passed("straight path, conditional velocity x1 - x0 and the CFM loss")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_cfm(student.cfm_sample, student.cfm_loss, 1, 10, 5, code=student.code)
    _check_cfm(student.cfm_sample, student.cfm_loss, 2, 128, 3, code=student.code)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task6_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 6 — flow matching on `8gaussians` to a stated KL gap (3 points)
#
# `train_flow_matching(x_train)` trains and returns a velocity network `v(t, x)` (`t` of shape `[B]` or 0-d) whose flow
# from $\mathcal{N}(0, I)$ at $t = 0$ reaches `8gaussians` at $t = 1$, with your `cfm_loss` and `course_utils.training.fit`. You may use
# `course_utils.flow_matching.VelocityMLP` as the network (an MLP on $x$ and Fourier features of $t$). The check computes the
# exact test log-likelihood of your model through the ODE (Heun, exact divergence) and asks for a **KL gap below 0.15
# nats** against the true density, within about 15 seconds of training on a laptop CPU. Return the network you trained (a
# `torch.nn.Module` with trainable parameters): the closed-form marginal velocity of the mixture
# (`course_utils.flow_matching.gmm_marginal_velocity`) reaches a gap near 0, but it is not a trained model, and the check rejects it.

# %% nbgrader={"grade": false, "grade_id": "task6_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
from course_utils.flow_matching import VelocityMLP  # noqa: E402


def train_flow_matching(x_train):
    """x_train [N, 2] -> a velocity model v(t, x)."""
    ### BEGIN SOLUTION
    torch.manual_seed(0)
    model = VelocityMLP(2, hidden=128, depth=3)

    def loss():
        x1 = x_train[torch.randint(len(x_train), (256,))]
        return cfm_loss(model, torch.randn_like(x1), x1, torch.rand(len(x1)))

    fit(loss, model, steps=2000, lr=3e-3, progress=False)
    return model
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task6_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
from course_utils.flow_matching import gmm_marginal_velocity  # noqa: E402  the closed form a trained model must not be

_eight = toy("8gaussians")
# what the returned model is, asked where it lives: callable?  a torch.nn.Module?  how many trainable parameters?
_MODEL_FACTS = ("lambda m: (callable(m), isinstance(m, torch.nn.Module), "
                "sum(p.numel() for p in m.parameters() if p.requires_grad) if isinstance(m, torch.nn.Module) else 0)")


def _check_trained(model, type_name, seed, code=_code):
    """model, what train_flow_matching returned: callable, v(t [B], x [B, 2]) -> [B, 2], not the closed-form marginal
    velocity of 8gaussians (which the KL gap alone would accept), and a network with trainable parameters."""
    is_callable, is_module, n_trainable = code(_MODEL_FACTS)(model)
    expect(is_callable, f"train_flow_matching should return the trained velocity model v(t, x), not a {type_name}")
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(500, generator=g)
    x = (1 - t[:, None]) * torch.randn(500, 2, generator=g) + t[:, None] * _eight.sample((500,), generator=g)  # on the paths
    v = expect_tensor(call(model, t, x, name="your model v(t, x)"), shape=(500, 2), name="v(t, x) for t [500], x [500, 2]")
    exact = gmm_marginal_velocity(x.double(), t.double(), _eight.centers, _eight.std)
    rel = ((v.detach().double() - exact) ** 2).sum(1).mean().item() / (exact ** 2).sum(1).mean().item()
    expect(rel > 1e-4, "train_flow_matching returned the closed-form marginal velocity of the mixture (gmm_marginal_velocity; "
           f"relative squared difference {rel:.1e}), not a trained model: train a network with cfm_loss and return it")
    expect(is_module and n_trainable > 0, f"train_flow_matching returned a {type_name}: return the network you trained (a "
           "torch.nn.Module with trainable parameters, e.g. VelocityMLP), not another function")


# %% nbgrader={"grade": true, "grade_id": "task6_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
from course_utils.flow_matching import fm_log_prob  # noqa: E402  the exact likelihood, for grading

v_model = call(train_flow_matching, _eight.sample((20_000,), generator=torch.Generator().manual_seed(0)))
_check_trained(v_model, type(v_model).__name__, 0)
_x_test = _eight.sample((2000,), generator=torch.Generator().manual_seed(1))
_lq = call(fm_log_prob, v_model, _x_test, 30, name="the exact ODE log-likelihood of your model")
_gap = (_eight.log_prob(_x_test) - _lq.detach()).double()
kl_gap, kl_se = _gap.mean().item(), _gap.std().item() / math.sqrt(len(_gap))
print(f"KL gap by exact likelihood: {kl_gap:.3f} ± {kl_se:.3f} nats")
expect(kl_gap < 0.15, f"the KL gap is {kl_gap:.3f} nats; it should be below 0.15: train longer (2000+ steps), check that noise "
       "is x0 at t = 0 and data x1 at t = 1, and that t is drawn uniformly in [0, 1]")
passed(f"flow matching on 8gaussians: a trained {type(v_model).__name__}, KL gap {kl_gap:.3f} < 0.15 nats")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    model = student.v_model  # the model the check above trained with the student's train_flow_matching
    _check_trained(model, student.type_name(model), 9, code=student.code)
    x = _eight.sample((2000,), generator=torch.Generator().manual_seed(77))

    def velocity_and_divergence(t, y, delta=1e-3):
        """(v, -div v) at the rows of y [N, 2]: the model's values at y and at y +- delta e_i (one call), the divergence
        by central differences (on the solution's model, log-likelihoods within 2e-4 nats of the autograd divergence's)."""
        n = len(y)
        shifted = [y]
        for i in range(2):
            for sign in (1.0, -1.0):
                z = y.clone()
                z[:, i] += sign * delta
                shifted.append(z)
        pts = torch.cat(shifted).float()
        out = expect_tensor(call(model, torch.tensor(t), pts, name="your model v(t, x)"), shape=(5 * n, 2),
                            name=f"v(t, x) for a 0-d t and x [{5 * n}, 2]").double()
        part = [slice(k * n, (k + 1) * n) for k in range(5)]
        div = sum((out[part[1 + 2 * i], i] - out[part[2 + 2 * i], i])
                  / (pts[part[1 + 2 * i], i] - pts[part[2 + 2 * i], i]).double() for i in range(2))
        return torch.cat([out[part[0]], -div[:, None]], 1)

    # the exact log-likelihood, integrated here: 30 Heun steps of d(x, l)/dt = (v, -div v) from (x, 0) at t = 1 to t = 0
    state, steps = torch.cat([x.double(), torch.zeros(len(x), 1, dtype=torch.float64)], 1), 30
    for k in range(steps):
        t, h = 1.0 - k / steps, -1.0 / steps
        k1 = velocity_and_divergence(t, state[:, :2])
        k2 = velocity_and_divergence(t + h, state[:, :2] + h * k1[:, :2])
        state = state + 0.5 * h * (k1 + k2)
    gap = (_eight.log_prob(x.double()) - (_std_normal_log_prob(state[:, :2]) - state[:, 2])).mean().item()
    expect(math.isfinite(gap) and gap < 0.17, f"the KL gap of your trained model on other test points is {gap:.3f} nats; "
           "it should be below 0.17")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task7_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 7 — written: exact likelihoods (2 points, graded by hand)
#
# (a) A DDPM's reverse SDE and its probability-flow ODE produce the same marginals $p_t$. Explain why the ODE gives the
# exact log-likelihood of a data point (up to the solver's error) while the SDE sampler does not: what would you have to
# integrate over to get $\log p_\theta(x)$ from the SDE?
# (b) What does Hutchinson's estimator change about the likelihood you report (is $\log$ of the density still unbiased)?

# %% [markdown] nbgrader={"grade": true, "grade_id": "task7_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) The PF-ODE is deterministic and (Picard) invertible: every data point $x$ has exactly one noise point $z = \psi^{-1}(x)$, and
# the instantaneous change of variables gives $\log p_\theta(x) = \log\mathcal{N}(z; 0, I) + \int \operatorname{div} f\,dt$ along that one
# trajectory: a single deterministic integral. The SDE maps one $z$ to a *distribution* of end points: $p_\theta(x) =
# \int p(x \mid \text{path})\,p(\text{path})$ is an integral over all Brownian paths (all noise draws) that end at $x$, with no
# change-of-variables formula; one can only bound it (the ELBO of chapter 07) or estimate it by importance sampling.
# (b) The divergence estimate is unbiased, so the integrated log-density is an unbiased estimate of $\log p_\theta(x)$
# (the integral is linear in the divergence); the density itself, $\exp$ of it, is then biased (Jensen), and a
# single estimate has extra variance; average over probes, or use the exact trace in low dimension.
# ### END SOLUTION
