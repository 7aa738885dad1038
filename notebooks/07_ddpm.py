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
# # 07 · DDPM: the forward chain, the posterior, the ELBO, ancestral sampling and guidance
#
# **Follows** lecture 8 (DDPM) and lecture 9.1 (guidance) of the course notes (`003`), part 2 of `001` (the bound step
# by step), the diffusion pages of `000` and `002` (the closed-form marginal by induction) and §12 of `004`. Builds on
# chapter 06 (scores, Tweedie) and chapter 03 (the VAE and its ELBO on the binarised digits).
#
# **Goals.** By the end you can
# 1. derive $q(x_t\mid x_0)$ and the posterior $q(x_{t-1}\mid x_t, x_0)$, and check both numerically;
# 2. choose a schedule and a number of steps $T$ that actually reach noise (measured as a KL in nats);
# 3. write the ELBO as $L_T + \sum_t L_{t-1} + L_0$, compute it for a trained model, and see what $L_{\text{simple}}$ drops;
# 4. read $\varepsilon_\theta$ as a score, sample with the *exact* denoiser of a Gaussian mixture and with a trained one;
# 5. guide a model with a classifier and without one, with the sign and scale of the guidance checked.
#
# ### Notation (the notes' indexing: $t = 0$ is the data, $t = 1$ the first noising step)
# | symbol | meaning |
# |---|---|
# | $\beta_t,\ \alpha_t = 1-\beta_t,\ \bar\alpha_t = \prod_{s\le t}\alpha_s$ | schedule; $\beta_0 = 0,\ \bar\alpha_0 = 1$; `Schedule.betas[t]` etc. |
# | $q(x_t\mid x_{t-1}) = \mathcal N(\sqrt{\alpha_t}\,x_{t-1}, \beta_t I)$ | one forward step |
# | $\tilde\mu_t(x_t, x_0),\ \tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t$ | posterior mean and variance of $q(x_{t-1}\mid x_t, x_0)$ |
# | $\varepsilon_\theta(x_t, t),\ \mu_\theta,\ \sigma_t^2$ | network, reverse mean, reverse variance ($\tilde\beta_t$ here) |
# | $s_\theta = -\varepsilon_\theta/\sqrt{1-\bar\alpha_t}$ | the network read as a score |
# | $w$ | guidance scale (the notes' $\gamma$): $w = 0$ unconditional, $w = 1$ conditional |

# %%
import copy
import inspect
import math

import matplotlib.pyplot as plt
import torch

from course_utils import get_device, seed_everything, set_threads
from course_utils.data import load_digits, toy
from course_utils.diffusion import (Schedule, ancestral_sample, bits_per_dim, cfg_eps, classifier_guided_eps,
                                    elbo_terms, eps_weight, loss_simple, mixture_eps, step_kl, train_ddpm,
                                    train_noisy_classifier)
from course_utils.gan import train_digits_gan
from course_utils.metrics import (digits_classifier, digits_scores, noise_floor, relative_to_noise_floor,
                                  sliced_wasserstein)
from course_utils.plotting import image_grid, plot_samples
from course_utils.score import mixture_score, toy_mixture
from course_utils.vae import train_digits_vae
from course_utils.widgets import ddpm_explorer, ddpm_figure, ddpm_state

seed_everything(0)
device = get_device()
set_threads()
print("computing on", device)

# %% [markdown]
# ## 1 · The forward chain and its closed-form marginal
#
# One step is $x_t = \sqrt{\alpha_t}\,x_{t-1} + \sqrt{\beta_t}\,\varepsilon_t$. Suppose $x_{t-1} = \sqrt{\bar\alpha_{t-1}}\,x_0
# + \sqrt{1-\bar\alpha_{t-1}}\,\bar\varepsilon$. Then $x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{\alpha_t(1-\bar\alpha_{t-1})}\,\bar\varepsilon
# + \sqrt{1-\alpha_t}\,\varepsilon_t$, and a sum of independent centred Gaussians has the sum of the variances:
# $\alpha_t - \bar\alpha_t + 1 - \alpha_t = 1 - \bar\alpha_t$. By induction
# $$q(x_t\mid x_0) = \mathcal N\big(\sqrt{\bar\alpha_t}\,x_0,\ (1-\bar\alpha_t)\,I\big).$$
# Check: run the chain step by step from one $x_0$ and compare the moments with the closed form (and with the
# off-by-one $\bar\alpha_{t-1}$, which the check must reject). A coarse chain (cosine, $T = 20$) makes each step large
# enough for the off-by-one to show.

# %%
sched = Schedule.cosine(20)
x0 = torch.tensor([1.5, -0.7], dtype=torch.float64)
n = 20_000
x = x0.expand(n, 2).clone()
t_check = 10
for t in range(1, t_check + 1):
    x = sched.q_step(x, t, torch.randn_like(x))
ab = sched.alpha_bars[t_check].item()
se = math.sqrt((1 - ab) / n)
err = (x.mean(0) - math.sqrt(ab) * x0).abs().max().item()
err_off = (x.mean(0) - math.sqrt(sched.alpha_bars[t_check - 1].item()) * x0).abs().max().item()
print(f"t = {t_check}: abar_t = {ab:.4f}; mean error {err:.4f} ({err / se:.1f} s.e.); with abar_(t-1): {err_off / se:.1f} s.e.")
print(f"variance: simulated {x.var(0).tolist()}, closed form {1 - ab:.4f}")
assert err < 4 * se and err_off > 4 * se
assert torch.allclose(x.var(0), torch.full((2,), 1 - ab, dtype=torch.float64), rtol=0.04)

# %% [markdown]
# ### Schedules: does the chain reach noise?
# The linear schedule of Ho et al. ($\beta$ from $10^{-4}$ to $0.02$) and the cosine schedule of Nichol & Dhariwal
# ($\bar\alpha_t = f(t)/f(0)$, $f(t) = \cos^2\!\big(\frac{t/T + s}{1+s}\frac{\pi}{2}\big)$, $\beta_t$ clipped at 0.999).
# The prior term of the ELBO is $L_T = \mathrm{KL}(q(x_T\mid x_0)\,\|\,\mathcal N(0, I))$; a short linear chain leaves it large.

# %%
x_ref = toy("8gaussians").sample((2000,), generator=torch.Generator().manual_seed(0))
print(f"{'T':>6} {'linear: abar_T':>15} {'KL (nats)':>10} {'cosine: abar_T':>15} {'KL (nats)':>10}")
kl_T = {}
for T in (10, 50, 100, 1000):
    lin, cos = Schedule.linear(T), Schedule.cosine(T)
    kl_T[T] = (lin.prior_kl(x_ref).mean().item(), cos.prior_kl(x_ref).mean().item())
    print(f"{T:>6} {lin.alpha_bars[-1].item():>15.2e} {kl_T[T][0]:>10.3f} {cos.alpha_bars[-1].item():>15.2e} {kl_T[T][1]:>10.2e}")
assert 0.55 < Schedule.linear(50).alpha_bars[-1] < 0.65 and kl_T[50][0] > 1.0    # T = 50: far from noise
assert kl_T[1000][0] < 1e-3 and kl_T[50][1] < 1e-3

fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for T, ls in ((100, ":"), (1000, "-")):
    for make, c in ((Schedule.linear, "C0"), (Schedule.cosine, "C1")):
        s = make(T)
        u = torch.arange(1, T + 1) / T
        axes[0].plot(u, s.alpha_bars[1:], ls, color=c, label=f"{make.__name__}, T = {T}")
        axes[1].plot(u, s.snr().log10(), ls, color=c)
axes[0].set(xlabel="t / T", ylabel=r"$\bar\alpha_t$"); axes[0].legend(fontsize=8)
axes[1].set(xlabel="t / T", ylabel=r"$\log_{10}$ SNR $=\log_{10}\bar\alpha_t/(1-\bar\alpha_t)$")
plt.tight_layout(); plt.show()

# %% [markdown]
# Against $t/T$ the cosine schedule is one curve whatever $T$ ($\bar\alpha_t$ depends on $t/T$ only: its dotted $T = 100$ curve
# lies under the solid one). The linear schedule keeps its range of $\beta$, so with $T = 100$ its $\beta_t$ sum to a tenth as
# much and it ends far from $\mathcal N(0, I)$ — the table's $\bar\alpha_T$ and KL.
#
# ## 2 · The posterior $q(x_{t-1}\mid x_t, x_0)$
#
# By Bayes and the Markov property, $q(x_{t-1}\mid x_t, x_0) \propto q(x_t\mid x_{t-1})\,q(x_{t-1}\mid x_0)$. The exponent is
# $-\frac12\big[\frac{(x_t - \sqrt{\alpha_t}x_{t-1})^2}{\beta_t} + \frac{(x_{t-1}-\sqrt{\bar\alpha_{t-1}}x_0)^2}{1-\bar\alpha_{t-1}}\big]$;
# completing the square in $x_{t-1}$: precision $\frac{\alpha_t}{\beta_t} + \frac1{1-\bar\alpha_{t-1}} = \frac{1-\bar\alpha_t}{\beta_t(1-\bar\alpha_{t-1})}$, so
# $$\tilde\beta_t = \frac{1-\bar\alpha_{t-1}}{1-\bar\alpha_t}\beta_t,\qquad
# \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\,\beta_t}{1-\bar\alpha_t}x_0 + \frac{\sqrt{\alpha_t}(1-\bar\alpha_{t-1})}{1-\bar\alpha_t}x_t .$$
# Check in 1-D against Bayes' rule by quadrature on a grid (no completed square involved).

# %%
s = Schedule.linear(100)
x0_1, xt_1 = torch.tensor([[0.8]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64)
grid = torch.linspace(-6, 6, 200_001, dtype=torch.float64)
h = (grid[1] - grid[0]).item()
for t in (2, 10, 60):
    a, b, ab_prev = s.alphas[t].item(), s.betas[t].item(), s.alpha_bars[t - 1].item()
    log_post = (-(xt_1.item() - math.sqrt(a) * grid) ** 2 / (2 * b)
                - (grid - math.sqrt(ab_prev) * x0_1.item()) ** 2 / (2 * (1 - ab_prev)))
    w_ = torch.exp(log_post - log_post.max()); w_ = w_ / (w_.sum() * h)
    m_quad = (grid * w_).sum().item() * h
    v_quad = ((grid - m_quad) ** 2 * w_).sum().item() * h
    mean, var = s.q_posterior(x0_1, xt_1, t)
    print(f"t = {t:>3}: quadrature mean {m_quad:.6f}, var {v_quad:.3e};  formula mean {mean.item():.6f}, var {var.item():.3e};"
          f"  beta_t = {b:.3e}")
    assert abs(m_quad - mean.item()) < 1e-6 and abs(v_quad / var.item() - 1) < 1e-4
    assert abs(b / var.item() - 1) > 0.005          # beta_t is not the posterior variance (beta instead of beta~)

# %% [markdown]
# **The ε-form.** Substituting $x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\varepsilon)/\sqrt{\bar\alpha_t}$ into $\tilde\mu_t$ gives
# $\tilde\mu_t = \frac1{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\varepsilon\big)$, the form the network
# uses: $\mu_\theta(x_t, t) = \frac1{\sqrt{\alpha_t}}\big(x_t - \frac{\beta_t}{\sqrt{1-\bar\alpha_t}}\varepsilon_\theta(x_t, t)\big)$.

# %%
x0_b = torch.randn(5, 2, dtype=torch.float64)
eps_b = torch.randn(5, 2, dtype=torch.float64)
t_b = torch.tensor([2, 10, 30, 70, 100])
xt_b = s.q_sample(x0_b, t_b, eps_b)
assert torch.allclose(s.p_mean(xt_b, t_b, eps_b), s.q_posterior(x0_b, xt_b, t_b)[0], atol=1e-12)
print(inspect.getsource(Schedule.p_mean))

# %% [markdown]
# ## 3 · The ELBO, term by term
#
# $$-\text{ELBO}(x_0) = \underbrace{\mathrm{KL}(q(x_T\mid x_0)\,\|\,p(x_T))}_{L_T}
# + \sum_{t=2}^T \underbrace{\mathbb E_{q(x_t\mid x_0)}\mathrm{KL}\big(q(x_{t-1}\mid x_t,x_0)\,\|\,p_\theta(x_{t-1}\mid x_t)\big)}_{L_{t-1}}
# \underbrace{-\ \mathbb E_{q(x_1\mid x_0)}\log p_\theta(x_0\mid x_1)}_{L_0}.$$
# With $p_\theta(x_{t-1}\mid x_t) = \mathcal N(\mu_\theta, \sigma_t^2 I)$ and $\sigma_t^2 = \tilde\beta_t$, the KL of two
# Gaussians with the same variance is $\frac1{2\tilde\beta_t}\|\tilde\mu_t - \mu_\theta\|^2$, and by the ε-form
# $$L_{t-1} = \mathbb E_\varepsilon\,\lambda_t\,\|\varepsilon - \varepsilon_\theta(x_t, t)\|^2,\qquad
# \lambda_t = \frac{\beta_t^2}{2\tilde\beta_t\,\alpha_t\,(1-\bar\alpha_t)} .$$
# Check: the closed-form Gaussian KL (`step_kl`, via `metrics.gaussian_kl`) equals $\lambda_t\|\varepsilon-\varepsilon_\theta\|^2$
# for an arbitrary "network output".

# %%
eps_theta = eps_b + 0.3 * torch.randn_like(eps_b)
for t in (2, 10, 100):
    tt = torch.full((5,), t)
    xt = s.q_sample(x0_b, tt, eps_b)
    kl = step_kl(s, x0_b, xt, tt, eps_theta)
    via_weight = eps_weight(s, t) * (eps_b - eps_theta).pow(2).sum(1)
    print(f"t = {t:>3}: lambda_t = {eps_weight(s, t).item():.4f}; KL {kl[:3].tolist()}")
    assert torch.allclose(kl, via_weight, rtol=1e-8)
print("lambda_t ranges from", f"{eps_weight(s, 2).item():.3f} (t = 2) to {eps_weight(s, 100).item():.4f} (t = T)")

# %% [markdown]
# $L_{\text{simple}} = \mathbb E_{t\sim U\{1..T\}}\mathbb E_\varepsilon\|\varepsilon - \varepsilon_\theta(x_t, t)\|^2$ drops $\lambda_t$
# (and $L_0$'s own form): it is a *reweighted* ELBO that puts relatively less weight on small $t$, where $\lambda_t$ is
# largest. It samples better; section 5 measures what it costs in likelihood.
#
# ## 4 · DDPM as a score model, and the exact denoiser
#
# $\nabla_{x_t}\log q(x_t\mid x_0) = -\varepsilon/\sqrt{1-\bar\alpha_t}$, so the minimiser of $L_{\text{simple}}$ at each $t$,
# $\mathbb E[\varepsilon\mid x_t]$, is $-\sqrt{1-\bar\alpha_t}\,\nabla\log q_t(x_t)$ (denoising score matching, chapter 06).
# For Gaussian-mixture data $\sum_k \pi_k\mathcal N(m_k, s^2 I)$ the marginal $q_t$ is the mixture with means
# $\sqrt{\bar\alpha_t}m_k$ and variance $\bar\alpha_t s^2 + 1-\bar\alpha_t$, whose score is known in closed form
# (`score.mixture_score`). Check the claim by Monte Carlo: the conditional expectation $\varepsilon^*(x_t) = \mathbb E[\varepsilon\mid x_t]$
# is characterised by an orthogonal residual, $\mathbb E\big[(\varepsilon - \varepsilon^*(x_t))\,f(x_t)\big] = 0$ for every $f$;
# test $f(x) = x$ and $f(x) = \varepsilon^*(x)$, within 4 standard errors, and show that the denoiser built with
# $\bar\alpha_{t-1}$ (an off-by-one) fails the same test. Then sample with the exact denoiser: any remaining error is the sampler's.

# %%
target = toy("8gaussians")
means, std, weights = toy_mixture(target)
s100 = Schedule.cosine(100)
eps_star = mixture_eps(s100, means, std, weights)
g = torch.Generator().manual_seed(1)
x0_mc = target.sample((100_000,), generator=g)
e_mc = torch.randn(x0_mc.shape, generator=g, dtype=torch.float64)


def orthogonality_z(eps_fn, t):
    """max |mean((eps - eps_fn(x_t)) * f(x_t))| / standard error, over f in {x_t, eps_fn(x_t)} and both coordinates."""
    xt = s100.q_sample(x0_mc, t, e_mc)
    e_hat = eps_fn(xt, t)
    prods = torch.cat([(e_mc - e_hat) * xt, (e_mc - e_hat) * e_hat], 1)           # [N, 4]
    return (prods.mean(0).abs() / (prods.std(0) / math.sqrt(len(prods)))).max().item()


def off_by_one(x, t):   # the mixture of q_(t-1) used at step t
    ab = s100.alpha_bars[t - 1].item()
    _, sc = mixture_score(x, math.sqrt(ab) * means, math.sqrt(ab * std**2 + 1 - ab))
    return -math.sqrt(1 - ab) * sc


for t in (10, 40, 80):
    z_ok, z_bad = orthogonality_z(eps_star, t), orthogonality_z(off_by_one, t)
    print(f"t = {t}: residual correlation, exact denoiser {z_ok:.1f} s.e.; with abar_(t-1): {z_bad:.1f} s.e.")
    assert z_ok < 4 and z_bad > 4

n_eval = 4000


def distance_to_floor(samples, dist, repeats=5):
    """Sliced W2 to fresh target samples, and its noise floor, each summed over `repeats` fresh draws (one draw of the
    floor is too noisy to divide by); returns (distance, floor, ratio)."""
    rs = [relative_to_noise_floor(sliced_wasserstein, samples.double(), lambda n: dist.sample((n,))) for _ in range(repeats)]
    d, f = sum(r["distance"] for r in rs) / repeats, sum(r["floor"] for r in rs) / repeats
    return d, f, d / f


x_exact = ancestral_sample(eps_star, s100, (n_eval, 2), generator=torch.Generator().manual_seed(2))
r_exact = distance_to_floor(x_exact, target)
print(f"exact denoiser, cosine T = 100: sliced W2 = {r_exact[0]:.3f}, noise floor {r_exact[1]:.3f}, ratio {r_exact[2]:.2f}")
assert r_exact[2] < 1.5

# %% [markdown]
# ## 5 · Training and ancestral sampling
#
# `train_ddpm` trains `EpsMLP` (a residual MLP; the time enters through a sinusoidal embedding with frequencies
# $1\ldots10^{-4}$) on $L_{\text{simple}}$ for a fixed number of steps; `ancestral_sample` runs
# $x_{t-1} = \mu_\theta(x_t, t) + \sqrt{\tilde\beta_t}\,z$ from $x_T\sim\mathcal N(0,I)$ (no noise at the last step).

# %%
src = inspect.getsource(ancestral_sample)
print(src[src.index("    for t in"):src.index("    if 0 in keep")])                      # the sampling loop
toy_models, toy_samples, toy_ratio = {}, {}, {}
for name in ("8gaussians", "moons"):
    p = toy(name)
    x_train_toy = p.sample((20_000,), generator=torch.Generator().manual_seed(0)).float().to(device)
    toy_models[name], _ = train_ddpm(x_train_toy, s100, hidden=128, depth=3, steps=1500, batch=256, desc=f"DDPM, {name}")
    toy_samples[name] = ancestral_sample(toy_models[name], s100, (n_eval, 2), device=device,
                                         generator=torch.Generator().manual_seed(3)).cpu()
    toy_ratio[name] = distance_to_floor(toy_samples[name], p)
    print(f"{name}: sliced W2 = {toy_ratio[name][0]:.3f}, noise floor {toy_ratio[name][1]:.3f}, ratio {toy_ratio[name][2]:.2f}")
    assert toy_ratio[name][2] < 2.0

fig, axes = plt.subplots(1, 4, figsize=(12, 3))
plot_samples(axes[0], x_ref, title="8gaussians: data")
plot_samples(axes[1], x_exact[:2000], title="exact denoiser")
plot_samples(axes[2], toy_samples["8gaussians"][:2000], title="trained DDPM")
plot_samples(axes[3], toy_samples["moons"][:2000], title="moons: trained DDPM")
plt.tight_layout(); plt.show()

# %% [markdown]
# ### The digits, and the ELBO next to the VAE's
# Chapter 03's VAE models the digits **binarised at 0.5** with a Bernoulli decoder, so its ELBO bounds a probability of
# a binary image. To compare on the same footing the DDPM sees the same binary images, mapped to $\{-1, +1\}$, and its
# $L_0$ is a Gaussian *discretised* on the two levels ($p(x_0 = +1\mid x_1) = \Phi(\mu_\theta/\sigma_1)$), so its ELBO
# also bounds a probability, in nats per image. One network serves both the unconditional model and (section 6) the
# class-conditional one: during training each label is replaced by the null label with probability $p_{\text{uncond}} = 0.2$
# (section 6 checks this convention), and the null label gives the unconditional model.

# %%
x_train, y_train = load_digits("train")
x_test, y_test = load_digits("test")
b_train, b_test = (x_train > 0.5).float().to(device), (x_test > 0.5).float().to(device)
s_dig = Schedule.linear(250, beta_1=4e-4, beta_T=0.08)       # Ho et al.'s 1e-4..0.02 for T = 1000, rescaled to T = 250
print(f"digits schedule: T = {s_dig.T}, abar_T = {s_dig.alpha_bars[-1].item():.1e}")
ddpm, hist_dig = train_ddpm(b_train * 2 - 1, s_dig, labels=y_train.to(device), p_uncond=0.2, hidden=256, depth=3,
                            steps=2000, batch=128, desc="DDPM, digits")
vae, _ = train_digits_vae(b_train, 8, steps=2000)

x0_test = b_test * 2 - 1
terms = elbo_terms(ddpm, s_dig, x0_test, levels=2, generator=torch.Generator().manual_seed(4))
nelbo = terms["nelbo"]
ddpm_elbo, ddpm_se = -nelbo.mean().item(), nelbo.std().item() / math.sqrt(len(nelbo))
with torch.no_grad():
    vae_e = torch.stack([vae.elbo(b_test) for _ in range(20)]).mean(0)
vae_elbo, vae_se = vae_e.mean().item(), vae_e.std().item() / math.sqrt(len(vae_e))
D = 64
print(f"test ELBO, binarised digits (nats per image ± s.e.; bits per dimension):")
print(f"  DDPM (L_simple, T = 250): {ddpm_elbo:8.2f} ± {ddpm_se:.2f}   ({bits_per_dim(-ddpm_elbo, D):.3f} bits/dim)")
print(f"     of which L_T = {terms['prior'].mean():.2e}, sum L_(t-1) = {terms['diffusion'].mean():.1f}, L_0 = {terms['decoder'].mean():.3f}")
print(f"  VAE (chapter 03, 8-D):    {vae_elbo:8.2f} ± {vae_se:.2f}   ({bits_per_dim(-vae_elbo, D):.3f} bits/dim)")
print(f"  uniform over binary images: {-D * math.log(2):.2f} (1 bit/dim)")
assert ddpm_elbo + 3 * ddpm_se < vae_elbo - 3 * vae_se and ddpm_elbo < -D * math.log(2)

# %% [markdown]
# The DDPM's bound is far *worse* than the VAE's, and worse than a uniform 1 bit per pixel. Two questions: is the number
# right, and where do the nats go?
#
# **Is it right?** Put into the same `elbo_terms` a model whose log-likelihood is known exactly: 64 independent pixels,
# pixel $i$ equal to $+1$ with its frequency $p_i$ in the training set. Its $q_t$ factorises into 1-D mixtures
# $p_i\,\mathcal N(\sqrt{\bar\alpha_t}, 1-\bar\alpha_t) + (1-p_i)\,\mathcal N(-\sqrt{\bar\alpha_t}, 1-\bar\alpha_t)$; the log-ratio of the two components is
# $\operatorname{logit}p_i + 2\sqrt{\bar\alpha_t}\,x_t/(1-\bar\alpha_t)$, so $\mathbb E[x_0\mid x_t] = \tanh\big(\tfrac12\operatorname{logit}p_i + \sqrt{\bar\alpha_t}\,x_t/(1-\bar\alpha_t)\big)$
# and its exact denoiser is $\varepsilon^*(x_t, t) = \big(x_t - \sqrt{\bar\alpha_t}\,\mathbb E[x_0\mid x_t]\big)/\sqrt{1-\bar\alpha_t}$ (checked below
# against `mixture_eps` for one pixel). Its bound must lie a little *below* its exact test log-likelihood
# $\sum_i \log\big(p_i^{[x_i = 1]}(1-p_i)^{[x_i = -1]}\big)$, and not far: the sum of the $L_{t-1}$ left out or a density in place of
# the discretised $L_0$ would put it far above, a KL with the wrong variance far below (the next cell prints that one).

# %%
p_pix = b_train.mean(0).clamp(1e-3, 1 - 1e-3)                # [1, 8, 8]: how often each pixel is on


def eps_independent(x, t):
    """The exact eps* of 64 independent +-1 pixels with P(+1) = p_pix (x [B, 1, 8, 8] or [B, 64], t [B])."""
    ab = s_dig.alpha_bars[t.cpu()].to(x).reshape(-1, *[1] * (x.ndim - 1))
    m = torch.tanh(0.5 * torch.logit(p_pix.reshape(x.shape[1:])) + ab.sqrt() * x / (1 - ab))   # E[x0 | x_t]
    return (x - ab.sqrt() * m) / (1 - ab).sqrt()


xs1, ts1 = torch.linspace(-2, 2, 9, dtype=torch.float64)[:, None], torch.full((9,), 30)
one_pixel = mixture_eps(s_dig, torch.tensor([[1.0], [-1.0]]), 0.0, torch.stack([p_pix[0, 4, 4], 1 - p_pix[0, 4, 4]]).double().cpu())
assert torch.allclose(eps_independent(xs1.expand(9, 64).to(device), ts1)[:, 36].cpu(), one_pixel(xs1, ts1)[:, 0], atol=1e-5)

ll_pix = torch.where(x0_test > 0, p_pix.log(), (1 - p_pix).log()).flatten(1).sum(1).double()       # exact, per image
terms_pix = elbo_terms(eps_independent, s_dig, x0_test, levels=2, generator=torch.Generator().manual_seed(4))
gap = -terms_pix["nelbo"] - ll_pix
gap_se = gap.std().item() / math.sqrt(len(gap))
print(f"independent pixels: exact test log-likelihood {ll_pix.mean():.2f}; ELBO with their exact denoiser "
      f"{-terms_pix['nelbo'].mean():.2f}; ELBO - log p = {gap.mean():.3f} ± {gap_se:.3f} nats")
assert gap.mean() < 3 * gap_se and gap.mean() > -1.0          # a bound, and a tight one with the exact denoiser

# %% [markdown]
# So the bookkeeping is right, and a model as crude as independent pixels gets $-25$ nats through it. **Where do the
# DDPM's nats go?** `per_step` holds each $L_{t-1}$ (the mean over the test digits). Group them by $t$, next to the same
# terms for the independent-pixel denoiser, and next to the network's ε-error at a few $t$ (mean squared error per pixel on
# the test digits; $L_{t-1} \approx 64\,\lambda_t\times$ that error, and predicting $\varepsilon = 0$ scores 1).

# %%
spans = [(2, 2), (3, 5), (6, 10), (11, 25), (26, 50), (51, 100), (101, 250)]
lam = eps_weight(s_dig, torch.arange(2, s_dig.T + 1))
g_mse = torch.Generator().manual_seed(11)


@torch.no_grad()
def eps_mse(eps_fn, t):
    e = torch.randn(x0_test.shape, generator=g_mse).to(device)
    tb = torch.full((len(x0_test),), t, device=device)
    return (eps_fn(s_dig.q_sample(x0_test, tb, e), tb) - e).pow(2).mean().item()


print(f"{'t':>9} {'share of steps':>15} {'ELBO weight':>12} {'DDPM: nats':>11} {'indep. pixels':>14} {'ε-MSE at end':>13}")
by_span = {}
for a, b in spans:
    nats, nats_pix = terms["per_step"][a:b + 1].sum().item(), terms_pix["per_step"][a:b + 1].sum().item()
    by_span[(a, b)] = (nats, nats_pix, eps_mse(ddpm, b))
    print(f"{a:>4}..{b:<4} {(b - a + 1) / s_dig.T:>15.1%} {lam[a - 2:b - 1].sum() / lam.sum():>12.1%} {nats:>11.1f} "
          f"{nats_pix:>14.2f} {by_span[(a, b)][2]:>13.3f}")
small = [by_span[k] for k in spans[:3]]                        # t <= 10
share_small_t = sum(n for n, _, _ in small) / terms["per_step"].sum().item()
print(f"t <= 10: {share_small_t:.0%} of the DDPM's -ELBO from 4% of the steps; the exact denoiser pays "
      f"{sum(n for _, n, _ in small):.2f} nats there")
assert share_small_t > 0.4 and sum(n for _, n, _ in small) < 0.1 and min(m for _, _, m in small) > 0.5

ft = copy.deepcopy(ddpm)                                       # a copy: sections 6-7 use the network as trained
train_ddpm(b_train * 2 - 1, s_dig, labels=y_train.to(device), p_uncond=0.2, model=ft, steps=500, batch=128, lr=1e-3,
           seed=1, t_sampling="elbo", desc="fine-tune, t ~ lambda_t")
terms_ft = elbo_terms(ft, s_dig, x0_test, levels=2, generator=torch.Generator().manual_seed(4))
small_dd, small_ft = terms["per_step"][:11].sum().item(), terms_ft["per_step"][:11].sum().item()
print(f"500 more steps with t drawn in proportion to lambda_t: ELBO {-terms_ft['nelbo'].mean().item():.2f} "
      f"(was {ddpm_elbo:.2f}); t <= 10: {small_ft:.1f} nats (was {small_dd:.1f})")
assert small_dd - small_ft < 0.25 * small_dd                   # re-weighting alone buys back little of it

terms_beta = elbo_terms(ddpm, s_dig, x0_test, levels=2, variance="beta", generator=torch.Generator().manual_seed(4))
terms_pix_beta = elbo_terms(eps_independent, s_dig, x0_test, levels=2, variance="beta",
                            generator=torch.Generator().manual_seed(4))
elbo_var = {("DDPM", v): -tt["nelbo"].mean().item() for v, tt in (("beta~", terms), ("beta", terms_beta))}
elbo_var.update({("indep.", v): -tt["nelbo"].mean().item() for v, tt in (("beta~", terms_pix), ("beta", terms_pix_beta))})
print("ELBO with the reverse variance sigma_t^2 = beta~_t or beta_t:",
      ", ".join(f"{m} {v}: {e:.2f}" for (m, v), e in elbo_var.items()))
assert elbo_var[("DDPM", "beta")] > elbo_var[("DDPM", "beta~")] + 10 and elbo_var[("indep.", "beta~")] > elbo_var[("indep.", "beta")]

fig, axes = plt.subplots(1, 2, figsize=(9, 3))
ts = torch.arange(2, s_dig.T + 1)
axes[0].loglog(ts, terms["per_step"][2:], label=r"DDPM: $L_{t-1}$")
axes[0].loglog(ts, terms_pix["per_step"][2:].clamp_min(1e-3), "--", label="independent pixels, exact")
axes[0].loglog(ts, lam * D, ":", label=r"$\lambda_t \cdot 64$ (ε-error 1 per pixel)")
axes[0].set(xlabel="t", ylabel="nats (floored at 1e-3)", title="where the bound is lost"); axes[0].legend(fontsize=8)
axes[1].plot(hist_dig.smoothed(50)); axes[1].set(xlabel="step", ylabel=r"$L_{\mathrm{simple}}$", title="training")
plt.tight_layout(); plt.show()

# %% [markdown]
# Read the table from the top. The first ten steps (4 % of the chain) cost about two thirds of the DDPM's bound, and the
# exact denoiser of independent pixels pays nothing there: at $t \le 10$ the noise's standard deviation
# $\sqrt{1-\bar\alpha_t}$ is at most 0.14, so the sign of $x_t$ is $x_0$ (a flip would take a 7σ draw), and
# $\varepsilon = (x_t - \sqrt{\bar\alpha_t}\,x_0)/\sqrt{1-\bar\alpha_t}$ is *recoverable exactly*. The network's ε-error there is between 0.7 and 1 per pixel, little better than predicting
# $\varepsilon = 0$ (which scores 1). Each unit of that error costs $64\,\lambda_t$ nats, and $\lambda_t$ is largest exactly
# there (the "ELBO weight" column: the share of $\sum_t\lambda_t$ in each span). Beyond $t = 50$ the network does no
# better than independent pixels.
#
# **Why $L_{\text{simple}}$ gives these nats up.** It draws $t$ uniformly, so the first ten steps get 4 % of the training
# signal where the ELBO puts a quarter of its weight; and what it would have to learn there is hard for this network: at
# $t = 2$ the exact ε amplifies a pixel's deviation from $\pm\sqrt{\bar\alpha_t}$ by $1/\sqrt{1-\bar\alpha_2} \approx 30$ (50 at $t = 1$),
# while the time embedding only shifts the MLP's activations. Re-weighting alone does not buy the nats back within
# this budget: 500 more steps that draw $t$ in proportion to $\lambda_t$ (`t_sampling="elbo"`: the loss is then an unbiased
# estimate of the ELBO's $\sum_t L_{t-1}$) recover only a few of them (printed above). Sampling does not need them: an ε-error of 1 at $t = 2$ moves $x_1$ by
# $\beta_2/\sqrt{\alpha_2(1-\bar\alpha_2)} \approx 0.02$, invisible once the sample is binarised. So $L_{\text{simple}}$ trades
# these nats for samples, and the bound shows the price in full. Ho et al. report the same direction of trade but a far
# smaller one (3.75 against 3.70 bits per dimension on CIFAR-10 for $L_{\text{simple}}$ against the true bound), with a
# U-Net and far more training.
#
# **The reverse variance.** With $\sigma_t^2 = \beta_t$ instead of $\tilde\beta_t$ the same network's bound is about 40 nats
# better: at the smallest $t$, $\beta_t$ is up to three times $\tilde\beta_t$, and a wider reverse kernel divides the cost of a wrong mean by
# $\beta_t/\tilde\beta_t$ for a constant $\frac12(\tilde\beta_t/\beta_t - 1 - \log\tilde\beta_t/\beta_t)$ per pixel: the right trade for a mean that
# is off. For the exact denoiser it is the wrong one ($\tilde\beta_t$ is then the true posterior variance), as the last line
# printed shows. (A cosine schedule is worse still for the bound: its last $\beta_t$ are clipped at 0.999, so
# $\alpha_t \approx 10^{-3}$ and $\lambda_t$ explodes at the *end* of the chain as well.) The samples tell a different story.
#
# **Samples, measured.** Chapter 05's Fréchet digits distance and precision/recall (both in its classifier's feature
# space, `digits_scores`) of 500 samples from each model against the 359 binarised test digits, each next to its noise
# floor *at the same sample sizes*: 500 real training digits in place of the model's samples, five fresh draws
# (`noise_floor`, mean ± standard deviation). Chapter 05's digits GAN is trained again by the same function
# (`train_digits_gan`, same data, same seed: the same model), on the grey digits, and its samples are binarised at 0.5.

# %%
clf = digits_classifier()
gan, _ = train_digits_gan(x_train.to(device))                  # chapter 05's digits WGAN-GP, the same call
n_dig = 500
x_ddpm = (ancestral_sample(ddpm, s_dig, (n_dig, 1, 8, 8), device=device, generator=torch.Generator().manual_seed(5),
                           clip=1.0) > 0).float().cpu()
with torch.no_grad():
    x_vae = (vae.sample(n_dig, generator=torch.Generator().manual_seed(6)) > 0.5).float().cpu()
    x_gan = (gan(torch.randn(n_dig, gan.latent_dim, generator=torch.Generator().manual_seed(7)).to(device)) > 0.5).float().cpu()
b_test_c, b_train_c = b_test.cpu(), b_train.cpu()
floor = noise_floor(lambda s: digits_scores(s, b_test_c), b_train_c, n_dig)
(f_fd, f_p, f_r), (s_fd, s_p, s_r) = floor["mean"], floor["std"]
print(f"{'':>24} {'Fréchet digits dist.':>22} {'precision':>10} {'recall':>8}")
print(f"{'real digits (floor)':>24} {f_fd:>14.3f} ± {s_fd:.3f} {f_p:>7.3f}±{s_p:.3f} {f_r:>5.3f}±{s_r:.3f}")
scores = {}
for name, xs in (("DDPM", x_ddpm), ("VAE (ch. 03)", x_vae), ("GAN (ch. 05)", x_gan)):
    scores[name] = digits_scores(xs, b_test_c)
    fd, p_, r_ = scores[name]
    print(f"{name:>24} {fd:>8.3f} = {fd / f_fd:4.1f}x floor {p_:>10.3f} {r_:>8.3f}")
(fd_ddpm, p_ddpm, r_ddpm), (fd_vae, p_vae, r_vae), (fd_gan, p_gan, r_gan) = scores.values()
assert r_ddpm > r_vae and p_vae > p_ddpm       # the DDPM covers more of the data, the VAE's samples are cleaner
assert r_gan > r_vae and p_vae > p_gan          # the GAN fails in the DDPM's direction
assert min(fd_ddpm, fd_vae, fd_gan) > f_fd + 3 * s_fd           # every model is measurably off the real digits

fig, axes = plt.subplots(1, 3, figsize=(13, 2.6))
image_grid(axes[0], x_ddpm[:32], nrow=8, title="DDPM samples (x̂₀ clipped to [-1, 1])")
image_grid(axes[1], x_vae[:32], nrow=8, title="VAE samples (binarised means)")
image_grid(axes[2], x_gan[:32], nrow=8, title="GAN samples (binarised at 0.5)")
plt.tight_layout(); plt.show()

# %% [markdown]
# Unconditionally, the DDPM's samples cover more of the test digits than the VAE's (higher recall) but fewer of them are
# clean digits (lower precision), and its Fréchet distance is larger; the class-conditional samples below do better.
# The GAN sits with the DDPM: high recall, low precision. Both have a recall *above* the floor's: scattered samples have
# wide nearest-neighbour balls that cover many real digits, so recall rewards spread and only precision catches it. Every
# model is two to five noise floors away from real digits in Fréchet distance, and a ranking by that one number would hide
# that the VAE and the other two fail in opposite directions. The likelihood
# ranking (VAE far ahead of the DDPM) agrees with the Fréchet distance in direction, but not in size: most of the DDPM's
# gap in section 5's bound is lost in the first steps of the chain, on which the samples barely depend. (The VAE's
# "samples" are its binarised decoder means, the mode of each image's pixels rather than a draw from them: that favours
# its precision.)
# The sampler clips the predicted $\hat x_0$ to $[-1, 1]$ (`clip=1.0`): right for the digits, which live there, and wrong
# for 2-D toys living in $[-4, 4]$ (the toys above are sampled without it).
#
# ## 6 · Guidance
#
# **Classifier guidance** (lecture 9.1): $\nabla\log p(x_t\mid y) = \nabla\log p(x_t) + \nabla\log p(y\mid x_t)$, scaled:
# $s^w = s_\theta + w\,\nabla\log p_\phi(y\mid x_t, t)$, in ε-form $\varepsilon^w = \varepsilon_\theta - w\sqrt{1-\bar\alpha_t}\,\nabla\log p_\phi(y\mid x_t,t)$.
# With the 8 components of `8gaussians` as labels, the exact $p(y\mid x_t)$ is a ratio of mixtures, so the guided score
# can be computed two ways: `classifier_guided_eps` with the exact classifier, against the exact score of the
# component $y$'s own marginal (the true conditional at $w = 1$).

# %%
class ExactComponentClassifier(torch.nn.Module):
    """log p(y | x_t) for the components of a Gaussian mixture: the responsibilities of q_t's components."""
    def forward(self, x, t):
        ab = s100.alpha_bars[t].to(x).reshape(-1, 1, 1)
        d2 = (x[:, None, :] - ab.sqrt() * means.to(x)).pow(2).sum(-1)                 # [B, K]
        return -d2 / (2 * (ab[:, :, 0] * std**2 + 1 - ab[:, :, 0]))

xq = torch.randn(6, 2, dtype=torch.float64) * 2
tq = torch.full((6,), 30)
y_q = 2
ab30 = s100.alpha_bars[30].item()
guided = classifier_guided_eps(eps_star(xq, tq), xq, tq, y_q, ExactComponentClassifier(), 1.0, s100)
_, score_y = mixture_score(xq, math.sqrt(ab30) * means[y_q:y_q + 1], math.sqrt(ab30 * std**2 + 1 - ab30))
assert torch.allclose(s100.eps_to_score(guided, tq), score_y, atol=1e-8)       # w = 1: the conditional score
wrong_sign = eps_star(xq, tq) + (eps_star(xq, tq) - guided)
assert not torch.allclose(s100.eps_to_score(wrong_sign, tq), score_y, atol=1e-2)
print("guided score at w = 1 equals the score of component", y_q, "(two ways); the opposite sign does not")

# %% [markdown]
# Now a *trained* noise-conditioned classifier $p_\phi(y\mid x_t, t)$ (cross-entropy on noised points at random $t$),
# guiding the trained unconditional 8gaussians model towards component 0.

# %%
p8 = toy("8gaussians")
g8 = torch.Generator().manual_seed(7)
k8 = torch.randint(8, (20_000,), generator=g8)
x8 = (means[k8] + std * torch.randn(20_000, 2, generator=g8, dtype=torch.float64)).float().to(device)
clf8, _ = train_noisy_classifier(x8, k8.to(device), s100, hidden=64, steps=600)
m8 = toy_models["8gaussians"]
print(f"{'w':>5} {'share in component 0':>22}")
share8, chains8 = {}, {}
for w in (0.0, 1.0, 3.0):
    xs, chains8[w] = ancestral_sample(lambda x, t: classifier_guided_eps(m8(x, t), x, t, 0, clf8, w, s100), s100,
                                      (1000, 2), device=device, generator=torch.Generator().manual_seed(8),
                                      keep=range(0, 101, 10))
    xs = xs.cpu()
    share8[w] = (torch.cdist(xs.double(), means).argmin(1) == 0).double().mean().item()
    print(f"{w:>5} {share8[w]:>22.3f}")
assert share8[0.0] < 0.25 and share8[1.0] > 0.95     # w = 1 targets the true conditional: all in component 0

# %% [markdown]
# **Classifier-free guidance**: $\varepsilon^w = (1-w)\,\varepsilon_\theta(x_t,\varnothing) + w\,\varepsilon_\theta(x_t, y)$
# (the notes' $\gamma$ is our $w$): $w = 0$ is the unconditional model, $w = 1$ the conditional one, and $w > 1$ follows
# the implicit classifier $\nabla\log p(y\mid x_t) \approx s(x_t\mid y) - s(x_t)$ $w$ times. Two conventions to check on
# the trained digits network: the scale (above), and the label dropout that trained the null label: `loss_simple`
# replaces each label by the null label with probability $p_{\text{uncond}} = 0.2$ (a label is *dropped* with that
# probability; the inverted `rand > p_uncond`, shipped once by a well-known course, still trains, but keeps it). Count
# the null labels the network receives in one pass over the training digits. Then sweep $w$: the share of samples that
# chapter 05's digits classifier assigns to the requested class against recall (diversity), each next to its noise
# floor for 300 samples. At $w = 2$ at least 95 % of the samples are of the requested class, and recall is lower than
# at $w = 1$: guidance trades diversity for fidelity. At $w = 2$ the Fréchet distance is down at its floor while recall
# is far below the floor's: one number would call these samples perfect.

# %%
xq = torch.randn(8, 1, 8, 8, device=device)
tq = torch.full((8,), 50, device=device)
yq = torch.arange(8, device=device)
with torch.no_grad():
    assert torch.allclose(cfg_eps(ddpm, xq, tq, yq, 0.0), ddpm(xq, tq), atol=1e-6)            # w = 0: unconditional
    assert torch.allclose(cfg_eps(ddpm, xq, tq, yq, 1.0), ddpm(xq, tq, yq), atol=1e-5)        # w = 1: conditional
print(inspect.getsource(cfg_eps).split('"""')[-1])


class LabelCounter(torch.nn.Module):
    """Passes everything to the network and keeps the labels it was given."""
    def __init__(self, net):
        super().__init__()
        self.net, self.null_label, self.seen = net, net.null_label, []

    def forward(self, x, t, y=None):
        self.seen.append(y)
        return self.net(x, t, y)


counter = LabelCounter(ddpm)
with torch.no_grad():
    loss_simple(counter, s_dig, b_train * 2 - 1, y_train.to(device), p_uncond=0.2, generator=torch.Generator().manual_seed(10))
null_share = (counter.seen[0] == ddpm.null_label).double().mean().item()
null_se = math.sqrt(0.2 * 0.8 / len(b_train))
print(f"label dropout: {null_share:.3f} of the {len(b_train)} labels became the null label (p_uncond = 0.2 ± {null_se:.3f})")
assert abs(null_share - 0.2) < 4 * null_se                    # the inverted dropout gives 0.8

y_req = torch.arange(10).repeat(30).to(device)
floor_300 = noise_floor(lambda s: digits_scores(s, b_test_c), b_train_c, len(y_req))
print(f"real digits, 300 (floor): Fréchet digits distance {floor_300['mean'][0]:.3f} ± {floor_300['std'][0]:.3f}, "
      f"precision {floor_300['mean'][1]:.2f}, recall {floor_300['mean'][2]:.2f}")
sweep = {}
for w in (0.0, 1.0, 2.0):
    xs = ancestral_sample(lambda x, t: cfg_eps(ddpm, x, t, y_req, w), s_dig, (300, 1, 8, 8), device=device, clip=1.0,
                          generator=torch.Generator().manual_seed(9))
    xs = (xs > 0).float().cpu()
    share = (clf.logits(xs).argmax(1) == y_req.cpu()).double().mean().item()
    fd, prec, rec = digits_scores(xs, b_test_c)
    sweep[w] = (share, prec, rec, xs, fd)
    print(f"w = {w:3.1f}: requested class {share:5.1%}, precision {prec:.2f}, recall {rec:.2f}, "
          f"Fréchet digits distance {fd:.3f} ({fd / floor_300['mean'][0]:.1f}x floor)")
assert sweep[0.0][0] < 0.3 and sweep[2.0][0] >= 0.95 and sweep[2.0][2] < sweep[1.0][2]
assert sweep[2.0][4] < floor_300["mean"][0] + 2 * floor_300["std"][0] and sweep[2.0][2] < floor_300["mean"][2] - 0.1

fig, axes = plt.subplots(1, 3, figsize=(12, 2.4))
for ax, (w, (share, _, _, xs, _)) in zip(axes, sweep.items()):
    image_grid(ax, xs[:30], nrow=10, title=f"w = {w:g}: {share:.0%} of the requested class")
fig.suptitle("classifier-free guidance: column j asks for the digit j", fontsize=10)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## 7 · Explore: forward marginals, reverse particles, guidance
#
# Move $t$ from $T$ down to 0: left, the data noised in closed form, $q(x_t)$; right, the particles of the trained
# 8gaussians DDPM's reverse chain at the same $t$, guided towards component 0 with classifier guidance of scale $w$.
# At $w = 0$ the two panels show the same distribution at every $t$ (that is what a good reverse chain does); with
# $w > 0$ the particles leave the other components early, while the noise is still large.

# %%
ddpm_explorer(s100, x_ref, chains8)

# %% [markdown]
# ## Pitfalls
# * **A chain too short to reach noise**: the linear $10^{-4}\ldots0.02$ schedule with $T = 50$ leaves $\bar\alpha_T\approx0.6$
#   and $L_T$ of nearly 3 nats (section 1's table). Print the KL for the $T$ you use.
# * **Off-by-one in $t$**: here index $t$ is the notes' $t$ ($\bar\alpha_0 = 1$); libraries store $\bar\alpha_{t+1}$ at `[t]`.
# * **β instead of $\tilde\beta$**: both are valid reverse variances with different meanings; $\tilde\beta_t$ is the
#   posterior's, and $\tilde\beta_1 = 0$, so $L_0$ needs its own variance ($\beta_1$ here).
# * **Clipping $\hat x_0$**: right for data in a known box (digits), destructive for 2-D data in $[-4, 4]$; without it,
#   strongly guided digit samples leave $[-1, 1]$ and fall apart.
# * **Guidance sign and scale**: $w = 0$ must give the unconditional model; the classifier's gradient enters the
#   ε-form with a *minus* sign. Label dropout drops with probability $p_{\text{uncond}}$, not keeps.
# * **Time embedding sign**: frequencies $1\ldots10^{-4}$ (`timestep_embedding`), not $1\ldots10^{4}$.
# * **Likelihoods on the same footing**: binary data, a discrete $L_0$, nats per image; convert to bits/dim once.
#
# ## Summary
# * $q(x_t\mid x_0) = \mathcal N(\sqrt{\bar\alpha_t}x_0, (1-\bar\alpha_t)I)$; $q(x_{t-1}\mid x_t,x_0) = \mathcal N(\tilde\mu_t, \tilde\beta_t I)$.
# * $-\text{ELBO} = L_T + \sum L_{t-1} + L_0$, with $L_{t-1} = \lambda_t\|\varepsilon-\varepsilon_\theta\|^2$;
#   $L_{\text{simple}}$ drops $\lambda_t$: better samples, a much worse bound.
# * $\varepsilon_\theta = -\sqrt{1-\bar\alpha_t}\,s_\theta$; with mixture data the exact denoiser isolates the sampler's error.
# * Guidance adds $w$ times a classifier's gradient (explicit, or implicit as $s(x\mid y) - s(x)$).
#
# **Homework 07** (`exercises/hw07_ddpm/`): $q(x_t\mid x_0)$, the posterior, the ε-parameterised mean, one ancestral
# step, a small DDPM on a toy, the classifier-free combination, and a written question on $L_{\text{simple}}$.
