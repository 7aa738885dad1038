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
# # 08 · Continuous time: ODE flows, the probability-flow ODE, DDIM and flow matching
#
# **Follows** lectures 9.2 and 10 of the course notes (`003`: continuous-time flows, Euler and Heun, Picard, the
# continuity equation, SDEs, Kolmogorov–Fokker–Planck, DDIM and the probability-flow ODE), the flow-matching part of
# `001`, and §11.5, §13, §14 of `004`. Builds on chapters 02 (flows and exact likelihoods), 06 (scores) and 07 (DDPM).
#
# **Goals.** By the end you can
# 1. write Euler and Heun, read their orders off a log–log plot, and count the cost of a sampler in function evaluations (NFE);
# 2. derive the instantaneous change of variables $\frac{d}{dt}\log p_t(x(t)) = -\operatorname{tr}\frac{\partial f}{\partial x}$ and
#    compute exact likelihoods of an ODE flow, with the exact trace or Hutchinson's estimator;
# 3. simulate an SDE with Euler–Maruyama and check its Fokker–Planck equation; see the VP-SDE as the limit of chapter 07's chain;
# 4. derive the probability-flow ODE, sample a DDPM with DDIM, Euler and Heun at a fraction of the NFE, and get its exact likelihood;
# 5. train flow matching, check that the conditional loss equals the marginal one plus a constant, and straighten the paths
#    with an optimal-transport coupling.
#
# **Prerequisites.** Chapter 02 (change of variables, KL gaps against exact densities), chapter 06 (scores, the exact
# mixture score), chapter 07 (the DDPM chain, `Schedule`, the ε-network).
#
# ### Notation
# | symbol | meaning |
# |---|---|
# | $f(x, t)$, called `f(t, x)` | a vector field (torchdiffeq's argument order); $\psi_t$ its flow |
# | $h$, $K$, NFE | step size, number of steps, number of evaluations of $f$ (Euler: $K$, Heun: $2K$) |
# | $\operatorname{div} f = \operatorname{tr}\partial f/\partial x$ | divergence |
# | $dx = f\,dt + g(t)\,dw$ | an SDE: drift $f$, diffusion coefficient $g$, Wiener process $w$ |
# | $\beta(t) = \beta_{\min} + t(\beta_{\max} - \beta_{\min})$, $\alpha(t)^2 = \bar\alpha(t)$ | the VP-SDE on $t \in [0, 1]$: **data at $t = 0$, noise at $t = 1$** |
# | $s(x, t) = \nabla_x \log p_t(x)$ | the score |
# | $x_0 \sim \mathcal{N}(0, I)$, $x_1 \sim p_{\text{data}}$, $x_t = (1 - t)x_0 + t x_1$ | flow matching: **noise at $t = 0$, data at $t = 1$** (as in `001`) |
# | $u_t(x \mid x_0, x_1) = x_1 - x_0$, $u_t(x)$ | conditional and marginal velocity |
#
# The two halves of the chapter run time in opposite directions because their sources do; every function below says which.

# %%
import inspect
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchdiffeq

from course_utils import get_device, seed_everything, set_threads
from course_utils.data import load_digits, toy
from course_utils.diffusion import Schedule, ancestral_sample, train_ddpm
from course_utils.flow_matching import (LinearPath, VelocityMLP, cfm_loss, fm_log_prob, fm_sample, gmm_marginal_velocity,
                                        ot_coupling, straightness, train_flow_matching)
from course_utils.metrics import relative_to_noise_floor, sliced_wasserstein
from course_utils.ode import (VPSDE, CountNFE, OrnsteinUhlenbeck, ddim_sample, divergence, divergence_hutchinson,
                              eps_to_score_fn, euler_maruyama, heun_step, ode_log_likelihood, odeint,
                              standard_normal_log_prob)
from course_utils.plotting import image_grid, plot_samples
from course_utils.score import mixture_score
from course_utils.training import format_table
from course_utils.widgets import ode_explorer

seed_everything(0)
device = get_device()


def swd(a, b):
    """Sliced Wasserstein-2 distance between two samples (the course's sample distance here; always >= 0)."""
    return sliced_wasserstein(a.double().cpu(), b.double().cpu())


set_threads()
print("computing on", device)

# %% [markdown]
# ## 1 · ODEs and their solvers
#
# An ODE $\frac{dx}{dt} = f(x(t), t)$, $x(t_0) = x_0$ has, when $f$ is Lipschitz in $x$ (Picard), a unique solution, so its
# flow $\psi_t$ is invertible: run the same ODE backwards in time. A solver replaces the integral
# $x(t+h) = x(t) + \int_t^{t+h} f\,ds$ by a quadrature:
# * **Euler**: $x(t+h) \approx x(t) + h\,f(x(t), t)$ (left-point rule: local error $O(h^2)$, global $O(h)$; 1 NFE per step);
# * **Heun**: predict $x' = x + h f(x, t)$, then $x(t+h) \approx x(t) + \frac h2\big(f(x, t) + f(x', t+h)\big)$
#   (trapezoid rule: global $O(h^2)$; 2 NFE per step).
#
# The package's Heun step, and a check that `odeint` agrees call for call with `torchdiffeq.odeint` (its `euler` and `heun2`):

# %%
print(inspect.getsource(heun_step))
field = lambda t, x: torch.sin(x) * torch.cos(3 * t) - 0.5 * x   # noqa: E731  any smooth field
x_a = torch.randn(64, 2, dtype=torch.float64)
ts = torch.linspace(0, 1, 11, dtype=torch.float64)
for ours, theirs in (("euler", "euler"), ("heun", "heun2")):
    a, b = odeint(field, x_a, ts, ours), torchdiffeq.odeint(field, x_a, ts, method=theirs)
    assert a.shape == (11, 64, 2) and torch.allclose(a, b, atol=1e-12)
print("odeint == torchdiffeq.odeint for euler and heun (shape [len(ts), *x0.shape])")

# %% [markdown]
# **Orders.** On $\frac{dx}{dt} = \cos(t)\,x$, whose solution is $x(t) = x_0 e^{\sin t}$, the global error at $t = 2$ against the
# number of steps $K$ falls like $K^{-1}$ for Euler and $K^{-2}$ for Heun: read the slopes off the log–log plot. Per NFE Heun
# wins as soon as the error asked for is small. The adaptive Dormand–Prince solver (`dopri5`, order 5 with an error
# estimate) is the reference: it picks its own steps; we count its NFE for the same error.

# %%
f_cos = lambda t, x: torch.cos(t) * x                            # noqa: E731
x_c, exact = torch.ones(1, 1, dtype=torch.float64), math.exp(math.sin(2.0))
Ks = [4, 8, 16, 32, 64, 128, 256]
errors, nfes = {}, {}
for method in ("euler", "heun"):
    errors[method], nfes[method] = [], []
    for K in Ks:
        g = CountNFE(f_cos)
        errors[method].append(abs(odeint(g, x_c, torch.linspace(0, 2, K + 1, dtype=torch.float64), method)[-1].item() - exact))
        nfes[method].append(g.nfe)
slopes = {m: -np.polyfit(np.log(Ks[2:]), np.log(errors[m][2:]), 1)[0] for m in errors}
print({m: round(s, 3) for m, s in slopes.items()})
assert abs(slopes["euler"] - 1) < 0.1 and abs(slopes["heun"] - 2) < 0.1
dopri = {}
for tol in (1e-3, 1e-5, 1e-7):
    g = CountNFE(f_cos)
    x2 = torchdiffeq.odeint(g, x_c, torch.tensor([0.0, 2.0], dtype=torch.float64), method="dopri5", rtol=tol, atol=tol)[-1]
    dopri[tol] = (g.nfe, abs(x2.item() - exact))
print("dopri5 (NFE, error):", dopri)
fig, ax = plt.subplots(figsize=(5, 3.6))
for m in errors:
    ax.loglog(nfes[m], errors[m], "o-", label=f"{m} (slope in K: {slopes[m]:.2f})")
ax.loglog(*zip(*dopri.values()), "s--", label="dopri5 (adaptive)")
ax.set_xlabel("NFE"); ax.set_ylabel("|x(2) - exact|"); ax.legend(fontsize=8, loc="lower left")
ax.set_title("global error against cost", fontsize=9)
plt.show()
print(f"Heun at NFE {nfes['heun'][-1]}: error {errors['heun'][-1]:.1e};  dopri5 at NFE {dopri[1e-7][0]}: error {dopri[1e-7][1]:.1e}")
assert dopri[1e-7][0] < nfes["heun"][-1] and dopri[1e-7][1] < errors["heun"][-1]   # order 5 + adaptivity: fewer NFE, smaller error

# %% [markdown]
# ## 2 · The instantaneous change of variables
#
# Let $x(t)$ solve the ODE and $p_t$ be the law of $x(t)$ when $x(t_0) \sim p_{t_0}$. Mass is conserved, so $p_t$ obeys the
# **continuity equation** $\partial_t p_t = -\operatorname{div}(f p_t)$. Along a trajectory,
# $$\frac{d}{dt}\log p_t(x(t)) = \frac{\partial_t p_t + \nabla p_t \cdot f}{p_t} = \frac{-p_t \operatorname{div} f - f\cdot\nabla p_t + \nabla p_t\cdot f}{p_t}
# = -\operatorname{tr}\frac{\partial f}{\partial x}(x(t), t),$$
# so $\log p_1(x(1)) = \log p_0(x(0)) - \int_0^1 \operatorname{tr}\frac{\partial f}{\partial x}\,dt$. To evaluate $\log p_1(x)$ at a data point,
# integrate the pair $(x, \ell)$ with $\frac{d}{dt}(x, \ell) = (f, -\operatorname{div} f)$ **backwards** from $(x, 0)$ at the data time to the
# noise time; then $\log p_{\text{data}}(x) = \log p_{\text{noise}}(x_{\text{end}}) - \ell_{\text{end}}$ (`ode_log_likelihood`).
# Unlike a discrete flow, the log-det is a trace (D backward passes, or one with Hutchinson), and $f$ need not be invertible.
#
# **Check 1, a linear field** $f = Ax$: $x(1) = e^{A}x(0)$, so $p_1 = \mathcal{N}(0, e^{A}e^{A^\top})$ in closed form. A sign slip in the
# divergence, or integrating it forwards, misses it by $2\operatorname{tr}A$.

# %%
A = torch.tensor([[0.3, -0.8], [0.5, -0.1]], dtype=torch.float64)
lin = lambda t, x: x @ A.T                                        # noqa: E731
xs = torch.randn(500, 2, dtype=torch.float64)
M = torch.linalg.matrix_exp(A)
truth = torch.distributions.MultivariateNormal(torch.zeros(2, dtype=torch.float64), M @ M.T).log_prob(xs)
lp = ode_log_likelihood(lin, xs, t_data=1.0, t_noise=0.0, steps=100, method="heun")
print(f"linear field: largest error {(lp - truth).abs().max():.2e} nats (2 tr A = {2 * torch.trace(A):.2f})")
assert (lp - truth).abs().max() < 1e-4                      # Heun, 100 steps; a sign slip is off by 0.4

# %% [markdown]
# **Check 2, a small neural field.** No closed form now: push $\mathcal{N}(0, I)$ through a random MLP field and evaluate
# $\log p_1$ on a grid. A density must integrate to 1; a wrong sign or a dropped term makes the grid sum drift far from it.
# We also compare with a histogram of pushed samples.

# %%
torch.manual_seed(1)
net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 2)).double()
with torch.no_grad():
    net[2].weight.mul_(3.0)
nf = lambda t, x: net(torch.cat([x, t.expand(len(x), 1)], 1))    # noqa: E731
g1 = torch.linspace(-6, 6, 121, dtype=torch.float64)
grid = torch.stack(torch.meshgrid(g1, g1, indexing="xy"), -1).reshape(-1, 2)
logp_grid = ode_log_likelihood(nf, grid, 1.0, 0.0, steps=40, method="heun")
mass = (logp_grid.exp().sum() * (g1[1] - g1[0]) ** 2).item()
with torch.no_grad():
    pushed = odeint(nf, torch.randn(100_000, 2, dtype=torch.float64), torch.linspace(0, 1, 41, dtype=torch.float64), "heun")[-1]
hist, _, _ = np.histogram2d(pushed[:, 0].numpy(), pushed[:, 1].numpy(), bins=24, range=[[-6, 6], [-6, 6]], density=True)
coarse = logp_grid.exp().reshape(121, 121)[:-1, :-1].reshape(24, 5, 24, 5).mean((1, 3)).T.numpy()
print(f"grid integral of exp(log p_1): {mass:.4f}; histogram vs density, largest difference {np.abs(hist - coarse).max():.3f}"
      f" (peak density {coarse.max():.3f})")
assert abs(mass - 1) < 0.01 and np.abs(hist - coarse).max() < 0.1 * coarse.max()
fig, axs = plt.subplots(1, 2, figsize=(7, 3.3))
vmax = max(hist.max(), coarse.max())
axs[0].imshow(coarse.T, origin="lower", extent=(-6, 6, -6, 6), vmin=0, vmax=vmax); axs[0].set_title("exp(ODE log-density)", fontsize=9)
axs[1].imshow(hist.T, origin="lower", extent=(-6, 6, -6, 6), vmin=0, vmax=vmax); axs[1].set_title("histogram of pushed samples", fontsize=9)
plt.show()

# %% [markdown]
# **Hutchinson's estimator.** For any probe with $\mathbb{E}[\varepsilon\varepsilon^\top] = I$, $\mathbb{E}[\varepsilon^\top A\varepsilon] = \operatorname{tr}(A\,\mathbb{E}\varepsilon\varepsilon^\top) = \operatorname{tr}A$:
# one vector–Jacobian product instead of $D$. Its variance, from the fourth moments of the probe:
# Gaussian $\|A\|_F^2 + \operatorname{tr}(A^2)$; Rademacher ($\pm1$, so $\varepsilon_i^2 = 1$ exactly) the same minus $2\sum_i A_{ii}^2$: never worse.
# Measured at one point of the neural field, against the formula (probes in the input's dtype: float64 here):

# %%
x_h = torch.tensor([[0.7, -0.4]], dtype=torch.float64)
t_h = torch.tensor(0.5, dtype=torch.float64)
J = torch.autograd.functional.jacobian(lambda y: nf(t_h, y[None])[0], x_h[0])
fro, tr2, d2 = (J ** 2).sum().item(), torch.trace(J @ J).item(), (J.diagonal() ** 2).sum().item()
reps = x_h.expand(20_000, 2)
exact_div = divergence(nf, t_h, x_h).item()
for probe, formula in (("rademacher", fro + tr2 - 2 * d2), ("gaussian", fro + tr2)):
    est = divergence_hutchinson(nf, t_h, reps, probe=probe, generator=torch.Generator().manual_seed(0))
    se = math.sqrt(formula / len(est))
    print(f"{probe:>10}: mean {est.mean():.4f} (exact {exact_div:.4f}, s.e. {se:.4f}), variance {est.var():.3f} (formula {formula:.3f})")
    assert est.dtype == torch.float64 and abs(est.mean().item() - exact_div) < 4 * se and abs(est.var().item() / formula - 1) < 0.05

# %% [markdown]
# ## 3 · SDEs and the Fokker–Planck equation
#
# An SDE $dx = f(x, t)\,dt + g(t)\,dw$ adds Brownian noise, $dw \sim \mathcal{N}(0, dt\,I)$. **Euler–Maruyama**:
# $x_{t+h} = x_t + f h + g\sqrt{h}\,\varepsilon$, with $\varepsilon$ drawn once per step (a diffusion coefficient that draws its own
# noise adds it twice). The law obeys the **Kolmogorov–Fokker–Planck** equation
# $\partial_t p = -\operatorname{div}(f p) + \tfrac12 g^2 \Delta p$.
#
# **Ornstein–Uhlenbeck**, $dx = -\theta x\,dt + \sigma\,dw$: from $x_0 \sim \mathcal{N}(m_0, s_0^2)$ the law stays Gaussian with mean
# $m_0 e^{-\theta t}$ and variance $s_0^2 e^{-2\theta t} + \frac{\sigma^2}{2\theta}(1 - e^{-2\theta t})$; the stationary variance is $\sigma^2/(2\theta)$
# (not $\sigma^2/\theta$). Check the PDE by finite differences on the closed form, then simulated histograms against it.

# %%
ou, m0, s0 = OrnsteinUhlenbeck(theta=1.5, sigma=1.2), 2.0, 0.3
def ou_density(x, t):
    m, var = m0 * math.exp(-ou.theta * t), s0 ** 2 * math.exp(-2 * ou.theta * t) + ou.marginal(torch.zeros(1), t)[1] ** 2
    return np.exp(-(x - m) ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)
xg, dx, t0, dt = np.linspace(-4, 5, 901), 0.01, 0.4, 1e-5
p = ou_density(xg, t0)
lhs = (ou_density(xg, t0 + dt) - ou_density(xg, t0 - dt)) / (2 * dt)
rhs = ou.theta * np.gradient(xg * p, dx) + 0.5 * ou.sigma ** 2 * np.gradient(np.gradient(p, dx), dx)
print(f"Fokker-Planck residual: {np.abs(lhs - rhs)[5:-5].max():.1e} (|dp/dt| up to {np.abs(lhs).max():.2f})")
assert np.abs(lhs - rhs)[5:-5].max() < 1e-3 * np.abs(lhs).max()
x0_ou = m0 + s0 * torch.randn(100_000, 1, dtype=torch.float64)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for k, t_end in enumerate((0.2, 0.6, 3.0)):
    x_t = euler_maruyama(ou.drift, ou.diffusion, x0_ou, torch.linspace(0, t_end, int(200 * t_end) + 1, dtype=torch.float64),
                         generator=torch.Generator().manual_seed(k))
    h, edges = np.histogram(x_t.numpy(), bins=60, range=(-4, 5), density=True)
    mid = 0.5 * (edges[1:] + edges[:-1])
    se = np.sqrt(np.maximum(ou_density(mid, t_end), 1e-4) / (len(x_t) * (edges[1] - edges[0])))
    assert np.abs(h - ou_density(mid, t_end)).max() < 5 * se.max() + 0.01, t_end   # EM's O(h) bias is the 0.01
    ax.stairs(h, edges, color=f"C{k}", label=f"EM histogram, t = {t_end}")
    ax.plot(xg, ou_density(xg, t_end), color=f"C{k}", ls="--", lw=1)
print(f"t = 3: variance {x_t.var():.4f}; sigma^2/(2 theta) = {ou.stationary_var:.4f}")
assert abs(x_t.var().item() / ou.stationary_var - 1) < 0.02
ax.legend(fontsize=8, loc="upper left"); ax.set_xlabel("x"); ax.set_title("OU: simulated (steps) vs closed form (dashed)", fontsize=9)
plt.show()

# %% [markdown]
# **The VP-SDE is the limit of chapter 07's chain.** The chain $x_i = \sqrt{1 - \beta_i}\,x_{i-1} + \sqrt{\beta_i}\,\varepsilon$ with
# $\beta_i = \beta(i/T)/T$ is, to first order in $1/T$, an Euler–Maruyama step of $dx = -\tfrac12\beta(t)x\,dt + \sqrt{\beta(t)}\,dw$ with $h = 1/T$.
# Its marginal is $\mathcal{N}(\alpha(t)x_0, (1 - \alpha(t)^2)I)$ with $\log\alpha(t) = -\tfrac12\int_0^t\beta = -\tfrac14 t^2(\beta_{\max} - \beta_{\min}) - \tfrac12 t\beta_{\min}$.
# `Schedule.linear(1000)` ($\beta$ from $10^{-4}$ to $0.02$) matches $\beta_{\min} = 0.1$, $\beta_{\max} = 20$ up to a one-step shift of
# the grid ($\beta(1/T)/T = 1.2\cdot10^{-4}$ against the chain's $\beta_1 = 10^{-4}$; the gap in $\bar\alpha$ is printed below):

# %%
sde, T = VPSDE(beta_min=0.1, beta_max=20.0), 1000
chain = Schedule.linear(T)
i = torch.arange(T + 1)
gap_ab = (chain.alpha_bars - sde.alpha_bar(i / T)).abs().max().item()
print(f"max |abar_chain(i) - alpha(i/T)^2| = {gap_ab:.1e}; abar at t = 1: {sde.alpha_bar(1.0).item():.1e}")
assert gap_ab < 2e-3
mean, std = sde.marginal_prob(torch.ones(3, 1, 8, 8), torch.tensor([0.1, 0.5, 1.0]))   # any data shape broadcasts
assert mean.shape == (3, 1, 8, 8) and std.shape == (3, 1, 1, 1)

# %% [markdown]
# ## 4 · The probability-flow ODE
#
# Fokker–Planck with $g = g(t)$: write $\tfrac12 g^2\Delta p = \operatorname{div}(\tfrac12 g^2 \nabla p) = \operatorname{div}(\tfrac12 g^2 p\,\nabla\log p)$, so
# $$\partial_t p_t = -\operatorname{div}\Big(\big[f - \tfrac12 g^2\nabla\log p_t\big]\,p_t\Big):$$
# a **continuity equation**. The ODE $dx = \big[f - \tfrac12 g^2 s(x, t)\big]dt$ therefore carries the same marginals $p_t$ as the SDE,
# without noise: the **probability-flow ODE**. The reverse-time SDE $dx = [f - g^2 s]\,dt + g\,d\bar w$ does too
# (`VPSDE.reverse(score_fn, probability_flow=False | True)`).
#
# **Measured with the exact score.** For `8gaussians` (a mixture of $\mathcal{N}(\mu_k, 0.25^2 I)$) the VP-SDE's marginal at $t$ is the
# mixture with means $\alpha\mu_k$ and variance $\alpha^2 0.25^2 + 1 - \alpha^2$, so its score is exact (`score.mixture_score`). Start both
# reverse processes from $\mathcal{N}(0, I)$ at $t = 1$ and compare their samples at several $t$ with fresh draws of the exact $p_t$:
# sliced Wasserstein distance ÷ its noise floor (1 = as close as two exact samples are to each other).

# %%
eight = toy("8gaussians")
MU, S8 = eight.centers.float(), eight.std

def p_t_params(t):
    a = math.exp(sde.log_alpha(t))
    return MU * a, math.sqrt(a * a * S8 ** 2 + 1 - a * a)

def exact_score(x, t):
    tt = float(t.reshape(-1)[0])            # the samplers call with one time for the whole batch
    m, s = p_t_params(tt)
    return mixture_score(x, m, s)[1]

def sampler_p_t(t, seed):
    """Fresh draws of the exact p_t on every call (a seeded stream: the noise floor needs two different draws)."""
    m, s = p_t_params(t)
    g = torch.Generator().manual_seed(seed)
    return lambda n: m[torch.randint(len(m), (n,), generator=g)] + s * torch.randn(n, 2, generator=g)

rev_sde, pf_ode = sde.reverse(exact_score), sde.reverse(exact_score, probability_flow=True)
checkpoints, n8 = [1.0, 0.5, 0.3, 0.1, 0.001], 2000
grid_t = torch.linspace(1.0, 0.001, 300)
keep = [int(torch.argmin((grid_t - c).abs())) for c in checkpoints]
z = torch.randn(n8, 2, generator=torch.Generator().manual_seed(0))
path_ode = odeint(pf_ode.ode_field, z, grid_t, "heun")
path_sde = euler_maruyama(rev_sde.drift, rev_sde.diffusion, z, grid_t, generator=torch.Generator().manual_seed(1), keep_path=True)
rows = []
for c, k in zip(checkpoints, keep):
    r = {"t": c}
    for name, pth in (("SDE", path_sde), ("ODE", path_ode)):
        r[name] = relative_to_noise_floor(swd, pth[k], sampler_p_t(c, seed=10 + k))["ratio"]
    rows.append(r)
print(format_table(rows))
assert all(r["SDE"] < 3 and r["ODE"] < 3 for r in rows)   # both sit on the exact p_t (a wrong sign drifts away; a missing 1/2 is caught by the cluster spread below)

# %% [markdown]
# With the wrong factor — the reverse-SDE drift $f - g^2 s$ integrated *without* noise — the ODE collapses each cluster onto
# its centre: the spread of the samples around the nearest centre, against its exact value, shows it at once.

# %%
wrong = lambda t, x: rev_sde.drift(t, x)                       # noqa: E731  g^2 instead of g^2 / 2, no noise
x_wrong = odeint(wrong, z, grid_t, "heun")[-1]
ratio_wrong = relative_to_noise_floor(swd, x_wrong, sampler_p_t(0.001, 99))["ratio"]
def cluster_spread(x):
    """RMS distance to the nearest centre ÷ its exact value sqrt(2) * std (1 for the right law)."""
    return torch.cdist(x.double(), MU.double()).min(1).values.pow(2).mean().sqrt().item() / (math.sqrt(2) * S8)

spreads = {name: cluster_spread(xx) for name, xx in (("SDE", path_sde[-1]), ("PF-ODE", path_ode[-1]), ("f - g²s, no noise", x_wrong))}
print(f"drift f - g^2 s without noise: distance / floor = {ratio_wrong:.1f}; cluster spread / exact: "
      + ", ".join(f"{k} {v:.2f}" for k, v in spreads.items()))
assert abs(spreads["SDE"] - 1) < 0.05 and abs(spreads["PF-ODE"] - 1) < 0.05 and spreads["f - g²s, no noise"] < 0.8
fig, axs = plt.subplots(1, 3, figsize=(9, 3))
for ax, xx, title in zip(axs, (path_sde[-1], path_ode[-1], x_wrong), ("reverse SDE", "PF-ODE", "f - g²s, no noise")):
    plot_samples(ax, xx, title=title, s=1)
plt.show()

# %% [markdown]
# **The PF-ODE gives exact likelihoods**: it is an ODE flow from $\mathcal{N}(0, I)$ (at $t = 1$, up to $\bar\alpha(1) \approx 4\cdot10^{-5}$)
# to $p_\epsilon$, so section 2 applies. With the exact score its log-likelihood must be the mixture's own log-density:

# %%
x_eval = eight.sample((1000,), generator=torch.Generator().manual_seed(3))
m_eps, s_eps = p_t_params(1e-3)
lp_pf = ode_log_likelihood(pf_ode.ode_field, x_eval, t_data=1e-3, t_noise=1.0, steps=200, method="heun")
lp_true = mixture_score(x_eval, m_eps, s_eps)[0]
print(f"PF-ODE log-likelihood with the exact score vs log p_eps: mean difference {(lp_true - lp_pf).mean():.4f}, "
      f"largest {(lp_true - lp_pf).abs().max():.4f} nats")
assert (lp_true - lp_pf).abs().max() < 0.05

# %% [markdown]
# ### A trained DDPM: ancestral sampling, DDIM, Euler and Heun against NFE
#
# Chapter 07's ε-network (`train_ddpm`) on `moons`, on the $T = 1000$ linear chain, i.e. the VP-SDE above. Its score is
# $s(x, t) = -\varepsilon_\theta(x, tT)/\sqrt{1 - \bar\alpha(t)}$ (`eps_to_score_fn`). **DDIM** (η = 0) visits $K$ of the $T$ steps and jumps
# $x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1 - \bar\alpha_s}\,\hat\varepsilon$; η = 1 adds the ancestral noise on the coarse grid.
#
# **DDIM is Euler on the PF-ODE in the right variables.** With $\bar x = x/\sqrt{\bar\alpha}$ and $\sigma = \sqrt{(1 - \bar\alpha)/\bar\alpha}$ the
# PF-ODE of the VP-SDE becomes $\frac{d\bar x}{d\sigma} = \varepsilon_\theta(x, t)$, and one Euler step in $\sigma$,
# $\bar x_s = \bar x_t + (\sigma_s - \sigma_t)\,\hat\varepsilon$, is exactly the DDIM update (multiply by $\sqrt{\bar\alpha_s}$). Checked below on one step.

# %%
moons = toy("moons")
g_m = torch.Generator().manual_seed(0)
x_moons = moons.sample((20_000,), generator=g_m).to(device)
ddpm, _ = train_ddpm(x_moons, chain, hidden=128, depth=3, steps=1200, batch=256, desc="DDPM, moons (T = 1000)")
eps_fn = lambda x, t: ddpm(x, t)                                  # noqa: E731
x_t = torch.randn(5, 2, device=device)
t_, s_ = 800, 600
with torch.no_grad():
    ddim_one = ddim_sample(eps_fn, Schedule(chain.betas[: t_ + 1].clone()), (5, 2), steps=1, x_T=x_t)  # T' = 800 -> 0 is one step
    a_t, a_s = chain.alpha_bars[t_].item(), chain.alpha_bars[0].item()
    e = eps_fn(x_t, torch.full((5,), t_))
    sig = lambda a: math.sqrt((1 - a) / a)                        # noqa: E731
    euler_sigma = math.sqrt(a_s) * (x_t / math.sqrt(a_t) + (sig(a_s) - sig(a_t)) * e)
assert torch.allclose(ddim_one, euler_sigma, atol=1e-5)
print("DDIM step == Euler step of dx̄/dσ = ε_θ")

# %%
def sample_distance(x, seed=7):
    """Sliced W2 to fresh moons data ÷ the distance between two fresh draws (seeded stream)."""
    g = torch.Generator().manual_seed(seed)
    return relative_to_noise_floor(swd, x.cpu(), lambda n: moons.sample((n,), generator=g))["ratio"]

n_s, gen = 2000, lambda: torch.Generator().manual_seed(42)   # noqa: E731
score_m = eps_to_score_fn(eps_fn, sde, T)
pf_m = sde.reverse(score_m, probability_flow=True)
with torch.no_grad():
    anc = sample_distance(ancestral_sample(eps_fn, chain, (n_s, 2), generator=gen(), device=device))
    curves = {"DDIM η=0": [], "DDIM η=1": [], "Euler (PF-ODE)": [], "Heun (PF-ODE)": []}
    for K in (5, 10, 20, 50):
        curves["DDIM η=0"].append((K, sample_distance(ddim_sample(eps_fn, chain, (n_s, 2), K, 0.0, gen(), device=device))))
        curves["DDIM η=1"].append((K, sample_distance(ddim_sample(eps_fn, chain, (n_s, 2), K, 1.0, gen(), device=device))))
        z0 = torch.randn(n_s, 2, generator=gen()).to(device)
        for name, method, k in (("Euler (PF-ODE)", "euler", K), ("Heun (PF-ODE)", "heun", K // 2)):
            f = CountNFE(pf_m.ode_field)
            xK = odeint(f, z0, torch.linspace(1.0, 1e-3, k + 1, device=device), method)[-1]
            curves[name].append((f.nfe, sample_distance(xK)))
print(f"ancestral DDPM, NFE = {T}: distance / floor = {anc:.2f}")
for name, c in curves.items():
    print(f"{name:>15}: " + ", ".join(f"NFE {n}: {r:.2f}" for n, r in c))
best20 = min(r for name in ("DDIM η=0", "Heun (PF-ODE)") for n, r in curves[name] if n <= 20)
print(f"best of DDIM / Heun at <= 20 NFE: {best20:.2f} (target: within 2x of ancestral, {2 * anc:.2f})")
assert best20 <= 2 * anc
fig, ax = plt.subplots(figsize=(5.5, 3.6))
for name, c in curves.items():
    ax.semilogx(*zip(*c), "o-", label=name)
ax.axhline(anc, color="k", ls="--", lw=1, label=f"ancestral, NFE = {T}")
ax.axhline(1, color="0.6", ls=":", lw=1)
ax.set_xlabel("NFE"); ax.set_ylabel("sliced W2 ÷ noise floor"); ax.legend(fontsize=8, loc="upper right")
ax.set_title("DDPM on moons: quality against cost", fontsize=9)
plt.show()

# %% [markdown]
# ### Exact likelihood of the diffusion model
#
# Through its PF-ODE (exact divergence in 2-D), the DDPM gets a test log-likelihood, hence a KL gap
# $\mathbb{E}_p[\log p - \log q]$ against the toy zoo's exact density: the number chapter 02 reports for flows.

# %%
x_te = moons.sample((2000,), generator=torch.Generator().manual_seed(5)).to(device)
lq_ddpm = ode_log_likelihood(pf_m.ode_field, x_te, t_data=1e-3, t_noise=1.0, steps=100, method="heun")
d = (moons.log_prob(x_te).cpu() - lq_ddpm.cpu()).double()
kl_ddpm = (d.mean().item(), d.std().item() / math.sqrt(len(d)))
print(f"DDPM (PF-ODE, 200 NFE) on moons: KL gap {kl_ddpm[0]:.3f} ± {kl_ddpm[1]:.3f} nats")
assert kl_ddpm[0] > -3 * kl_ddpm[1]

# %% [markdown]
# ## 5 · Flow matching
#
# Choose the path first: $x_t = (1 - t)x_0 + t x_1$ with $x_0 \sim \mathcal{N}(0, I)$, $x_1 \sim p_{\text{data}}$. Given the pair, it moves at the
# **conditional velocity** $u_t(x \mid x_0, x_1) = x_1 - x_0$. The **marginal velocity** $u_t(x) = \mathbb{E}[x_1 - x_0 \mid x_t = x]$ generates the
# marginal path $p_t$ (it satisfies the continuity equation, because each conditional path does and the equation is linear in
# $p\,u$). Regressing on it directly (FM) is impossible — it needs $p_t$ — but
# $$\underbrace{\mathbb{E}\|v(x_t, t) - (x_1 - x_0)\|^2}_{\text{CFM}} = \underbrace{\mathbb{E}\|v(x_t, t) - u_t(x_t)\|^2}_{\text{FM}} + \underbrace{\mathbb{E}\|(x_1 - x_0) - u_t(x_t)\|^2}_{\text{independent of } v},$$
# because the cross term $\mathbb{E}\big[(v - u_t)\cdot(x_1 - x_0 - u_t)\big]$ vanishes after conditioning on $x_t$. Same minimiser, same gradients.
#
# **Check** with `8gaussians`, whose marginal velocity is known in closed form (`gmm_marginal_velocity`: Gaussian conditioning per
# component, averaged over the component's posterior), on two different networks $v$: CFM − FM is the same constant.

# %%
n_c = 100_000
g_c = torch.Generator().manual_seed(0)
x1_c, x0_c, t_c = eight.sample((n_c,), generator=g_c), torch.randn(n_c, 2, generator=g_c), torch.rand(n_c, generator=g_c)
xt_c, ut_c = LinearPath().sample(x0_c, x1_c, t_c)
u_marg = gmm_marginal_velocity(xt_c, t_c, MU, S8)
const = ((ut_c - u_marg) ** 2).sum(1).mean().item()
for seed in (0, 1):
    torch.manual_seed(seed)
    v_net = VelocityMLP(2, 32, 2)
    with torch.no_grad():
        per = ((v_net(t_c, xt_c) - ut_c) ** 2).sum(1) - ((v_net(t_c, xt_c) - u_marg) ** 2).sum(1)
    se = per.std().item() / math.sqrt(n_c)
    print(f"network {seed}: CFM - FM = {per.mean():.4f} ± {se:.4f};  E||u_cond - u_marg||^2 = {const:.4f}")
    assert abs(per.mean().item() - const) < 4 * se

# %% [markdown]
# **Couplings.** Independent pairs $(x_0, x_1)$ cross each other, so the marginal velocity averages over crossing directions and
# its trajectories curve. Pairing each mini-batch by **optimal transport** (`ot_coupling`: `POT`'s exact `ot.emd` on squared
# distances) makes the pairs nearly non-crossing: straighter paths, which a coarse solver integrates well. We train both on
# `8gaussians` and measure the straightness $\mathbb{E}\int_0^1\|\dot x_t - (x_1 - x_0)\|^2dt$ (0 for straight lines) and the sample
# distance at few Euler steps.

# %%
x8_train = eight.sample((20_000,), generator=torch.Generator().manual_seed(1)).to(device)
fm = {}
for coupling, steps in (("independent", 3000), ("ot", 600)):
    fm[coupling], _ = train_flow_matching(x8_train, coupling=coupling, steps=steps, hidden=128, lr=1e-2,
                                          desc=f"FM 8gaussians ({coupling})")
def eight_distance(x, seed=11):
    g = torch.Generator().manual_seed(seed)
    return relative_to_noise_floor(swd, x.cpu(), lambda n: eight.sample((n,), generator=g))["ratio"]
fm_rows = []
for coupling, model in fm.items():
    path, _ = fm_sample(model, 2000, steps=64, method="heun", generator=torch.Generator().manual_seed(0), device=device, keep_path=True)
    row = {"coupling": coupling, "straightness": straightness(path.cpu())}
    for K in (1, 2, 4, 8):
        row[f"Euler, NFE {K}"] = eight_distance(fm_sample(model, 2000, steps=K, method="euler", generator=torch.Generator().manual_seed(0), device=device)[0])
    fm_rows.append(row)
print(format_table(fm_rows))
assert fm_rows[1]["straightness"] < 0.5 * fm_rows[0]["straightness"]
assert fm_rows[1]["Euler, NFE 2"] < fm_rows[0]["Euler, NFE 2"]

# %% [markdown]
# **KL gaps by exact likelihood.** Flow matching on `moons` and `8gaussians`, then $\log q$ by the ODE (exact divergence, Heun):
# the goal is a KL gap $\le 0.10$ nats, the same bar chapter 02 set its coupling flows.

# %%
fm["moons"], _ = train_flow_matching(x_moons, coupling="independent", steps=3000, hidden=128, lr=1e-2, desc="FM moons")
kl_rows = []
for name, model in (("moons", fm["moons"]), ("8gaussians", fm["independent"])):
    target = toy(name)
    x_test = target.sample((2000,), generator=torch.Generator().manual_seed(9)).to(device)
    dd = (target.log_prob(x_test).cpu() - fm_log_prob(model, x_test, steps=30).cpu()).double()
    kl_rows.append({"target": name, "model": "flow matching", "KL gap": dd.mean().item(), "± s.e.": dd.std().item() / math.sqrt(len(dd))})
kl_rows.append({"target": "moons", "model": "DDPM (PF-ODE)", "KL gap": kl_ddpm[0], "± s.e.": kl_ddpm[1]})
print(format_table(kl_rows))
for r in kl_rows[:2]:
    assert r["KL gap"] < 0.10, f"{r['target']}: KL gap {r['KL gap']:.3f} above the 0.10 goal"

# %% [markdown]
# ### Flow matching on the digits
#
# The same code on $8\times8$ digits scaled to $[-1, 1]$ (64-D): a wider MLP, the straight path, Euler sampling.

# %%
x_dig, _ = load_digits("train")
x_dig = (x_dig.reshape(len(x_dig), -1) * 2 - 1).to(device)
fm_dig, _ = train_flow_matching(x_dig, coupling="independent", steps=800, hidden=256, batch=128, desc="FM digits")
with torch.no_grad():
    dig, nfe_dig = fm_sample(fm_dig, 32, dim=64, steps=20, method="heun", generator=torch.Generator().manual_seed(0), device=device)
fig, ax = plt.subplots(figsize=(6, 3))
image_grid(ax, ((dig.clamp(-1, 1) + 1) / 2).reshape(-1, 1, 8, 8).cpu(), nrow=8, title=f"flow matching, Heun, NFE = {nfe_dig}")
plt.show()

# %% [markdown]
# ## 6 · Explorer: solvers, NFE, curved and straight paths
#
# Trajectories from noise to data of the two `8gaussians` models (independent and OT coupling). Choose the solver and the NFE;
# the title shows the sliced Wasserstein distance of the samples to fresh data, divided by its noise floor. Straight (OT) paths reach the
# data with a couple of Euler steps; curved ones need many more.

# %%
ode_explorer({"independent": fm["independent"], "OT": fm["ot"]}, eight)

# %% [markdown]
# ## Pitfalls
# * **Divergence sign and time direction.** $\log p_{\text{data}}(x) = \log p_{\text{noise}}(x_{\text{end}}) - \ell_{\text{end}}$ with $\dot\ell = -\operatorname{div}f$ integrated
#   from the data time to the noise time. Flip either and the density no longer integrates to 1 (section 2).
# * **Hutchinson probes in the wrong dtype** (float32 probes for float64 inputs): draw them like the input.
# * **Counting cost.** NFE, not steps: a Heun step is 2 NFE; "2 steps" of a K-point linspace grid is one interval.
# * **PF-ODE factor.** $f - \tfrac12 g^2 s$ for the ODE, $f - g^2 s$ (plus noise) for the reverse SDE.
# * **Two time conventions.** Diffusion: data at $t = 0$; flow matching: data at $t = 1$. Say which.
# * **Noise added twice** in an SDE simulator: the diffusion coefficient is a number, the noise is drawn once.
#
# ## Summary
# * Euler is order 1, Heun order 2; cost is NFE. An ODE flow's log-density changes at the rate $-\operatorname{div}f$.
# * Fokker–Planck turns an SDE into a PF-ODE with the same marginals; DDIM is Euler on it; both give far fewer NFE than ancestral sampling, and the ODE gives exact likelihoods.
# * Flow matching regresses a velocity on $x_1 - x_0$ (CFM = FM + const); OT couplings straighten the paths.
#
# **Homework 08** (`exercises/hw08_continuous_time/`): Euler and Heun steps, the divergence by autograd and by Hutchinson, the
# PF-ODE drift, the conditional flow-matching target and loss, a flow-matching model trained to a stated KL gap, and a written
# question on why the PF-ODE gives exact likelihoods and the SDE does not.
