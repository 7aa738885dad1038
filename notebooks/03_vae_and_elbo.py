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
# # 03 · The VAE and the ELBO
#
# **Follows** lecture 3 of the course notes (`003`: latent-variable models, the ELBO, the reparameterisation trick, the
# VAE) and §2–6 of the survey `004` (ELBO, IWAE, the Gaussian KL).
#
# **Goals.** By the end you can
# 1. say why the marginal likelihood $p(x) = \int p(x\mid z)p(z)\,dz$ of a latent-variable model is hard, and show it;
# 2. derive the ELBO twice (Jensen; the exact decomposition) and say what its gap is;
# 3. compute the Gaussian KL in closed form, and compare the score-function and reparameterisation gradients;
# 4. train a VAE on the 8×8 digits, and tighten its bound with importance weighting (IWAE);
# 5. put its bounds next to an exact likelihood and another bound on the same binary digits — an autoregressive MADE
#    (lecture 1 of the notes: exact, density in one pass, sampling in 64) and a flow on dequantised pixels (a bound) — in
#    bits per pixel, and say why they compare.
#
# **Prerequisites.** Chapters 01–02 (change of variables, KL, MLE).
#
# ### Notation
# | symbol | meaning |
# |---|---|
# | $p(z) = \mathcal{N}(0, I)$, $p_\theta(x\mid z)$ | prior and decoder (likelihood) |
# | $p_\theta(x) = \int p_\theta(x\mid z)p(z)\,dz$, $p_\theta(z\mid x)$ | marginal likelihood ("evidence") and true posterior |
# | $q_\phi(z\mid x) = \mathcal{N}(\mu_\phi(x), \mathrm{diag}\,\sigma^2_\phi(x))$ | encoder (approximate posterior) |
# | $\mathcal{L}(x) = \mathbb{E}_{q}[\log p_\theta(x, z) - \log q_\phi(z\mid x)]$ | the ELBO |
# | $\mathcal{L}_K(x) = \mathbb{E}\big[\log \frac1K\sum_k p_\theta(x, z_k)/q_\phi(z_k\mid x)\big]$ | the IWAE bound, $z_k \sim q_\phi$ |

# %%
import itertools
import math

import matplotlib.pyplot as plt
import torch

from course_utils import get_device, seed_everything, set_threads
from course_utils.data import bits_per_dim, dequantize, load_digits
from course_utils.flows import BernoulliMADE, Flow, LogitTransform, dequantized_bound, maf_flow, randomize_
from course_utils.metrics import gaussian_kl
from course_utils.plotting import image_grid
from course_utils.training import fit, seconds_per_call
from course_utils.vae import LinearGaussian, elbo, gaussian_log_prob, iwae_bound, train_digits_vae
from course_utils.widgets import latent_explorer

seed_everything(0)
device = get_device()
set_threads()
print("computing on", device)

# %% [markdown]
# ## 1 · A model with exact answers, and why naive Monte Carlo fails
#
# The **linear-Gaussian** model $p(z) = \mathcal{N}(0, I_L)$, $p(x\mid z) = \mathcal{N}(Wz + b, s^2 I_D)$ has everything in
# closed form: $p(x) = \mathcal{N}(b, WW^\top + s^2 I)$ and $p(z\mid x) = \mathcal{N}(m, S)$ with $S = (I + W^\top W/s^2)^{-1}$,
# $m = S W^\top (x - b)/s^2$. We use it to check every estimator in this notebook (`course_utils.vae.LinearGaussian`;
# $W$ has orthogonal columns so that the true posterior is diagonal, like our encoders).
#
# The obvious estimator of the evidence samples the prior: $\hat p(x) = \frac1N\sum_i p(x\mid z_i)$, $z_i \sim p(z)$.
# It is unbiased, but $p(x\mid z)$ is tiny for almost every prior sample and huge for the few $z$ near the posterior:
# the estimate is ruled by rare samples. With $D = 20$ observed dimensions:

# %%
gen = torch.Generator().manual_seed(0)
D, L = 20, 2
Q, _ = torch.linalg.qr(torch.randn(D, L, generator=gen, dtype=torch.float64))
model = LinearGaussian(Q * torch.tensor([3.0, 2.0], dtype=torch.float64), torch.randn(D, generator=gen, dtype=torch.float64), 0.2)
x0 = model.sample(1, gen)
log_p = model.log_marginal(x0).item()


def naive_log_evidence(n):
    z = torch.randn(n, 1, L, dtype=torch.float64)
    return (torch.logsumexp(model.decoder_log_prob(x0, z), 0) - math.log(n)).item()


print(f"exact log p(x) = {log_p:.3f}")
spread = {}
for n in (10, 100, 1000, 10000):
    est = torch.tensor([naive_log_evidence(n) for _ in range(200)])
    spread[n] = est
    print(f"N = {n:6d}: naive log-estimate {est.mean():8.3f} ± {est.std():.3f} (mean ± std over 200 runs)")
# the check: p_hat itself is unbiased, E[p_hat] = p(x) (a missing 1/N, or a wrong log p(x|z), fails this)
p_hat = spread[10000].exp()
assert abs(p_hat.mean().item() - math.exp(log_p)) < 4 * p_hat.std().item() / math.sqrt(len(p_hat))
# the rest demonstrates how the estimator behaves on this run (not identities):
assert spread[10].mean() < log_p - 1          # its log is biased low (Jensen: E log p_hat <= log E p_hat) ...
assert spread[100].std() > 1.0                # ... and noisy: a hundred prior samples miss log p(x) by more than a nat
assert spread[10000].std() < spread[100].std() / 5   # it does converge, slowly

# %% [markdown]
# ## 2 · The ELBO, twice
#
# **By Jensen.** For any $q(z\mid x)$ with the right support,
# $$\log p(x) = \log \mathbb{E}_{q}\Big[\frac{p(x, z)}{q(z\mid x)}\Big] \;\ge\; \mathbb{E}_{q}\Big[\log\frac{p(x, z)}{q(z\mid x)}\Big] = \mathcal{L}(x),$$
# since $\log$ is concave.
#
# **Exactly.** Write $p(x, z) = p(z\mid x)\,p(x)$ inside the ELBO:
# $$\mathcal{L}(x) = \mathbb{E}_{q}[\log p(x) + \log p(z\mid x) - \log q(z\mid x)] = \log p(x) - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z\mid x)\big).$$
# So $\log p(x) = \mathcal{L}(x) + \mathrm{KL}(q\,\|\,p(z\mid x))$: **the gap is the KL to the true posterior**, and the bound is
# tight exactly when $q$ *is* the posterior — then $\log p(x, z) - \log q(z\mid x) = \log p(x)$ for every $z$, an estimator
# with zero variance. A third form splits the ELBO into reconstruction and regularisation,
# $\mathcal{L} = \mathbb{E}_q[\log p(x\mid z)] - \mathrm{KL}(q(z\mid x)\,\|\,p(z))$, the form the VAE trains.
#
# **Check** on a small linear-Gaussian model ($D = 5$) with an encoder that is off (shifted and too wide):

# %%
g_small = torch.Generator().manual_seed(1)
Q_small, _ = torch.linalg.qr(torch.randn(5, 2, generator=g_small, dtype=torch.float64))
model = LinearGaussian(Q_small * torch.tensor([2.0, 0.7], dtype=torch.float64), torch.randn(5, generator=g_small, dtype=torch.float64), 0.5)
x = model.sample(5, g_small)
m, S = model.posterior(x)
exact = model.exact_encoder()
off = lambda xx: (exact(xx)[0] + 0.5, exact(xx)[1] + 0.7)  # noqa: E731 - a deliberately wrong q(z|x)

draws = torch.stack([elbo(x, off, model) for _ in range(20000)])   # ELBO = E[log p(x|z)] - KL(q || p(z))
elbo_mc, elbo_se = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
gap = gaussian_kl(*off(x), m, torch.diagonal(S).log())          # KL(q || p(z|x)), closed form
print("log p(x)          ", model.log_marginal(x).numpy().round(3))
print("ELBO + KL(q||post)", (elbo_mc + gap).numpy().round(3), " (± 2 s.e.:", (2 * elbo_se).numpy().round(3), ")")
assert ((elbo_mc + gap - model.log_marginal(x)).abs() < 5 * elbo_se).all()   # the exact decomposition
assert (elbo_mc < model.log_marginal(x)).all()                                # Jensen: a lower bound
log_w_exact = iwae_bound(x, exact, model, 1)          # one sample of log p(x, z) - log q(z|x) with q = posterior
assert torch.allclose(log_w_exact, model.log_marginal(x), atol=1e-9)          # tight, and with zero variance

# %% [markdown]
# ## 3 · The Gaussian KL in closed form
#
# For $q = \mathcal{N}(\mu_q, \mathrm{diag}\,\sigma_q^2)$ and $p = \mathcal{N}(\mu_p, \mathrm{diag}\,\sigma_p^2)$, one coordinate at a time,
# $$\mathrm{KL}(q\,\|\,p) = \sum_j \tfrac12\Big(\frac{\sigma_{q,j}^2}{\sigma_{p,j}^2} + \frac{(\mu_{q,j} - \mu_{p,j})^2}{\sigma_{p,j}^2} - 1 + \log\frac{\sigma_{p,j}^2}{\sigma_{q,j}^2}\Big),$$
# and with $p = \mathcal{N}(0, I)$: $\tfrac12\sum_j(\sigma_{q,j}^2 + \mu_{q,j}^2 - 1 - \log\sigma_{q,j}^2)$. (`course_utils.metrics.gaussian_kl`.)
# **Check** against Monte Carlo, $\mathbb{E}_q[\log q - \log p]$:

# %%
mu_q, lv_q = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([-0.5, 0.3, -1.2])
mu_p, lv_p = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.2, -0.4, 0.0])
z = mu_q + (0.5 * lv_q).exp() * torch.randn(400_000, 3)
mc_terms = gaussian_log_prob(z, mu_q, lv_q) - gaussian_log_prob(z, mu_p, lv_p)
closed = gaussian_kl(mu_q, lv_q, mu_p, lv_p).item()
print(f"closed form {closed:.4f}, Monte Carlo {mc_terms.mean():.4f} ± {mc_terms.std() / math.sqrt(len(z)):.4f}")
assert abs(mc_terms.mean().item() - closed) < 5 * mc_terms.std().item() / math.sqrt(len(z))

# %% [markdown]
# ## 4 · Gradients through an expectation: score function versus reparameterisation
#
# We need $\nabla_\phi\,\mathbb{E}_{q_\phi(z)}[f(z)]$. Two unbiased estimators:
# * **score function** (REINFORCE): $\nabla_\phi \mathbb{E}_{q_\phi}[f] = \mathbb{E}_{q_\phi}[f(z)\,\nabla_\phi \log q_\phi(z)]$ — needs only
#   samples and $\log q$, works for discrete $z$, but its variance grows with $|f|$;
# * **reparameterisation**: write $z = \mu + \sigma\varepsilon$, $\varepsilon \sim \mathcal{N}(0, 1)$, so
#   $\nabla_\phi \mathbb{E}[f(z)] = \mathbb{E}_\varepsilon[\nabla_\phi f(\mu + \sigma\varepsilon)]$ — needs a differentiable $f$ and a
#   reparameterisable $q$, and has far lower variance.
#
# **Check** with $q = \mathcal{N}(\mu, \sigma^2)$, $f(z) = (z - 2)^2$, where $\partial_\mu \mathbb{E}[f] = 2(\mu - 2)$ and
# $\partial_\sigma \mathbb{E}[f] = 2\sigma$ exactly: both means must agree with these within their Monte Carlo error (printed in
# standard errors, from all 20,000 draws), while the variances differ by a large factor.

# %%
def gradient_samples(estimator, mu0=0.5, sigma0=1.2, n=20000):
    """Per-sample gradient estimates of d/d(mu, sigma) E[(z - 2)^2], shape [n, 2]."""
    # one copy of (mu, sigma) per draw, so that one backward pass gives every draw's own gradient
    mu = torch.full((n,), mu0, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((n,), sigma0, dtype=torch.float64, requires_grad=True)
    eps = torch.randn(n, dtype=torch.float64)
    if estimator == "reparameterisation":
        z = mu + sigma * eps
        per_sample = (z - 2) ** 2
    else:
        z = (mu + sigma * eps).detach()
        log_q = -0.5 * ((z - mu) / sigma) ** 2 - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
        per_sample = ((z - 2) ** 2) * log_q  # its gradient is f(z) * grad log q(z)
    return torch.stack(torch.autograd.grad(per_sample.sum(), (mu, sigma)), -1)


exact_grad = torch.tensor([2 * (0.5 - 2), 2 * 1.2], dtype=torch.float64)
stats = {}
for name in ("score function", "reparameterisation"):
    g = gradient_samples(name)
    stats[name] = (g.mean(0), g.var(0))
    z_scores = (g.mean(0) - exact_grad) / (g.var(0) / len(g)).sqrt()    # distance from the exact value in standard errors
    print(f"{name:19s}: mean {g.mean(0).numpy().round(3)}  variance {g.var(0).numpy().round(2)}   (exact {exact_grad.numpy()}; "
          f"{z_scores.abs().numpy().round(1)} s.e. away, over {len(g)} draws)")
    assert (z_scores.abs() < 3).all()       # both unbiased: a biased estimator (e.g. a missing term) is many s.e. off
ratio = stats["score function"][1] / stats["reparameterisation"][1]
print(f"variance ratio score / reparameterisation: {ratio.numpy().round(1)}")
assert (ratio > 3).all()

# %% [markdown]
# ## 5 · Amortised inference: the VAE on the digits
#
# Fitting a separate $q(z\mid x_i)$ per data point does not scale; a VAE **amortises** inference with one encoder network
# $x \mapsto (\mu_\phi(x), \log\sigma^2_\phi(x))$ and trains encoder and decoder together by maximising the reparameterised ELBO
# $\mathcal{L}(x) = \mathbb{E}_{\varepsilon}[\log p_\theta(x\mid \mu + \sigma\odot\varepsilon)] - \mathrm{KL}(q_\phi(z\mid x)\,\|\,\mathcal{N}(0, I))$ (one
# sample per data point, the KL in closed form). The 8×8 digits of `course_utils.data` are binarised at 0.5, so a Bernoulli
# decoder gives a proper likelihood and the ELBO is a bound on $\log p(x)$ in nats.

# %%
x_train, y_train = load_digits("train")
x_test, y_test = load_digits("test")
x_train, x_test = (x_train > 0.5).float().to(device), (x_test > 0.5).float().to(device)


# the training routine lives in course_utils.vae, so that chapter 04 studies exactly this model:
# an MLP encoder and Bernoulli decoder (two hidden layers of 128), batch 128, Adam at 2e-3 with cosine decay
vae8, hist8 = train_digits_vae(x_train, 8, steps=2000)
vae2, hist2 = train_digits_vae(x_train, 2, steps=2000)
seed_everything(1)
with torch.no_grad():   # per test image, averaged over 20 draws of z (section 7 compares models image by image)
    elbo_per_image = {name: torch.stack([v.elbo(x_test) for _ in range(20)]).mean(0) for name, v in (("8-D", vae8), ("2-D", vae2))}
test_elbo = {name: v.mean().item() for name, v in elbo_per_image.items()}
print(f"test ELBO (nats per image, 20 samples per image): 8-D latent {test_elbo['8-D']:.2f}, 2-D latent {test_elbo['2-D']:.2f}")
assert test_elbo["8-D"] > -20.0 and test_elbo["8-D"] > test_elbo["2-D"]

fig, axes = plt.subplots(1, 4, figsize=(13, 3.2))
axes[0].plot(hist8.smoothed(50), label="8-D"); axes[0].plot(hist2.smoothed(50), label="2-D")
axes[0].set_title("training −ELBO (nats)"); axes[0].set_xlabel("step"); axes[0].legend(); axes[0].set_ylim(10, 40)
with torch.no_grad():
    recon = torch.sigmoid(vae8.decoder(vae8.encoder(x_test[:16])[0]))
    image_grid(axes[1], x_test[:16].cpu(), nrow=8, title="test digits (binarised)")
    image_grid(axes[2], recon.cpu(), nrow=8, title="reconstructions (8-D)")
    image_grid(axes[3], vae8.sample(16, generator=torch.Generator().manual_seed(0)).cpu(), nrow=8, title="decoder means at prior draws (8-D)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6 · IWAE: tighter bounds from importance weights
#
# Average $K$ importance weights *inside* the log: $\mathcal{L}_K(x) = \mathbb{E}\big[\log\frac1K\sum_{k=1}^K w_k\big]$,
# $w_k = p(x, z_k)/q(z_k\mid x)$, $z_k \sim q$. Since $\frac1K\sum_k w_k$ is an unbiased estimate of $p(x)$, Jensen gives
# $\mathcal{L}_K \le \log p(x)$; $\mathcal{L}_1$ is the ELBO; $\mathcal{L}_K$ is non-decreasing in $K$ (the average of $K$ weights is an
# average of averages of $K - 1$ of them, then Jensen again), and $\mathcal{L}_K \to \log p(x)$ as $K \to \infty$ when the
# weights are bounded. **Check** on the exact model with the wrong encoder, then estimate $\log p(x)$ of the digits VAE:

# %%
bounds, se = {}, {}
for k in (1, 5, 50, 500):
    reps = torch.stack([iwae_bound(x, off, model, k) for _ in range(max(40, 4000 // k))])
    bounds[k], se[k] = reps.mean(0), reps.std(0) / math.sqrt(len(reps))
    print(f"K = {k:3d}: IWAE bound {bounds[k].numpy().round(3)}  (± {se[k].max():.3f})")
print(f"log p(x): {model.log_marginal(x).numpy().round(3)}")
for k1, k2 in ((1, 5), (5, 50), (50, 500)):   # non-decreasing in K, up to Monte Carlo error
    assert (bounds[k1] <= bounds[k2] + 3 * (se[k1] ** 2 + se[k2] ** 2).sqrt()).all()
assert (bounds[5] - bounds[1] > 1).all()       # and the first steps are large
assert (bounds[500] <= model.log_marginal(x) + 3 * se[500]).all() and (model.log_marginal(x) - bounds[500] < 0.15).all()

seed_everything(2)
with torch.no_grad():
    iwae_per_image = {k: torch.stack([vae8.iwae(x_test, k) for _ in range(max(2, 40 // k))]).mean(0) for k in (1, 5, 50)}
iwae_digits = {k: v.mean().item() for k, v in iwae_per_image.items()}
print("digits VAE (8-D), test set: " + ", ".join(f"IWAE_{k} = {v:.3f}" for k, v in iwae_digits.items()) + " nats per image")
assert iwae_digits[1] < iwae_digits[5] < iwae_digits[50]

# %% [markdown]
# ## 7 · An exact likelihood and a dequantised bound on the same digits
#
# The VAE only bounds $\log p(x)$. An autoregressive model gives $\log P(x)$ exactly; a flow gives an exact density, but of
# continuous data, and on binary pixels only a bound on $\log P(x)$ (below). Both meet the VAE on
# **the same 359 test digits, binarised at 0.5** as in §5, every number in nats per image and, converted once
# (`course_utils.data.bits_per_dim`), in bits per pixel.
#
# **Autoregressive models** (lecture 1 of the notes). The chain rule factorises *any* distribution,
# $p(x) = \prod_{i=1}^{D} p(x_i\mid x_{<i})$, so a model of each conditional is an exact, normalised model of $x$, and maximum
# likelihood is next-pixel prediction: $\log p(x) = \sum_i \log p(x_i\mid x_{<i})$, a sum of $D$ cross-entropies. For binary
# pixels each conditional is a Bernoulli with logit $\ell_i(x_{<i})$. Chapter 02's MADE computes all $D$ logits in **one**
# masked pass (it is the network MAF used for $\mu_i, \alpha_i$; Germain et al. built it for exactly this), so the density
# costs one pass, while **sampling** draws $x_1$, then $x_2$ given $x_1$, …: $D$ sequential passes, the MAF asymmetry again.
# **Check** that the product of conditionals is normalised: on $D = 10$ pixels, sum $p(x)$ over all $2^{10}$ binary images
# (a logit that saw its own pixel would break this):

# %%
all_images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=10)), dtype=torch.float64)      # [1024, 10]
small = randomize_(BernoulliMADE(10, hidden=(32,)), scale=1.0).double()
total = small.log_prob(all_images).exp().sum().item()
print(f"sum of p(x) over all 2^10 binary images: {total:.12f}")
assert abs(total - 1) < 1e-10

# %% [markdown]
# Train a MADE with one hidden layer of 512 units on the 64 pixels (the same batches and optimiser as the VAE), and check
# on the trained network that logit $i$ really ignores pixels $i, i+1, \dots$: zeroing them must not change it.

# %%
D_PIX = 64
flat_train, flat_test = x_train.flatten(1), x_test.flatten(1)          # [N, 64] binary pixels, same split as §5
made = BernoulliMADE(D_PIX, hidden=(512,))
made_hist = fit(lambda: -made.log_prob(flat_train[torch.randint(len(flat_train), (128,), device=device)]).mean(), made,
                steps=2000, lr=2e-3, desc="MADE", device=device)
with torch.no_grad():
    logits = made.logits(flat_test)
    blind = torch.stack([made.logits(flat_test * (torch.arange(D_PIX, device=device) < i))[:, i] for i in range(D_PIX)], 1)
print(f"largest change of logit i when pixels i.. are zeroed: {(logits - blind).abs().max():.1e}")
assert torch.allclose(logits, blind, atol=1e-5)

# %% [markdown]
# **A flow on binary pixels needs dequantisation.** A flow is a density on $\mathbb{R}^{64}$; evaluated at the 0/1 corners it
# is not a probability and can be made as large as we like (negative bits per pixel is the symptom). Instead fit it to
# $y = x + u$, $u \sim U[0,1)^{64}$ (`course_utils.data.dequantize`). Its density $p$ defines a discrete model of the binary
# image, $P(x) = \int_{[0,1)^{64}} p(x + u)\,du$ — the cells have volume 1, so there is no scale term, and the cells'
# probabilities sum to at most 1 — and Jensen gives
# $$\log P(x) = \log \mathbb{E}_u\, p(x + u) \;\ge\; \mathbb{E}_u \log p(x + u),$$
# the dequantised log-likelihood, which maximum likelihood on $y$ maximises. It is an ELBO with $q(u\mid x)$ uniform, and
# $K$ draws inside the log tighten it exactly as IWAE does (`flows.dequantized_bound`; the package tests check it against
# $P(x)$ by quadrature in 2-D). So the flow's number is a lower bound on the log-probability of the same binary image, like
# the VAE's. The flow: a fixed logit map onto $\mathbb{R}^{64}$ of a box slightly larger than $(0, 2)^{64}$ (it keeps a margin
# $\alpha$ from the edges, so about $(-0.02, 2.02)^{64}$), a standardising affine layer, then 4 MAF layers (one hidden layer of
# 256 units each). The model's mass outside the unit cells is lost to $P$ (printed below with the samples).

# %%
logit_map = LogitTransform(D_PIX, scale=2.0)
with torch.no_grad():
    y_logit = logit_map(dequantize(flat_train, generator=torch.Generator().manual_seed(0)).cpu())[0]
flow = Flow([logit_map, *maf_flow(D_PIX, n_layers=4, hidden=(256,), data=y_logit).layers])
flow_hist = fit(lambda: -flow.log_prob(dequantize(flat_train[torch.randint(len(flat_train), (128,), device=device)])).mean(),
                flow, steps=1500, lr=3e-3, clip_grad=10.0, desc="dequantised flow", device=device)

seed_everything(3)
with torch.no_grad():
    made_ll = made.log_prob(flat_test)                                                          # exact, [359]
    flow_k = {k: torch.stack([dequantized_bound(flow.log_prob, flat_test, k) for _ in range(max(1, 20 // k))]).mean(0)
              for k in (1, 100)}                                                                # [359] each
vae_elbo_i, vae_iwae_i = elbo_per_image["8-D"], iwae_per_image[50]                          # from sections 5 and 6
rows = [("VAE (8-D): ELBO", vae_elbo_i), ("VAE (8-D): IWAE, K = 50", vae_iwae_i),
        ("MADE: exact log-likelihood", made_ll),
        ("flow: dequantised bound, K = 1", flow_k[1]), ("flow: dequantised bound, K = 100", flow_k[100])]
print(f"{'test digits, binarised (359)':34s} {'nats/image':>11s} {'± s.e.':>7s} {'bits/pixel':>11s}")
for name, v in rows:
    print(f"{name:34s} {v.mean():11.2f} {v.std() / math.sqrt(len(v)):7.2f} {bits_per_dim(-v.mean().item(), D_PIX):11.3f}")
print(f"{'independent coin flips (p = 1/2)':34s} {-D_PIX * math.log(2):11.2f} {'':7s} {1.0:11.3f}")


def paired(a, b):
    """Mean of a - b over the same test images, and its standard error."""
    d = a - b
    return d.mean().item(), (d.std() / math.sqrt(len(d))).item()


gain_k, gain_k_se = paired(flow_k[100], flow_k[1])
made_vs_flow, made_vs_flow_se = paired(made_ll, flow_k[100])
made_vs_vae, made_vs_vae_se = paired(made_ll, vae_iwae_i)
vae_vs_flow, vae_vs_flow_se = paired(vae_elbo_i, flow_k[100])
print(f"flow, K = 100 minus K = 1: {gain_k:.2f} ± {gain_k_se:.2f};  MADE minus flow (K = 100): {made_vs_flow:.2f} ± "
      f"{made_vs_flow_se:.2f};\nMADE minus VAE IWAE_50: {made_vs_vae:.2f} ± {made_vs_vae_se:.2f};  VAE ELBO minus flow (K = 100): "
      f"{vae_vs_flow:.2f} ± {vae_vs_flow_se:.2f} nats per image")
assert gain_k > 3 * gain_k_se   # the uniform q(u|x) leaves a Jensen gap that K draws close; averaging log p over the K
                                # draws instead of log-mean-exp gives a gain of 0 and fails this
assert made_vs_flow > 3 * made_vs_flow_se and vae_vs_flow > 3 * vae_vs_flow_se   # at these budgets the dequantised
                                                    # flow's bound trails both, even with K = 100 (it still gains with K)
assert abs(made_vs_vae) < 0.5   # (a measured outcome) the MADE's exact value sits next to the VAE's IWAE_50 bound; the
                                # MADE scored on the training split instead (a better number, about 1.5 nats up) fails it
assert all(bits_per_dim(-v.mean().item(), D_PIX) > 0 for _, v in rows)   # probabilities: never below 0 bits. Rescaling
# x + u to [0, 1) without its 64 log 2 (the cells would no longer have volume 1) moves the flow by -1 bit and fails this

# %% [markdown]
# Read the table from the bottom. A coin per pixel costs 1 bit. The flow's one-draw bound is the loosest number: part of it
# is the flow, part the **uniform dequantisation** — $p$ is far from constant inside a cell, and 100 draws inside the log
# recover the gain printed above (variational dequantisation, Flow++, learns $q(u\mid x)$ instead). The MADE's number is
# not a bound but the exact log-likelihood of its model, and it lands within half a nat of the VAE's IWAE$_{50}$ bound
# (difference printed above; that bound sits below the VAE's own $\log p(x)$, so the VAE may be slightly better than its
# number). On 64 binary pixels one pass of a masked network is about as good a density model as the VAE.
#
# **Costs.** Time one density evaluation of the 359 test images against drawing 359 samples (the fastest of a few calls).
# Only the MADE's density is its exact likelihood in one pass; the VAE's row is one draw of its ELBO, the flow's one draw
# of its $K = 1$ bound (the table's IWAE$_{50}$ and $K = 100$ bound cost 50 and 100 times that):

# %%
with torch.no_grad():
    cost = {"VAE (ELBO, 1 draw)": (seconds_per_call(lambda: vae8.elbo(x_test)), seconds_per_call(lambda: vae8.sample(359))),
            "MADE (exact)": (seconds_per_call(lambda: made.log_prob(flat_test), repeats=10),
                             seconds_per_call(lambda: made.sample(359))),
            "flow (bound, K = 1)": (seconds_per_call(lambda: flow.log_prob(flat_test + 0.5), repeats=10),
                                    seconds_per_call(lambda: flow.sample(359), repeats=2))}
for name, (dens, samp) in cost.items():
    print(f"{name:20s} density {1e3 * dens:7.2f} ms   sampling {1e3 * samp:8.2f} ms   ratio {samp / dens:5.1f}")
assert all(cost[k][1] / cost[k][0] > 10 for k in ("MADE (exact)", "flow (bound, K = 1)"))   # D sequential passes

with torch.no_grad():
    gen = torch.Generator().manual_seed(0)
    vae_draws = torch.bernoulli(vae8.sample(12, generator=gen).cpu(), generator=gen)                 # binary, like the others
    made_draws = made.sample(12, generator=gen).reshape(12, 1, 8, 8)
    y = flow.sample(2000, generator=gen)
    outside = ((y < 0) | (y >= 2)).any(-1).float().mean().item()
    print(f"flow samples with a pixel outside the unit cells [0, 2): {outside:.1%} (mass lost to P)")
    flow_draws = y[:12].floor().clamp(0, 1).reshape(12, 1, 8, 8)   # the cell each y falls in (outside: the nearest)
fig, axes = plt.subplots(3, 1, figsize=(8, 3.9))
for ax, imgs, title in zip(axes, (vae_draws, made_draws, flow_draws),
                           ("VAE: pixels drawn from p(x | z) at prior draws z", "MADE: 64 sequential passes",
                            "dequantised flow: the cell of each sample")):
    image_grid(ax, imgs.cpu(), nrow=12, title=title)
fig.tight_layout()
plt.show()

# %% [markdown]
# The MADE samples in 64 sequential passes and the MAF flow in 64 per layer, each pass needing the pixels drawn before it;
# a density evaluation of either is one pass per layer, and a VAE sample is one decoder pass. That is the price of an exact
# autoregressive likelihood: every pixel waits for the ones before it (for $n\times n$ images, $n^2$ passes; the notes
# count the cost of a transformer that recomputes attention over the prefix at every step). In the samples, the flow — the
# loosest bound — gives the most speckled images; the VAE's pixels are independent given $z$ and the MADE's see each other,
# and at this size both draw digit-like strokes.

# %% [markdown]
# ## 8 · Explore: the latent space of a 2-D VAE
#
# Move $z = (z_1, z_2)$: the right panel shows the decoder's mean image $p_\theta(x_i = 1\mid z)$ there, the left one where $z$
# lies among the encoder's posterior means of the test digits (coloured by label). Regions between clusters decode to
# grey blends. Far outside the prior's bulk the decoder has seen no codes, yet it still answers confidently, extrapolating
# the nearest cluster's digit (try the corners): a sharp output says nothing about how likely $z$ is.

# %%
latent_explorer(vae2, x_test, y_test)

# %% [markdown]
# ## Pitfalls
# * **Naive Monte Carlo over the prior** is unbiased for $p(x)$ but useless in practice; it is biased low in $\log p(x)$.
# * **The ELBO's gap is $\mathrm{KL}(q\,\|\,p(z\mid x))$**: a better encoder tightens the bound without changing the model.
# * **Score-function gradients** are unbiased but noisy; use reparameterisation when $q$ and $f$ allow it.
# * **Bernoulli likelihoods need binary data**; on grey-level pixels the "ELBO" is not a bound on a density.
# * **Compare bounds on the same footing**: test-set ELBO and IWAE with enough samples, in nats per image.
# * **A density is not a probability.** A flow evaluated at the 0/1 pixels can score anything (negative bits per pixel);
#   dequantise with unit cells, and compare only numbers that bound a probability of the same binarised test images,
#   converted to bits per dimension once (`bits_per_dim`).
#
# ## Summary
# * $\log p(x) = \mathcal{L}(x) + \mathrm{KL}(q\,\|\,p(z\mid x))$; $\mathcal{L}$ is tight iff $q$ is the posterior.
# * A VAE amortises $q$ with an encoder and trains with the reparameterised ELBO and a closed-form KL.
# * IWAE bounds $\mathcal{L}_1 \le \mathcal{L}_5 \le \mathcal{L}_{50} \le \log p(x)$ tighten the estimate of the evidence.
# * An autoregressive model $p(x) = \prod_i p(x_i\mid x_{<i})$ has an exact likelihood in one MADE pass and samples in $D$;
#   a flow on dequantised data has a bound, $\mathbb{E}_u \log p(x + u) \le \log P(x)$. On the binary digits the MADE matches
#   the VAE's IWAE bound, and at these budgets the dequantised flow's bound trails both.
#
# **Homework 03** (`exercises/hw03_vae_and_elbo/`): the Gaussian KL, the reparameterised ELBO, the IWAE bound, and training a
# VAE on the digits to a stated test ELBO.
