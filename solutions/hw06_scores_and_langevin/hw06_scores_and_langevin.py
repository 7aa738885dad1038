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
# # Homework 06 — scores, Langevin dynamics and denoising score matching
#
# Follows lecture notebook `06_scores_and_langevin` (lectures 6.2 and 7 of the course notes). Six coded tasks (15 points,
# graded automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `mixture_score`: the score of an isotropic Gaussian mixture | 3 |
# | 2 | `langevin_step`: one step of unadjusted Langevin dynamics | 2 |
# | 3 | `stationary_variance`: the variance Langevin reaches on $\mathcal N(0, s^2)$ | 2 |
# | 4 | `dsm_loss`: the denoising score-matching loss | 3 |
# | 5 | `tweedie`: Tweedie's denoiser | 2 |
# | 6 | `train_score_model`: a noise-conditioned score model on `8gaussians`, to a stated sample distance | 3 |
# | 7 | written: why one noise level is not enough | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and run the check cell below it: it prints
# `✓ ...` or one line saying what was expected. Hidden checks of the same kind use other inputs. Do not rename functions
# or delete cells; the notebook must run top to bottom in about a minute on a laptop CPU. Write tasks 1–5 yourself: do not
# call `course_utils.score` there (`mixture_score`, `langevin`, `dsm_loss`, `tweedie_denoise`, `autograd_score`).
# Notation: the score is $s(x) = \nabla_x \log p(x)$; $x_\sigma = x + \sigma\varepsilon$, $\varepsilon \sim \mathcal N(0, I)$, has the density $q_\sigma$.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import LocalStudent, call, diagnose, expect, expect_close, expect_tensor, hidden_test, passed
from course_utils.data import toy
from course_utils.metrics import relative_to_noise_floor, sliced_wasserstein
from course_utils.score import NoiseConditionalScoreNet, annealed_langevin, geometric_sigmas, ncsn_loss
from course_utils.training import fit

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)
eight = toy("8gaussians")          # 8 Gaussians (std 0.25) on a circle of radius 2.8, with exact log_prob
f64 = torch.float64


def _as_float(value, name):
    """A Python float from a float or a 0-d tensor, or a clear error."""
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{name} should be one number (a float or a 0-d tensor), got shape {tuple(value.shape)}")
        value = value.item()
    expect(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
           f"{name} should be a finite real number, got {value!r}")
    return float(value)


# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — the score of a Gaussian mixture (3 points)
#
# For $q(x) = \sum_k w_k\,\mathcal N(x;\,\mu_k, s^2 I)$ in $D$ dimensions, return the score
# $$\nabla_x \log q(x) = \sum_k r_k(x)\,\frac{\mu_k - x}{s^2}, \qquad r_k(x) = \frac{w_k\,\mathcal N(x;\mu_k, s^2 I)}{\sum_j w_j\,\mathcal N(x;\mu_j, s^2 I)}$$
# (the responsibilities). `x [N, D]`, `means [K, D]`, `std` the shared $s$ (a float), `weights [K]` positive summing to 1;
# return `[N, D]` in the dtype of `x`. Points may lie far from every mean: compute the responsibilities from **log** terms
# (`torch.softmax` of $\log w_k - \|x - \mu_k\|^2 / 2s^2$), never by exponentiating first. The check compares with
# autograd of `torch.distributions`' `log_prob`.

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mixture_score(x, means, std, weights):
    """x [N, D], means [K, D], std float, weights [K] -> grad_x log q(x) [N, D]."""
    ### BEGIN SOLUTION
    diff = means[None, :, :] - x[:, None, :]                                   # [N, K, D]
    logits = weights.log()[None, :] - 0.5 * diff.pow(2).sum(-1) / std**2       # [N, K]
    r = torch.softmax(logits, dim=1)                                           # [N, K]
    return (r[:, :, None] * diff).sum(1) / std**2
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task1_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_mixture(fn, seed, N, K, D, std, what):
    """Check fn = mixture_score on a seeded mixture against autograd of torch.distributions' log_prob."""
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(K, D, generator=g, dtype=f64)
    w = torch.rand(K, generator=g, dtype=f64) + 0.2
    w = w / w.sum()
    x = means[torch.randint(K, (N,), generator=g)] + 1.5 * torch.randn(N, D, generator=g, dtype=f64)
    comp = torch.distributions.Independent(torch.distributions.Normal(means, torch.full_like(means, std)), 1)
    q = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(probs=w), comp)
    xg = x.clone().requires_grad_(True)
    ref, = torch.autograd.grad(q.log_prob(xg).sum(), xg)
    out = call(fn, x.clone(), means.clone(), std, w.clone(), name="mixture_score")
    expect_tensor(out, shape=(N, D), name=f"mixture_score for {what}")
    diff = means[None] - x[:, None]                                              # [N, K, D]
    log_n = -0.5 * diff.pow(2).sum(-1) / std**2
    r_no_w = torch.softmax(log_n, 1)
    diagnose(out, {
        f"mixture_score for {what} has the wrong sign: the score points towards the means, (mu_k - x) / s^2": -ref,
        f"mixture_score for {what} weights the components by w_k, not by the responsibilities r_k(x) (a softmax over "
        "components of log w_k - |x - mu_k|^2 / 2s^2)": (w[None, :, None] * diff).sum(1) / std**2,
        f"mixture_score for {what} averages the components equally: weight them by the responsibilities r_k(x)":
            diff.mean(1) / std**2,
        f"mixture_score for {what}: the responsibilities leave out the mixture weights w_k (add log w_k inside the softmax)":
            (r_no_w[..., None] * diff).sum(1) / std**2,
        f"mixture_score for {what} divides by s, not by the variance s^2": ref * std,
    }, atol=1e-7, rtol=1e-6)
    expect_close(out, ref, atol=1e-8, rtol=1e-6, name=f"mixture_score for {what} (autograd of log q)")
    return out


def _check_far(fn, far, means, std, weights):
    """Points far from every mean: exp(-|x - mu|^2 / 2s^2) underflows, so only the log-domain softmax survives."""
    out = call(fn, far.clone(), means.clone(), std, weights.clone(), name="mixture_score")
    expect(isinstance(out, torch.Tensor) and not torch.isnan(out).any(),
           "mixture_score gives NaN far from the means: exp(-|x - mu|^2 / 2s^2) underflows to 0 and 0/0 = NaN; compute the "
           "responsibilities with torch.softmax of the log terms")
    diff = means[None] - far[:, None]                                            # [N, K, D]
    r = torch.softmax(weights.log()[None] - 0.5 * diff.pow(2).sum(-1) / std**2, 1)
    expect_close(out, (r[..., None] * diff).sum(1) / std**2, atol=1e-6, rtol=1e-8, name="mixture_score far from the means")


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_check_mixture(mixture_score, 0, 50, 3, 2, 0.7, "3 components in 2-D")
_check_far(mixture_score, torch.tensor([[40.0, -35.0], [-60.0, 0.0]], dtype=f64),
           torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=f64), 0.5, torch.tensor([0.5, 0.5], dtype=f64))
passed("the mixture score agrees with autograd of log q, also far from the means")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_mixture(student.mixture_score, 1, 7, 5, 3, 1.3, "5 components in 3-D")
    _check_mixture(student.mixture_score, 2, 200, 2, 1, 0.3, "2 components in 1-D")
    far = torch.tensor([[-50.0, 20.0, 30.0], [0.0, 80.0, -1.0], [25.0, 25.0, 25.0]], dtype=f64)
    means = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, 0.5], [-1.0, 1.0, 3.0]], dtype=f64)
    _check_far(student.mixture_score, far, means, 0.4, torch.tensor([0.2, 0.3, 0.5], dtype=f64))   # unequal weights
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — one Langevin step (2 points)
#
# Return one step of the unadjusted Langevin chain with step size $\eta$,
# $$x_{l+1} = x_l + \tfrac{\eta}{2}\, s(x_l) + \sqrt{\eta}\,\varepsilon_l,$$
# where `score` is a function `[N, D] -> [N, D]` and `noise` is the standard normal draw $\varepsilon_l$ (given, shaped like
# `x`). Do not modify `x` in place.

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def langevin_step(x, score, eta, noise):
    """x [N, D], score: [N, D] -> [N, D], eta > 0, noise [N, D] ~ N(0, I) -> the next state [N, D]."""
    ### BEGIN SOLUTION
    return x + 0.5 * eta * score(x) + math.sqrt(eta) * noise
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task2_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
# calls fn = langevin_step and reports whether x is unchanged afterwards (with the grader this runs in your kernel)
_STEP_PROBE = "lambda f, x, score, eta, noise: (lambda x0: (f(x, score, eta, noise), torch.equal(x, x0)))(x.clone())"


def _check_step(fn, seed, shape, eta, var, student=None):
    """Check fn = langevin_step against x + (eta/2) s(x) + sqrt(eta) noise, for the score of N(centre, var I)."""
    student = student or LocalStudent({})
    g = torch.Generator().manual_seed(seed)
    x, noise = torch.randn(*shape, generator=g, dtype=f64), torch.randn(*shape, generator=g, dtype=f64)
    centre = torch.randn(shape[-1], generator=g, dtype=f64)
    score = student.code("lambda y: -(y - centre) / var", centre=centre, var=var)   # the score of N(centre, var I)
    out, unchanged = call(student.code(_STEP_PROBE), fn, x.clone(), score, eta, noise.clone(), name="langevin_step")
    expect_tensor(out, shape=shape, name=f"langevin_step(x {list(shape)}, ...)")
    expect(unchanged, "langevin_step changed x in place: return a new tensor")
    s = -(x - centre) / var
    what = f"langevin_step with eta = {eta}"
    diagnose(out, {
        f"{what}: the noise is scaled by eta; it should be sqrt(eta) (its variance is eta)": x + 0.5 * eta * s + eta * noise,
        f"{what}: the noise is scaled by sqrt(2 eta); with the drift (eta/2) s(x) it should be sqrt(eta)":
            x + 0.5 * eta * s + math.sqrt(2 * eta) * noise,
        f"{what}: the drift is eta s(x); it should be (eta/2) s(x)": x + eta * s + math.sqrt(eta) * noise,
        f"{what}: the drift has the wrong sign: the chain climbs the log-density, + (eta/2) s(x)":
            x - 0.5 * eta * s + math.sqrt(eta) * noise,
        f"{what}: the noise is missing (that is gradient ascent, not Langevin)": x + 0.5 * eta * s,
    }, atol=1e-9, rtol=1e-9)
    expect_close(out, x + 0.5 * eta * s + math.sqrt(eta) * noise, atol=1e-9, rtol=1e-9, name=what)


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_step(langevin_step, 0, (64, 2), 0.3, 2.0)
passed("x + (eta/2) s(x) + sqrt(eta) eps")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_step(student.langevin_step, 1, (5, 3), 2.5, 0.7, student=student)
    _check_step(student.langevin_step, 2, (100, 1), 0.01, 4.0, student=student)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — the stationary variance on a Gaussian (2 points)
#
# Run the chain of task 2 with the exact score of $\mathcal N(0, s^2)$ (in 1-D). It is linear, $x_{l+1} = a\,x_l + \sqrt\eta\,\varepsilon_l$:
# find its stationary variance $v$ (from $v = a^2 v + \eta$) and return it as a float from `stationary_variance(s, eta)` ($s$ is
# the **standard deviation**). It is not $s^2$: unadjusted Langevin is biased by $O(\eta)$. The chain diverges when $|a| \ge 1$:
# then raise a `ValueError` with a sentence. The check also runs 20 000 such chains and compares.

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def stationary_variance(s, eta):
    """s > 0 the target's std, eta > 0 -> the stationary variance of unadjusted Langevin on N(0, s^2)."""
    ### BEGIN SOLUTION
    if eta >= 4 * s**2:
        raise ValueError(f"the chain diverges for eta >= 4 s^2 (eta = {eta}, s = {s}): |1 - eta / (2 s^2)| >= 1")
    return s**2 / (1 - eta / (4 * s**2))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task3_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _simulate(s, eta, chains=20_000, steps=300, seed=0):
    """Empirical variance of `chains` Langevin chains on N(0, s^2) after `steps` steps, and its standard error."""
    g = torch.Generator().manual_seed(seed)
    x = s * torch.randn(chains, generator=g, dtype=f64)
    for _ in range(steps):
        x = x + 0.5 * eta * (-x / s**2) + math.sqrt(eta) * torch.randn(chains, generator=g, dtype=f64)
    v = x.var().item()
    return v, v * math.sqrt(2 / (chains - 1))


def _check_var(fn, s, eta):
    """Check fn = stationary_variance against the closed form s^2 / (1 - eta / (4 s^2)); return its value."""
    v = _as_float(call(fn, s, eta, name="stationary_variance"), f"stationary_variance({s}, {eta})")
    ref = s**2 / (1 - eta / (4 * s**2))
    what = f"stationary_variance({s}, {eta}) = {v:.6g}"
    diagnose(v, {
        f"{what} = s^2: that is the target's variance; unadjusted Langevin is biased, solve v = a^2 v + eta": s**2,
        f"{what} = s^2 / (1 - eta / (2 s^2)): check a = 1 - eta / (2 s^2) and expand a^2 again": s**2 / (1 - eta / (2 * s**2)),
        f"{what} = s^2 (1 + eta / (4 s^2)): that is only the first-order term; the exact v is s^2 / (1 - eta / (4 s^2))":
            s**2 * (1 + eta / (4 * s**2)),
        f"{what} is the stationary standard deviation, not the variance": math.sqrt(ref),
        f"{what}: s is the target's standard deviation, but you used it as the variance (s / (1 - eta / (4 s)))":
            s / (1 - eta / (4 * s)),
    }, atol=1e-9, rtol=1e-9)
    expect(abs(v - ref) < 1e-9 * max(1.0, ref), f"stationary_variance({s}, {eta}) should be {ref:.6g}, got {v:.6g}")
    return v


def _check_var_mc(fn, s, eta, seed):
    """fn(s, eta) within 4 standard errors of the variance of 20 000 simulated chains; return both."""
    v_th = _check_var(fn, s, eta)
    v_mc, se_mc = _simulate(s, eta, seed=seed)
    expect(abs(v_th - v_mc) < 4 * se_mc, f"20 000 simulated chains have variance {v_mc:.4f} ± {se_mc:.4f}, but "
           f"stationary_variance({s}, {eta}) = {v_th:.4f}")
    return v_th, v_mc, se_mc


def _expect_value_error(fn, s, eta):
    """fn = stationary_variance must raise a ValueError for a diverging chain (eta >= 4 s^2)."""
    try:
        value = fn(s, eta)
    except Exception as err:  # noqa: BLE001 - any other error becomes feedback
        if getattr(err, "grading_failure", False):
            raise
        kind = getattr(err, "student_error_type", type(err).__name__)  # raised in the student's kernel (grading)
        if isinstance(err, ValueError) or kind == "ValueError":
            return
        expect(False, f"stationary_variance({s}, {eta}) should raise a ValueError (the chain diverges), got {kind}: "
               f"{getattr(err, 'student_error_message', err)}")
    expect(False, f"stationary_variance({s}, {eta}) returned {value!r}, but the chain diverges for eta >= 4 s^2: raise a ValueError")


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
v_th, v_mc, se_mc = _check_var_mc(stationary_variance, 0.7, 0.8, seed=0)
_expect_value_error(stationary_variance, 1.0, 4.5)
_expect_value_error(stationary_variance, 0.5, 1.0)  # the boundary eta = 4 s^2 diverges too
passed(f"v = {v_th:.4f} for s = 0.7, eta = 0.8; 20 000 chains give {v_mc:.4f} ± {se_mc:.4f}; diverging chains rejected")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_var(student.stationary_variance, 2.0, 0.5)
    _check_var_mc(student.stationary_variance, 0.3, 0.3, seed=3)
    _check_var(student.stationary_variance, 1.5, 8.5)  # near the boundary, where a = 1 - eta / (2 s^2) is close to -1
    _expect_value_error(student.stationary_variance, 0.3, 0.36)  # the boundary eta = 4 s^2
    _expect_value_error(student.stationary_variance, 2.0, 50.0)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — the denoising score-matching loss (3 points)
#
# With the noise `eps` given (shaped like `x [B, D]`), return the 0-d tensor
# $$L = \frac1B\sum_{i=1}^B \Big\|\, s\big(x_i + \sigma\varepsilon_i\big) - \nabla_{\tilde x}\log q_\sigma(\tilde x \mid x_i)\Big\|^2,$$
# summed over the $D$ dimensions, where $q_\sigma(\tilde x \mid x) = \mathcal N(x, \sigma^2 I)$ is the noising kernel: work out its score
# at $\tilde x = x + \sigma\varepsilon$ in terms of $\varepsilon$ and $\sigma$. No $\frac12$ and no $\sigma^2$ weight. The loss must train the
# model: keep the graph.

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dsm_loss(score, x, sigma, eps):
    """score: [B, D] -> [B, D]; x, eps [B, D]; sigma > 0 -> mean_B || s(x + sigma eps) + eps / sigma ||^2 (0-d)."""
    ### BEGIN SOLUTION
    return (score(x + sigma * eps) + eps / sigma).pow(2).sum(1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task4_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
# calls fn = dsm_loss with the linear score y -> y W^T + c (W, c trainable) and returns the loss and its gradients with
# respect to (W, c), or None when the loss has no graph (with the grader this runs in your kernel)
_DSM_PROBE = """lambda f, x, sigma, eps, W0, c0: (lambda W, c: (lambda loss: (
    loss.detach() if isinstance(loss, torch.Tensor) else loss,
    list(torch.autograd.grad(loss, (W, c), allow_unused=True))
    if isinstance(loss, torch.Tensor) and loss.requires_grad and loss.numel() == 1 else None,
))(f(lambda y: y @ W.T + c, x, sigma, eps)))(W0.clone().requires_grad_(True), c0.clone().requires_grad_(True))"""


def _check_dsm(fn, seed, B, D, sigma, student=None):
    """Check fn = dsm_loss for a linear score s(y) = W y + c: the value, and its gradients against the closed form."""
    student = student or LocalStudent({})
    g = torch.Generator().manual_seed(seed)
    x, eps = 2 * torch.randn(B, D, generator=g, dtype=f64), torch.randn(B, D, generator=g, dtype=f64)
    W, c = torch.randn(D, D, generator=g, dtype=f64) / D, torch.randn(D, generator=g, dtype=f64)
    loss, grads = call(student.code(_DSM_PROBE), fn, x.clone(), sigma, eps.clone(), W, c, name="dsm_loss")
    expect_tensor(loss, shape=(), name=f"dsm_loss (B = {B}, D = {D}, sigma = {sigma})")
    x_noisy = x + sigma * eps
    out = x_noisy @ W.T + c
    per = lambda t: t.pow(2).sum(1).mean()
    ref = per(out + eps / sigma)
    what = f"dsm_loss with sigma = {sigma}"
    diagnose(loss, {
        f"{what}: the target has the wrong sign; the kernel's score is -(x_noisy - x) / sigma^2 = -eps / sigma, "
        "so the loss is |s + eps / sigma|^2": per(out - eps / sigma),
        f"{what}: the target is eps / sigma^2; the kernel's score is -(x_noisy - x) / sigma^2 = -eps / sigma "
        "(x_noisy - x = sigma eps)": per(out + eps / sigma**2),
        f"{what}: wrong sign and eps / sigma^2; the target is -eps / sigma": per(out - eps / sigma**2),
        f"{what}: the squared error is averaged over dimensions; sum it over dimensions, average over the batch":
            (out + eps / sigma).pow(2).mean(),
        f"{what} has a factor 1/2: return the loss without it": 0.5 * ref,
        f"{what} is weighted by sigma^2: return it without the weight": sigma**2 * ref,
        f"{what}: the score is evaluated at the clean x; evaluate it at x + sigma eps": per(x @ W.T + c + eps / sigma),
    }, atol=1e-9, rtol=1e-9)
    expect_close(loss, ref.item(), atol=1e-9, rtol=1e-9, name=what)
    expect(grads is not None, "dsm_loss has no graph to the model's parameters: do not detach or call .item()")
    gw, gc = grads
    expect(gw is not None and gc is not None and bool(gw.abs().sum() > 0), "dsm_loss sends no gradient to the model")
    r = out + eps / sigma                          # dL/dW = (2/B) sum_i r_i x_noisy_i^T, dL/dc = (2/B) sum_i r_i
    expect_close(gw, 2 * r.T @ x_noisy / B, atol=1e-9, rtol=1e-7, name=f"the gradient of {what} with respect to W")
    expect_close(gc, 2 * r.mean(0), atol=1e-9, rtol=1e-7, name=f"the gradient of {what} with respect to c")
    return loss.item()


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
l1 = _check_dsm(dsm_loss, 0, 128, 3, 0.5)
passed(f"L = {l1:.4f}: target -eps/sigma, summed over dimensions, averaged over the batch, with a graph")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_dsm(student.dsm_loss, 1, 7, 2, 2.0, student=student)
    _check_dsm(student.dsm_loss, 2, 300, 5, 0.1, student=student)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — Tweedie's denoiser (2 points)
#
# For $x_\sigma = x + \sigma\varepsilon$, Tweedie's formula gives the posterior mean from the score of $q_\sigma$:
# $\mathbb E[x \mid x_\sigma] = x_\sigma + \sigma^2\,\nabla\log q_\sigma(x_\sigma)$. Return it from `tweedie(x_noisy, score, sigma)`, where
# `score` is a function `[N, D] -> [N, D]` (the score of $q_\sigma$) and `x_noisy [N, D]`.

# %% nbgrader={"grade": false, "grade_id": "task5_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def tweedie(x_noisy, score, sigma):
    """x_noisy [N, D], score of q_sigma: [N, D] -> [N, D], sigma > 0 -> E[x | x_noisy] [N, D]."""
    ### BEGIN SOLUTION
    return x_noisy + sigma**2 * score(x_noisy)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task5_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_tweedie(fn, seed, N, D, sigma, student=None):
    """Check fn = tweedie on Gaussian data N(m, diag v), where the posterior mean is known in closed form."""
    # q_sigma = N(m, diag(v + sigma^2)), and E[x | x_sigma] = m + v / (v + sigma^2) (x_sigma - m)
    student = student or LocalStudent({})
    g = torch.Generator().manual_seed(seed)
    m, v = torch.randn(D, generator=g, dtype=f64), 0.2 + torch.rand(D, generator=g, dtype=f64)
    xn = m + (v + sigma**2).sqrt() * torch.randn(N, D, generator=g, dtype=f64)
    score = student.code("lambda y: -(y - m) / var", m=m, var=v + sigma**2)
    out = call(fn, xn.clone(), score, sigma, name="tweedie")
    expect_tensor(out, shape=(N, D), name=f"tweedie(x_noisy [{N}, {D}], ...)")
    ref = m + v / (v + sigma**2) * (xn - m)
    s = -(xn - m) / (v + sigma**2)
    what = f"tweedie with sigma = {sigma}"
    diagnose(out, {
        f"{what} uses sigma instead of sigma^2: E[x | x_sigma] = x_sigma + sigma^2 s(x_sigma)": xn + sigma * s,
        f"{what} has the wrong sign: the denoiser moves up the score, x_sigma + sigma^2 s": xn - sigma**2 * s,
        f"{what} returns the correction sigma^2 s only; add x_sigma": sigma**2 * s,
        f"{what} returns x_sigma + s, without the factor sigma^2": xn + s,
    }, atol=1e-9, rtol=1e-9)
    expect_close(out, ref, atol=1e-9, rtol=1e-9, name=f"{what} (the exact posterior mean for Gaussian data)")


# %% nbgrader={"grade": true, "grade_id": "task5_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_tweedie(tweedie, 0, 100, 2, 0.6)
passed("Tweedie's denoiser gives the exact posterior mean on Gaussian data")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_tweedie(student.tweedie, 1, 9, 4, 1.7, student=student)
    _check_tweedie(student.tweedie, 2, 50, 1, 0.05, student=student)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task6_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 6 — a noise-conditioned score model on `8gaussians` (3 points)
#
# Write `train_score_model(x, sigmas, steps)`: build `NoiseConditionalScoreNet(2, 64, 3, data_var=...)` (from
# `course_utils.score`; `data_var` the per-dimension variance of `x`), and train it for `steps` steps on mini-batches of
# `x [N, 2]` with the $\sigma^2$-weighted DSM loss over the ladder `sigmas` (a level per sample, uniformly). You may use
# `ncsn_loss` from `course_utils.score` or your own `dsm_loss`, and `fit(loss_fn, model, steps=steps, lr=...)` from
# `course_utils.training` (not `train_ncsn`). Return the model: `model(x [B, 2], sigma) -> [B, 2]`, `sigma` a float.
#
# The check compares the model with the exact score of $q_\sigma$ (the smoothed mixture) at the three levels
# `sigmas[0], sigmas[1], sigmas[3]` (relative squared error below 0.25; an untrained network gives about 1) and samples 2000 points with
# annealed Langevin (`annealed_langevin`, 50 steps per level, step size `3e-4`, from `sigmas[0] * randn`). **Target: a
# sliced Wasserstein distance to fresh data within 3× its noise floor** (the same distance between two fresh data sets),
# with `steps = 1000`, in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "task6_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_score_model(x, sigmas, steps):
    """x [N, 2], sigmas [L] decreasing -> a trained NoiseConditionalScoreNet, model(x [B, 2], sigma) -> [B, 2]."""
    ### BEGIN SOLUTION
    torch.manual_seed(0)
    model = NoiseConditionalScoreNet(2, 64, 3, data_var=float(x.var(0).mean()))
    sig = torch.as_tensor(sigmas, dtype=x.dtype)
    fit(lambda: ncsn_loss(model, x[torch.randint(len(x), (256,))], sig), model, steps=steps, lr=5e-3, progress=False)
    return model
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task6_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
@torch.no_grad()
def _check_score_model(model, sigmas, seed, student=None):
    """Check a trained score model: its score against the exact score of q_sigma, and annealed Langevin samples
    against fresh data (sliced W2 next to its noise floor); it must be the NoiseConditionalScoreNet that was trained."""
    student = student or LocalStudent({})
    g = torch.Generator().manual_seed(seed)
    centers = eight.centers.double()
    errors = {}
    for sig in (float(sigmas[0]), float(sigmas[1]), float(sigmas[3])):      # the levels where the score is learnable well
        var = eight.std**2 + sig**2                               # q_sigma is the same mixture with variance std^2 + sigma^2
        xs = eight.sample((2000,), generator=g).double() + sig * torch.randn(2000, 2, generator=g, dtype=f64)
        out = call(model, xs.float(), sig, name=f"your model at sigma = {sig:.3g}")
        expect_tensor(out, shape=(2000, 2), name=f"model(x [2000, 2], sigma = {sig:.3g})")
        diff = centers[None] - xs[:, None]
        exact = (torch.softmax(-0.5 * diff.pow(2).sum(-1) / var, 1)[..., None] * diff).sum(1) / var
        out = out.double()
        cos = (out * exact).sum() / (out.norm() * exact.norm() + 1e-30)
        expect(cos > -0.5, f"at sigma = {sig:.3g} your model's score points away from the data (cosine {cos:.2f} with the "
               "exact score): the DSM target has the wrong sign (it is -eps / sigma)")
        errors[sig] = ((out - exact).pow(2).sum(1).mean() / exact.pow(2).sum(1).mean()).item()
    worst = max(errors, key=errors.get)
    text = ", ".join(f"{e:.2f} at sigma = {s:.3g}" for s, e in errors.items())
    expect(errors[worst] < 0.25, f"relative squared error of your score against the exact score of q_sigma: {text}; it should be "
           f"< 0.25 at these levels (an untrained network gives about 1): is the model trained, on every level, and does it see sigma?")
    expect(min(errors.values()) > 1e-6, f"your model equals the exact score of q_sigma (relative squared errors {text}): "
           "a closed-form score is not a trained model; return the NoiseConditionalScoreNet you trained")
    x0 = float(sigmas[0]) * torch.randn(2000, 2, generator=g)
    xs = annealed_langevin(lambda y, s: model(y, s), x0, sigmas, 50, 3e-4, generator=torch.Generator().manual_seed(seed + 1))
    expect(bool(torch.isfinite(xs).all()), "annealed Langevin with your model gives NaN or inf")
    gt = torch.Generator().manual_seed(seed + 2)
    rs = [relative_to_noise_floor(sliced_wasserstein, xs.float(), lambda n: eight.sample((n,), generator=gt).float())
          for _ in range(3)]
    ratio = sum(r["distance"] for r in rs) / sum(r["floor"] for r in rs)
    expect(ratio < 3.0, f"annealed Langevin samples are {ratio:.2f}x the noise floor away from the data (need < 3); "
           f"score errors: {text}")
    kind = student.type_name(model)
    expect(kind == "course_utils.score.NoiseConditionalScoreNet"
           and student.code("lambda m: any(p.requires_grad for p in m.parameters())")(model),
           f"train_score_model returned a {kind.rsplit('.', 1)[-1]}: it must return the NoiseConditionalScoreNet you trained, "
           "not another function (a closed-form score is not a trained model)")
    return ratio, errors


x_eight = eight.sample((20_000,), generator=torch.Generator().manual_seed(0)).float()
ladder = geometric_sigmas(5.0, 0.02, 10)


# %% nbgrader={"grade": true, "grade_id": "task6_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
score_model = call(train_score_model, x_eight, ladder, 1000)
ratio6, errors6 = _check_score_model(score_model, ladder, 0)
passed(f"sliced W2 within {ratio6:.2f}x its noise floor; score errors " + ", ".join(f"{e:.2f}" for e in errors6.values()))
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    # the model the check above trained with the student's train_score_model, on fresh points, levels and chains
    _check_score_model(student.score_model, ladder, 7, student=student)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task7_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 7 — written: why one noise level is not enough (2 points, graded by hand)
#
# (a) A score network trained by DSM at one small $\sigma$ is accurate near the data but wrong far from it, between the modes of
# `8gaussians`. Why? (Look at where the DSM loss puts its samples.) What does Langevin started from broad noise then do?
# (b) Why does a single large $\sigma$ not fix it, and how does the NCSN ladder with annealed Langevin get the best of both?

# %% [markdown] nbgrader={"grade": true, "grade_id": "task7_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) The DSM loss is an expectation over $x_\sigma \sim q_\sigma$: it only evaluates the network where noisy data fall, within a few
# $\sigma$ of the data. In low-density regions (between the modes, far out) there are almost no training points, so the loss
# does not constrain the network there and its output is whatever the architecture extrapolates; besides, the true score
# of $q_\sigma$ there is itself hard to estimate from samples. Langevin started from broad noise begins exactly in those regions:
# it drifts along a wrong field, mixes slowly or gets stuck, and the chains that do reach modes do so with the wrong
# proportions (the weights are set by the low-density paths between modes, which it never learned). (b) A large $\sigma$ fills the
# space with noisy data, so the score is learned everywhere, but it is the score of $q_\sigma$, a blurred density: samples from it
# are blurred data. The ladder $\sigma_1 > \dots > \sigma_L$ learns all levels in one network; annealed Langevin starts at $\sigma_1$ (a
# score that is accurate everywhere and mixes across modes), and each level's samples land where the next, smaller level's
# score is accurate, ending at $\sigma_L$ close to the data.
# ### END SOLUTION
