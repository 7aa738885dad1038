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
# # Homework 01 — change of variables
#
# Follows lecture notebook `01_change_of_variables` (lectures 1–2 of the course notes).
# Four coded tasks (10 points, graded automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `planar_log_det`: the log-determinant of a planar layer | 2 |
# | 2 | `lognormal_log_prob`: a density by change of variables | 2 |
# | 3 | `LeakyReLUFlow`: a flow layer with its inverse and log-dets | 3 |
# | 4 | `fit_flow`: a maximum-likelihood fit reaching a stated KL gap | 3 |
# | 5 | written: why the absolute value, and what goes wrong with $y = x^2$ | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code, then run the check cell
# below it. A check prints `✓ ...` when it passes and one line saying what was expected when it does not.
# The grader also runs hidden checks of the same kind (other inputs, other parameters), so make your code
# general, not tuned to the visible example. Do not rename functions or delete cells; the whole notebook
# must run top to bottom in about a minute on a laptop CPU.
#
# Convention of the course (`course_utils.flows`): a flow layer maps **data towards the base**,
# `forward(x) -> (z, log_det)` with `log_det = log|det ∂z/∂x|` per sample, and
# `inverse(z) -> (x, log_det)` with `log_det = log|det ∂x/∂z|`.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import (call, diagnose, expect, expect_close, expect_density_fit, expect_tensor, hidden_test,
                                 passed)
from course_utils.flows import ElementwiseAffine, Flow, SinhArcsinh, jacobian_log_det
from course_utils.training import fit

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — the log-determinant of a planar layer (2 points)
#
# A planar layer maps $x \in \mathbb{R}^D$ to $f(x) = x + u\,\tanh(w^\top x + b)$ with $u, w \in \mathbb{R}^D$, $b \in \mathbb{R}$.
# Its Jacobian is $I + \tanh'(w^\top x + b)\, u w^\top$, a rank-one update of the identity.
# Use the matrix determinant lemma, $\det(I + a b^\top) = 1 + b^\top a$, to compute
# $\log\lvert\det \partial f/\partial x\rvert$ for every row of `x` in $O(D)$ per sample — no `torch.det`, no autograd.

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def planar_log_det(x, u, w, b):
    """log|det J| of f(x) = x + u * tanh(w.x + b) for each row of x.

    x: [B, D], u: [D], w: [D], b: scalar tensor  ->  [B]
    """
    ### BEGIN SOLUTION
    h = torch.tanh(x @ w + b)                       # [B]
    return torch.log(torch.abs(1 + (1 - h**2) * (u @ w)))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def _planar(x, u, w, b):
    return x + u * torch.tanh(x @ w + b)


x = torch.randn(8, 2) * torch.tensor([[1.0]] * 4 + [[0.1]] * 4)   # the last four near w.x + b = 0, where det < 0
u, w, b = torch.tensor([0.5, -1.0]), torch.tensor([1.0, 2.0]), torch.tensor(0.3)
out = call(planar_log_det, x, u, w, b)
h = torch.tanh(x @ w + b)
diagnose(out, {  # the answers of common mistakes, so the message can name them (u.w < 0 here: the det changes sign)
    "planar_log_det takes the log of a negative determinant: use the absolute value, log|1 + h'(.) u.w|":
        torch.log(1 + (1 - h**2) * (u @ w)),
    "planar_log_det uses tanh where its derivative tanh' = 1 - tanh^2 belongs": torch.log(torch.abs(1 + h * (u @ w))),
    "planar_log_det drops the identity: the determinant lemma gives 1 + b^T a, not b^T a":
        torch.log(torch.abs((1 - h**2) * (u @ w))),
    "planar_log_det uses w.w (or u.u) where the lemma gives u.w": torch.log(torch.abs(1 + (1 - h**2) * (w @ w))),
})
expect_tensor(out, shape=(8,), name="planar_log_det(x, u, w, b)")
expect_close(out, jacobian_log_det(lambda v: _planar(v, u, w, b), x), atol=1e-4, name="planar_log_det(x, u, w, b)")
passed("planar_log_det agrees with the autograd Jacobian")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    g = torch.Generator().manual_seed(101)
    for D in (1, 3, 5):
        x = torch.randn(16, D, generator=g, dtype=torch.float64)
        u, w = torch.randn(D, generator=g, dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64)
        u = u - (u @ w + 0.9) * w / (w @ w) * (D != 3)  # u.w = -0.9: the determinant changes sign near w.x + b = 0
        b = torch.randn((), generator=g, dtype=torch.float64)
        x[:4] = x[:4] * 0.05 - b * w / (w @ w)          # four points near w.x + b = 0
        out = call(student.planar_log_det, x, u, w, b, name="planar_log_det")
        expect_tensor(out, shape=(16,), name=f"planar_log_det in D={D}")
        expect_close(out, jacobian_log_det(lambda v: v + u * torch.tanh(v @ w + b), x), atol=1e-6,
                     name=f"planar_log_det in D={D}")
### END HIDDEN TESTS


# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — a density by change of variables (2 points)
#
# Let $X \sim \mathcal{N}(\mu, \sigma^2)$ and $Y = e^X$. Derive $\log p_Y(y)$ for $y > 0$ with the change-of-variables
# formula $p_Y(y) = p_X(g^{-1}(y))\,\lvert \tfrac{d}{dy} g^{-1}(y) \rvert$ and implement it. Do not use
# `torch.distributions.LogNormal` (the check compares against it).

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lognormal_log_prob(y, mu, sigma):
    """log p_Y(y) for Y = exp(X), X ~ N(mu, sigma^2); y: [N] positive -> [N]."""
    ### BEGIN SOLUTION
    x = torch.log(y)                                             # g^{-1}(y)
    log_px = -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
    return log_px - x                                            # |d g^{-1}/dy| = 1/y
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
y = torch.linspace(1e-4, 40.0, 200_001, dtype=torch.float64)
lp = call(lognormal_log_prob, y, 0.5, 0.6)
expect_tensor(lp, shape=y.shape, name="lognormal_log_prob(y, 0.5, 0.6)")
_x, _mu, _s = y.log(), 0.5, 0.6
_normal = -0.5 * ((_x - _mu) / _s) ** 2 - math.log(_s) - 0.5 * math.log(2 * math.pi)   # log p_X(log y)
diagnose(lp, {
    "lognormal_log_prob centres twice: x = log(y) - mu is already centred, do not subtract mu again":
        -0.5 * ((_x - 2 * _mu) / _s) ** 2 - math.log(_s) - 0.5 * math.log(2 * math.pi) - _x,
    "lognormal_log_prob is missing the Jacobian factor |d log(y)/dy| = 1/y (subtract log y)": _normal,
    "lognormal_log_prob adds log y: the Jacobian factor is 1/y, so subtract log y": _normal + _x,
    "lognormal_log_prob normalises with sigma^2 (or log(sigma^2)) where the normal density has sigma":
        _normal + math.log(_s) - 2 * math.log(_s) - _x,
}, atol=1e-6)
total = torch.trapezoid(lp.exp(), y).item()
expect(abs(total - 1) < 1e-3, f"p_Y should integrate to 1 over y > 0, but it integrates to {total:.4f}")
median = y[torch.searchsorted(torch.cumulative_trapezoid(lp.exp(), y), 0.5)].item()
expect(abs(median - math.exp(0.5)) < 1e-2, f"the median of Y = exp(X) is exp(mu) = {math.exp(0.5):.4f}, but your density's "
       f"median is {median:.4f}: check where the density is centred")
mean = torch.trapezoid(y * lp.exp(), y).item()
expect(abs(mean - math.exp(0.5 + 0.6**2 / 2)) < 1e-3, f"E[Y] should be exp(mu + sigma^2/2) = {math.exp(0.68):.4f}, but your "
       f"density gives {mean:.4f}: check its spread")
passed(f"the density integrates to {total:.5f}, with median exp(mu) and mean exp(mu + sigma^2/2)")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    for mu, sigma in ((0.0, 1.0), (-1.0, 0.3), (2.0, 1.7)):
        y = torch.exp(mu + sigma * torch.linspace(-4, 4, 101, dtype=torch.float64))
        reference = torch.distributions.LogNormal(torch.tensor(mu, dtype=torch.float64),
                                                  torch.tensor(sigma, dtype=torch.float64)).log_prob(y)
        expect_close(call(student.lognormal_log_prob, y, mu, sigma, name="lognormal_log_prob"), reference,
                     atol=1e-8, rtol=1e-8, name=f"lognormal_log_prob(y, {mu}, {sigma})")
### END HIDDEN TESTS


# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — a flow layer with its inverse (3 points)
#
# The leaky-ReLU layer acts elementwise: $z_i = x_i$ if $x_i \ge 0$ and $z_i = \alpha x_i$ otherwise, with $\alpha > 0$.
# Implement `forward` and `inverse` in the course convention. Both return a pair: the mapped tensor `[B, D]`
# and the per-sample log-determinant `[B]` of the map they apply. (The Jacobian is diagonal: what is on its diagonal?)

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class LeakyReLUFlow(torch.nn.Module):
    """Elementwise z = x (x >= 0), z = alpha * x (x < 0), with alpha > 0."""

    def __init__(self, alpha=0.5):
        super().__init__()
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.alpha = alpha

    def forward(self, x):
        """x: [B, D] -> (z [B, D], log|det dz/dx| [B])"""
        ### BEGIN SOLUTION
        negative = x < 0
        z = torch.where(negative, self.alpha * x, x)
        log_det = negative.to(x.dtype).sum(-1) * math.log(self.alpha)
        return z, log_det
        ### END SOLUTION

    def inverse(self, z):
        """z: [B, D] -> (x [B, D], log|det dx/dz| [B])"""
        ### BEGIN SOLUTION
        negative = z < 0
        x = torch.where(negative, z / self.alpha, z)
        log_det = -negative.to(z.dtype).sum(-1) * math.log(self.alpha)
        return x, log_det
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
layer = call(LeakyReLUFlow, 0.5, name="LeakyReLUFlow(0.5)")
x = torch.randn(64, 3)
fwd = call(layer.forward, x, name="LeakyReLUFlow.forward")
expect(isinstance(fwd, tuple) and len(fwd) == 2, "forward(x) should return a pair (z, log_det)")
z, ld = fwd
expect_tensor(z, shape=(64, 3), name="z from forward")
expect_tensor(ld, shape=(64,), name="log_det from forward")
inv = call(layer.inverse, z, name="LeakyReLUFlow.inverse")
expect(isinstance(inv, tuple) and len(inv) == 2, "inverse(z) should return a pair (x, log_det)")
x_back, ld_inv = inv
expect_close(z, torch.where(x < 0, 0.5 * x, x), atol=1e-6, name="z = forward(x)[0] (z = x for x >= 0, alpha * x below)")
expect_close(x_back, x, atol=1e-5, name="inverse(forward(x)) (the round trip)")
_neg, _pos = (x < 0).float().sum(-1), (x >= 0).float().sum(-1)
diagnose(ld, {
    "the forward log-det uses alpha where the Jacobian's diagonal entry alpha needs its log, log(alpha)": _neg * 0.5,
    "the forward log-det has the wrong sign: z = alpha * x shrinks by alpha, so log|dz/dx| = +log(alpha) per negative entry":
        -_neg * math.log(0.5),
    "the forward log-det counts the non-negative entries; the factor alpha applies where x < 0": _pos * math.log(0.5),
})
expect_close(ld, jacobian_log_det(lambda v: layer.forward(v[None])[0][0], x), atol=1e-5,
             name="forward log_det (against the autograd Jacobian)")
expect_close(ld + ld_inv, torch.zeros(64), atol=1e-5, name="log_det(forward) + log_det(inverse) (they should cancel)")
expect_close(ld_inv, jacobian_log_det(lambda v: layer.inverse(v[None])[0][0], z), atol=1e-5,
             name="inverse log_det (against the autograd Jacobian)")
passed("forward is the leaky ReLU, the round trip is the identity, and both log-dets equal the autograd Jacobian's")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    g = torch.Generator().manual_seed(103)
    for alpha in (0.2, 3.0):
        layer = call(student.LeakyReLUFlow, alpha, name=f"LeakyReLUFlow({alpha})")
        x = torch.randn(32, 4, generator=g, dtype=torch.float64)
        fwd = call(layer.forward, x, name="LeakyReLUFlow.forward")
        expect(isinstance(fwd, tuple) and len(fwd) == 2, "forward(x) should return a pair (z, log_det)")
        z, ld = fwd
        negative = (x < 0).double().sum(-1)
        expect_close(z, torch.where(x < 0, alpha * x, x), atol=1e-12, name=f"forward(x) with alpha={alpha}")
        # the Jacobian is diagonal, alpha where x < 0 and 1 elsewhere
        expect_close(ld, negative * math.log(alpha), atol=1e-8, name=f"forward log_det with alpha={alpha}")
        inv = call(layer.inverse, z, name="LeakyReLUFlow.inverse")
        expect(isinstance(inv, tuple) and len(inv) == 2, "inverse(z) should return a pair (x, log_det)")
        x_back, ld_inv = inv
        expect_close(x_back, x, atol=1e-10, name=f"round trip with alpha={alpha}")
        expect_close(ld_inv, -negative * math.log(alpha), atol=1e-8, name=f"inverse log_det with alpha={alpha}")
### END HIDDEN TESTS


# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — maximum likelihood (3 points)
#
# The cell below draws a training and a test set from a 2-D target whose coordinates are independent, skewed and
# heavy-tailed. Its exact log-density on the test set is `log_p_test`, so the test set tells us the target's entropy $H(p)$, and
# $\text{test NLL} - H(p) \approx \mathrm{KL}(p \,\|\, q_\theta)$, the **KL gap** in nats.
#
# Write `fit_flow(x_train)`: build a `Flow` from the course's layers (`ElementwiseAffine`, `SinhArcsinh`; see
# `help(Flow)`), fit it by maximum likelihood with `fit(...)` from `course_utils.training`, and return it.
# **Target: a KL gap below 0.03 nats on the test set**, within about 20 seconds of training.

# %% nbgrader={"grade": false, "grade_id": "task4_data", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _make_data(seed):
    """A fixed 2-D target (independent skewed, heavy-tailed coordinates, a hidden elementwise flow): train and test
    sets and the exact log-density. The target flow itself is not kept: fit_flow must fit, not look it up."""
    g = torch.Generator().manual_seed(seed)
    true_flow = Flow([ElementwiseAffine(2, log_scale=[0.3, -0.4], shift=[0.5, -0.2]),
                      SinhArcsinh(2, skew=[0.9, -0.6], log_delta=[-0.35, 0.25]),
                      ElementwiseAffine(2, log_scale=[-0.2, 0.1], shift=[0.0, 0.3])])
    for p in true_flow.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        train, test = (true_flow.inverse(torch.randn(n, 2, generator=g))[0] for n in (4000, 20000))
        return train, test, true_flow.log_prob(test)


x_train, x_test, log_p_test = _make_data(0)
true_entropy = -log_p_test.mean().item()
print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, target entropy on the test set: {true_entropy:.4f} nats")

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fit_flow(x_train):
    """Fit a flow to x_train [N, 2] by maximum likelihood and return it (a Flow with .log_prob)."""
    ### BEGIN SOLUTION
    model = Flow([ElementwiseAffine(2), SinhArcsinh(2), ElementwiseAffine(2)])
    # standardise first so the default initialisation is sensible
    with torch.no_grad():
        model.layers[0].log_scale.copy_(-x_train.std(0).log())
        model.layers[0].shift.copy_(-x_train.mean(0) / x_train.std(0))
    fit(lambda: -model.log_prob(x_train).mean(), model, steps=1500, lr=2e-2, desc="MLE")
    return model
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
model = call(fit_flow, x_train)
expect(hasattr(model, "log_prob"), "fit_flow should return a model with a .log_prob(x) method (a Flow)")
with torch.no_grad():
    lp_test = call(model.log_prob, x_test, name="model.log_prob")
expect_tensor(lp_test, shape=(len(x_test),), name="model.log_prob(x_test)")
expect((lp_test - log_p_test).abs().max().item() > 1e-5,
       "fit_flow returned the true target density itself (it matches to 1e-5 everywhere), not a model fitted to x_train")
print(f"test NLL {-lp_test.mean().item():.4f} nats, entropy {true_entropy:.4f}")
gap = expect_density_fit(lp_test, log_p_test, 0.03, "the fitted flow")  # a density, fitted: KL gap in [0, 0.03)
passed(f"KL gap {gap:.4f} < 0.03 nats")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    def check_fit(model, x_fresh, log_p_fresh, what):
        lp = call(model.log_prob, x_fresh, name="model.log_prob")
        expect_tensor(lp, shape=(len(x_fresh),), name="model.log_prob(x)")
        expect((lp - log_p_fresh).abs().max().item() > 1e-5,
               "fit_flow returned the true target density itself, not a model fitted to x_train")
        expect_density_fit(lp, log_p_fresh, 0.04, what)

    # the model the check above trained with the student's fit_flow, on fresh data from its target
    _, x_fresh, log_p_fresh = _make_data(7)
    check_fit(student.model, x_fresh, log_p_fresh, "the fitted flow")
    # and fit_flow itself, on a target it has never seen (parameters only here): it must fit, not look anything up
    g = torch.Generator().manual_seed(17)
    hidden = Flow([ElementwiseAffine(2, log_scale=[-0.5, 0.2], shift=[-0.3, 0.8]),
                   SinhArcsinh(2, skew=[-0.7, 0.5], log_delta=[0.2, -0.3])])
    with torch.no_grad():
        x_train_h, x_test_h = (hidden.inverse(torch.randn(n, 2, generator=g))[0] for n in (4000, 20000))
        log_p_h = hidden.log_prob(x_test_h)
    check_fit(call(student.fit_flow, x_train_h, name="fit_flow"), x_test_h, log_p_h, "fit_flow on another target")
### END HIDDEN TESTS


# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — written (2 points, graded by hand)
#
# (a) Why does the change-of-variables formula contain the **absolute value** of the Jacobian determinant? Give a
# one-dimensional example where dropping it gives a "density" that is negative.
#
# (b) Let $X \sim \mathcal{N}(0, 1)$ and $Y = X^2$. Why can you not apply the formula with $g(x) = x^2$ on all of
# $\mathbb{R}$, and how do you still get $p_Y$? (Write $p_Y(y)$ for $y > 0$.)

# %% [markdown] nbgrader={"grade": true, "grade_id": "task5_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) Probabilities of sets are preserved: $P(Y \in A) = P(X \in g^{-1}(A))$. For a decreasing $g$ the substitution
# flips the integration limits, which contributes a minus sign that cancels the negative derivative; the absolute
# value writes both cases at once, since $dy$ is a length (volume), never negative. Example: $Y = -X$ gives
# $p_X(-y)\cdot\frac{d}{dy}(-y) = -p_X(-y) < 0$ without the absolute value.
#
# (b) $g(x) = x^2$ is not invertible on $\mathbb{R}$ (two preimages $\pm\sqrt{y}$) and $g'(0) = 0$. Split $\mathbb{R}$
# into the two monotone branches and add their contributions:
# $p_Y(y) = \big(p_X(\sqrt{y}) + p_X(-\sqrt{y})\big)\frac{1}{2\sqrt{y}} = \frac{e^{-y/2}}{\sqrt{2\pi y}}$, the $\chi^2_1$ density.
# ### END SOLUTION
