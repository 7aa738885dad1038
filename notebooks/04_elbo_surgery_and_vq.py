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
# # 04 · ELBO surgery, priors, posterior collapse and the VQ-VAE
#
# **Follows** lecture 4 of the course notes (`003`: 4.1 the VQ-VAE, 4.2 ELBO surgery), and builds on chapter 03.
#
# **Goals.** By the end you can
# 1. split the ELBO's KL term into the mutual information between data and code plus the KL from the *aggregate
#    posterior* to the prior, and estimate all three terms for a trained VAE;
# 2. say why the best prior is the aggregate posterior, and measure what a learnable prior (a mixture, a flow) buys;
# 3. recognise posterior collapse in the per-dimension KL, and read a β-VAE sweep as a rate–distortion curve;
# 4. build a VQ-VAE: a discrete latent, nearest-neighbour quantisation, the straight-through gradient, the codebook and
#    commitment losses, and check how much of the codebook is used.
#
# **Prerequisites.** Chapter 03 (the ELBO, the Gaussian KL, the VAE on the digits); chapter 02 (MAF) for the flow prior.
#
# ### Notation
# | symbol | meaning |
# |---|---|
# | $x_1, \dots, x_n$ | the training images; $p_{\text{data}}$ is uniform on them |
# | $q_\phi(z\mid x)$, $p(z)$, $p_\theta(x\mid z)$ | encoder, prior, decoder |
# | $q(z) = \frac1n\sum_i q_\phi(z\mid x_i)$ | the **aggregate posterior** ($q_{\text{agg},\phi}$ in the notes) |
# | $\mathbb{I}_q[x; z] = \frac1n\sum_i \mathrm{KL}(q_\phi(z\mid x_i)\,\|\,q(z))$ | mutual information of $x$ and $z$ under $p_{\text{data}}(x)\,q_\phi(z\mid x)$ |
# | $R = \frac1n\sum_i \mathrm{KL}(q_\phi(z\mid x_i)\,\|\,p(z))$, $D = -\frac1n\sum_i\mathbb{E}_{q}\log p_\theta(x_i\mid z)$ | rate and distortion (nats); $-\text{ELBO} = R + D$ |
# | $\{e_k\}_{k=1}^K \subset \mathbb{R}^d$, $\mathrm{sg}[\cdot]$ | VQ codebook; stop-gradient |

# %%
import math

import matplotlib.pyplot as plt
import torch

from course_utils import get_device, seed_everything, set_threads
from course_utils.data import load_digits
from course_utils.flows import maf_flow
from course_utils.plotting import image_grid
from course_utils.priors import (AggregatePosterior, FlowPrior, MixturePrior, StandardNormalPrior, aggregate_log_prob_error,
                                 fit_prior, surgery_terms)
from course_utils.vae import VAE, AutoregressiveBernoulliDecoder, rate_distortion, train_digits_vae
from course_utils.vq import VQVAE, codebook_usage, train_digits_vqvae, vector_quantize
from course_utils.widgets import ACTIVE_NATS, beta_explorer, beta_measurements

seed_everything(0)
device = get_device()
set_threads()
print("computing on", device)

x_train, _ = load_digits("train")
x_test, y_test = load_digits("test")
x_train, x_test = (x_train > 0.5).float().to(device), (x_test > 0.5).float().to(device)

# chapter 03's VAE, trained by the same routine: 8-D latent, N(0, I) prior, MLP encoder and Bernoulli decoder
vae, _ = train_digits_vae(x_train, 8, steps=2000)


@torch.no_grad()
def mean_elbo(model, x, reps=20, seed=1):
    """The ELBO in nats per image, averaged over the images and `reps` draws of z (seeded: common random numbers)."""
    torch.manual_seed(seed)
    return torch.stack([model.elbo(x) for _ in range(reps)]).mean().item()


print(f"chapter 03's VAE: train ELBO {mean_elbo(vae, x_train):.3f}, test ELBO {mean_elbo(vae, x_test):.3f} nats per image")

# %% [markdown]
# ## 1 · KL-term surgery
#
# Average the KL term of the ELBO over the data and put the aggregate posterior $q(z)$ in and out of the logarithm:
# $$\frac1n\sum_i \mathrm{KL}\big(q(z\mid x_i)\,\|\,p(z)\big) = \frac1n\sum_i \int q(z\mid x_i)\log\frac{q(z\mid x_i)\,q(z)}{q(z)\,p(z)}\,dz
# = \underbrace{\frac1n\sum_i \mathrm{KL}\big(q(z\mid x_i)\,\|\,q(z)\big)}_{\mathbb{I}_q[x;\,z]} + \underbrace{\int q(z)\log\frac{q(z)}{p(z)}\,dz}_{\mathrm{KL}(q(z)\,\|\,p(z))},$$
# using $\frac1n\sum_i q(z\mid x_i) = q(z)$ in the second integral. The KL term penalises two different things: how much the
# code says about *which* image it came from (the mutual information), and how far the cloud of all codes is from the prior.
# Since $p_{\text{data}}$ is uniform on $n$ points, $\mathbb{I}_q[x; z] \le H(x) = \log n$.
#
# **Estimate** all three for chapter 03's VAE (`course_utils.priors.surgery_terms`). The mean KL is in closed form; the other
# two are Monte Carlo averages over $z \sim q(z\mid x_i)$ with $\log q(z) = \operatorname{logsumexp}_j \log q(z\mid x_j) - \log n$,
# each with its own draws. **What the identity checks**: the closed-form mean KL against the two Monte Carlo estimates and
# their sampling (a wrong $\log q(z\mid x_i)$, a wrong prior, draws with the wrong spread all break it). **What it cannot
# check** is $\log q(z)$ itself: an error $e(z)$ in it enters $\mathbb{I}_q$ as $-\mathbb{E}_{q(z)}[e]$ and the marginal KL as
# $+\mathbb{E}_{q(z)}[e]$ (both average over $z \sim q(z)$), and cancels. So $\log q(z)$ gets its own check: against
# `torch.distributions`' mixture of the same $n$ Gaussians, and through the two extremes below ($\mathbb{I}_q = 0$ and $\log n$),
# which a missing $-\log n$ or a $q(z)$ built from the wrong components fails.

# %%
with torch.no_grad():
    mu, logvar = vae.encoder(x_train)
terms = surgery_terms(mu, logvar, samples_per_point=10, generator=torch.Generator().manual_seed(0))
print(terms)
assert abs(terms.gap) < 4 * terms.gap_se                        # mean KL = I_q + KL(q(z) || p(z)), within Monte Carlo error
assert 0 < terms.mutual_info < terms.log_n and terms.marginal_kl > 0
log_q_error = aggregate_log_prob_error(mu, logvar, generator=torch.Generator().manual_seed(5))
print(f"log q(z) against torch.distributions' mixture: largest difference {log_q_error:.1e} nats")
assert log_q_error < 1e-8                                      # the one term the identity cannot check
print(f"mutual information is {terms.mutual_info / terms.avg_kl:.0%} of the KL term")

# the two extremes: identical posteriors carry no information (I = 0); far-apart posteriors identify the image (I = log n)
same = surgery_terms(torch.ones(50, 2), torch.zeros(50, 2), generator=torch.Generator().manual_seed(1))
apart = surgery_terms(torch.arange(50.0)[:, None] * torch.tensor([40.0, 0.0]), torch.zeros(50, 2), generator=torch.Generator().manual_seed(1))
print(f"identical posteriors: I = {same.mutual_info:.2e};  far-apart posteriors: I = {apart.mutual_info:.4f}, log n = {math.log(50):.4f}")
assert abs(same.mutual_info) < 1e-9 and abs(apart.mutual_info - math.log(50)) < 1e-6

# %% [markdown]
# Most of the KL term is mutual information — the price of a code that tells the digits apart, which no prior can lower —
# and only a small part is the mismatch $\mathrm{KL}(q(z)\,\|\,p(z))$ between the codes' cloud and
# $\mathcal{N}(0, I)$.
#
# ## 2 · The optimal prior is the aggregate posterior
#
# Put the surgery back into the averaged ELBO:
# $$\frac1n\sum_i \mathcal{L}(x_i) = \underbrace{\frac1n\sum_i \mathbb{E}_{q(z\mid x_i)}\log p_\theta(x_i\mid z)}_{-D} \;-\; \mathbb{I}_q[x; z] \;-\; \mathrm{KL}\big(q(z)\,\|\,p(z)\big).$$
# **The prior appears only in the last term**, so for a fixed encoder and decoder the best prior is $p(z) = q(z)$, and
# switching to it raises the training ELBO by exactly $\mathrm{KL}(q(z)\,\|\,\mathcal{N}(0, I))$. But $q(z)$ is a mixture of $n$
# Gaussians: expensive (every $\log p(z)$ touches all training images), and it is fitted to the training set, so on new
# images it may overfit.
#
# **Check**, then fit two learnable priors to the frozen VAE's aggregate posterior by maximising $\mathbb{E}_{q(z)}\log p_\lambda(z)$
# (`fit_prior`): a mixture of 64 Gaussians, and a MAF flow from chapter 02. **The claim to check**: on the training images
# the aggregate posterior's ELBO beats every other prior's, by that prior's $\mathrm{KL}(q(z)\,\|\,p(z))$. (That the gain in
# training ELBO equals the drop in marginal KL holds for *any* prior by the algebra above; checking it, with the two sides
# estimated from different draws, only checks the code: that `VAE` really uses the prior it is given. And the aggregate
# posterior's own marginal KL is zero by construction, so it is printed, not checked.)

# %%
priors = {
    "N(0, I)": StandardNormalPrior(8).to(device),
    "aggregate posterior": AggregatePosterior(mu, logvar).to(device),
    "mixture of 64 Gaussians": MixturePrior(8, 64).to(device),
    "MAF flow (4 layers)": FlowPrior(maf_flow(8, 4, (64, 64))).to(device),
}
fit_prior(priors["mixture of 64 Gaussians"], mu, logvar, steps=1000, desc="mixture prior")
fit_prior(priors["MAF flow (4 layers)"], mu, logvar, steps=1000, desc="flow prior")

rows = {}
for name, prior in priors.items():
    with_prior = VAE(vae.encoder, vae.decoder, prior)     # same encoder and decoder; the KL term by Monte Carlo
    mkl = surgery_terms(mu, logvar, prior.log_prob, generator=torch.Generator().manual_seed(2))
    rows[name] = dict(marginal_kl=mkl.marginal_kl, se=mkl.marginal_kl_se, train=mean_elbo(with_prior, x_train),
                      test=mean_elbo(with_prior, x_test), params=sum(p.numel() for p in prior.parameters()))
base = rows["N(0, I)"]
print(f"{'prior':>24s}  KL(q(z)||p(z))   train ELBO  (gain)    test ELBO  (gain)   parameters")
for name, r in rows.items():
    print(f"{name:>24s}  {r['marginal_kl']:6.3f} ± {r['se']:.3f}   {r['train']:8.3f}  ({r['train'] - base['train']:+.3f})  "
          f"{r['test']:8.3f}  ({r['test'] - base['test']:+.3f})   {r['params']:>6d}")
    predicted = base["marginal_kl"] - r["marginal_kl"]   # the ELBO gain that the surgery predicts (a code check, see above)
    assert abs((r["train"] - base["train"]) - predicted) < 4 * math.hypot(r["se"], base["se"]) + 0.02
best = rows["aggregate posterior"]["train"]
for name, r in rows.items():                             # the claim: q(z) is the best prior on the training images
    if name != "aggregate posterior":
        assert best - r["train"] > 4 * r["se"] + 0.02, f"{name} is as good a prior as q(z) on the training images"
assert rows["MAF flow (4 layers)"]["test"] > base["test"] and rows["mixture of 64 Gaussians"]["test"] > base["test"]
assert 0.35 < rows["mixture of 64 Gaussians"]["marginal_kl"] / base["marginal_kl"] < 0.65          # "about half"
assert rows["mixture of 64 Gaussians"]["params"] == 64 * (2 * 8 + 1) and 20_000 < rows["MAF flow (4 layers)"]["params"] < 26_000
assert rows["aggregate posterior"]["test"] - base["test"] < rows["aggregate posterior"]["train"] - base["train"]  # it overfits

# %% [markdown]
# The aggregate posterior is optimal on the training images, by construction, and gains less on test images than on
# training ones: it memorised the training codes. The mixture closes about half of the marginal-KL gap with 1,088 numbers;
# the flow does about as well with some 23,000 parameters, as many numbers as $q(z)$ itself stores ($2 \times 8 \times 1438 = 23{,}008$
# means and log-variances). Both keep their gain on test images (checked below the table). (The VampPrior is a third choice: a mixture of the
# encoder's own posteriors at $K$ learnt pseudo-images, a small stand-in for the aggregate posterior.)
#
# **Holes.** Where does a prior put codes that no training image encodes to? Call $z$ a hole when $\log q(z)$ is below the
# 1% quantile of $\log q(z)$ over $q$'s own samples (so 1% of $q$'s samples are holes, by construction), and count the
# prior samples that are holes. Below, samples of each prior in the two most informative latent dimensions, and the decoder's
# mean images at them. In two dimensions the clouds look alike — the mismatch lives in the 8-D shape — but the hole count and
# the samples' titles show it: codes from $\mathcal{N}(0, I)$ land in holes several times as often as codes from $q(z)$
# itself, and a learnt prior cuts that down. Codes in holes are where the decoder has seen nothing, and they decode to blends.

# %%
kl_dims = rate_distortion(vae, x_train)["kl_per_dim"]
d1, d2 = torch.argsort(kl_dims, descending=True)[:2].tolist()
gen = torch.Generator().manual_seed(3)
agg = priors["aggregate posterior"]
hole_level = agg.log_prob(agg.sample(5000, generator=gen)).quantile(0.01)       # 1% of q(z)'s own samples lie below
in_holes = {}
fig, axes = plt.subplots(2, 4, figsize=(13, 6.2), gridspec_kw={"height_ratios": [1.25, 1]})
for j, (name, prior) in enumerate(priors.items()):
    z = prior.sample(2000, generator=gen).float()
    in_holes[name] = (agg.log_prob(z) < hole_level).float().mean().item()
    axes[0, j].scatter(z[:, d1].cpu(), z[:, d2].cpu(), s=2, alpha=0.5, color="C0" if j == 1 else "C1")
    axes[0, j].set_xlim(-3.5, 3.5); axes[0, j].set_ylim(-3.5, 3.5); axes[0, j].set_aspect("equal")
    axes[0, j].set_title(f"{name}: {in_holes[name]:.1%} in holes\nsamples, $z_{{{d1 + 1}}}$ vs $z_{{{d2 + 1}}}$", fontsize=9)
    with torch.no_grad():
        image_grid(axes[1, j], torch.sigmoid(vae.decoder(z[:32].to(device))).cpu(), nrow=8, title=f"decoder means: {name}")
    axes[1, j].title.set_fontsize(9)
fig.tight_layout()
plt.show()
print("prior samples in holes of q(z): " + ", ".join(f"{k} {v:.1%}" for k, v in in_holes.items()))
assert in_holes["N(0, I)"] > max(in_holes["mixture of 64 Gaussians"], in_holes["MAF flow (4 layers)"], 2 * in_holes["aggregate posterior"])

# %% [markdown]
# **Training with the prior.** Fitting after the fact keeps the encoder that was shaped by $\mathcal{N}(0, I)$. Training the
# VAE and a flow prior together lets the encoder use the freedom: the codes no longer need to look like $\mathcal{N}(0, I)$ at
# all (their KL to it becomes large), only like the flow. With 1438 training images this does *not* pay: the jointly trained
# model's test ELBO gains less over chapter 03's VAE than the priors fitted after the fact did (compare the printed gain with
# the table's test column). The extra freedom is spent fitting the training images.

# %%
vae_flow, _ = train_digits_vae(x_train, 8, prior=FlowPrior(maf_flow(8, 4, (64, 64))).to(device), steps=2000,
                               desc="VAE with a flow prior")
with torch.no_grad():
    mu_f, logvar_f = vae_flow.encoder(x_train)
joint = surgery_terms(mu_f, logvar_f, vae_flow.prior.log_prob, generator=torch.Generator().manual_seed(4))
joint_n = surgery_terms(mu_f, logvar_f, generator=torch.Generator().manual_seed(4))
print(f"trained with a flow prior: test ELBO {mean_elbo(vae_flow, x_test):.3f} (N(0, I): {base['test']:.3f}); "
      f"KL(q(z) || flow) = {joint.marginal_kl:.3f} ± {joint.marginal_kl_se:.3f}, "
      f"KL(q(z) || N(0, I)) = {joint_n.marginal_kl:.3f}, I_q = {joint.mutual_info:.3f}")
joint_gain = mean_elbo(vae_flow, x_test) - base["test"]
fitted_gains = {name: rows[name]["test"] - base["test"] for name in ("mixture of 64 Gaussians", "MAF flow (4 layers)")}
print(f"test-ELBO gain over chapter 03's VAE: trained jointly {joint_gain:+.3f}; fitted afterwards "
      + ", ".join(f"{k} {v:+.3f}" for k, v in fitted_gains.items()))
assert joint.marginal_kl < joint_n.marginal_kl
assert joint_gain < min(fitted_gains.values())                  # what the text says: joint training does not pay here

# %% [markdown]
# ## 3 · Posterior collapse
#
# The ELBO is $\log p_\theta(x) - \mathrm{KL}\big(q(z\mid x)\,\|\,p_\theta(z\mid x)\big)$ (chapter 03). If the decoder can model the data
# without $z$, then $p_\theta(x\mid z) = p_\theta(x)$, the true posterior is the prior, and the ELBO becomes
# $\log p_\theta(x) - \mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)$. (That is the notes' formula: their $q(z)$ in this section, and in
# their KL-annealing and free-bits objectives, denotes the prior $p(z)$ — not the aggregate posterior of §1.) It is maximised by $q(z\mid x) = p(z)$ for every $x$:
# the code carries nothing, the KL term is 0, and $D = -\log p_\theta(x)$. Every nat of information in $z$ is paid for in the
# KL term, so an optimiser stops using $z$ wherever the decoder can do without it. The symptom is in the **per-dimension KL**:
# a collapsed dimension has $\mathrm{KL}(q(z_j\mid x)\,\|\,\mathcal{N}(0, 1)) \approx 0$ for every $x$.
#
# **The β-VAE** trains on $D + \beta R$. $\beta = 1$ is the ELBO; $\beta < 1$ buys sharper reconstructions with more information
# (and is no longer a bound on $\log p(x)$), $\beta > 1$ squeezes the code until it collapses. Plotted against each other, the
# trained models trace a **rate–distortion curve**; lines of constant $-$ELBO $= R + D$ have slope $-1$.

# %%
betas = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0)
sweep = {b: train_digits_vae(x_train, 8, steps=1500, beta=b, desc=f"β = {b:g}")[0] for b in betas}
rd = beta_measurements(sweep, x_test)       # rate, distortion and per-dimension KL of each model (seeded)
print("   β    rate R  distortion D   R + D   active dimensions")
for b in betas:
    r = rd[b]
    print(f"{b:5.1f}  {r['rate']:7.2f}  {r['distortion']:11.2f}  {r['rate'] + r['distortion']:7.2f}   "
          f"{int((r['kl_per_dim'] > ACTIVE_NATS).sum())} of 8")
rates = [rd[b]["rate"] for b in betas]
assert all(r1 > r2 for r1, r2 in zip(rates, rates[1:]))              # more weight on the rate, less rate
assert min(betas, key=lambda b: rd[b]["rate"] + rd[b]["distortion"]) == 1.0   # the ELBO-trained model has the best ELBO

# full collapse at β = 5: no dimension is used, and the decoder outputs the average image for every code, so its
# distortion is the negative log-likelihood of independent pixels with the training set's pixel frequencies
pixel_freq = x_train.mean(0).clamp(1e-3, 1 - 1e-3)
independent_nll = -(x_test * pixel_freq.log() + (1 - x_test) * (1 - pixel_freq).log()).flatten(1).sum(-1).mean().item()
print(f"β = 5: distortion {rd[5.0]['distortion']:.2f}, independent-pixel NLL {independent_nll:.2f}")
assert (rd[5.0]["kl_per_dim"] < ACTIVE_NATS).all() and abs(rd[5.0]["distortion"] - independent_nll) < 0.5

# %% [markdown]
# **A decoder strong enough to ignore $z$.** Keep $\beta = 1$ but give the decoder the pixels: an autoregressive decoder
# $p_\theta(x\mid z) = \prod_i p_\theta(x_i\mid x_{<i}, z)$ (a MADE over the 64 pixels, `AutoregressiveBernoulliDecoder`) can model
# much of each digit from the pixels above it, so the code is needed less and the rate falls:

# %%
vae_ar, _ = train_digits_vae(x_train, 8, steps=2000, decoder=AutoregressiveBernoulliDecoder(8, (1, 8, 8), 512).to(device),
                             desc="VAE, autoregressive decoder")
torch.manual_seed(0)
rd_ar, rd_mlp = rate_distortion(vae_ar, x_test), rate_distortion(vae, x_test)   # both trained for 2000 steps
print(f"MLP decoder:            rate {rd_mlp['rate']:.2f}, distortion {rd_mlp['distortion']:.2f}, test ELBO {mean_elbo(vae, x_test):.2f}")
print(f"autoregressive decoder: rate {rd_ar['rate']:.2f}, distortion {rd_ar['distortion']:.2f}, test ELBO {mean_elbo(vae_ar, x_test):.2f}")
print("per-dimension KL (MLP):           ", "  ".join(f"{v:.3f}" for v in rd_mlp["kl_per_dim"].tolist()))
print("per-dimension KL (autoregressive):", "  ".join(f"{v:.3f}" for v in rd_ar["kl_per_dim"].tolist()))
active = {k: int((r["kl_per_dim"] > ACTIVE_NATS).sum()) for k, r in (("MLP", rd_mlp), ("autoregressive", rd_ar))}
print(f"active dimensions (mean KL above {ACTIVE_NATS} nats): MLP {active['MLP']} of 8, autoregressive {active['autoregressive']} of 8")
assert rd_ar["rate"] < rd_mlp["rate"] - 1.0 and mean_elbo(vae_ar, x_test) > mean_elbo(vae, x_test)   # less rate, better ELBO
assert active["autoregressive"] >= active["MLP"]                # the rate falls without switching dimensions off

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
axes[0].plot(rates, [rd[b]["distortion"] for b in betas], "o-", label="β-VAE sweep (MLP decoder)")
for b in betas:
    axes[0].annotate(f"β={b:g}", (rd[b]["rate"], rd[b]["distortion"]), textcoords="offset points", xytext=(4, 3), fontsize=8)
axes[0].plot(rd_ar["rate"], rd_ar["distortion"], "s", color="C3", label="autoregressive decoder, β = 1")
axes[0].set_xlabel("rate R [nats]"); axes[0].set_ylabel("distortion D [nats]"); axes[0].legend(fontsize=8)
axes[0].set_title("rate–distortion on the test digits", fontsize=10)
width = 0.38
axes[1].bar(torch.arange(1, 9) - width / 2, rd_mlp["kl_per_dim"], width, label="MLP decoder")
axes[1].bar(torch.arange(1, 9) + width / 2, rd_ar["kl_per_dim"], width, label="autoregressive decoder", color="C3")
axes[1].axhline(ACTIVE_NATS, color="k", lw=0.6, ls="--")
axes[1].set_yscale("symlog", linthresh=0.01); axes[1].set_xticks(range(1, 9))
axes[1].set_ylim(0, 30)                                     # headroom above the bars: the legend covers no data
axes[1].set_xlabel("latent dimension $j$"); axes[1].set_ylabel("mean KL of $z_j$ [nats]"); axes[1].legend(fontsize=8)
axes[1].set_title("per-dimension KL at β = 1 (dashed: collapsed below)", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The autoregressive decoder reaches a *better* ELBO with *less* rate: it models the dependence between pixels itself and
# leaves the code less to carry. But it does not switch dimensions off: the rate falls by spreading less information over
# about as many dimensions (the counts above; here it even collapses *fewer* dimensions than the MLP decoder). On 1438 images
# the collapse is partial — the code still helps this decoder — but the direction of the total rate is the one the argument
# above predicts, and with a stronger decoder and more data the rate goes to zero, which is what VAEs with autoregressive
# decoders have to fight (a weaker decoder, KL warm-up, "free bits").
#
# %% [markdown]
# ## 4 · VQ-VAE: a discrete latent
#
# **The KL term of a discrete latent.** Let $c \in \{1, \dots, K\}$ with the uniform prior $p(c) = 1/K$. Then
# $$\mathrm{KL}\big(q(c\mid x)\,\|\,p(c)\big) = \sum_k q(k\mid x)\log q(k\mid x) - \sum_k q(k\mid x)\log\tfrac1K = \log K - H\big(q(c\mid x)\big).$$
# A VQ-VAE's posterior is deterministic (one-hot, $H = 0$), so the KL term is the constant $\log K$ per code, and the ELBO is
# $\log p_\theta(x\mid z_q) - \log K$; with a code at each of $M$ positions, $-M\log K$. **Check:**

# %%
K = 10
q_logits = torch.randn(5, K, generator=torch.Generator().manual_seed(5))
q_c = torch.distributions.Categorical(logits=q_logits)
uniform = torch.distributions.Categorical(probs=torch.full((K,), 1 / K))
kl_c = torch.distributions.kl_divergence(q_c, uniform)
assert torch.allclose(kl_c, math.log(K) - q_c.entropy(), atol=1e-6)
one_hot = torch.distributions.Categorical(probs=torch.eye(K)[[3]])
assert torch.allclose(torch.distributions.kl_divergence(one_hot, uniform), torch.tensor([math.log(K)]))
print(f"KL(q || uniform) = log K - H(q): {kl_c.numpy().round(4)};  one-hot q: {math.log(K):.4f} = log {K}")

# %% [markdown]
# **Quantisation and the straight-through estimator.** The encoder outputs $z_e(x) \in \mathbb{R}^{M\times d}$; each of the $M$
# vectors is replaced by its nearest code, $z_q = e_{k^*}$ with $k^* = \arg\min_k \|z_e - e_k\|$. The $\arg\min$ has zero gradient
# almost everywhere, so the notes approximate $\partial z_q/\partial z_e \approx I$:
# $$\frac{\partial \log p_\theta(x\mid z_q)}{\partial \phi} \approx \frac{\partial \log p_\theta(x\mid z_q)}{\partial z_q}\,\frac{\partial z_e}{\partial\phi}.$$
# In code this is one line, $z_q = z_e + \mathrm{sg}[e_{k^*} - z_e]$: the value is $e_{k^*}$, the gradient flows to $z_e$ unchanged.
# The codes themselves get no gradient from the decoder that way, so two more terms train them:
# $$\mathcal{L}_{\text{VQ}} = -\log p_\theta(x\mid z_q) + \underbrace{\|\mathrm{sg}[z_e] - e_{k^*}\|^2}_{\text{codebook: moves the codes}} + \beta\,\underbrace{\|z_e - \mathrm{sg}[e_{k^*}]\|^2}_{\text{commitment: keeps } z_e \text{ near its code}}.$$
# **Check** on a fresh VQ-VAE (`course_utils.vq.vector_quantize`): the lookup is the nearest neighbour, the value is the code,
# the gradient reaching $z_e$ is the decoder's gradient *at* $z_q$, the encoder's parameters get that gradient through
# $\partial z_e/\partial\phi$, and each extra loss moves only its own side.

# %%
seed_everything(6)
vq_check = VQVAE((1, 8, 8), n_codes=32, code_dim=4, n_positions=4).to(device)
xb = x_train[:16]
z_e = vq_check.encode(xb)                                                   # [16, 4, 4]
q = vector_quantize(z_e, vq_check.codebook)
brute = torch.cdist(z_e.reshape(-1, 4), vq_check.codebook).argmin(-1).reshape(16, 4)
assert torch.equal(q.indices, brute)                                        # nearest neighbour
assert torch.allclose(q.z_q, vq_check.codebook[q.indices], atol=1e-6)       # the value is the code

rec_loss = -vq_check.log_likelihood(xb, vq_check.decode(q.z_q)).mean()
grad_at_z_e, = torch.autograd.grad(rec_loss, z_e, retain_graph=True)
z_q_leaf = vq_check.codebook[q.indices].detach().requires_grad_(True)
grad_at_z_q, = torch.autograd.grad(-vq_check.log_likelihood(xb, vq_check.decode(z_q_leaf)).mean(), z_q_leaf)
assert torch.allclose(grad_at_z_e, grad_at_z_q, atol=1e-6)                 # straight through: dL/dz_e = dL/dz_q

enc_params = list(vq_check.encoder.parameters())
through_st = torch.autograd.grad(rec_loss, enc_params, retain_graph=True)
chain_rule = torch.autograd.grad(z_e, enc_params, grad_outputs=grad_at_z_q, retain_graph=True)   # (dL/dz_q) (dz_e/dphi)
assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(through_st, chain_rule))

assert torch.autograd.grad(q.codebook_loss, z_e, retain_graph=True, allow_unused=True)[0] is None      # codebook loss: codes only
assert torch.autograd.grad(q.commitment_loss, vq_check.codebook, retain_graph=True, allow_unused=True)[0] is None  # commitment: encoder only
g_code, = torch.autograd.grad(q.codebook_loss, vq_check.codebook)
onehot = torch.nn.functional.one_hot(q.indices.flatten(), 32).float()          # [64, 32]
expected = 2 * (onehot.sum(0)[:, None] * vq_check.codebook - onehot.T @ z_e.detach().reshape(-1, 4)) / len(onehot)
assert torch.allclose(g_code, expected, atol=1e-5)                           # d/de_k mean||sg[z_e] - e_k||^2, used codes only
print(f"straight-through checks pass. At initialisation only {int((g_code.abs().sum(1) > 0).sum())} of 32 random codes are nearest "
      "to some encoder output of this batch: the others get no gradient at all (why we start the codes at encoder outputs)")

# %% [markdown]
# **Train** a VQ-VAE on the digits: $M = 4$ codes per image from one codebook of $K = 32$ vectors in $\mathbb{R}^4$
# ($32^4 \approx 10^6$ code tuples), the codes initialised at encoder outputs, $\beta = 0.25$. Its rate is fixed at
# $M\log K = 13.86$ nats. A codebook can die: codes that no encoder output is nearest to get no gradient and stay unused, so
# we count how often each code is chosen on the test set and report the perplexity $\exp H(\text{usage})$ (32 if all are used
# equally).

# %%
vq, vq_hist = train_digits_vqvae(x_train, steps=2000, n_codes=32, code_dim=4, n_positions=4)
with torch.no_grad():
    logits_q, q_test = vq(x_test)
    vq_rec = vq.log_likelihood(x_test, logits_q).mean().item()
    vq_elbo = vq.elbo(x_test).mean().item()
usage = codebook_usage(q_test.indices, vq.n_codes)
print(f"VQ-VAE on the test digits: log p(x|z_q) = {vq_rec:.2f}, rate M log K = {4 * math.log(32):.2f}, ELBO = {vq_elbo:.2f} nats "
      f"(Gaussian VAE: distortion {rd_mlp['distortion']:.2f}, rate {rd_mlp['rate']:.2f})")
print(f"codebook usage: {usage['used']} of {vq.n_codes} codes used, perplexity {usage['perplexity']:.1f}")
assert abs(vq_elbo - (vq_rec - 4 * math.log(32))) < 1e-4
assert vq_rec > -13.0 and usage["used"] >= 24

fig, axes = plt.subplots(1, 4, figsize=(14, 3.2), gridspec_kw={"width_ratios": [1.3, 1, 1, 1]})
order = torch.argsort(usage["counts"], descending=True)
axes[0].bar(range(32), usage["counts"][order] / usage["counts"].sum())
axes[0].axhline(1 / 32, color="k", ls="--", lw=0.8, label="uniform use")
axes[0].set_xlabel("code (sorted by use)"); axes[0].set_ylabel("fraction of test positions"); axes[0].legend(fontsize=8)
axes[0].set_title(f"codebook usage: {usage['used']}/32 used, perplexity {usage['perplexity']:.1f}", fontsize=10)
image_grid(axes[1], x_test[:16].cpu(), nrow=8, title="test digits")
image_grid(axes[2], torch.sigmoid(logits_q[:16]).cpu(), nrow=8, title="VQ-VAE reconstructions")
image_grid(axes[3], vq.sample(16, generator=torch.Generator().manual_seed(0)).cpu(), nrow=8, title="decoder means, uniform prior codes")
for ax in axes[1:]:
    ax.title.set_fontsize(10)
fig.tight_layout()
plt.show()

# %% [markdown]
# The VQ-VAE reconstructs better than the Gaussian VAE, but its ELBO is worse: under the uniform prior it pays the full
# $M\log K$ nats for every image, whether or not the codes need them. The reconstructions are sharp, but code tuples drawn independently and uniformly decode to blurrier blends, many of
# them no clear digit: the training never made the uniform prior match the codes' joint distribution (the same lesson as
# section 2, now discrete).
# VQ-VAE papers therefore fit a second, autoregressive prior over the code tuples after training.
#
# ## 5 · Explore: the β-VAE sweep
#
# Move β along the sweep trained in section 3. Left: the rate–distortion curve, the current model in red, and its line of
# constant ELBO. Then the mean KL of each latent dimension (grey: collapsed), reconstructions of test digits, and the test
# codes in the two dimensions that carry the most information (one scale for the whole sweep). Watch dimensions switch off as β grows, reconstructions blur
# towards the average digit, and the code cloud shrink onto the prior's centre.

# %%
beta_explorer(sweep, x_test, y_test, measurements=rd)

# %% [markdown]
# ## Pitfalls
# * **The KL term is not all regularisation.** Most of it is the mutual information, which a useful code must pay;
#   only $\mathrm{KL}(q(z)\,\|\,p(z))$ is mismatch that a better prior can remove. The mutual information is at most $\log n$.
# * **The aggregate posterior is the best prior on the training set only**: it costs $n$ Gaussians per evaluation and overfits.
# * **A collapsed dimension looks fine in the loss.** Watch the per-dimension KL; a strong (autoregressive) decoder and a large β
#   both switch dimensions off. Remedies: a weaker decoder, KL warm-up, or a minimum rate per dimension ("free bits").
# * **β < 1 is not a bound** on $\log p(x)$, and β > 1 is a looser one ($D + \beta R \ge D + R$). Report the ELBO (β = 1) or
#   IWAE when comparing likelihoods.
# * **Straight-through is a biased gradient**: it treats quantisation as the identity. Without the codebook and commitment
#   losses the codes never move; with a bad initialisation codes die — count them.
#
# ## Summary
# * $\frac1n\sum_i\mathrm{KL}(q(z\mid x_i)\,\|\,p(z)) = \mathbb{I}_q[x; z] + \mathrm{KL}(q(z)\,\|\,p(z))$, and the ELBO is $-D - \mathbb{I}_q - \mathrm{KL}(q(z)\,\|\,p(z))$.
# * The optimal prior is the aggregate posterior; learnable mixture and flow priors recover most of the gap cheaply.
# * Posterior collapse is $\mathrm{KL} \to 0$ per dimension; the β-VAE trades rate for distortion along a curve.
# * A VQ-VAE has a discrete, deterministic code (KL $= M\log K$), trained with straight-through, codebook and commitment losses.
#
# **Homework 04** (`exercises/hw04_elbo_surgery_and_vq/`): the three surgery terms, a mixture prior's log-density, the
# vector-quantisation step with its straight-through gradient, fitting a prior to an aggregate posterior, and a written
# question on posterior collapse.
