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
# # 01 · Change of variables and likelihood
#
# **Follows** lectures 1–2 of the course notes (`003`: "CoV for probabilities", LOTUS, "Forward KL as MLE",
# "Inverse function theorem", "Normalizing flows") and §11.1 of the variational-methods survey (`004`).
#
# **Goals.** By the end you can
# 1. derive the change-of-variables (CoV) formula in 1-D and in $n$-D, and say why it has an *absolute value*
#    of a determinant of the *inverse* Jacobian (or, equivalently, of the forward Jacobian in the denominator);
# 2. compute expectations under a pushforward without its density (LOTUS);
# 3. explain why maximum likelihood is forward-KL minimisation, and why reverse KL seeks modes;
# 4. build small flows from invertible layers and fit them by maximum likelihood, measuring the KL gap to the truth.
#
# **Prerequisites.** Multivariable calculus (Jacobians, determinants), basic probability, PyTorch tensors and autograd.
#
# Every identity below is followed by a cell that **checks it numerically** with an `assert`. If you change a
# formula and it becomes wrong, the notebook stops there.
#
# ### Notation
# | symbol | meaning |
# |---|---|
# | $x \in \mathbb{R}^n$, $p_X$ | data and its density |
# | $z \in \mathbb{R}^n$, $p_Z$ | base ("latent") variable, usually $\mathcal{N}(0, I)$ |
# | $f: x \mapsto z$ | the *normalizing* direction (data → base), as in the notes: $z = f(x)$ |
# | $g = f^{-1}: z \mapsto x$ | the *generative* direction (base → data) |
# | $J_f(x) = \partial f / \partial x$ | the $n \times n$ Jacobian matrix of $f$ at $x$ |
# | $\mathrm{KL}(p \,\|\, q) = \mathbb{E}_p[\log p - \log q]$ | Kullback–Leibler divergence, in nats |

# %%
import math

import matplotlib.pyplot as plt
import torch

from course_utils import get_device, seed_everything, set_threads
from course_utils.data import toy
from course_utils.flows import ElementwiseAffine, Flow, Planar, SinhArcsinh, standard_normal_log_prob, standardize
from course_utils.plotting import plot_density_row, plot_samples
from course_utils.training import fit, fit_toy_density, format_table

seed_everything(0)
device = get_device()
set_threads()
print("computing on", device)


def normal_log_prob(x, mu=0.0, sigma=1.0):
    """log N(x; mu, sigma^2) elementwise."""
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def histogram_tv(samples, log_density, lo, hi, bins=60):
    """Total variation between a histogram of 1-D samples and the bin masses of a density (fine trapezoid)."""
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    counts = torch.histc(samples.double().clamp(lo, hi), bins=bins, min=lo, max=hi) / len(samples)
    fine = torch.linspace(lo, hi, bins * 50 + 1, dtype=torch.float64)
    dens = log_density(fine).exp()
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(dens, fine)])
    masses = cum[::50].diff()
    return 0.5 * (counts - masses).abs().sum().item(), edges


# %% [markdown]
# ## 1 · Change of variables in one dimension
#
# Let $Z \sim p_Z$ and $X = g(Z)$ with $g$ strictly monotone and differentiable, $f = g^{-1}$.
#
# **Increasing $g$.** The CDF of $X$ is $F_X(x) = P(g(Z) \le x) = P(Z \le f(x)) = F_Z(f(x))$. Differentiate:
# $$p_X(x) = p_Z(f(x))\, f'(x).$$
# **Decreasing $g$.** Now $g(Z) \le x \iff Z \ge f(x)$, so $F_X(x) = 1 - F_Z(f(x))$ and
# $$p_X(x) = -p_Z(f(x))\, f'(x), \qquad f'(x) < 0 .$$
# Both cases are one formula, because a density is probability *per unit length* and lengths are positive:
# $$\boxed{\,p_X(x) = p_Z\big(f(x)\big)\,\lvert f'(x) \rvert\,} \qquad\text{equivalently}\qquad p_X(x) = \frac{p_Z(z)}{\lvert g'(z)\rvert}\Big|_{z = f(x)} .$$
# The second form uses the inverse function theorem, $f'(x) = 1/g'(f(x))$. It is the form of survey §11.1
# ("$p_Y(y) = p_X(x)\,|\det \partial f/\partial x|^{-1}$", with the roles of the letters swapped).
#
# **Check.** Push $Z \sim \mathcal{N}(0,1)$ through the *decreasing* map $g(z) = -2z + 1$. With the absolute value the
# density integrates to 1 and matches a histogram of samples; without it, it integrates to $-1$.

# %%
g_aff = lambda z: -2.0 * z + 1.0          # generative map, decreasing  # noqa: E731
f_aff = lambda x: (x - 1.0) / -2.0        # its inverse, f = g^{-1}      # noqa: E731
df_aff = -0.5                             # f'(x)

xs = torch.linspace(-12, 14, 20001, dtype=torch.float64)
p_with_abs = normal_log_prob(f_aff(xs)).exp() * abs(df_aff)
p_without = normal_log_prob(f_aff(xs)).exp() * df_aff
print(f"∫ p with |f'| = {torch.trapezoid(p_with_abs, xs):.6f},   without = {torch.trapezoid(p_without, xs):.6f}")
assert abs(torch.trapezoid(p_with_abs, xs) - 1) < 1e-6
assert abs(torch.trapezoid(p_without, xs) + 1) < 1e-6

samples = g_aff(torch.randn(200_000, dtype=torch.float64))
tv, _ = histogram_tv(samples, lambda x: normal_log_prob(f_aff(x)) + math.log(abs(df_aff)), -8, 10)
print(f"total variation between histogram and formula: {tv:.4f}")
assert tv < 0.02

# %% [markdown]
# A nonlinear example: the **sinh-arcsinh** map of `course_utils.flows.SinhArcsinh`,
# $f(x) = \sinh(\delta\,\mathrm{asinh}(x) - \epsilon)$, pulls skewed, heavy- or light-tailed data back to a Gaussian.
# Its derivative is $f'(x) = \delta \cosh(\delta\,\mathrm{asinh}\,x - \epsilon)/\sqrt{1 + x^2} > 0$, and its layer returns
# $\log f'(x)$ as `log_det`. Sample $X = f^{-1}(Z)$ with the layer's `inverse`, and compare the histogram to
# $p_Z(f(x))\,f'(x)$:

# %%
sas = SinhArcsinh(1, skew=0.8, log_delta=math.log(0.7)).double()


def sas_log_density(x):
    with torch.no_grad():
        z, log_det = sas(x[:, None])
    return normal_log_prob(z[:, 0]) + log_det


with torch.no_grad():
    x_sas = sas.inverse(torch.randn(200_000, 1, dtype=torch.float64))[0][:, 0]
xs = torch.linspace(-30, 200, 400_001, dtype=torch.float64)
total = torch.trapezoid(sas_log_density(xs).exp(), xs).item()
tv, edges = histogram_tv(x_sas, sas_log_density, -4, 12)
print(f"∫ p_X = {total:.5f};  TV(histogram, formula) = {tv:.4f}")
assert abs(total - 1) < 1e-3 and tv < 0.02

# the analytic log-derivative against autograd
x_probe = torch.linspace(-5, 5, 11, dtype=torch.float64, requires_grad=True)
z_probe, log_det_probe = sas(x_probe[:, None])
(dz_dx,) = torch.autograd.grad(z_probe.sum(), x_probe)
assert torch.allclose(log_det_probe, dz_dx.log(), atol=1e-10)

fig, ax = plt.subplots(figsize=(6, 2.8))
ax.hist(x_sas.numpy(), bins=edges.numpy(), density=True, color="0.8", label="histogram of $f^{-1}(z_i)$")
grid = torch.linspace(-4, 12, 800, dtype=torch.float64)
ax.plot(grid, sas_log_density(grid).exp(), "C3", lw=2, label="$p_Z(f(x))\\,f'(x)$")
ax.set_xlabel("x"); ax.legend(); ax.set_title("1-D change of variables: formula against samples")
plt.show()

# %% [markdown]
# ## 2 · Change of variables in $n$ dimensions
#
# For an invertible, differentiable $f:\mathbb{R}^n \to \mathbb{R}^n$ (a *diffeomorphism*) and any set $A$,
# $P(X \in A) = P(Z \in f(A))$. Substituting $z = f(x)$ in the integral,
# $$\int_A p_X(x)\,dx = \int_{f(A)} p_Z(z)\,dz = \int_A p_Z(f(x))\,\lvert\det J_f(x)\rvert\,dx .$$
# A small cube $dx$ is mapped by the linearisation $J_f(x)$ to a parallelotope whose volume is
# $\lvert\det J_f(x)\rvert\,dx$ — the absolute value again because volumes are positive. As this holds for every $A$:
# $$\boxed{\,\log p_X(x) = \log p_Z\big(f(x)\big) + \log\lvert\det J_f(x)\rvert\,}$$
# By the inverse function theorem $J_{f^{-1}}(z) = J_f(x)^{-1}$, so $\log\lvert\det J_f(x)\rvert = -\log\lvert\det J_{f^{-1}}(f(x))\rvert$:
# the formula needs the inverse map's Jacobian if you only know the generative direction.
#
# **Check 1: linear maps.** $X = AZ + b$ with $Z \sim \mathcal{N}(0, I)$ is $\mathcal{N}(b, AA^\top)$. The CoV formula with
# $f(x) = A^{-1}(x - b)$ and $\log|\det J_f| = -\log|\det A|$ must reproduce that density exactly.

# %%
A = torch.tensor([[1.5, -0.8], [0.4, 0.7]], dtype=torch.float64)
b = torch.tensor([0.5, -1.0], dtype=torch.float64)
x = torch.randn(1000, 2, dtype=torch.float64) * 2
z = torch.linalg.solve(A, (x - b).T).T
log_p_cov = standard_normal_log_prob(z) - torch.linalg.slogdet(A).logabsdet
log_p_exact = torch.distributions.MultivariateNormal(b, A @ A.T).log_prob(x)
print(f"largest difference: {(log_p_cov - log_p_exact).abs().max():.2e}")
assert torch.allclose(log_p_cov, log_p_exact, atol=1e-10)

# %% [markdown]
# **Check 2: a nonlinear map, log-det by hand.** A planar layer $f(x) = x + u\,\tanh(w^\top x + b)$ has Jacobian
# $J_f = I + \tanh'(w^\top x + b)\,u w^\top$. The matrix determinant lemma $\det(I + a c^\top) = 1 + c^\top a$ gives
# $$\log\lvert\det J_f(x)\rvert = \log\big\lvert 1 + \tanh'(w^\top x + b)\,u^\top w\big\rvert,$$
# $O(n)$ instead of the $O(n^3)$ of a general determinant. Compare it with the determinant of the autograd
# Jacobian in $n = 5$, check the inverse function theorem, and check that the resulting 2-D density integrates to 1.

# %%
seed_everything(1)
planar5 = Planar(5, init_scale=1.0).double()
x5 = torch.randn(64, 5, dtype=torch.float64)
z5, log_det_by_hand = planar5(x5)
J = torch.stack([torch.autograd.functional.jacobian(lambda v: planar5(v[None])[0][0], xi) for xi in x5])
log_det_autograd = torch.linalg.slogdet(J).logabsdet
print(f"by hand vs autograd: largest difference {(log_det_by_hand - log_det_autograd).abs().max():.2e}")
assert torch.allclose(log_det_by_hand, log_det_autograd, atol=1e-10)

# inverse function theorem: log|det J_{f^-1}(f(x))| = -log|det J_f(x)|
x_back, log_det_inverse = planar5.inverse(z5)
assert torch.allclose(x_back, x5, atol=1e-8)
assert torch.allclose(log_det_inverse, -log_det_by_hand, atol=1e-8)

# a 2-D flow density integrates to 1 on a grid
seed_everything(2)
flow2 = Flow([Planar(2, init_scale=1.2), SinhArcsinh(2, skew=0.5, log_delta=0.3), Planar(2, init_scale=1.2)]).double()
g1 = torch.linspace(-12, 12, 601, dtype=torch.float64)
X1, Y1 = torch.meshgrid(g1, g1, indexing="xy")
with torch.no_grad():
    dens = flow2.log_prob(torch.stack([X1, Y1], -1).reshape(-1, 2)).exp()
integral = (dens.sum() * (g1[1] - g1[0]) ** 2).item()
print(f"∫∫ p_X = {integral:.4f}")
assert abs(integral - 1) < 0.01

# %% [markdown]
# A slip to watch for: survey eq. (75) writes $\log p(z_K) = \log p(z_0) - \sum_k \log\lvert\det \partial f_k/\partial z_{k-1}\rvert^{-1}$,
# which has one sign too many; eq. (74) just above it, $\log p(z_K) = \log p(z_0) - \sum_k \log\lvert\det \partial f_k/\partial z_{k-1}\rvert$,
# is right. Log-dets of a composition **add** (the Jacobian of a composition is the product of Jacobians):

# %%
x2 = torch.randn(32, 2, dtype=torch.float64)
_, total_log_det = flow2(x2)
J_total = torch.stack([torch.autograd.functional.jacobian(lambda v: flow2(v[None])[0][0], xi) for xi in x2])
assert torch.allclose(total_log_det, torch.linalg.slogdet(J_total).logabsdet, atol=1e-8)
# each layer's own log-det against the autograd Jacobian of that layer at its input, and the sum of those independent
# per-layer log-dets against the log-det of the composed map's autograd Jacobian (the chain rule: det of a product)
autograd_per_layer, h = [], x2
for layer in flow2.layers:
    J_layer = torch.stack([torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], hi) for hi in h])
    h, ld = layer(h)
    autograd_per_layer.append(torch.linalg.slogdet(J_layer).logabsdet)
    assert torch.allclose(ld, autograd_per_layer[-1], atol=1e-8), type(layer).__name__
assert torch.allclose(torch.stack(autograd_per_layer).sum(0), torch.linalg.slogdet(J_total).logabsdet, atol=1e-8)
print("each layer's log-det equals its autograd Jacobian's, and they add up to the composition's ✓")

# %% [markdown]
# ## 3 · LOTUS: expectations without the density
#
# The *law of the unconscious statistician*: if $Y = g(X)$, then
# $$\mathbb{E}_{p_Y}[h(Y)] = \int h(y)\,p_Y(y)\,dy = \int h(g(x))\,p_X(x)\,dx = \mathbb{E}_{p_X}[h(g(X))].$$
# Proof: substitute $y = g(x)$ in the first integral; $dy = \lvert\det J_g(x)\rvert\,dx$ and, by CoV,
# $p_Y(g(x)) = p_X(x)/\lvert\det J_g(x)\rvert$, so the two determinants cancel. This is why a flow can be *sampled*
# (and expectations estimated) by pushing base samples forward, with no determinant at all.
#
# **Check.** $X \sim \mathcal{N}(\mu, \sigma^2)$, $Y = e^X$, $h(y) = y$: closed form $\mathbb{E}[Y] = e^{\mu + \sigma^2/2}$,
# against Monte Carlo of $h(g(X))$ and against quadrature of $\int y\,p_Y(y)\,dy$ with $p_Y$ from the CoV formula.

# %%
mu, sigma = 0.3, 0.5
closed_form = math.exp(mu + sigma**2 / 2)
xmc = mu + sigma * torch.randn(1_000_000, dtype=torch.float64)
mc = torch.exp(xmc).mean().item()
mc_se = torch.exp(xmc).std().item() / math.sqrt(len(xmc))
ys = torch.linspace(1e-6, 30, 300_001, dtype=torch.float64)
p_y = (normal_log_prob(torch.log(ys), mu, sigma) - torch.log(ys)).exp()   # p_X(log y) |d log y / dy|
quadrature = torch.trapezoid(ys * p_y, ys).item()
print(f"closed form {closed_form:.5f} | Monte Carlo {mc:.5f} ± {mc_se:.5f} | quadrature of y p_Y(y) {quadrature:.5f}")
assert abs(mc - closed_form) < 5 * mc_se and abs(quadrature - closed_form) < 1e-5

# %% [markdown]
# ## 4 · Maximum likelihood is forward-KL minimisation
#
# For data $x_i \sim p_{\text{data}}$ and a model $p_\theta$,
# $$\mathrm{KL}(p_{\text{data}} \,\|\, p_\theta) = \underbrace{\mathbb{E}_{p_{\text{data}}}[\log p_{\text{data}}(x)]}_{-H(p_{\text{data}}),\ \text{no }\theta}
#   - \mathbb{E}_{p_{\text{data}}}[\log p_\theta(x)] \approx -H(p_{\text{data}}) - \frac{1}{N}\sum_{i=1}^N \log p_\theta(x_i).$$
# So the average negative log-likelihood (NLL) **is** the forward KL plus a constant, the entropy $H(p_{\text{data}})$.
# That also tells us how to *measure* a model: $\text{test NLL} - H(p) \approx \mathrm{KL}(p\,\|\,p_\theta) \ge 0$,
# the **KL gap**, in nats — and the toy targets of `course_utils.data` have exact densities, so we know $H(p)$.
#
# **Check.** For Gaussians $p_\theta = \mathcal{N}(\mu, s^2)$ and a two-mode mixture $p$, compute over a grid of $\theta$
# the sample NLL and the KL (by quadrature). Their difference must be the same constant, $H(p)$, for every $\theta$.

# %%
def mixture_log_prob(x, m=2.5, s=0.5):
    """Equal mixture of N(-m, s^2) and N(+m, s^2)."""
    return torch.logsumexp(torch.stack([normal_log_prob(x, -m, s), normal_log_prob(x, m, s)]), 0) - math.log(2)


def mixture_sample(n):
    return 2.5 * (2 * (torch.rand(n, dtype=torch.float64) < 0.5) - 1) + 0.5 * torch.randn(n, dtype=torch.float64)


x_data = mixture_sample(200_000)
xq = torch.linspace(-8, 8, 16001, dtype=torch.float64)
p_q = mixture_log_prob(xq).exp()
entropy = -torch.trapezoid(p_q * mixture_log_prob(xq), xq).item()

diffs, kls = [], []
for mu_ in (-1.0, 0.0, 1.5):
    for s_ in (0.7, 1.5, 3.0):
        nll = -normal_log_prob(x_data, mu_, s_).mean().item()
        kl = torch.trapezoid(p_q * (mixture_log_prob(xq) - normal_log_prob(xq, mu_, s_)), xq).item()
        diffs.append(nll - kl)
        kls.append(kl)
diffs = torch.tensor(diffs)
print(f"NLL - KL over 9 models: {diffs.min():.4f} … {diffs.max():.4f}  (entropy H(p) = {entropy:.4f}); KL ranges over {min(kls):.2f} … {max(kls):.2f}")
assert (diffs - entropy).abs().max() < 0.02

# %% [markdown]
# ### Forward KL covers mass, reverse KL seeks modes
#
# Fit one Gaussian $q = \mathcal{N}(\mu, s^2)$ to the two-mode mixture $p$ both ways.
#
# * **Forward**, $\min \mathrm{KL}(p\,\|\,q)$ = MLE. Setting the gradients of $\mathbb{E}_p[\log q]$ to zero gives
#   $\mu = \mathbb{E}_p[x]$ and $s^2 = \mathrm{Var}_p[x]$ (moment matching): here $\mu = 0$, $s^2 = 2.5^2 + 0.5^2$ —
#   $q$ spreads over both modes and puts its peak where $p$ has almost no mass.
# * **Reverse**, $\min \mathrm{KL}(q\,\|\,p) = \mathbb{E}_q[\log q - \log p]$. It needs samples of $q$ and the density
#   of $p$ (not samples of $p$); it can't be simplified like the forward one. We minimise it by gradient descent with
#   reparameterised samples $x = \mu + s\varepsilon$. Where $p \approx 0$, $\log p \to -\infty$ punishes $q$ heavily,
#   so $q$ hides inside one mode.

# %%
mu_fwd = x_data.mean().item()
s_fwd = x_data.std().item()
assert abs(mu_fwd) < 0.02 and abs(s_fwd - math.sqrt(2.5**2 + 0.5**2)) < 0.02

mu_rev = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)   # start slightly right of centre
log_s_rev = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
eps = torch.randn(4096, dtype=torch.float64)


def reverse_kl():
    x_q = mu_rev + log_s_rev.exp() * eps               # reparameterised samples of q
    log_q = normal_log_prob(eps) - log_s_rev            # log q(x_q) by CoV: log N(eps) - log|dx/deps|
    return (log_q - mixture_log_prob(x_q)).mean()


fit(reverse_kl, [mu_rev, log_s_rev], steps=600, lr=0.05, desc="reverse KL")
s_rev = log_s_rev.exp().item()
print(f"forward-KL fit: mu = {mu_fwd:+.3f}, s = {s_fwd:.3f}      reverse-KL fit: mu = {mu_rev.item():+.3f}, s = {s_rev:.3f}")
assert abs(mu_rev.item() - 2.5) < 0.05 and abs(s_rev - 0.5) < 0.05


def kl_quadrature(log_a, log_b):
    return torch.trapezoid(log_a.exp() * (log_a - log_b), xq).item()


lq_fwd, lq_rev = normal_log_prob(xq, mu_fwd, s_fwd), normal_log_prob(xq, mu_rev.item(), s_rev)
table = {"forward-KL fit": (kl_quadrature(mixture_log_prob(xq), lq_fwd), kl_quadrature(lq_fwd, mixture_log_prob(xq))),
         "reverse-KL fit": (kl_quadrature(mixture_log_prob(xq), lq_rev), kl_quadrature(lq_rev, mixture_log_prob(xq)))}
for k, (fwd, rev) in table.items():
    print(f"{k}:  KL(p||q) = {fwd:.3f}   KL(q||p) = {rev:.3f}")
assert table["forward-KL fit"][0] < table["reverse-KL fit"][0]   # each fit wins on its own objective
assert table["reverse-KL fit"][1] < table["forward-KL fit"][1]
# a q that equals one mixture component exactly has KL(q||p) = E_q[log q - log(q/2 + other/2)] ≈ log 2
assert abs(table["reverse-KL fit"][1] - math.log(2)) < 0.02

fig, ax = plt.subplots(figsize=(6.5, 2.8))
ax.fill_between(xq, p_q, color="0.8", label="target $p$ (two modes)")
ax.plot(xq, lq_fwd.exp(), "C0", lw=2, label="argmin KL(p‖q): mass-covering")
ax.plot(xq, lq_rev.exp(), "C3", lw=2, label="argmin KL(q‖p): mode-seeking")
ax.set_xlim(-6, 6); ax.legend(fontsize=8); ax.set_xlabel("x")
plt.show()

# %% [markdown]
# ## 5 · Hand-built flows, fitted by maximum likelihood
#
# A flow is a list of invertible layers from data to base; the log-density of data is one pass:
# $$\log p_\theta(x) = \log \mathcal{N}\big(f_\theta(x); 0, I\big) + \sum_{k} \log\lvert\det J_{f_k}\rvert .$$
# The layers of `course_utils.flows` each return `(output, log_det)` in both directions:
#
# | layer | map (data → base) | log-det | inverse |
# |---|---|---|---|
# | `ElementwiseAffine` | $x \odot e^{a} + t$ | $\sum_i a_i$ | closed form |
# | `SinhArcsinh` | $\sinh(\delta\,\mathrm{asinh}\,x - \epsilon)$ | $\sum_i \log f'(x_i)$ | closed form |
# | `Planar` | $x + \hat u \tanh(w^\top x + b)$ | $\log\lvert 1 + \tanh'(\cdot)\,\hat u^\top w\rvert$ | 1-D root find |
#
# Elementwise layers cannot make coordinates depend on each other; planar layers mix them. We train by MLE on
# two toy targets and report **test NLL**, the target's **entropy** and the **KL gap** (their difference, computed
# per test point as $\log p(x) - \log p_\theta(x)$, which has lower variance).
#
# Note the direction: we put the planar layers in the data → base direction, where their log-det is cheap, so the
# likelihood is one pass; *sampling* pays for the missing closed-form inverse with a root find.

# %%
def make_flow(kind, x_train, n_blocks=16):
    """'elementwise': affine and sinh-arcsinh layers only; 'planar': blocks of planar + sinh-arcsinh layers."""
    layers = [standardize(x_train)]
    if kind == "elementwise":
        layers += [SinhArcsinh(2), ElementwiseAffine(2), SinhArcsinh(2)]
    else:
        for _ in range(n_blocks):
            layers += [Planar(2), SinhArcsinh(2)]
    return Flow(layers + [ElementwiseAffine(2)])


# fit_toy_density draws fixed train/test sets (20k each), trains by MLE with `fit`, and measures
# test NLL, the target's entropy and the KL gap = mean over test points of log p(x) - log q(x)
results, models = [], {}
for name in ("8gaussians", "moons"):
    for kind, steps in (("elementwise", 800), ("planar", 2000)):
        model, history, row = fit_toy_density(lambda x, kind=kind: make_flow(kind, x), name, steps=steps, lr=5e-3,
                                              device=device, desc=f"{name}/{kind}")
        results.append({"model": kind, **row})
        models[name, kind] = (model, history)

print(format_table(results, ["target", "model", "test NLL", "entropy", "KL gap", "± s.e.", "seconds"]))

gap = {(r["target"], r["model"]): r["KL gap"] for r in results}
for name in ("8gaussians", "moons"):
    assert gap[name, "planar"] < 0.3, f"{name}: the planar flow should reach a KL gap below 0.3 nats"
    assert gap[name, "planar"] < gap[name, "elementwise"] - 0.5, "mixing coordinates should help a lot"
    assert gap[name, "elementwise"] > 0   # a KL is never negative (up to Monte Carlo error)

# %% [markdown]
# The learned densities against the truth, samples drawn through the inverse, and the training curves:

# %%
fig, axes = plt.subplots(2, 4, figsize=(12, 6))
for row, name in enumerate(("8gaussians", "moons")):
    target = toy(name)
    model, history = models[name, "planar"]
    model_cpu = model.cpu()
    plot_density_row(axes[row, :2], [target.log_prob, lambda x: model_cpu.log_prob(x)], target.lims,   # one colour scale
                     titles=[f"{name}: true density", f"planar flow, KL gap {gap[name, 'planar']:.2f}"])
    with torch.no_grad():
        plot_samples(axes[row, 2], model_cpu.sample(2000, generator=torch.Generator().manual_seed(0)), target.lims,
                     title="flow samples (inverse)")
    axes[row, 3].plot(history.smoothed(50), "C0")
    entropy_p = -target.log_prob(target.sample((20000,))).mean().item()
    axes[row, 3].axhline(entropy_p, color="C3", ls="--", label="entropy H(p)")
    axes[row, 3].set_ylim(entropy_p - 0.2, entropy_p + 1.5)  # the first steps are far above; zoom on convergence
    axes[row, 3].set_title("training NLL (nats)"); axes[row, 3].set_xlabel("step"); axes[row, 3].legend(fontsize=8)
    model.to(device)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · Explore: the change-of-variables explorer
#
# Pick a transform $x = g(z)$ of $z \sim \mathcal{N}(0, 1)$ and move its parameters. The middle panel draws the
# pushforward density **by the formula** $p_X(x) = p_Z(f(x))\,\lvert f'(x)\rvert$, $f = g^{-1}$, over a histogram of pushed
# samples; the right panel shows $\log\lvert g'(z)\rvert$ — where it is positive the map stretches space and the
# density drops, where it is negative it compresses and the density rises. Things to try: a negative $a$ in the affine
# map (the absolute value at work); $\delta < 1$ vs $\delta > 1$ in sinh-arcsinh (heavy vs light tails); $a = 0$.

# %%
from course_utils.widgets import cov_explorer  # noqa: E402

cov_explorer("sinh-arcsinh")

# %% [markdown]
# ## Pitfalls
# * **Direction.** $\log p_X(x) = \log p_Z(f(x)) + \log\lvert\det J_f(x)\rvert$ uses the map *from data to base*.
#   With the generative map $g$ the sign flips: $-\log\lvert\det J_g(z)\rvert$. Mixing them up gives densities
#   that do not integrate to 1 — the grid check above catches it.
# * **Absolute value.** Dropping it is invisible for increasing maps and fatal for decreasing ones.
# * **Invertibility is a constraint, not a given.** A planar layer is invertible only if $u^\top w \ge -1$
#   (hence $\hat u$); a map like $y = x^2$ is not invertible at all and needs the sum over its branches (homework).
# * **Cheap in one direction only.** Planar layers evaluate densities in one pass but need a root find to sample;
#   chapter 02 meets this trade-off again in MAF versus IAF.
# * **KL gaps need the truth.** A test NLL alone says little; against the entropy of a known target it is a KL.
#
# ## Summary
# * CoV: $p_X(x) = p_Z(f(x))\,\lvert\det J_f(x)\rvert$; log-dets of composed layers add.
# * LOTUS lets you sample and take expectations without any determinant.
# * MLE = forward KL (mass-covering); reverse KL needs the target density and seeks modes.
# * Flows of hand-built layers fit toy targets by MLE; mixing coordinates (planar) matters.
#
# **Homework 01** (`exercises/hw01_change_of_variables/`): the planar log-det, a density by change of variables, a flow
# layer with its inverse, an MLE fit to a stated KL gap, and a written question on the absolute value and $y = x^2$.
