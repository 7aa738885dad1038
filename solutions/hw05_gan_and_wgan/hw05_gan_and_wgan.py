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
# call `course_utils.metrics` or `course_utils.gan.gradient_penalty`. All divergences are in **nats** (natural logs).

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import call, expect, expect_close, expect_tensor, passed
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


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def _ref_js(p, q):
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    t = lambda a: (a[a > 0] * (a[a > 0] / m[a > 0]).log()).sum().item()
    return 0.5 * t(p) + 0.5 * t(q)


def _check_js(p, q, what):
    js = _as_float(call(js_divergence, p, q), f"js_divergence for {what}")
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
    v = _as_float(call(gan_value, p, q), f"gan_value for {what}")
    expect(abs(v - (2 * ref - math.log(4))) < 1e-8,
           f"gan_value for {what} should be 2 JS - log 4 = {2 * ref - math.log(4):.6f}, got {v:.6f}"
           + (" (that is JS - log 4: the value is 2 JS - log 4)" if abs(v - (ref - math.log(4))) < 1e-8 else ""))
    return js, v


g = torch.Generator().manual_seed(0)
p1, q1 = torch.rand(6, generator=g, dtype=torch.float64), torch.rand(6, generator=g, dtype=torch.float64)
js, v = _check_js(p1 / p1.sum(), q1 / q1.sum(), "two random distributions on 6 points")
f64 = torch.float64
js_d, v_d = _check_js(torch.tensor([0.5, 0.5, 0.0, 0.0], dtype=f64), torch.tensor([0.0, 0.0, 0.3, 0.7], dtype=f64), "disjoint supports")
expect(abs(js_d - math.log(2)) < 1e-9 and abs(v_d) < 1e-9, "for disjoint supports JS = log 2 and the value is 0")
js_s, v_s = _check_js(torch.tensor([0.2, 0.0, 0.8], dtype=f64), torch.tensor([0.2, 0.0, 0.8], dtype=f64), "p = q (with a zero)")
expect(abs(js_s) < 1e-12 and abs(v_s + math.log(4)) < 1e-9, "for p = q, JS = 0 and the value is -log 4")
passed(f"JS = {js:.4f} nats and value {v:.4f} = 2 JS - log 4; disjoint: JS = log 2; equal: value = -log 4")
### BEGIN HIDDEN TESTS
g = torch.Generator().manual_seed(5)
for K in (2, 50):
    a, b = torch.rand(K, generator=g, dtype=f64) ** 3, torch.rand(K, generator=g, dtype=f64) ** 3
    _ = _check_js(a / a.sum(), b / b.sum(), f"random distributions on {K} points")
_ = _check_js(torch.tensor([1.0, 0.0], dtype=f64), torch.tensor([0.5, 0.5], dtype=f64), "a point mass against a coin")
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


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def _linear(w):
    lin = torch.nn.Linear(len(w), 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w], dtype=torch.float64))
    return lin


def _check_gp(seed, B, D):
    g = torch.Generator().manual_seed(seed)
    real, fake = torch.randn(B, D, generator=g, dtype=torch.float64), 3 * torch.randn(B, D, generator=g, dtype=torch.float64)
    for w, what in (([0.3, 0.4] + [0.0] * (D - 2), "|w| = 0.5 < 1"), ([3.0, 4.0] + [0.0] * (D - 2), "|w| = 5 > 1")):
        gp = call(gradient_penalty, _linear(w), real, fake, torch.Generator().manual_seed(1), name="gradient_penalty")
        expect_tensor(gp, shape=(), name="gradient_penalty(...)")
        norm = math.sqrt(sum(x * x for x in w))
        ref = (norm - 1) ** 2
        val = gp.item()
        expect(not (norm < 1 and abs(val) < 1e-9), f"a linear critic with {what} gets penalty {val:.4g}: that is a one-sided "
               f"penalty (only norms above 1); the two-sided penalty is (|w| - 1)^2 = {ref:.4g}")
        expect(abs(val - 10 * ref) > 1e-6, f"the penalty for {what} is {val:.4g} = 10 x (|w| - 1)^2: return it without the weight λ")
        expect(abs(val - (norm**2 - 1) ** 2) > 1e-6 or abs(val - ref) < 1e-9,
               f"the penalty for {what} is {val:.4g} = (|w|^2 - 1)^2: use the norm of the gradient, not its squared norm")
        expect_close(gp, ref, atol=1e-9, name=f"gradient_penalty of a linear critic with {what} ((|w| - 1)^2)")
    # f(x) = |x|^2 / 2 has gradient x_hat: the penalty depends on where the interpolates are
    quad = lambda x: 0.5 * (x**2).sum(1, keepdim=True)
    gp = call(gradient_penalty, quad, real, fake, torch.Generator().manual_seed(2), name="gradient_penalty")
    t = torch.rand(B, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = ((t * real + (1 - t) * fake).norm(dim=1) - 1).pow(2).mean()
    at_real, at_fake = (real.norm(dim=1) - 1).pow(2).mean(), (fake.norm(dim=1) - 1).pow(2).mean()
    expect(abs(gp.item() - at_real.item()) > 1e-6 and abs(gp.item() - at_fake.item()) > 1e-6,
           "the penalty is evaluated at the real (or the fake) points: evaluate it at the interpolates t x + (1 - t) x_fake")
    expect_close(gp, ref.item(), atol=1e-9, name="gradient_penalty of f(x) = |x|^2/2 (gradient = the interpolate itself)")
    critic = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).double()
    gp = call(gradient_penalty, critic, real, fake, torch.Generator().manual_seed(3), name="gradient_penalty")
    expect(gp.requires_grad, "the penalty has no graph to the critic's parameters: use torch.autograd.grad(..., create_graph=True)")
    grads = torch.autograd.grad(gp, list(critic.parameters()), allow_unused=True)
    expect(grads[0] is not None and grads[0].abs().sum() > 0,
           "the penalty sends no gradient to the critic's first layer: use create_graph=True")


_check_gp(0, 64, 2)
passed("two-sided, without λ, at the interpolates, and it trains the critic")
### BEGIN HIDDEN TESTS
_check_gp(7, 5, 3)
_check_gp(8, 300, 6)
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


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def _rot(a):
    return torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)


def _check_fd_2x2(mu1, s1, mu2, s2, what):
    # 2x2: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), M = S1^1/2 S2 S1^1/2, tr M = tr(S1 S2), det M = det S1 det S2
    tr_sqrt = math.sqrt(torch.trace(s1 @ s2).item() + 2 * math.sqrt(max(torch.det(s1).item() * torch.det(s2).item(), 0.0)))
    mean_term = ((mu1 - mu2) ** 2).sum().item()
    ref = mean_term + torch.trace(s1).item() + torch.trace(s2).item() - 2 * tr_sqrt
    fd = _as_float(call(frechet_distance, mu1, s1, mu2, s2), f"frechet_distance for {what}")
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


def _sqrt_sym(s):
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


s1 = torch.tensor([[3.0, 0.0], [0.0, 0.2]], dtype=torch.float64)
s2 = _rot(0.7) @ torch.diag(torch.tensor([2.0, 0.05], dtype=torch.float64)) @ _rot(0.7).T
fd = _check_fd_2x2(torch.tensor([0.3, -1.0], dtype=torch.float64), s1, torch.tensor([1.0, 0.5], dtype=torch.float64), s2,
                   "two non-commuting 2x2 covariances")
g = torch.Generator().manual_seed(0)
a = torch.randn(12, 2, generator=g, dtype=torch.float64)
sing = a @ a.T                                                  # rank 2 in 12-D: nearly singular
qm, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
same = _as_float(call(frechet_distance, torch.zeros(12), sing, torch.zeros(12), sing.clone()), "frechet_distance(N(0, S), N(0, S))")
expect(0 <= same < 1e-6, f"the distance of a singular Gaussian to itself should be 0 (and never negative), got {same:.3g}")
rotated = _as_float(call(frechet_distance, torch.zeros(12), sing, torch.zeros(12), qm @ sing @ qm.T),
                    "frechet_distance for rotated singular covariances")
ev = torch.linalg.eigvalsh(sing).clamp_min(0)
expect(0 <= rotated <= 2 * ev.sum().item() + 1e-9, f"for two rank-2 covariances the distance must lie in [0, tr S1 + tr S2], got {rotated}")
passed(f"2x2 non-commuting: {fd:.4f}; singular 12-D: {same:.1e} to itself, {rotated:.4f} rotated")
### BEGIN HIDDEN TESTS
_ = _check_fd_2x2(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64) * 2, torch.ones(2, dtype=torch.float64),
              _rot(1.1) @ torch.diag(torch.tensor([0.5, 1e-6], dtype=torch.float64)) @ _rot(1.1).T, "a nearly singular pair")
_ = _check_fd_2x2(torch.tensor([2.0, 0.0], dtype=torch.float64), torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64)),
              torch.tensor([0.0, 0.0], dtype=torch.float64), _rot(0.3) @ torch.diag(torch.tensor([9.0, 0.1], dtype=torch.float64)) @ _rot(0.3).T,
              "a second non-commuting pair")
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


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def _line(*xs):
    return torch.tensor([[x, 0.0] for x in xs], dtype=torch.float64)


def _pair(out, what):
    expect(isinstance(out, (tuple, list)) and len(out) == 2, f"precision_recall should return (precision, recall); {what}")
    return tuple(_as_float(v, n) for v, n in zip(out, ("precision", "recall")))


def _check_pr(real, fake, k, expected, what, hints=()):
    got = _pair(call(precision_recall, real, fake, k), what)
    for cond, message in hints:
        expect(not (abs(got[0] - cond[0]) < 1e-9 and abs(got[1] - cond[1]) < 1e-9) or
               (abs(cond[0] - expected[0]) < 1e-9 and abs(cond[1] - expected[1]) < 1e-9), f"{what}: got {got}; {message}")
    expect(abs(got[0] - expected[0]) < 1e-9 and abs(got[1] - expected[1]) < 1e-9,
           f"{what}: (precision, recall) should be ({expected[0]:.4f}, {expected[1]:.4f}), got ({got[0]:.4f}, {got[1]:.4f})")


_check_pr(_line(0, 1, 2, 3), _line(0.5, 1.5, 10), 1, (2 / 3, 1.0), "real {0, 1, 2, 3}, fake {0.5, 1.5, 10}, k = 1",
          hints=[((1.0, 2 / 3), "precision and recall are swapped: precision is about the fake points"),
                 ((0.0, 0.0), "every radius is 0: the nearest neighbour of a point in its own set is itself; skip it")])
# by hand, k = 1: real radii 1, 1: fake 2 is exactly at distance 1 from real 1 (inside, since <=), 2.5 and 40 are not.
# fake radii 0.5, 0.5, 37.5: real 0 and 1 are 2 and 1 from fake 2 (> 0.5), and 40 and 39 from fake 40 (> 37.5): recall 0.
_check_pr(_line(0, 1), _line(2, 2.5, 40), 1, (1 / 3, 0.0), "real {0, 1}, fake {2, 2.5, 40}, k = 1",
          hints=[((0.0, 0.0), "a point exactly on a ball's boundary counts as inside (use <=, not <)"),
                 ((0.0, 1 / 3), "precision and recall look swapped, and the boundary needs <=")])
_check_pr(_line(0, 2, 5, 9), _line(1, 3, 6, 7), 2, (1.0, 1.0), "real {0, 2, 5, 9}, fake {1, 3, 6, 7}, k = 2",
          hints=[((1.0, 0.75), "you used the (k-1)-th neighbour: the point itself is not one of its k nearest neighbours")])
g = torch.Generator().manual_seed(0)
wide, tight = 3.0 * torch.randn(800, 2, generator=g, dtype=torch.float64), 0.3 * torch.randn(800, 2, generator=g, dtype=torch.float64)
prec, rec = _pair(call(precision_recall, wide, tight, 3), "a tight fake cluster inside a wide real cloud")
expect(not (prec < 0.3 and rec > 0.9), f"precision and recall are swapped: a tight fake cluster inside a wide real cloud has "
       f"high precision (its points are realistic) and low recall (it misses most of the data); you returned ({prec:.3f}, {rec:.3f})")
expect(prec > 0.95 and rec < 0.2, f"a tight fake cluster inside a wide real cloud: expected precision > 0.95 and recall < 0.2, "
       f"got ({prec:.3f}, {rec:.3f})")
passed(f"tight cluster in a wide cloud: precision {prec:.3f}, recall {rec:.3f}; hand-worked sets agree")
### BEGIN HIDDEN TESTS
_check_pr(_line(0, 1, 2, 3), _line(0.5, 1.5, 10), 2, (2 / 3, 1.0), "hidden: k = 2")
_check_pr(_line(0.5, 1.5, 10), _line(0, 1, 2, 3), 1, (1.0, 2 / 3), "hidden: the sets exchanged")
g = torch.Generator().manual_seed(9)
cloud = torch.randn(500, 3, generator=g, dtype=torch.float64)
p_same, r_same = _pair(call(precision_recall, cloud, torch.randn(500, 3, generator=g, dtype=torch.float64), 5), "hidden: same law")
expect(p_same > 0.85 and r_same > 0.85, f"hidden: two samples of one law should give high precision and recall, got {p_same}, {r_same}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — a WGAN-GP on `8gaussians` (2 points)
#
# Train a WGAN-GP with **your** `gradient_penalty` (λ = 10): build the generator and critic with `mlp_generator(2, 2, 64, 3)`
# and `mlp_critic(2, 64, 3)` from `course_utils.gan`, and write the alternating updates yourself (Adam with `betas=(0.5, 0.9)`;
# several critic steps per generator step; the critic *minimises* $\mathbb{E} f(\text{fake}) - \mathbb{E} f(\text{real}) + \lambda\,\mathrm{GP}$, the
# generator minimises $-\mathbb{E} f(G(z))$, $z \sim \mathcal{N}(0, I_2)$). Draw data with `eight.sample((n,)).float()`. Return the trained
# generator. **Target: at least 6 of the 8 modes covered** (`mode_coverage` of the lecture, on 2000 samples), in at most
# about 20 seconds.

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


# %% nbgrader={"grade": true, "grade_id": "task5_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
G_trained = call(train_wgan_gp, name="train_wgan_gp")
expect(isinstance(G_trained, torch.nn.Module), f"train_wgan_gp should return the generator (an nn.Module), got {type(G_trained).__name__}")
with torch.no_grad():
    s = call(G_trained, torch.randn(2000, 2, generator=torch.Generator().manual_seed(1)), name="your generator")
expect_tensor(s, shape=(2000, 2), name="generator samples")
cov = mode_coverage(s, eight.centers, eight.std)
expect(cov["modes"] > 1, f"mode collapse: your generator covers {cov['modes']} of 8 modes (per-mode counts {cov['counts'].tolist()}); "
       "check the critic's sign and the penalty, and train longer")
expect(cov["modes"] >= 6, f"your generator covers {cov['modes']} of 8 modes (high-quality share {cov['high_quality']:.2f}); "
       "at least 6 are needed: train longer, or with more critic steps per generator step")
passed(f"{cov['modes']} of 8 modes covered, {cov['high_quality']:.0%} high-quality samples")
### BEGIN HIDDEN TESTS
with torch.no_grad():
    s2 = G_trained(torch.randn(4000, 2, generator=torch.Generator().manual_seed(2)))
expect(mode_coverage(s2, eight.centers, eight.std)["modes"] >= 6, "hidden: on other latents, fewer than 6 modes are covered")
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
