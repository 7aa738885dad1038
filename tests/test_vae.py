"""The VAE's bounds against a model with exact answers (linear-Gaussian), and the parts' densities."""

import math

import pytest
import torch

from course_utils.metrics import gaussian_kl
from course_utils.vae import (VAE, BernoulliDecoder, GaussianEncoder, LinearGaussian, elbo, gaussian_log_prob,
                              iwae_bound, reparameterize)


def _model(seed=0, D=5, L=2):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, L, generator=g, dtype=torch.float64))
    W = Q * torch.tensor([2.0, 0.7], dtype=torch.float64)[:L]  # orthogonal columns: the exact posterior is diagonal
    return LinearGaussian(W, torch.randn(D, generator=g, dtype=torch.float64), 0.5)


def _shifted_encoder(model, shift=0.4, widen=0.5):
    exact = model.exact_encoder()
    return lambda x: (exact(x)[0] + shift, exact(x)[1] + widen)


def test_elbo_is_log_p_minus_the_kl_to_the_posterior():
    torch.manual_seed(0)
    model = _model()
    x = model.sample(6, torch.Generator().manual_seed(1))
    enc = _shifted_encoder(model)
    draws = torch.stack([elbo(x, enc, model) for _ in range(20000)])
    mc, se = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    mu_q, lv_q = enc(x)
    m, S = model.posterior(x)
    kl = gaussian_kl(mu_q, lv_q, m, torch.diagonal(S).log())
    assert ((mc - (model.log_marginal(x) - kl)).abs() < 5 * se).all()   # log p(x) = ELBO + KL(q || p(z|x))
    assert (mc < model.log_marginal(x) - 0.05).all()                   # a strict bound for a wrong q


def test_elbo_is_exact_with_the_true_posterior():
    torch.manual_seed(0)
    model = _model(1)
    x = model.sample(8, torch.Generator().manual_seed(2))
    for _ in range(3):  # no variance at all: the log-weight log p(x, z) - log q(z|x) equals log p(x) for every z
        assert torch.allclose(iwae_bound(x, model.exact_encoder(), model, 1), model.log_marginal(x), atol=1e-9)
    draws = torch.stack([elbo(x, model.exact_encoder(), model) for _ in range(5000)])  # analytic-KL form: in expectation
    assert ((draws.mean(0) - model.log_marginal(x)).abs() < 5 * draws.std(0) / math.sqrt(5000)).all()


def test_iwae_bounds_increase_with_k_and_approach_log_p():
    torch.manual_seed(0)
    model = _model(2)
    x = model.sample(4, torch.Generator().manual_seed(3))
    enc = _shifted_encoder(model, shift=0.8, widen=0.8)
    means = {k: torch.stack([iwae_bound(x, enc, model, k) for _ in range(3000 // k + 200)]).mean(0) for k in (1, 5, 50, 500)}
    log_p = model.log_marginal(x)
    assert (means[1] < means[5] - 0.01).all() and (means[5] < means[50]).all() and (means[50] <= means[500] + 0.01).all()
    assert (means[500] <= log_p + 0.01).all() and (log_p - means[500] < 0.1).all()
    a = torch.stack([iwae_bound(x, enc, model, 1) for _ in range(4000)])   # K = 1 and the analytic-KL ELBO:
    b = torch.stack([elbo(x, enc, model) for _ in range(4000)])             # two estimators of the same ELBO
    se = ((a.var(0) + b.var(0)) / 4000).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() < 5 * se).all()
    with pytest.raises(ValueError, match="k must be"):
        iwae_bound(x, enc, model, 0)


def test_parts_and_shapes():
    torch.manual_seed(0)
    mu, lv = torch.randn(3, 4), torch.randn(3, 4) * 0.3
    z = reparameterize(mu, lv, k=7)
    assert z.shape == (7, 3, 4)
    ref = torch.distributions.Normal(mu, (0.5 * lv).exp()).log_prob(z).sum(-1)
    assert torch.allclose(gaussian_log_prob(z, mu, lv), ref, atol=1e-5)
    enc, dec = GaussianEncoder(64, 2, (32,)), BernoulliDecoder(2, (1, 8, 8), (32,))
    x = (torch.rand(5, 1, 8, 8) > 0.5).float()
    m, v = enc(x)
    assert m.shape == v.shape == (5, 2)
    logits = dec(reparameterize(m, v, k=3))
    assert logits.shape == (3, 5, 1, 8, 8)
    lp = dec.log_prob(x, logits)
    assert lp.shape == (3, 5)
    assert torch.allclose(lp, torch.distributions.Bernoulli(logits=logits).log_prob(x.expand_as(logits)).flatten(2).sum(-1), atol=1e-4)
    vae = VAE(enc, dec)
    assert vae.elbo(x).shape == (5,) and vae.iwae(x, 4).shape == (5,) and vae.sample(6).shape == (6, 1, 8, 8)
    with pytest.raises(ValueError, match="not diagonal"):
        LinearGaussian(torch.ones(3, 2, dtype=torch.float64), torch.zeros(3), 1.0).exact_encoder()
