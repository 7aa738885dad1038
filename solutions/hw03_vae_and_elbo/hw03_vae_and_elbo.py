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
# # Homework 03 — the VAE and the ELBO
#
# Follows lecture notebook `03_vae_and_elbo` (lecture 3 of the course notes). Four coded tasks (11 points, graded
# automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `gaussian_kl`: the KL between diagonal Gaussians in closed form | 2 |
# | 2 | `reparameterized_elbo`: the single-sample ELBO with the reparameterisation trick | 3 |
# | 3 | `iwae_bound`: the importance-weighted bound with K samples | 3 |
# | 4 | `train_vae`: a VAE on the binarised digits reaching a stated test ELBO | 3 |
# | 5 | written: what the ELBO's gap measures, and why IWAE tightens it | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and run the check cell below it: it prints
# `✓ ...` or one line saying what was expected. Hidden checks of the same kind use other inputs. Do not rename functions
# or delete cells; the notebook must run top to bottom in about a minute on a laptop CPU.
#
# **Interfaces** (as in `course_utils.vae`): `encoder(x) -> (mu, logvar)`, each `[B, L]`; `decoder(z) -> params` for `z` of
# shape `[..., B, L]`; `decoder.log_prob(x, params) -> [..., B]` is $\log p(x\mid z)$. The prior is $\mathcal{N}(0, I)$. The checks
# use `LinearGaussian`, a model whose $\log p(x)$ and posterior are exact (it acts as its own decoder).

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import call, diagnose, expect, expect_close, expect_tensor, hidden_test, passed
from course_utils.data import load_digits
from course_utils.training import fit
from course_utils.vae import VAE, BernoulliDecoder, GaussianEncoder, LinearGaussian

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)


def exact_model(seed=0, D=5):
    """A linear-Gaussian model with a diagonal exact posterior, plus a deliberately wrong encoder for it."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, 2, generator=g, dtype=torch.float64))
    model = LinearGaussian(Q * torch.tensor([2.0, 0.7], dtype=torch.float64), torch.randn(D, generator=g, dtype=torch.float64), 0.5)
    exact = model.exact_encoder()
    wrong = lambda x: (exact(x)[0] + 0.5, exact(x)[1] + 0.7)  # noqa: E731
    return model, exact, wrong, model.sample(6, g)


def _kl_to_posterior(model, encoder, x):
    """KL(q(z|x) || p(z|x)) in closed form, both diagonal Gaussians: the reference the checks compare against."""
    mu_q, lv_q = encoder(x)
    m, S = model.posterior(x)
    var_p = torch.diagonal(S)
    return 0.5 * ((lv_q.exp() + (mu_q - m) ** 2) / var_p - 1 + var_p.log() - lv_q).sum(-1)


def _kernel_copy(student, model, shift=(0.0, 0.0)):
    """For the hidden checks: `model`'s exact encoder (its mean and log-variance moved by `shift`) and `model` as a
    decoder, as code that `student`'s kernel builds from `model`'s data (the grader's own objects never enter it)."""
    S = model.posterior(model.b[None])[1]
    encoder = student.code("lambda x: ((x - b) @ A + dm, (lv + dl).expand(len(x), -1))", b=model.b,
                           A=model.W @ S / model.s**2, lv=torch.diagonal(S).log(), dm=shift[0], dl=shift[1])
    decoder = student.code(  # decoder(z) = z, decoder.log_prob(x, z) = log N(x; W z + b, s^2 I), as LinearGaussian
        "type('LinearGaussianDecoder', (), {'__call__': lambda self, z: z, 'log_prob': lambda self, x, z: "
        "-0.5 * (((x - z @ W.T - b) / s) ** 2).sum(-1) - len(b) * (math.log(s) + 0.5 * math.log(2 * math.pi))})()",
        W=model.W, b=model.b, s=model.s)
    return encoder, decoder


def _seed_kernel(student, seed):
    """Seed the global RNG where `student`'s code runs, so that a hidden check draws the same noise every time."""
    student.code("lambda seed: torch.manual_seed(seed) and None")(seed)


# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — the Gaussian KL in closed form (2 points)
#
# For $q = \mathcal{N}(\mu_q, \mathrm{diag}\,e^{\ell_q})$ and $p = \mathcal{N}(\mu_p, \mathrm{diag}\,e^{\ell_p})$ (log-variances $\ell$), return
# $\mathrm{KL}(q\,\|\,p)$ summed over the last dimension. Inputs broadcast; the output has their shape without the last dimension.
# Do not use `torch.distributions` (the hidden check compares against it).

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    """KL(N(mu_q, exp(logvar_q)) || N(mu_p, exp(logvar_p))), diagonal, summed over the last dimension."""
    ### BEGIN SOLUTION
    return 0.5 * (torch.exp(logvar_q - logvar_p) + (mu_q - mu_p) ** 2 * torch.exp(-logvar_p) - 1 + logvar_p - logvar_q).sum(-1)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task1_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _kl_slips(mu_q, lv_q, mu_p, lv_p):
    """What the common slips in gaussian_kl give, by the message that names each."""
    vq, vp = lv_q.exp(), lv_p.exp()
    return {
        "gaussian_kl computes KL(p || q), the reverse direction: the variance ratio is var_q / var_p":
            0.5 * (vp / vq + (mu_q - mu_p) ** 2 / vq - 1 + lv_q - lv_p).sum(-1),
        "gaussian_kl is missing the factor 1/2": (vq / vp + (mu_q - mu_p) ** 2 / vp - 1 + lv_p - lv_q).sum(-1),
        "gaussian_kl treats the log-variances as log standard deviations (exp(logvar) is the variance)":
            0.5 * (vq**2 / vp**2 + (mu_q - mu_p) ** 2 / vp**2 - 1 + 2 * lv_p - 2 * lv_q).sum(-1),
        "gaussian_kl is missing the -1 per dimension (KL(q || q) must be 0)":
            0.5 * (vq / vp + (mu_q - mu_p) ** 2 / vp + lv_p - lv_q).sum(-1),
    }


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
mu_q, lv_q = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64), torch.tensor([-0.5, 0.3, -1.2], dtype=torch.float64)
mu_p, lv_p = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), torch.tensor([0.2, -0.4, 0.0], dtype=torch.float64)
kl = call(gaussian_kl, mu_q, lv_q, mu_p, lv_p)
expect_tensor(kl, shape=(), name="gaussian_kl(...) for one 3-D Gaussian pair")
diagnose(kl, _kl_slips(mu_q, lv_q, mu_p, lv_p), atol=1e-6)
g = torch.Generator().manual_seed(0)
z = mu_q + (0.5 * lv_q).exp() * torch.randn(400_000, 3, generator=g, dtype=torch.float64)
log_ratio = (-0.5 * ((z - mu_q) ** 2 / lv_q.exp() + lv_q) + 0.5 * ((z - mu_p) ** 2 / lv_p.exp() + lv_p)).sum(-1)
se = log_ratio.std().item() / math.sqrt(len(z))
expect(abs(kl.item() - log_ratio.mean().item()) < 5 * se,
       f"gaussian_kl gives {kl.item():.4f}, but Monte Carlo of E_q[log q - log p] gives {log_ratio.mean().item():.4f} ± {se:.4f}")
passed(f"closed form {kl.item():.4f} agrees with Monte Carlo {log_ratio.mean().item():.4f}")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    def reference(mu_q, lv_q, mu_p, lv_p):
        return torch.distributions.kl_divergence(torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()),
                                                 torch.distributions.Normal(mu_p, (0.5 * lv_p).exp())).sum(-1)

    g = torch.Generator().manual_seed(31)
    a, b, c, d = (torch.randn(4, 6, 3, generator=g, dtype=torch.float64) for _ in range(4))
    one = call(student.gaussian_kl, a[0, 0], b[0, 0], c[0, 0], d[0, 0], name="gaussian_kl")
    expect_tensor(one, shape=(), name="gaussian_kl(...) for one 3-D Gaussian pair")
    diagnose(one, _kl_slips(a[0, 0], b[0, 0], c[0, 0], d[0, 0]), atol=1e-9)
    expect_close(one, reference(a[0, 0], b[0, 0], c[0, 0], d[0, 0]), atol=1e-10, name="gaussian_kl for one 3-D Gaussian pair")
    out = call(student.gaussian_kl, a, b, c, d, name="gaussian_kl")
    expect_tensor(out, shape=(4, 6), name="gaussian_kl on a batch [4, 6, 3]")
    diagnose(out, _kl_slips(a, b, c, d), atol=1e-9)
    expect_close(out, reference(a, b, c, d), atol=1e-10, name="gaussian_kl on a batch [4, 6, 3]")
    zero = torch.zeros(3, dtype=torch.float64)
    expect_close(call(student.gaussian_kl, a, b, zero, zero, name="gaussian_kl"), reference(a, b, zero, zero), atol=1e-10,
                 name="gaussian_kl against the standard normal (broadcast)")
    expect_close(call(student.gaussian_kl, a, b, a, b, name="gaussian_kl"), torch.zeros(4, 6), atol=1e-12,
                 name="gaussian_kl(q, q) (a distribution's KL to itself is 0)")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — the reparameterised ELBO (3 points)
#
# Return one sample of $\mathcal{L}(x) = \log p(x\mid z) - \mathrm{KL}(q(z\mid x)\,\|\,\mathcal{N}(0, I))$ per data point, shape `[B]`,
# with $z = \mu + e^{\ell/2}\odot\varepsilon$, $\varepsilon \sim \mathcal{N}(0, I)$ (so gradients reach the encoder), and the KL from task 1.

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reparameterized_elbo(x, encoder, decoder):
    """x [B, ...] -> one-sample ELBO per data point [B]."""
    ### BEGIN SOLUTION
    mu, logvar = encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    return decoder.log_prob(x, decoder(z)) - gaussian_kl(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task2_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_elbo_draws(draws, model, encoder, x, generator=None):
    """Draws [n, B] of the one-sample ELBO with `encoder` (and `model` as decoder): their mean must be
    log p(x) - KL(q || posterior); the common slips are named (their means use noise from `generator`)."""
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    expect((draws.std(0) > 0).all(), "reparameterized_elbo returns the same value on every call: it should draw "
           "z = mu + exp(0.5 * logvar) * eps with fresh noise eps, not use z = mu")
    target = model.log_marginal(x) - _kl_to_posterior(model, encoder, x)   # log p(x) = ELBO + KL(q || p(z|x))
    mu_w, lv_w = encoder(x)                                                  # the means the common slips give
    kl_w = 0.5 * (mu_w**2 + lv_w.exp() - 1 - lv_w).sum(-1)
    eps = torch.randn(4000, *mu_w.shape, dtype=mu_w.dtype, generator=generator)
    for message, std, kl_sign in (
            ("the sample's standard deviation is exp(0.5 * logvar); exp(logvar) is the variance", lv_w.exp(), -1),
            ("the KL term is added; the ELBO subtracts KL(q(z|x) || p(z))", (0.5 * lv_w).exp(), 1),
            ("the KL term is missing: ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z))", (0.5 * lv_w).exp(), 0)):
        variant = model.log_prob(x, model(mu_w + std * eps)).mean(0) + kl_sign * kl_w
        expect(not (((mean - variant).abs() < 5 * se + 0.05).all() and ((mean - target).abs() > 5 * se).any()),
               f"reparameterized_elbo: {message}")
    bad = int(((mean - target).abs() > 5 * se).sum())
    expect(bad == 0, f"the average of reparameterized_elbo should be log p(x) - KL(q || posterior) = {target.numpy().round(3)}, "
                     f"but it is {mean.numpy().round(3)}")


def _check_elbo_gradients(grads, model, encoder, x, n):
    """grads = (differentiable?, d/dmu, d/dlogvar) of the ELBO summed over x repeated n times: gradients must reach
    mu and logvar through z, and average, per data point, the gradient of E[ELBO], in closed form for this model."""
    expect(grads[0], "the ELBO should be differentiable in the encoder's outputs (reparameterise z)")
    g_mu, g_lv = grads[1:]
    expect(g_mu is not None and g_lv is not None and torch.isfinite(g_mu).all() and torch.isfinite(g_lv).all()
           and g_mu.abs().sum() > 0 and g_lv.abs().sum() > 0, "gradients of the ELBO should reach both mu and logvar")
    W, b, s = model.W, model.b, model.s
    mu_w, lv_w = encoder(x)
    v = lv_w.exp()
    expected = {"mu": (x - b - mu_w @ W.T) @ W / s**2 - mu_w,                     # d/dmu E[log p(x|z)] - d/dmu KL
                "logvar": -0.5 * v * (W**2).sum(0) / s**2 - 0.5 * (v - 1)}        # d/dlogvar of the same
    for (what, e), got in zip(expected.items(), (g_mu, g_lv)):
        got = got.reshape(n, *e.shape)
        mean, se = got.mean(0), got.std(0) / math.sqrt(n)
        for i, j in ((mean - e).abs() > 5 * se + 1e-9).nonzero().tolist()[:1]:
            expect(False, f"the ELBO's gradient in {what} should average {e[i, j]:.3f} over the noise (data point {i + 1}, "
                   f"latent {j + 1}), but it averages {mean[i, j]:.3f}: is z = mu + exp(0.5 * logvar) * eps, with "
                   "gradients through z?")


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def _check_elbo(seed, n=20000):
    torch.manual_seed(seed)
    model, exact, wrong, x = exact_model(seed)
    out = call(reparameterized_elbo, x, wrong, model)
    expect_tensor(out, shape=(len(x),), name="reparameterized_elbo(x, encoder, decoder)")
    draws = torch.stack([reparameterized_elbo(x, wrong, model) for _ in range(n)])
    _check_elbo_draws(draws, model, wrong, x)
    # gradients must flow through the sample z into the encoder's outputs, and average the gradient of E[ELBO]
    mu0, lv0 = (t.detach().repeat(n, 1).requires_grad_(True) for t in wrong(x))
    val = call(reparameterized_elbo, x.repeat(n, 1), lambda _x: (mu0, lv0), model).sum()
    grads = (val.requires_grad, *(torch.autograd.grad(val, (mu0, lv0), allow_unused=True) if val.requires_grad
                                  else (None, None)))
    _check_elbo_gradients(grads, model, wrong, x, n)


_check_elbo(0)
passed("E[ELBO] = log p(x) - KL(q || posterior), and gradients reach the encoder")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    # n draws per data point in one call: x repeated n times (each row gets its own noise)
    n, g = 20000, torch.Generator().manual_seed(141)
    model, exact, wrong, x = exact_model(41)
    B, (W, b, s) = len(x), (model.W, model.b, model.s)
    encoder, decoder = _kernel_copy(student, model, shift=(0.5, 0.7))   # the kernel's copy of `wrong` and `model`
    _seed_kernel(student, 41)
    out = call(student.reparameterized_elbo, x, encoder, decoder, name="reparameterized_elbo")
    expect_tensor(out, shape=(B,), name="reparameterized_elbo(x, encoder, decoder)")
    again = call(student.reparameterized_elbo, x, encoder, decoder, name="reparameterized_elbo")
    expect(not torch.equal(out, again), "reparameterized_elbo returns the same value on every call: it should draw "
           "z = mu + exp(0.5 * logvar) * eps with fresh noise eps, not use z = mu")
    draws = call(student.reparameterized_elbo, x.repeat(n, 1), encoder, decoder, name="reparameterized_elbo")
    expect_tensor(draws, shape=(n * B,), name=f"reparameterized_elbo on a batch of {n * B}")
    draws = draws.reshape(n, B)
    expect(not (draws == draws[0]).all(), "reparameterized_elbo gives every copy of a data point in a batch the same "
           "value: draw the noise eps with the shape of mu, one draw per data point")
    _check_elbo_draws(draws, model, wrong, x, generator=g)
    # gradients through the sample: the kernel differentiates the student's ELBO (summed over a batch) in the encoder's
    # outputs; their average per data point must be the gradient of E[ELBO], in closed form for this model
    grads = call(student.code(
        "lambda elbo, x, encoder, decoder: (lambda mu, lv: (lambda v: (v.requires_grad, *(torch.autograd.grad("
        "v, (mu, lv), allow_unused=True) if v.requires_grad else (None, None))))(elbo(x, lambda _x: (mu, lv), decoder)"
        ".sum()))(*[t.detach().clone().requires_grad_(True) for t in encoder(x)])"),
        student.reparameterized_elbo, x.repeat(n, 1), encoder, decoder, name="the gradient of reparameterized_elbo")
    _check_elbo_gradients(grads, model, wrong, x, n)
    # with the exact posterior the ELBO's mean is log p(x)
    model, exact, wrong, x = exact_model(42)
    encoder, decoder = _kernel_copy(student, model)
    draws = call(student.reparameterized_elbo, x.repeat(n, 1), encoder, decoder, name="reparameterized_elbo")
    expect_tensor(draws, shape=(n * len(x),), name=f"reparameterized_elbo on a batch of {n * len(x)}")
    expect_close(draws.reshape(n, len(x)).mean(0), model.log_marginal(x), atol=0.05,
                 name="the ELBO's mean with the exact posterior (should be log p(x))")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — the IWAE bound (3 points)
#
# With $z_1, \dots, z_K \sim q(z\mid x)$ and $\log w_k = \log p(x\mid z_k) + \log \mathcal{N}(z_k; 0, I) - \log q(z_k\mid x)$, return one sample
# of $\log\frac1K\sum_k w_k$ per data point, shape `[B]`. Work in log space (`torch.logsumexp`): the weights under- or overflow.

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def iwae_bound(x, encoder, decoder, k):
    """x [B, ...] -> one sample of the K-sample IWAE bound per data point [B]."""
    ### BEGIN SOLUTION
    mu, logvar = encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn((k, *mu.shape), dtype=mu.dtype)   # [K, B, L]
    log_q = -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    log_w = decoder.log_prob(x, decoder(z)) + log_prior - log_q                     # [K, B]
    return torch.logsumexp(log_w, 0) - math.log(k)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def _check_iwae(seed):
    torch.manual_seed(seed)
    model, exact, wrong, x = exact_model(seed)
    out = call(iwae_bound, x, exact, model, 7)
    expect_tensor(out, shape=(len(x),), name="iwae_bound(x, encoder, decoder, 7)")
    diagnose(out, {"iwae_bound forgets the 1/K inside the log: subtract log K from the logsumexp":
                   model.log_marginal(x) + math.log(7)}, atol=1e-6)
    expect_close(out, model.log_marginal(x), atol=1e-6, name="iwae_bound with the exact posterior (every weight "
                 "p(x, z) / q(z|x) equals p(x): are the prior and log q(z|x) both in the log-weight?)")
    means, ses = {}, {}
    for k in (1, 10, 200):
        reps = torch.stack([iwae_bound(x, wrong, model, k) for _ in range(max(40, 4000 // k))])
        means[k], ses[k] = reps.mean(0), reps.std(0) / math.sqrt(len(reps))
    expect((means[1] + 0.5 < means[10]).all() and (means[10] <= means[200] + 3 * (ses[10] ** 2 + ses[200] ** 2).sqrt()).all(),
           f"the IWAE bound should grow with K: K=1 {means[1].numpy().round(2)}, K=10 {means[10].numpy().round(2)}, "
           f"K=200 {means[200].numpy().round(2)}")
    expect(((model.log_marginal(x) - means[200]).abs() < 0.3).all(),
           f"with K=200 the bound should be close to log p(x) = {model.log_marginal(x).numpy().round(2)}, got {means[200].numpy().round(2)}")


_check_iwae(0)
passed("IWAE: exact with the true posterior, increasing in K, close to log p(x) for large K")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    def draws(x, encoder, decoder, k, n):  # n draws per data point in one call: x repeated n times
        out = call(student.iwae_bound, x.repeat(n, 1), encoder, decoder, k, name="iwae_bound")
        expect_tensor(out, shape=(n * len(x),), name=f"iwae_bound(x, encoder, decoder, {k}) on a batch of {n * len(x)}")
        out = out.reshape(n, len(x))
        expect(not (out == out[0]).all(), f"iwae_bound(x, encoder, decoder, {k}) gives every copy of a data point in a "
               "batch the same value: draw z of shape [K, B, L], fresh noise for every data point")
        return out

    model, exact, wrong, x = exact_model(51)
    log_px = model.log_marginal(x)
    encoder, decoder = _kernel_copy(student, model)
    _seed_kernel(student, 51)
    out = call(student.iwae_bound, x, encoder, decoder, 7, name="iwae_bound")
    expect_tensor(out, shape=(len(x),), name="iwae_bound(x, encoder, decoder, 7)")
    diagnose(out, {"iwae_bound forgets the 1/K inside the log: subtract log K from the logsumexp": log_px + math.log(7)},
             atol=1e-6)
    expect_close(out, log_px, atol=1e-6, name="iwae_bound with the exact posterior (every weight p(x, z) / q(z|x) "
                 "equals p(x): are the prior and log q(z|x) both in the log-weight?)")
    encoder, _ = _kernel_copy(student, model, shift=(0.5, 0.7))   # the kernel's copy of `wrong`
    means, ses = {}, {}
    for k in (1, 10, 200):
        reps = draws(x, encoder, decoder, k, max(40, 4000 // k))
        means[k], ses[k] = reps.mean(0), reps.std(0) / math.sqrt(len(reps))
    expect((means[1] + 0.5 < means[10]).all() and (means[10] <= means[200] + 3 * (ses[10] ** 2 + ses[200] ** 2).sqrt()).all(),
           f"the IWAE bound should grow with K: K=1 {means[1].numpy().round(2)}, K=10 {means[10].numpy().round(2)}, "
           f"K=200 {means[200].numpy().round(2)}")
    expect(((log_px - means[200]).abs() < 0.3).all(),
           f"with K=200 the bound should be close to log p(x) = {log_px.numpy().round(2)}, got {means[200].numpy().round(2)}")
    # K = 1 is the ELBO: its mean is log p(x) - KL(q || posterior)
    model, exact, wrong, x = exact_model(52)
    encoder, decoder = _kernel_copy(student, model, shift=(0.5, 0.7))
    big = draws(x, encoder, decoder, 1, 20000)
    elbo = model.log_marginal(x) - _kl_to_posterior(model, wrong, x)
    expect(((big.mean(0) - elbo).abs() < 5 * big.std(0) / math.sqrt(len(big))).all(),
           f"with K=1 the IWAE bound's mean should be the ELBO {elbo.numpy().round(3)}, but it is {big.mean(0).numpy().round(3)}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — a VAE on the digits (3 points)
#
# The 8×8 digits, binarised at 0.5, are below. Build a VAE from `course_utils.vae` (`GaussianEncoder`, `BernoulliDecoder`, `VAE`;
# `VAE.elbo(x)` gives the per-image ELBO), train it with `fit`, and return it.
# **Target: a test ELBO above −19.0 nats per image**, within about 15 seconds of training.

# %% nbgrader={"grade": false, "grade_id": "task4_data", "locked": true, "schema_version": 3, "solution": false, "task": false}
x_train = (load_digits("train")[0] > 0.5).float()
x_test = (load_digits("test")[0] > 0.5).float()
print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, pixels on: {x_train.mean():.2f}")

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_vae(x_train):
    """Fit a VAE to binarised digits x_train [N, 1, 8, 8]; return it (a course_utils.vae.VAE)."""
    ### BEGIN SOLUTION
    vae = VAE(GaussianEncoder(64, 8, (128, 128)), BernoulliDecoder(8, (1, 8, 8), (128, 128)))
    fit(lambda: -vae.elbo(x_train[torch.randint(len(x_train), (128,))]).mean(), vae, steps=2000, lr=2e-3, desc="VAE")
    return vae
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
vae = call(train_vae, x_train)
expect(isinstance(vae, VAE), "train_vae should return a course_utils.vae.VAE")
expect(type(vae.decoder) is BernoulliDecoder and vae.prior is None,
       "the VAE should have a course_utils.vae.BernoulliDecoder and the standard normal prior (prior=None), as the task says")
torch.manual_seed(0)
with torch.no_grad():
    test_elbo = call(lambda: torch.stack([vae.elbo(x_test) for _ in range(10)]).mean(), name="vae.elbo(x_test)")
expect_tensor(test_elbo, shape=(), name="the mean test ELBO")
print(f"test ELBO {test_elbo.item():.3f} nats per image")
expect(test_elbo.item() > -19.0, f"the test ELBO should be above -19.0 nats, but it is {test_elbo.item():.3f}")
torch.manual_seed(2)
with torch.no_grad():
    iw = call(lambda: vae.iwae(x_test, 20).mean(), name="vae.iwae(x_test, 20)").item()
expect(math.isfinite(iw) and iw > -18.8 and iw >= test_elbo.item() - 0.05,
       f"the IWAE_20 estimate of log p(x) on the test set should be above -18.8 and the ELBO, got {iw:.3f}")
passed(f"test ELBO {test_elbo.item():.3f} > -19.0, IWAE_20 {iw:.3f} > -18.8")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    # the VAE the check above trained with the student's train_vae; its encoder and decoder run in the kernel on
    # latents drawn here, and both bounds are assembled here
    vae = student.vae
    expect(student.type_name(vae) == "course_utils.vae.VAE",
           f"train_vae should return a course_utils.vae.VAE, not a {student.type_name(vae)}")
    expect(student.type_name(vae.decoder) == "course_utils.vae.BernoulliDecoder" and student.value(vae.prior) is None,
           "the VAE should have a course_utils.vae.BernoulliDecoder and the standard normal prior (prior=None)")
    # Its weights come from the kernel; the VAE is rebuilt here from them (the task's architecture: a GaussianEncoder and
    # a BernoulliDecoder, MLPs of any widths), so both bounds are computed by the library's code on a genuine VAE,
    # whatever the kernel's classes do.
    weights = call(student.code("lambda m: {k: v.detach() for k, v in m.state_dict().items()}"), vae,
                   name="vae.state_dict()")
    expect(isinstance(weights, dict) and all(isinstance(v, torch.Tensor) for v in weights.values()),
           "vae.state_dict() should hold tensors only")

    def _linears(prefix):
        keys = sorted((k for k in weights if k.startswith(prefix) and k.endswith(".weight")),
                      key=lambda k: int(k.split(".")[-2]))
        return [tuple(weights[k].shape) for k in keys]

    enc, dec = _linears("encoder.net."), _linears("decoder.net.")
    expect(len(enc) >= 1 and len(dec) >= 1 and enc[0][1] == 64 and enc[-1][0] % 2 == 0 and dec[-1][0] == 64,
           "the VAE's encoder and decoder should be course_utils.vae MLPs on the 64 pixels")
    latent = enc[-1][0] // 2
    rebuilt = VAE(GaussianEncoder(64, latent, [o for o, _ in enc[:-1]]),
                  BernoulliDecoder(latent, tuple(x_test.shape[1:]), [o for o, _ in dec[:-1]]))
    try:
        rebuilt.load_state_dict({k: v.float() for k, v in weights.items()})
    except (RuntimeError, KeyError) as err:
        expect(False, f"the VAE's weights do not fit the task's architecture (GaussianEncoder, BernoulliDecoder): "
                      f"{str(err)[:200]}")
    torch.manual_seed(151)
    with torch.no_grad():
        elbo = torch.stack([rebuilt.elbo(x_test) for _ in range(10)]).mean().item()
        iw = torch.stack([rebuilt.iwae(x_test, 20) for _ in range(3)]).mean().item()
    expect(math.isfinite(elbo) and elbo > -19.0, f"the test ELBO should be above -19.0 nats, but it is {elbo:.3f}")
    expect(math.isfinite(iw) and iw > -18.8 and iw >= elbo - 0.05,
           f"the IWAE_20 estimate of log p(x) on the test set should be above -18.8 and the ELBO, got {iw:.3f}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — written (2 points, graded by hand)
#
# (a) What exactly does the gap $\log p(x) - \mathcal{L}(x)$ measure? When is it zero?
# (b) Why is the IWAE bound $\mathcal{L}_K$ at least as tight as the ELBO, and what does it cost? Does a tighter bound always
# give a better *encoder* when used for training?

# %% [markdown] nbgrader={"grade": true, "grade_id": "task5_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) $\log p(x) - \mathcal{L}(x) = \mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x)) \ge 0$: how far the encoder is from the true posterior. It is
# zero exactly when $q(z\mid x) = p(z\mid x)$ (almost everywhere); then $p(x,z)/q(z\mid x) = p(x)$ for every $z$.
#
# (b) $\frac1K\sum_k w_k$ is an unbiased estimate of $p(x)$ whose variance falls with $K$; Jensen's gap shrinks as the
# estimate concentrates, and averaging over subsets shows $\mathcal{L}_K \ge \mathcal{L}_{K-1} \ge \dots \ge \mathcal{L}_1$. The cost is $K$
# decoder passes per data point. A tighter bound does not always train a better encoder: the signal-to-noise ratio of the
# encoder's gradient falls as $K$ grows (Rainforth et al., 2018), and the IWAE objective corresponds to a different
# (importance-weighted) posterior than $q$ itself.
# ### END SOLUTION
