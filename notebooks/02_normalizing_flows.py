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

# %% [markdown]
# # 02 · Normalizing flows: linear, autoregressive and coupling layers
#
# **Follows** lecture 2 of the course notes (`003`: linear flows with LU/QR, Gaussian autoregressive flows,
# RealNVP coupling), the flow parts of `000` and `001` (part 3), and §11 of the survey `004` (planar flows, NICE,
# RealNVP).
#
# **Goals.** By the end you can
# 1. compose flows and track their log-determinants, layer by layer;
# 2. make a linear flow whose log-det costs $O(D)$ (LU and QR parameterisations);
# 3. build a MADE network and the two Gaussian autoregressive flows, MAF and IAF, and explain — with measured
#    costs — why one is fast for densities and the other for sampling;
# 4. build NICE and RealNVP coupling layers with a stable scale, fit flows to `moons` and `8gaussians` within
#    **0.10 nats** of the true entropy, and measure the rest of the toy zoo on a short budget.
#
# **Prerequisites.** Chapter 01 (change of variables, MLE = forward KL, the `course_utils.flows` convention).
#
# ### Notation (as in chapter 01)
# | symbol | meaning |
# |---|---|
# | $x \in \mathbb{R}^D$ | data; $z = f(x) \in \mathbb{R}^D$ base variable, $p_Z = \mathcal{N}(0, I)$ |
# | $f = f_K \circ \dots \circ f_1$ | the flow, data → base; each layer returns `(output, log_det)` |
# | $\log p_X(x) = \log p_Z(f(x)) + \sum_k \log\lvert\det J_{f_k}\rvert$ | the change-of-variables formula |
# | $x_{<i} = (x_1, \dots, x_{i-1})$ | the coordinates before $i$ in an autoregressive order |

# %%
import math

import matplotlib.pyplot as plt
import torch

from course_utils import get_device, seed_everything, set_threads
from course_utils.data import TOY_NAMES, toy
from course_utils.flows import (IAF, MADE, MAF, AffineCoupling, LULinear, QRLinear, jacobian_log_det, maf_flow,
                                randomize_, realnvp)
from course_utils.plotting import plot_density_row, plot_samples
from course_utils.training import fit_toy_density, format_table, seconds_per_call
from course_utils.widgets import flow_layers_explorer

seed_everything(0)
device = get_device()
set_threads()
print("computing on", device)


def randomize(module, scale=0.3, seed=0):
    """Random weights everywhere, in float64: checks on freshly initialised layers (often the identity) prove nothing."""
    return randomize_(module, scale, seed).double()


# %% [markdown]
# ## 1 · Composition: a flow is a list of layers
#
# For $f = f_K \circ \dots \circ f_1$ the chain rule gives $J_f(x) = J_{f_K}(h_{K-1}) \cdots J_{f_1}(x)$ with
# $h_k = f_k(h_{k-1})$, and $\det(AB) = \det A \det B$, so
# $$\log\lvert\det J_f(x)\rvert = \sum_{k=1}^K \log\lvert\det J_{f_k}(h_{k-1})\rvert .$$
# Each layer only needs its own log-det, computed where its input lands. Check on a RealNVP flow with random weights:

# %%
flow = randomize(realnvp(2, n_layers=4, hidden=(16,), linear=True), scale=0.2)
x = torch.randn(16, 2, dtype=torch.float64)
h, per_layer = x, []
for layer in flow.layers:
    h, ld = layer(h)
    per_layer.append(ld)
total = torch.stack(per_layer).sum(0)
assert torch.allclose(total, jacobian_log_det(lambda v: flow(v[None])[0][0], x), atol=1e-8)
assert torch.allclose(flow.inverse(flow(x)[0])[0], x, atol=1e-8)
print(f"{len(flow.layers)} layers: their log-dets add up to the log-det of the composition ✓")

# %% [markdown]
# ## 2 · Linear flows with an $O(D)$ log-determinant
#
# $z = Wx + b$ has $\log\lvert\det J\rvert = \log\lvert\det W\rvert$, which costs $O(D^3)$ in general. Parameterise $W$ so
# that the determinant is free:
#
# * **LU**: $W = PLU$ with a fixed permutation $P$, $L$ unit lower-triangular and $U$ upper-triangular with diagonal
#   $e^{s}$: $\det W = \pm\prod_i U_{ii}$, so $\log\lvert\det W\rvert = \sum_i s_i$. The inverse is two triangular solves.
# * **QR**: $W = QR$ with $Q$ orthogonal ($\lvert\det Q\rvert = 1$, here $Q = \exp(A - A^\top)$, the exponential of a
#   skew-symmetric matrix) and $R$ upper-triangular: again $\log\lvert\det W\rvert = \sum_i \log R_{ii}$.
#
# A linear flow alone is only a Gaussian (chapter 01), but between nonlinear layers it mixes all coordinates.
# **Check** against `torch.linalg.slogdet` in $D = 64$, and the round trip:

# %%
D = 64
# (randomize_ with the same seed would fill both layers' log-diagonals alike: different seeds, different matrices)
for layer in (randomize(LULinear(D, seed=1), 0.1, seed=0), randomize(QRLinear(D), 0.1, seed=1)):
    W = layer.weight() if isinstance(layer, LULinear) else layer.factors()[0] @ layer.factors()[1]
    x = torch.randn(8, D, dtype=torch.float64)
    z, ld = layer(x)
    assert torch.allclose(ld, torch.linalg.slogdet(W).logabsdet.expand(8), atol=1e-8)
    assert torch.allclose(layer.inverse(z)[0], x, atol=1e-8)
    print(f"{type(layer).__name__}: O(D) log-det {ld[0]:.4f} = slogdet {torch.linalg.slogdet(W).logabsdet:.4f}")
Q, _ = randomize(QRLinear(D), 0.1).factors()
assert torch.allclose(Q @ Q.T, torch.eye(D, dtype=torch.float64), atol=1e-10)   # Q is orthogonal

# %% [markdown]
# ## 3 · Planar flows, and why they are hard to invert
#
# Chapter 01's planar layer $f(x) = x + \hat u\,\tanh(w^\top x + b)$ has a cheap log-det (matrix determinant lemma),
# but no closed-form inverse: given $z$ we must solve $w^\top z = a + (w^\top \hat u)\tanh(a + b)$ for $a = w^\top x$,
# a scalar root-finding problem per sample and layer (`Planar.inverse` bisects). It is also a weak layer: each one
# bends space along a single direction $w$, so many are needed. The layers below are invertible *by construction*.
#
# ## 4 · Gaussian autoregressive flows: MADE, MAF and IAF
#
# Choose an order of the coordinates and let each one be an affine function of the ones before it:
# $$z_i = \big(x_i - \mu_i(x_{<i})\big)\, e^{-\alpha_i(x_{<i})} \qquad\Longleftrightarrow\qquad x_i = \mu_i(x_{<i}) + e^{\alpha_i(x_{<i})}\, z_i .$$
# $\partial z_i / \partial x_j = 0$ for $j > i$, so the Jacobian is **triangular** with diagonal $e^{-\alpha_i}$:
# $$\log\lvert\det J_f(x)\rvert = -\sum_i \alpha_i(x_{<i}).$$
# (The notes write $\sigma_i$ for $e^{\alpha_i}$. They also write the inverse as $x_i = \mu_i(z_{1:i-1}) + \sigma_i(z_{1:i-1})\,z_i$;
# for this flow the conditioners take $x_{<i}$, not $z_{<i}$ — the $z$-conditioned version is a *different* flow, IAF. The
# check below shows the difference.)
#
# **MADE** computes all $\mu_i, \alpha_i$ in one pass of a masked MLP: every unit gets a degree; a hidden unit of degree
# $m$ may see inputs of degree $\le m$, an output of degree $i$ only hidden units of degree $< i$. Check with autograd
# that output $i$ depends on exactly the inputs before it — for a random order:

# %%
order = torch.tensor([3, 0, 5, 1, 4, 2])           # position of each coordinate in the autoregressive order
made = randomize(MADE(6, hidden=(32, 32), order=order), 0.3)
xs = torch.randn(20, 6, dtype=torch.float64)
J = torch.stack([torch.autograd.functional.jacobian(lambda v: made(v[None])[0][0], xi) for xi in xs])  # [20, 6, 6]
allowed = order[None, :] < order[:, None]         # mu_i may depend on x_j only if j comes before i
assert (J[:, ~allowed] == 0).all()                # never on a later coordinate (nor on itself) ...
assert (J.abs().amax(0)[allowed] > 0).all()       # ... and it does use every earlier one (at some x; ReLUs switch off)
perm = torch.argsort(order)
used = (J.abs().amax(0) > 0)[perm][:, perm].int()
print("which x_j each mu_i uses, rows and columns in the autoregressive order (strictly lower-triangular):")
print(used)
assert torch.equal(torch.tril(used, -1), used)

# the MAF layer: triangular Jacobian, log-det = -sum(alpha), computed in one pass
maf = randomize(MAF(6, hidden=(32, 32), order=order), 0.3)
xb = torch.randn(10, 6, dtype=torch.float64)
z, ld = maf(xb)
assert torch.allclose(ld, jacobian_log_det(lambda v: maf(v[None])[0][0], xb), atol=1e-8)
assert torch.allclose(maf.inverse(z)[0], xb, atol=1e-8)

# the notes' slip: conditioning the inverse on z instead of x does NOT invert MAF
mu_z, alpha_z = maf._params(z)
x_wrong = mu_z + alpha_z.exp() * z
print(f"inverse with x-conditioning: error {(maf.inverse(z)[0] - xb).abs().max():.1e};"
      f" with z-conditioning (as written in the notes): error {(x_wrong - xb).abs().max():.2f}")
assert (x_wrong - xb).abs().max() > 0.1

# %% [markdown]
# ### MAF versus IAF: who pays for what
#
# * **MAF** (masked autoregressive flow) conditions on $x$: the density $\log p(x)$ is **one** MADE pass, but sampling
#   must produce $x_1$, then $x_2$ from $x_1$, …: **$D$ sequential passes**.
# * **IAF** (inverse autoregressive flow) conditions on $z$: $x_i = \mu_i(z_{<i}) + e^{\alpha_i(z_{<i})} z_i$. Sampling is
#   **one** pass, but the density of an external $x$ needs $z$, recovered one coordinate at a time: **$D$ passes**.
#   (IAF can still score its *own* samples cheaply, since it knows their $z$ — which is why it suits variational
#   posteriors, and MAF suits density estimation.)
#
# The same MADE with one Bernoulli logit per coordinate instead of $(\mu_i, \alpha_i)$ is an **autoregressive model** of
# binary data, $p(x) = \prod_i p(x_i\mid x_{<i})$ — the model of lecture 1 of the notes, and what Germain et al. built MADE
# for. It has the same costs: its exact likelihood is one pass, its samples take $D$. Chapter 03 trains one on the binary
# digits and puts it next to the VAE.
#
# Measure it: density and sampling time of one layer as $D$ grows.

# %%
dims, costs = [2, 4, 8, 16, 32, 64], {k: [] for k in ("MAF density", "MAF sampling", "IAF density", "IAF sampling")}
with torch.no_grad():
    for d in dims:
        seed_everything(0)
        maf_d, iaf_d = MAF(d, hidden=(128, 128)), IAF(d, hidden=(128, 128))
        xs = torch.randn(256, d)
        costs["MAF density"].append(seconds_per_call(lambda: maf_d(xs)))
        costs["MAF sampling"].append(seconds_per_call(lambda: maf_d.inverse(xs)))
        costs["IAF density"].append(seconds_per_call(lambda: iaf_d(xs)))
        costs["IAF sampling"].append(seconds_per_call(lambda: iaf_d.inverse(xs)))
for k, v in costs.items():
    print(f"{k:13s}" + "".join(f"{1e3 * t:8.2f}" for t in v) + "  ms  (D = " + ", ".join(map(str, dims)) + ")")
ratio_maf = costs["MAF sampling"][-1] / costs["MAF density"][-1]
ratio_iaf = costs["IAF density"][-1] / costs["IAF sampling"][-1]
print(f"at D = {dims[-1]}: MAF sampling / density = {ratio_maf:.0f}x,  IAF density / sampling = {ratio_iaf:.0f}x")
assert ratio_maf > 8 and ratio_iaf > 8

fig, ax = plt.subplots(figsize=(6, 3.2))
for (k, v), style in zip(costs.items(), ("C0-o", "C0--s", "C3-o", "C3--s")):
    ax.plot(dims, [1e3 * t for t in v], style, label=k, ms=4)
ax.set_xscale("log", base=2); ax.set_yscale("log")
ax.set_xlabel("dimension D"); ax.set_ylabel("ms per batch of 256"); ax.legend(fontsize=8)
ax.set_title("one pass vs D sequential passes")
plt.show()

# %% [markdown]
# ## 5 · Coupling layers: NICE and RealNVP
#
# Split the coordinates with a binary mask $m$: the kept half $x_m$ passes unchanged and *conditions* an affine map of the
# other half,
# $$z = m \odot x + (1 - m) \odot \big(x \odot e^{s(m \odot x)} + t(m \odot x)\big).$$
# After grouping kept coordinates first the Jacobian is block-triangular,
# $\begin{pmatrix} I & 0 \\ \ast & \mathrm{diag}(e^{s}) \end{pmatrix}$, so $\log\lvert\det J\rvert = \sum_{i \notin m} s_i$ — with $s$ and $t$
# *any* networks, never inverted: $x = m\odot z + (1-m)\odot (z - t(m \odot z))\,e^{-s(m \odot z)}$, since $m\odot z = m\odot x$.
# Density and sampling are both **one pass**. **NICE** uses $s = 0$ (additive coupling, $\det J = 1$: volume preserving,
# with one final diagonal scaling); **RealNVP** learns $s$, alternating masks so every coordinate gets transformed.
# The notes write the same family with a divided scale, $z_2 = (x_2 - \mu_\theta(x_1))/\sigma_\theta(x_1)$, hence their
# $\det = \prod_j 1/\sigma_j$; here $\sigma = e^{-s}$ and $\mu = -t\,e^{-s}$, and the log-det is $+\sum s$. Which sign is right
# for which parameterisation is exactly what the autograd check below settles.
#
# **Stable scales.** $e^{s}$ with an unbounded $s$ can overflow early in training; we use a soft clamp
# $s = b\tanh(\tilde s / b)$ and start the last conditioner layer at zero, so a new layer is the identity.

# %%
mask = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
for additive in (False, True):
    layer = randomize(AffineCoupling(6, mask, hidden=(32, 32), additive=additive), 0.3)
    x = torch.randn(10, 6, dtype=torch.float64)
    z, ld = layer(x)
    keep, free = mask.bool(), ~mask.bool()
    Jx = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x[0])
    assert (Jx[keep][:, keep] == torch.eye(3, dtype=torch.float64)).all() and (Jx[keep][:, free] == 0).all()
    assert torch.allclose(Jx[free][:, free], torch.diag(torch.diagonal(Jx[free][:, free])))  # diagonal block
    assert torch.allclose(ld, jacobian_log_det(lambda v: layer(v[None])[0][0], x), atol=1e-8)
    assert torch.allclose(layer.inverse(z)[0], x, atol=1e-8)
    if additive:
        assert torch.allclose(ld, torch.zeros(10, dtype=torch.float64))                 # NICE: volume preserving
    else:
        _, s = layer._shift_and_log_scale(x * mask)
        assert torch.allclose(ld, (s * (1 - mask)).sum(-1)) and s.abs().max() < layer.bound  # RealNVP: sum of log-scales
    print(f"{'NICE (additive)' if additive else 'RealNVP (affine)'} coupling: block-triangular Jacobian, log-det ✓, inverse ✓")

# %% [markdown]
# ## 6 · Fitting the toy zoo
#
# In two dimensions a MAF layer is a coupling layer in disguise (coordinate 1 sees nothing, coordinate 2 sees
# coordinate 1), so MAF and RealNVP stacks are close relatives here; the difference in cost matters from chapter 03 on,
# in many dimensions. The chapter's best flow on the toy zoo: 8 MAF layers with reversed order in between, MADE
# conditioners of $2 \times 64$ units, after a standardising affine layer.
#
# First the two targets with a stated goal — **KL gap below 0.10 nats** on `moons` and `8gaussians`, each with the budget
# it needs (600 steps for `moons`; 2000 steps at a larger batch for `8gaussians`, whose eight separate blobs are the harder
# shape, see below) — then every other target of the zoo with a short budget of 400 steps (and the gap it reaches in it).
# The gap of a goal target is estimated on enough test points that its standard error is a small fraction of the margin.

# %%
def best_flow(x_train):
    return maf_flow(2, n_layers=8, hidden=(64, 64), data=x_train)


# steps, batch size and test points of the two goal targets (test points are cheap: one pass each, no gradient;
# moons' exact density needs a quadrature per point, 8gaussians' is a sum of eight Gaussians)
goal_budget = {"moons": (600, 1024, 100_000), "8gaussians": (2000, 2048, 500_000)}
results, trained = [], {}
for name, (steps, batch, n_test) in goal_budget.items():
    model, history, row = fit_toy_density(best_flow, name, steps=steps, batch_size=batch, lr=1e-2, n_test=n_test, device=device)
    results.append(row)
    trained[name] = (model.cpu(), history)
    # the goal with a margin: the gap is below 0.10 nats by more than 3 standard errors of its estimate
    print(f"{name}: KL gap {row['KL gap']:.4f} ± {row['± s.e.']:.4f} nats ({n_test:,} test points); "
          f"gap + 3 s.e. = {row['KL gap'] + 3 * row['± s.e.']:.4f} < 0.10")
    assert row["KL gap"] + 3 * row["± s.e."] < 0.10, f"{name}: KL gap {row['KL gap']:.3f} ± {row['± s.e.']:.3f} nats misses the 0.10 goal"
for name in TOY_NAMES:
    if name not in trained:
        model, history, row = fit_toy_density(best_flow, name, steps=400, batch_size=1024, lr=1e-2, device=device)
        results.append(row)
        trained[name] = (model.cpu(), history)
print(format_table(results, ["target", "test NLL", "entropy", "KL gap", "± s.e.", "steps", "seconds", "params"]))
assert all(r["KL gap"] > -3 * r["± s.e."] for r in results)  # a KL is never negative, up to Monte Carlo error

# %% [markdown]
# The learned densities against the truth (in each column the two share one colour scale), and samples drawn through the
# inverse (MAF sampling: $D = 2$ passes per layer):

# %%
fig, axes = plt.subplots(3, len(TOY_NAMES), figsize=(2.1 * len(TOY_NAMES), 6.6))
gap = {r["target"]: r["KL gap"] for r in results}
for j, name in enumerate(TOY_NAMES):
    target, (model, _) = toy(name), trained[name]
    plot_density_row(axes[:2, j], [target.log_prob, model.log_prob], target.lims, n=120,    # truth and model: one scale
                     titles=[name, f"flow, gap {gap[name]:.2f}"], colorbar=False)
    with torch.no_grad():
        plot_samples(axes[2, j], model.sample(1500, generator=torch.Generator().manual_seed(0)), target.lims)
axes[0, 0].set_ylabel("true density"); axes[1, 0].set_ylabel("learned density"); axes[2, 0].set_ylabel("flow samples")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Why flows fail where they fail.** The model is $p_\theta(x) = p_Z(f(x))\,\lvert\det J_f(x)\rvert$ with $f$ a
# diffeomorphism of $\mathbb{R}^2$ onto itself, so the model's samples are $f^{-1}$ of Gaussian samples. A continuous map
# sends a connected set to a connected set and cannot tear or puncture it: the base $\mathcal{N}(0, I)$ is one piece
# without holes, so the flow can only *squeeze* the regions between the target's pieces to a small but positive density,
# never to zero. Look for the traces in the middle row: the thin filaments joining neighbouring blobs of `8gaussians`
# and the two arcs of `moons`, the density left inside the gap of `circles`, and the flow samples strung along those
# bridges in the bottom row. For the targets trained to the goal, separate pieces and holes are where the remaining KL
# gap lives; squeezing a bridge thinner needs ever larger Jacobians, so the gap shrinks only slowly with more layers.
# (`circles`, `swissroll` and `spirals` get only the short budget here: their blur is mostly undertraining, not topology.)
#
# ## 7 · Explore: a flow, layer by layer
#
# Move the slider to apply the first $k$ layers of the trained `8gaussians` flow to data and to a grid (data → base),
# or the last $k$ inverse layers to base samples (base → data). Points are coloured by their running $\log\lvert\det\rvert$;
# the right panel shows how the mean log-det adds up layer by layer. Watch where the grid is stretched (the density
# falls) and where it is squeezed.

# %%
flow_layers_explorer(trained["8gaussians"][0], toy("8gaussians").sample((2000,), generator=torch.Generator().manual_seed(1)))

# %% [markdown]
# ## Pitfalls
# * **Which direction is cheap.** MAF: density in one pass, sampling in $D$. IAF: the reverse. Coupling: both cheap, at
#   the price of transforming only half the coordinates per layer (so alternate the masks, or mix with a linear layer).
# * **Check log-dets on random weights.** Coupling layers start as the identity; a wrong log-det is invisible there.
# * **Unbounded scales** overflow; clamp softly. **Zero-initialise** the last conditioner layer to start at the identity.
# * **Conditioning on the wrong variable** ($z$ instead of $x$) silently gives a different flow (the notes' slip above).
# * **Report KL gaps, not losses**: the toy targets have exact densities, so the test NLL minus the entropy is a KL.
#
# ## Summary
# * Log-dets of composed layers add; every layer needs a cheap log-det and an inverse.
# * LU/QR linear flows: $O(D)$ log-dets. Autoregressive flows: triangular Jacobians, MAF for densities, IAF for
#   sampling. Coupling flows (NICE, RealNVP): both directions in one pass.
# * A stack of 8 MAF layers fits `moons` (600 steps) and `8gaussians` (2000 steps at batch 2048) within 0.10 nats (the
#   table's `seconds` column gives the time this run took).
#
# **Homework 02** (`exercises/hw02_normalizing_flows/`): an affine coupling layer, MADE masks, a MAF density and sampling
# pair, and training a coupling flow to a stated KL gap.
