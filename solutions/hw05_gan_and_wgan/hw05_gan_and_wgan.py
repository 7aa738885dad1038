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
# # Homework 05 — GAN and WGAN, and evaluation without a likelihood
#
# Follows lecture notebook `05_gan_and_wgan` (lectures 5 and 6.1 of the course notes). Five coded tasks (13 points, graded
# automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `js_divergence`, `gan_value`: JS and the GAN value at the optimal discriminator | 2 |
# | 2 | `gradient_penalty`: the WGAN-GP penalty at random interpolates | 3 |
# | 3 | `frechet_distance`: W2² between Gaussians with non-commuting covariances | 3 |
# | 4 | `precision_recall`: k-NN precision and recall | 3 |
# | 5 | `train_wgan_gp`: a WGAN-GP on `8gaussians`, to a stated mode coverage | 2 |
# | 6 | written: weight clipping | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and run the check cell below it: it prints
# `✓ ...` or one line saying what was expected. Hidden checks of the same kind use other inputs. Do not rename functions
# or delete cells; the notebook must run top to bottom in about a minute on a laptop CPU. Write tasks 1–4 yourself: do not
# call `course_utils.metrics` or `course_utils.gan.gradient_penalty` (the checks of tasks 2–4 tell you if you do). All
# divergences are in **nats** (natural logs).

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import CheckFailed, LocalStudent, call, expect, expect_close, expect_tensor, hidden_test, passed
from course_utils.data import toy
from course_utils.gan import mlp_critic, mlp_generator, mode_coverage

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)
eight = toy("8gaussians")          # 8 Gaussians (std 0.25) on a circle of radius 2.8, with exact log_prob


def _as_float(value, name):
    """A Python float from a float or a 0-d tensor, or a clear error."""
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{name} should be one number (a float or a 0-d tensor), got shape {tuple(value.shape)}")
        expect(not value.is_complex(), f"{name} is a complex number; it should be real")
        value = value.item()
    expect(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
           f"{name} should be a finite real number, got {value!r}")
    return float(value)


# Tasks 1-4 are for you to write: this inspector runs where your function lives (your notebook; the grader's kernel)
# and says whether it calls the library's version, directly, by another name, or through your own helper functions.
_CALLS_LIBRARY = '''
def calls_library(f, module, attr):
    lib = getattr(__import__(module, fromlist=[attr]), attr)
    seen = set()

    def names(code):
        out = set(code.co_names)
        for c in code.co_consts:
            if hasattr(c, "co_names"):
                out |= names(c)
        return out

    def calls(g, depth):
        if g is lib:
            return True
        code = getattr(g, "__code__", None)
        if code is None or depth > 4 or id(g) in seen or str(getattr(g, "__module__", "")).startswith("course_utils"):
            return False
        seen.add(id(g))
        glb, used = getattr(g, "__globals__", {}), names(code)
        library = [n for n in used if n.startswith("course_utils") or
                   (type(glb.get(n)).__name__ == "module" and str(glb[n].__name__).startswith("course_utils"))]
        if attr in used and library:
            return True
        inner = [glb.get(n) for n in used if n in glb]
        for cell in getattr(g, "__closure__", None) or ():
            try:
                inner.append(cell.cell_contents)
            except ValueError:
                pass
        inner += list(getattr(g, "__defaults__", None) or ()) + list((getattr(g, "__kwdefaults__", None) or {}).values())
        return any(calls(h, depth + 1) for h in inner if callable(h))

    return calls(f, 0)
'''


def _expect_own_code(student, name, module, attr):
    """Fail when the student's `name` calls the library's `module.attr` instead of implementing it."""
    inspect = student.code("(lambda ns: exec(text, ns) or ns['calls_library'])({})", text=_CALLS_LIBRARY)
    uses = call(inspect, getattr(student, name), module, attr, name=f"the inspection of {name}")
    expect(uses is False, f"{name} calls {module}.{attr}: this task is to write it yourself (the library's version is "
           "the lecture's reference), so replace the call with your own code")


# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — JS and the GAN value at the optimal discriminator (2 points)
#
# For two distributions on $K$ points, given as probability vectors `p`, `q` (shape `[K]`, entries $\ge 0$ summing to 1,
# possibly with zeros), return
# * `js_divergence(p, q)` $= \frac12\mathrm{KL}(p\,\|\,m) + \frac12\mathrm{KL}(q\,\|\,m)$, $m = \frac12(p + q)$, in nats, with $0\log 0 = 0$;
# * `gan_value(p, q)` $= \max_D\; \mathbb{E}_p\log D + \mathbb{E}_q\log(1 - D)$, the value of the GAN game at the optimal discriminator
#   $D^* = p/(p + q)$ (on points where $p + q = 0$ nothing is at stake).
#
# Both as floats or 0-d tensors. (The check tests the identity from the lecture that links them.)

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def js_divergence(p, q):
    """p, q [K] probability vectors -> JS(p, q) in nats."""
    ### BEGIN SOLUTION
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl = lambda a: torch.where(a > 0, a * (a / m).log(), torch.zeros_like(a)).sum()
    return 0.5 * kl(p) + 0.5 * kl(q)
    ### END SOLUTION


def gan_value(p, q):
    """p, q [K] probability vectors -> E_p log D* + E_q log(1 - D*)."""
    ### BEGIN SOLUTION
    p, q = p.double(), q.double()
    s = p + q
    term = lambda a: torch.where(a > 0, a * (a / s).log(), torch.zeros_like(a)).sum()
    return term(p) + term(q)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task1_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _ref_js(p, q):
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    t = lambda a: (a[a > 0] * (a[a > 0] / m[a > 0]).log()).sum().item()
    return 0.5 * t(p) + 0.5 * t(q)


def _check_js(js_fn, value_fn, p, q, what):
    """js_divergence against the reference (naming the usual slips), and gan_value = 2 JS - log 4."""
    js = _as_float(call(js_fn, p, q, name="js_divergence"), f"js_divergence for {what}")
    ref = _ref_js(p, q)
    if ref > 1e-6:
        expect(abs(js - ref / math.log(2)) > 1e-6 or abs(js - ref) < 1e-9,
               f"js_divergence for {what} is {js:.6f} = JS in bits (log base 2); use natural logs: it should be {ref:.6f} nats")
        expect(abs(js - math.sqrt(ref)) > 1e-6 or abs(js - ref) < 1e-9,
               f"js_divergence for {what} is {js:.6f} = the square root of JS (what scipy's jensenshannon returns); "
               f"it should be JS = {ref:.6f}")
        expect(abs(js - 2 * ref) > 1e-6, f"js_divergence for {what} is {js:.6f}, twice JS: KL(p||m) + KL(q||m) needs the factor 1/2 "
               f"on each term (JS = {ref:.6f})")
    expect(abs(js - ref) < 1e-8, f"js_divergence for {what} should be {ref:.6f} nats, got {js:.6f}")
    v = _as_float(call(value_fn, p, q, name="gan_value"), f"gan_value for {what}")
    expect(abs(v - (2 * ref - math.log(4))) < 1e-8,
           f"gan_value for {what} should be 2 JS - log 4 = {2 * ref - math.log(4):.6f}, got {v:.6f}"
           + (" (that is JS - log 4: the value is 2 JS - log 4)" if abs(v - (ref - math.log(4))) < 1e-8 else ""))
    return js, v


def _check_js_extremes(js_fn, value_fn, disjoint, equal):
    """Disjoint supports: JS = log 2 and the value is 0. Equal distributions: JS = 0 and the value is -log 4."""
    js_d, v_d = _check_js(js_fn, value_fn, *disjoint, "disjoint supports")
    expect(abs(js_d - math.log(2)) < 1e-9 and abs(v_d) < 1e-9, "for disjoint supports JS = log 2 and the value is 0")
    js_s, v_s = _check_js(js_fn, value_fn, equal, equal.clone(), "p = q (with a zero)")
    expect(abs(js_s) < 1e-12 and abs(v_s + math.log(4)) < 1e-9, "for p = q, JS = 0 and the value is -log 4")


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
g = torch.Generator().manual_seed(0)
p1, q1 = torch.rand(6, generator=g, dtype=torch.float64), torch.rand(6, generator=g, dtype=torch.float64)
js, v = _check_js(js_divergence, gan_value, p1 / p1.sum(), q1 / q1.sum(), "two random distributions on 6 points")
f64 = torch.float64
_check_js_extremes(js_divergence, gan_value,
                   (torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=f64), torch.tensor([0.0, 0.0, 0.3, 0.7], dtype=f64)),
                   torch.tensor([0.2, 0.0, 0.8], dtype=f64))
passed(f"JS = {js:.4f} nats and value {v:.4f} = 2 JS - log 4; disjoint: JS = log 2; equal: value = -log 4")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    js_fn, value_fn, f64 = student.js_divergence, student.gan_value, torch.float64
    g = torch.Generator().manual_seed(5)
    for K in (2, 50):
        a, b = torch.rand(K, generator=g, dtype=f64) ** 3, torch.rand(K, generator=g, dtype=f64) ** 3
        _check_js(js_fn, value_fn, a / a.sum(), b / b.sum(), f"random distributions on {K} points")
    _check_js(js_fn, value_fn, torch.tensor([1.0, 0.0], dtype=f64), torch.tensor([0.5, 0.5], dtype=f64), "a point mass against a coin")
    _check_js_extremes(js_fn, value_fn,
                       (torch.tensor([0.0, 0.1, 0.0, 0.9, 0.0], dtype=f64), torch.tensor([0.6, 0.0, 0.4, 0.0, 0.0], dtype=f64)),
                       torch.tensor([0.0, 0.25, 0.0, 0.15, 0.6], dtype=f64))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — the gradient penalty (3 points)
#
# Return $\mathrm{GP} = \mathbb{E}_{\hat x}\big(\|\nabla_{\hat x} f(\hat x)\|_2 - 1\big)^2$ (two-sided, **without** the weight $\lambda$) at interpolates
# $\hat x_i = t_i\,x_i + (1 - t_i)\,\tilde x_i$ of `real` $x$ and `fake` $\tilde x$ (both `[B, D]`), one $t_i \sim U[0, 1]$ per pair, drawn **exactly** as
# `t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)`. `critic` maps `[B, D] -> [B, 1]`. The penalty must
# train the critic: keep the graph (`torch.autograd.grad(..., create_graph=True)`). Return a 0-d tensor.

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gradient_penalty(critic, real, fake, generator=None):
    """E (||grad f(x_hat)|| - 1)^2 at random interpolates; a 0-d tensor with a graph to the critic's parameters."""
    ### BEGIN SOLUTION
    t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)
    x_hat = (t * real.detach() + (1 - t) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm(dim=1) - 1).pow(2).mean()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task2_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Runs where gradient_penalty lives (your notebook; the grader's kernel): the penalty of the linear critic f(x) = x @ w,
# with w trainable, and its gradient with respect to w (None when the penalty has no graph to w).
_GP_WEIGHT_GRADIENT = """lambda gp, w, real, fake, generator: (lambda w: (lambda penalty: None
    if not (isinstance(penalty, torch.Tensor) and penalty.requires_grad)
    else torch.autograd.grad(penalty, w, allow_unused=True)[0])(gp(lambda x: x @ w, real, fake, generator)))(
    w.clone().requires_grad_(True))"""


def _check_gp(student, seed, B, D):
    """Critics with a known gradient, so the reference holds exactly: linear f(x) = x.w + b has |grad f| = |w| at every
    point; f(x) = |x|^2/2 has grad f = x, which needs the interpolates t drawn as the task says."""
    _expect_own_code(student, "gradient_penalty", "course_utils.gan", "gradient_penalty")
    gp_fn = student.gradient_penalty
    g = torch.Generator().manual_seed(seed)
    real, fake = torch.randn(B, D, generator=g, dtype=torch.float64), 3 * torch.randn(B, D, generator=g, dtype=torch.float64)
    for w, what in (([0.3, 0.4] + [0.0] * (D - 2), "|w| = 0.5 < 1"), ([3.0, 4.0] + [0.0] * (D - 2), "|w| = 5 > 1")):
        w = torch.tensor(w, dtype=torch.float64)[torch.randperm(D, generator=g)]
        critic = student.code("lambda x: x @ w[:, None] + b", w=w, b=torch.randn(1, generator=g, dtype=torch.float64))
        gp = call(gp_fn, critic, real, fake, torch.Generator().manual_seed(1), name="gradient_penalty")
        expect_tensor(gp, shape=(), name="gradient_penalty(...)")
        norm = w.norm().item()
        ref = (norm - 1) ** 2
        val = gp.item()
        expect(not (norm < 1 and abs(val) < 1e-9), f"a linear critic with {what} gets penalty {val:.4g}: that is a one-sided "
               f"penalty (only norms above 1); the two-sided penalty is (|w| - 1)^2 = {ref:.4g}")
        expect(abs(val - 10 * ref) > 1e-6, f"the penalty for {what} is {val:.4g} = 10 x (|w| - 1)^2: return it without the weight λ")
        expect(abs(val - (norm / B - 1) ** 2) > 1e-6, f"the penalty for {what} is {val:.4g} = (|w|/B - 1)^2 with B = {B}: "
               "each gradient is divided by the batch size, as when differentiating critic(x_hat).mean(); differentiate "
               "critic(x_hat).sum() (each output depends on its own point only)")
        expect(abs(val - (math.sqrt(B) * norm - 1) ** 2) > 1e-6, f"the penalty for {what} is {val:.4g} = (sqrt(B) |w| - 1)^2 "
               f"with B = {B}: one norm of the whole batch's gradients; take each point's gradient norm (norm(dim=1)) and "
               "average the squared deviations from 1")
        expect(abs(val - (norm**2 - 1) ** 2) > 1e-6 or abs(val - ref) < 1e-9,
               f"the penalty for {what} is {val:.4g} = (|w|^2 - 1)^2: use the norm of the gradient, not its squared norm")
        expect_close(gp, ref, atol=1e-9, name=f"gradient_penalty of a linear critic with {what} ((|w| - 1)^2)")
    # f(x) = |x|^2 / 2 has gradient x_hat: the penalty depends on where the interpolates are
    quad = student.code("lambda x: 0.5 * (x**2).sum(1, keepdim=True)")
    gp = call(gp_fn, quad, real, fake, torch.Generator().manual_seed(2), name="gradient_penalty")
    expect_tensor(gp, shape=(), name="gradient_penalty(...)")
    t = torch.rand(B, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = ((t * real + (1 - t) * fake).norm(dim=1) - 1).pow(2).mean()
    at_real, at_fake = (real.norm(dim=1) - 1).pow(2).mean(), (fake.norm(dim=1) - 1).pow(2).mean()
    expect(abs(gp.item() - at_real.item()) > 1e-6 and abs(gp.item() - at_fake.item()) > 1e-6,
           "the penalty is evaluated at the real (or the fake) points: evaluate it at the interpolates t x + (1 - t) x_fake")
    expect_close(gp, ref.item(), atol=1e-9, name="gradient_penalty of f(x) = |x|^2/2 (gradient = the interpolate itself)")
    # the penalty trains the critic: for f(x) = x @ w it is (|w| - 1)^2, whose gradient is 2 (|w| - 1) w / |w|
    w = 0.7 * torch.randn(D, 1, generator=g, dtype=torch.float64)
    grad_w = call(student.code(_GP_WEIGHT_GRADIENT), gp_fn, w, real, fake, torch.Generator().manual_seed(3),
                  name="gradient_penalty")
    expect(grad_w is not None, "the penalty has no graph to the critic's parameters: use torch.autograd.grad(..., "
           "create_graph=True)")
    expect(bool((grad_w != 0).any()), "the penalty sends no gradient to the critic's weights: use create_graph=True")
    expect_close(grad_w, 2 * (w.norm() - 1) * w / w.norm(), atol=1e-9,
                 name="the gradient of the penalty with respect to a linear critic's weights w (2 (|w| - 1) w / |w|)")


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_check_gp(LocalStudent(globals()), 0, 64, 2)
passed("two-sided, without λ, at the interpolates, and it trains the critic")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_gp(student, 7, 5, 3)
    _check_gp(student, 8, 300, 6)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — the Fréchet distance (3 points)
#
# Return FID's Fréchet distance between $\mathcal{N}(\mu_1, \Sigma_1)$ and $\mathcal{N}(\mu_2, \Sigma_2)$ as a float:
# $$\mathrm{FD} = \|\mu_1 - \mu_2\|^2 + \mathrm{tr}\,\Sigma_1 + \mathrm{tr}\,\Sigma_2 - 2\,\mathrm{tr}\big(\Sigma_1^{1/2}\Sigma_2\Sigma_1^{1/2}\big)^{1/2}$$
# (the *squared* $W_2$). The covariances need not commute and may be nearly singular: compute symmetric square roots with
# `torch.linalg.eigh` in float64 (clamp tiny negative eigenvalues at 0); the result must be real and never negative.

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def frechet_distance(mu1, sigma1, mu2, sigma2):
    """mu [D], sigma [D, D] -> W2^2 between the two Gaussians (a float >= 0)."""
    ### BEGIN SOLUTION
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))

    def sqrt_psd(s):
        w, v = torch.linalg.eigh(0.5 * (s + s.T))
        return (v * w.clamp_min(0).sqrt()) @ v.T

    r = sqrt_psd(s1)
    m = r @ s2 @ r
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0).sqrt().sum()
    return max(((mu1 - mu2) ** 2).sum().item() + torch.trace(s1).item() + torch.trace(s2).item() - 2 * tr_sqrt.item(), 0.0)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task3_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _rot(a):
    return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)


def _sqrt_sym(s):
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def _check_fd_2x2(fn, mu1, s1, mu2, s2, what):
    # 2x2: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), M = S1^1/2 S2 S1^1/2, tr M = tr(S1 S2), det M = det S1 det S2
    tr_sqrt = math.sqrt(torch.trace(s1 @ s2).item() + 2 * math.sqrt(max(torch.det(s1).item() * torch.det(s2).item(), 0.0)))
    mean_term = ((mu1 - mu2) ** 2).sum().item()
    ref = mean_term + torch.trace(s1).item() + torch.trace(s2).item() - 2 * tr_sqrt
    fd = _as_float(call(fn, mu1, s1, mu2, s2, name="frechet_distance"), f"frechet_distance for {what}")
    expect(abs(fd - math.sqrt(ref)) > 1e-6 or abs(fd - ref) < 1e-8,
           f"frechet_distance for {what} is {fd:.6f} = the square root of the answer: FID is the squared W2, {ref:.6f}")
    expect(abs(fd - (ref - mean_term)) > 1e-6 or mean_term == 0,
           f"frechet_distance for {what} is {fd:.6f}: the mean term |mu1 - mu2|^2 = {mean_term:.4f} is missing")
    naive = mean_term + torch.trace(s1 + s2 - 2 * _sqrt_sym(s1) @ _sqrt_sym(s2)).item()
    expect(abs(fd - naive) > 1e-6 or abs(fd - ref) < 1e-8,
           f"frechet_distance for {what} is {fd:.6f} = tr(S1 + S2 - 2 S1^1/2 S2^1/2), which holds only when the covariances "
           f"commute; use tr (S1^1/2 S2 S1^1/2)^1/2 (answer {ref:.6f})")
    expect(abs(fd - ref) < 1e-8, f"frechet_distance for {what} should be {ref:.6f}, got {fd:.6f}")
    return fd


def _check_fd_singular(fn, D, rank, seed):
    """A rank-deficient covariance in D dimensions: 0 to itself (never negative), and in [0, tr S1 + tr S2] rotated."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, rank, generator=g, dtype=torch.float64)
    sing = a @ a.T
    qm, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    hint = (f"for a rank-{rank} covariance in {D}-D, rounding makes some of its zero eigenvalues slightly negative, and "
            "their square roots NaN; clamp the eigenvalues at 0 before taking square roots")
    try:
        raw = call(fn, torch.zeros(D, dtype=torch.float64), sing, torch.zeros(D, dtype=torch.float64), sing.clone(),
                   name="frechet_distance")
    except CheckFailed as err:
        expect(False, f"{err} ({hint})")
    nan = (isinstance(raw, float) and math.isnan(raw)) or (isinstance(raw, torch.Tensor) and raw.numel() == 1
                                                           and not raw.is_complex() and bool(torch.isnan(raw)))
    expect(not nan, f"frechet_distance(N(0, S), N(0, S)) is NaN: {hint}")
    same = _as_float(raw, "frechet_distance(N(0, S), N(0, S))")
    expect(0 <= same < 1e-6, f"the distance of a singular Gaussian to itself should be 0 (and never negative), got {same:.3g}")
    rotated = _as_float(call(fn, torch.zeros(D, dtype=torch.float64), sing, torch.zeros(D, dtype=torch.float64), qm @ sing @ qm.T,
                             name="frechet_distance"), "frechet_distance for rotated singular covariances")
    bound = 2 * torch.linalg.eigvalsh(sing).clamp_min(0).sum().item()
    expect(0 <= rotated <= bound + 1e-9, f"for two rank-{rank} covariances the distance must lie in [0, tr S1 + tr S2], got {rotated}")
    return same, rotated


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_expect_own_code(LocalStudent(globals()), "frechet_distance", "course_utils.metrics", "frechet_distance")
s1 = torch.tensor([[3.0, 0.0], [0.0, 0.2]], dtype=torch.float64)
s2 = _rot(0.7) @ torch.diag(torch.tensor([2.0, 0.05], dtype=torch.float64)) @ _rot(0.7).T
fd = _check_fd_2x2(frechet_distance, torch.tensor([0.3, -1.0], dtype=torch.float64), s1, torch.tensor([1.0, 0.5], dtype=torch.float64),
                   s2, "two non-commuting 2x2 covariances")
same, rotated = _check_fd_singular(frechet_distance, 12, 2, 0)
passed(f"2x2 non-commuting: {fd:.4f}; singular 12-D: {same:.1e} to itself, {rotated:.4f} rotated")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    from course_utils.metrics import frechet_distance as reference

    _expect_own_code(student, "frechet_distance", "course_utils.metrics", "frechet_distance")
    fn, f64 = student.frechet_distance, torch.float64
    _check_fd_2x2(fn, torch.zeros(2, dtype=f64), torch.eye(2, dtype=f64) * 2, torch.ones(2, dtype=f64),
                  _rot(1.1) @ torch.diag(torch.tensor([0.5, 1e-6], dtype=f64)) @ _rot(1.1).T, "a nearly singular pair")
    _check_fd_2x2(fn, torch.tensor([2.0, 0.0], dtype=f64), torch.diag(torch.tensor([1.0, 4.0], dtype=f64)),
                  torch.tensor([0.0, 0.0], dtype=f64), _rot(0.3) @ torch.diag(torch.tensor([9.0, 0.1], dtype=f64)) @ _rot(0.3).T,
                  "a second non-commuting pair")
    _check_fd_singular(fn, 10, 3, 11)
    g = torch.Generator().manual_seed(12)
    for D in (3, 7):   # non-commuting covariances in higher dimension, against the library's value computed here
        a, b = torch.randn(D, D, generator=g, dtype=f64), torch.randn(D, D, generator=g, dtype=f64)
        mu1, mu2 = torch.randn(D, generator=g, dtype=f64), torch.randn(D, generator=g, dtype=f64)
        s1, s2 = a @ a.T + 0.1 * torch.eye(D, dtype=f64), b @ b.T / D
        ref = reference(mu1, s1, mu2, s2)
        fd = _as_float(call(fn, mu1, s1, mu2, s2, name="frechet_distance"), f"frechet_distance in {D}-D")
        expect(abs(fd - ref) < 1e-7 * (1 + ref), f"frechet_distance for two {D}-D Gaussians should be {ref:.6f}, got {fd:.6f}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — precision and recall (3 points)
#
# Kynkäänniemi et al. (2019): each set's manifold is the union of balls around its points, the radius of a point being the
# distance to its `k`-th nearest neighbour **among the other points** of its own set. A point is inside a manifold when its
# distance to some centre is `<=` that centre's radius. Return `(precision, recall)` as floats, where
# precision = share of `fake` points inside the manifold of `real`, recall = share of `real` points inside the manifold of `fake`.
# `real` `[N, D]`, `fake` `[M, D]`.

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def precision_recall(real, fake, k=3):
    """real [N, D], fake [M, D] -> (precision, recall)."""
    ### BEGIN SOLUTION
    real, fake = real.double(), fake.double()

    def radii(x):
        return torch.cdist(x, x).kthvalue(k + 1, dim=1).values        # the smallest distance is the point itself

    def inside(points, centres):
        return (torch.cdist(points, centres) <= radii(centres)[None, :]).any(1).double().mean().item()

    return inside(fake, real), inside(real, fake)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task4_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _line(*xs):
    return torch.tensor([[x, 0.0] for x in xs], dtype=torch.float64)


def _pair(out, what):
    expect(isinstance(out, (tuple, list)) and len(out) == 2, f"precision_recall should return (precision, recall); {what}")
    return tuple(_as_float(v, n) for v, n in zip(out, ("precision", "recall")))


def _check_pr(fn, real, fake, k, expected, what, hints=()):
    got = _pair(call(fn, real, fake, k, name="precision_recall"), what)
    for cond, message in hints:
        expect(not (abs(got[0] - cond[0]) < 1e-9 and abs(got[1] - cond[1]) < 1e-9) or
               (abs(cond[0] - expected[0]) < 1e-9 and abs(cond[1] - expected[1]) < 1e-9), f"{what}: got {got}; {message}")
    expect(abs(got[0] - expected[0]) < 1e-9 and abs(got[1] - expected[1]) < 1e-9,
           f"{what}: (precision, recall) should be ({expected[0]:.4f}, {expected[1]:.4f}), got ({got[0]:.4f}, {got[1]:.4f})")


_TWIN_HINT = ("a repeated point is its twin's nearest neighbour, at distance 0: leave each point out of its own neighbours "
              "by its index (e.g. kthvalue(k + 1)), not by keeping only distances > 0 (torch.cdist may also give a point a "
              "tiny non-zero distance to itself)")


def _check_pr_tight_in_wide(fn, wide, tight):
    """A tight fake cluster inside a wide real cloud: realistic samples (high precision) that miss most of the data."""
    prec, rec = _pair(call(fn, wide, tight, 3, name="precision_recall"), "a tight fake cluster inside a wide real cloud")
    expect(not (prec < 0.3 and rec > 0.9), f"precision and recall are swapped: a tight fake cluster inside a wide real cloud has "
           f"high precision (its points are realistic) and low recall (it misses most of the data); you returned ({prec:.3f}, {rec:.3f})")
    expect(prec > 0.95 and rec < 0.2, f"a tight fake cluster inside a wide real cloud: expected precision > 0.95 and recall < 0.2, "
           f"got ({prec:.3f}, {rec:.3f})")
    return prec, rec


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_expect_own_code(LocalStudent(globals()), "precision_recall", "course_utils.metrics", "precision_recall")
_check_pr(precision_recall, _line(0, 1, 2, 3), _line(0.5, 1.5, 10), 1, (2 / 3, 1.0), "real {0, 1, 2, 3}, fake {0.5, 1.5, 10}, k = 1",
          hints=[((1.0, 2 / 3), "precision and recall are swapped: precision is about the fake points"),
                 ((0.0, 0.0), "every radius is 0: the nearest neighbour of a point in its own set is itself; skip it")])
# by hand, k = 1: real radii 1, 1: fake 2 is exactly at distance 1 from real 1 (inside, since <=), 2.5 and 40 are not.
# fake radii 0.5, 0.5, 37.5: real 0 and 1 are 2 and 1 from fake 2 (> 0.5), and 40 and 39 from fake 40 (> 37.5): recall 0.
_check_pr(precision_recall, _line(0, 1), _line(2, 2.5, 40), 1, (1 / 3, 0.0), "real {0, 1}, fake {2, 2.5, 40}, k = 1",
          hints=[((0.0, 0.0), "a point exactly on a ball's boundary counts as inside (use <=, not <)"),
                 ((0.0, 1 / 3), "precision and recall look swapped, and the boundary needs <=")])
_check_pr(precision_recall, _line(0, 2, 5, 9), _line(1, 3, 6, 7), 2, (1.0, 1.0), "real {0, 2, 5, 9}, fake {1, 3, 6, 7}, k = 2",
          hints=[((1.0, 0.75), "you used the (k-1)-th neighbour: the point itself is not one of its k nearest neighbours")])
_check_pr(precision_recall, _line(0, 0, 5), _line(-1, 20), 1, (0.0, 1.0), "real {0, 0, 5} (a point twice), fake {-1, 20}, k = 1",
          hints=[((0.5, 1.0), _TWIN_HINT)])
g = torch.Generator().manual_seed(0)
prec, rec = _check_pr_tight_in_wide(precision_recall, 3.0 * torch.randn(800, 2, generator=g, dtype=torch.float64),
                                    0.3 * torch.randn(800, 2, generator=g, dtype=torch.float64))
passed(f"tight cluster in a wide cloud: precision {prec:.3f}, recall {rec:.3f}; hand-worked sets agree")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    from course_utils.metrics import precision_recall as reference

    _expect_own_code(student, "precision_recall", "course_utils.metrics", "precision_recall")
    fn, f64 = student.precision_recall, torch.float64
    _check_pr(fn, _line(0, 1, 2, 3), _line(0.5, 1.5, 10), 2, (2 / 3, 1.0), "real {0, 1, 2, 3}, fake {0.5, 1.5, 10}, k = 2")
    _check_pr(fn, _line(0.5, 1.5, 10), _line(0, 1, 2, 3), 1, (1.0, 2 / 3), "the sets exchanged, k = 1")
    _check_pr(fn, _line(0, 3), _line(1, 1.5, 4, 9), 1, (0.75, 0.5), "real {0, 3}, fake {1, 1.5, 4, 9}, k = 1")
    # by hand, k = 1: real radii 2, 2: fake 4 lies exactly on the boundary of real 2's ball (inside); all real points
    # are inside the fake balls (radii 3). A strict < gives (1/3, 1).
    _check_pr(fn, _line(0, 2), _line(4, 1, 7), 1, (2 / 3, 1.0), "real {0, 2}, fake {4, 1, 7}, k = 1",
              hints=[((1 / 3, 1.0), "a point exactly on a ball's boundary counts as inside (use <=, not <)")])
    # by hand, k = 1: fake radii 0, 0, 3 (4 is there twice): real 1 is 3 from the fakes at 4 (radius 0) and 6 from 7
    # (radius 3): outside; real 9 is 2 from 7: inside; precision: real radii 8, 8 reach 4, 4 and 7: 1. Leaving the
    # point out by d > 0 gives the twins radius 3, and real 1 is inside: (1, 1).
    _check_pr(fn, _line(1, 9), _line(4, 4, 7), 1, (1.0, 0.5), "real {1, 9}, fake {4, 4, 7} (a point twice), k = 1",
              hints=[((1.0, 1.0), _TWIN_HINT)])
    # real radii 0, 0, 6 (3 twice), k = 1: fake 2 is 1 from the twins (radius 0), 7 from 9: outside; fake 12 is 3 from 9
    # (radius 6): inside. By d > 0 the twins get radius 6 and fake 2 is inside: (1, ...).
    _check_pr(fn, _line(3, 3, 9), _line(2, 12), 1, (0.5, 1.0), "real {3, 3, 9} (a point twice), fake {2, 12}, k = 1",
              hints=[((1.0, 1.0), _TWIN_HINT)])
    g = torch.Generator().manual_seed(9)
    _check_pr_tight_in_wide(fn, 2.0 * torch.randn(600, 3, generator=g, dtype=f64), 0.2 * torch.randn(500, 3, generator=g, dtype=f64))
    cloud = torch.randn(500, 3, generator=g, dtype=f64)
    p_same, r_same = _pair(call(fn, cloud, torch.randn(500, 3, generator=g, dtype=f64), 5, name="precision_recall"), "same law")
    expect(p_same > 0.85 and r_same > 0.85, f"two samples of one law should give high precision and recall, got {p_same}, {r_same}")
    for k, (real, fake) in ((4, (torch.randn(300, 2, generator=g, dtype=f64), 0.5 + 0.8 * torch.randn(200, 2, generator=g, dtype=f64))),
                            (2, (torch.rand(100, 5, generator=g, dtype=f64), torch.rand(150, 5, generator=g, dtype=f64) ** 2))):
        _check_pr(fn, real, fake, k, reference(real, fake, k), f"{len(real)} real and {len(fake)} fake points, k = {k}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — a WGAN-GP on `8gaussians` (2 points)
#
# Train a WGAN-GP with **your** `gradient_penalty` (λ = 10): build the generator and critic with `mlp_generator(2, 2, 64, 3)`
# and `mlp_critic(2, 64, 3)` from `course_utils.gan`, and write the alternating updates yourself (Adam with `betas=(0.5, 0.9)`;
# several critic steps per generator step; the critic *minimises* $\mathbb{E} f(\text{fake}) - \mathbb{E} f(\text{real}) + \lambda\,\mathrm{GP}$, the
# generator minimises $-\mathbb{E} f(G(z))$, $z \sim \mathcal{N}(0, I_2)$). Draw data with `eight.sample((n,)).float()`. Return the trained
# generator. **Target: at least 6 of the 8 modes covered** (`mode_coverage` of the lecture, on 2000 samples), in at most
# about 20 seconds. The check sees only the trained generator (its type, its own parameters and its samples), not how you
# trained it: it cannot tell λ = 10 from another penalty weight that also reaches the target, so keep to λ = 10 yourself.

# %% nbgrader={"grade": false, "grade_id": "task5_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_wgan_gp(steps=300, d_steps=5, seed=0):
    """-> a trained generator nn.Module mapping [n, 2] latents to [n, 2] samples."""
    ### BEGIN SOLUTION
    seed_everything(seed)
    G, f = mlp_generator(2, 2, 64, 3), mlp_critic(2, 64, 3)
    opt_g = torch.optim.Adam(G.parameters(), lr=5e-4, betas=(0.5, 0.9))
    opt_f = torch.optim.Adam(f.parameters(), lr=2e-3, betas=(0.5, 0.9))
    for _ in range(steps):
        for _ in range(d_steps):
            real = eight.sample((256,)).float()
            with torch.no_grad():
                fake = G(torch.randn(256, 2))
            loss_f = f(fake).mean() - f(real).mean() + 10 * gradient_penalty(f, real, fake)
            opt_f.zero_grad()
            loss_f.backward()
            opt_f.step()
        loss_g = -f(G(torch.randn(256, 2))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    return G
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task5_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Runs where the generator lives (your notebook; the grader's kernel): its parameters, by name.
_PARAMETERS = "lambda m: {name: p.detach().clone() for name, p in m.named_parameters()}"


def _check_generator(student, G, seed, n):
    """G must be the network mlp_generator(2, 2, 64, 3) builds, with its own (trained) parameters, and its samples must be
    that network's outputs on the latents; the mode coverage is measured on the network rebuilt here from them."""
    net = mlp_generator(2, 2, 64, 3)
    kind, got = f"{type(net).__module__}.{type(net).__qualname__}", student.type_name(G)
    expect(got == kind, f"train_wgan_gp should return the generator that mlp_generator(2, 2, 64, 3) builds (a {kind}), "
           f"trained; it returned a {got}")
    z = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        s = call(G, z, name="your generator")
    expect_tensor(s, shape=(n, 2), name="generator samples")
    params = call(student.code(_PARAMETERS), G, name="the generator's parameters")
    shapes = {k: tuple(v.shape) for k, v in net.named_parameters()}
    expect(isinstance(params, dict) and all(isinstance(v, torch.Tensor) for v in params.values())
           and {k: tuple(v.shape) for k, v in params.items()} == shapes,
           "the generator should have the trainable parameters of mlp_generator(2, 2, 64, 3) "
           f"({', '.join(f'{k} {list(v)}' for k, v in shapes.items())})")
    net.load_state_dict({k: v.float() for k, v in params.items()})
    with torch.no_grad():
        own = net(z)
    expect(torch.isfinite(own).all() and (s.float() - own).abs().max().item() < 1e-4,
           "the samples are not the outputs of the generator's own network on the latents: train_wgan_gp should return "
           "the trained generator itself, not a module that samples the data some other way")
    cov = mode_coverage(own, eight.centers, eight.std)
    expect(cov["modes"] > 1, f"mode collapse: your generator covers {cov['modes']} of 8 modes (per-mode counts "
           f"{cov['counts'].tolist()}); check the critic's sign and the penalty, and train longer")
    expect(cov["modes"] >= 6, f"your generator covers {cov['modes']} of 8 modes (high-quality share {cov['high_quality']:.2f}); "
           "at least 6 are needed: train longer, or with more critic steps per generator step")
    return cov


# %% nbgrader={"grade": true, "grade_id": "task5_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
G_trained = call(train_wgan_gp, name="train_wgan_gp")
cov = _check_generator(LocalStudent(globals()), G_trained, 1, 2000)
passed(f"{cov['modes']} of 8 modes covered, {cov['high_quality']:.0%} high-quality samples")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_generator(student, student.G_trained, 2, 4000)   # the generator the check above trained, on fresh latents
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task6_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 6 — written: weight clipping (2 points, graded by hand)
#
# (a) The lecture's critic with weights clipped to $[-0.01, 0.01]$ had a measured Lipschitz constant of about $10^{-3}$ and a
# dual value a thousand times smaller than $W_1$. Explain why clipping is a poor way to enforce $\|f\|_L \le 1$: what does it
# bound, and what happens for a large and for a small $c$? (b) Why does the gradient penalty use interpolates between real and
# generated points, and what does it not guarantee?

# %% [markdown] nbgrader={"grade": true, "grade_id": "task6_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) Clipping bounds every weight, hence every layer's norm by roughly $c\sqrt{\text{width}}$, and the net's Lipschitz constant
# by the product over layers: some unknown $K(c)$, not 1. The critic then estimates $K\cdot W_1$ at best, with $K$ unknown and
# changing during training. With a small $c$ the layers are tiny, the critic is nearly linear (capacity collapses towards
# simple functions) and its gradients vanish through the depth; with a large $c$ the constraint hardly binds, the critic
# can grow large and training becomes slow and unstable (exploding gradients), with weights piling up at $\pm c$.
# (b) The optimal critic of Kantorovich–Rubinstein has gradient norm 1 almost everywhere on the lines joining points coupled by
# the optimal transport plan, so that is where the constraint matters; interpolates sample those lines cheaply. The penalty is
# soft and only applied on samples: it does not make the critic 1-Lipschitz everywhere (the lecture measured gradient norms
# above 1 and a dual value above $W_1$), and its meaning depends on the current generator's samples.
# ### END SOLUTION
