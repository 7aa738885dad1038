"""Chapter 04: priors, the aggregate posterior, ELBO surgery, the autoregressive decoder, vector quantisation, the beta explorer."""

import itertools
import math

import pytest
import torch

from course_utils.flows import maf_flow, randomize_
from course_utils.metrics import gaussian_kl
from course_utils.priors import AggregatePosterior, FlowPrior, MixturePrior, StandardNormalPrior, fit_prior, surgery_terms
from course_utils.vae import (VAE, AutoregressiveBernoulliDecoder, BernoulliDecoder, GaussianEncoder, elbo_terms, iwae_bound,
                              rate_distortion)
from course_utils.vq import VQVAE, codebook_usage, vector_quantize
from course_utils.widgets import ACTIVE_NATS, BetaExplorer, beta_state

D = torch.distributions


def _grid_mass(log_prob, lim=9.0, n=401):
    g = torch.linspace(-lim, lim, n, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        return (log_prob(zz).exp().sum() * (g[1] - g[0]) ** 2).item()


# --- priors ------------------------------------------------------------------------------------
def test_mixture_prior_matches_torch_and_integrates_to_one():
    prior = MixturePrior(2, 5, init_scale=2.0, seed=3).double()
    with torch.no_grad():
        prior.logvars.normal_(0, 0.4), prior.logits.normal_(0, 1)
    ref = D.MixtureSameFamily(D.Categorical(logits=prior.logits), D.Independent(D.Normal(prior.means, (0.5 * prior.logvars).exp()), 1))
    z = torch.randn(3, 7, 2, dtype=torch.float64)
    assert torch.allclose(prior.log_prob(z), ref.log_prob(z), atol=1e-10)
    assert abs(_grid_mass(prior.log_prob) - 1) < 1e-4
    s = prior.sample(200_000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(s.mean(0), ref.mean, atol=0.03) and torch.allclose(s.var(0), ref.variance, rtol=0.03)
    assert torch.isfinite(prior.log_prob(torch.full((1, 2), 1e4, dtype=torch.float64))).all()
    with pytest.raises(ValueError, match=r"latents of shape \[\.\.\., 2\]"):
        prior.log_prob(torch.zeros(4, 3, dtype=torch.float64))


def test_flow_prior_handles_any_batch_shape_and_integrates_to_one():
    prior = FlowPrior(randomize_(maf_flow(2, 2, (16,)), seed=1)).double()
    z = torch.randn(4, 5, 2, dtype=torch.float64)
    assert torch.allclose(prior.log_prob(z), prior.flow.log_prob(z.reshape(-1, 2)).reshape(4, 5))
    assert abs(_grid_mass(prior.log_prob, lim=30.0, n=1201) - 1) < 2e-3
    assert prior.sample(10).shape == (10, 2) and not prior.sample(3).requires_grad


def test_aggregate_posterior_is_the_mixture_of_the_posteriors():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(30, 3, generator=g), torch.randn(30, 3, generator=g) - 1
    agg = AggregatePosterior(mu, logvar, chunk=7)            # several chunks
    ref = D.MixtureSameFamily(D.Categorical(logits=torch.zeros(30, dtype=torch.float64)),
                              D.Independent(D.Normal(mu.double(), (0.5 * logvar.double()).exp()), 1))
    z = torch.randn(2, 25, 3, dtype=torch.float64)
    assert torch.allclose(agg.log_prob(z), ref.log_prob(z), atol=1e-9)
    s, i = agg.sample(50_000, generator=g, return_index=True)
    assert torch.allclose(s.mean(0), ref.mean, atol=0.03) and set(i.tolist()) == set(range(30))
    with pytest.raises(ValueError, match=r"\[n, L\]"):
        AggregatePosterior(mu, logvar[:, :2])


# --- ELBO surgery ----------------------------------------------------------------------------------
def test_surgery_terms_add_up_and_hit_the_extremes():
    g = torch.Generator().manual_seed(1)
    mu, logvar = 1.5 * torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g) - 1
    t = surgery_terms(mu, logvar, samples_per_point=50, generator=g)
    assert t.avg_kl == pytest.approx(gaussian_kl(mu.double(), logvar.double()).mean().item(), abs=1e-12) and t.avg_kl_se == 0
    assert abs(t.gap) < 4 * t.gap_se and t.gap_se < 0.08          # three independent estimates agree
    assert 0 < t.mutual_info < t.log_n and t.marginal_kl > 0
    # with the prior given as a function, the mean KL is estimated too, and agrees with the closed form
    t_mc = surgery_terms(mu, logvar, StandardNormalPrior(2).log_prob, samples_per_point=50, generator=g)
    assert abs(t_mc.avg_kl - t.avg_kl) < 4 * t_mc.avg_kl_se + 1e-9 and t_mc.avg_kl_se > 0
    same = surgery_terms(torch.ones(20, 2), torch.zeros(20, 2), generator=g)
    assert abs(same.mutual_info) < 1e-9 and abs(same.marginal_kl - same.avg_kl) < 4 * same.marginal_kl_se
    apart = surgery_terms(torch.arange(20.0)[:, None] * torch.tensor([50.0, 0.0]), torch.zeros(20, 2), generator=g)
    assert apart.mutual_info == pytest.approx(math.log(20), abs=1e-6)
    assert "I_q(x; z)" in str(t)


def test_the_surgery_identity_catches_a_wrong_kl_but_not_a_wrong_log_q(monkeypatch):
    """What ``mean KL = I_q + KL(q(z) || p)`` can and cannot check. An error e(z) in log q(z) enters I_q as -E_q[e] and the
    marginal KL as +E_q[e]: it cancels, so the identity still holds (a missing -log n shows up only as I_q < 0, outside
    [0, log n]; the lecture's independent check of log q(z) is in tests/test_deliberate_errors.py). An error in the
    mean-KL term, which does not go through q(z), breaks it."""
    import course_utils.priors as priors

    g = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(50, 2, generator=g), torch.randn(50, 2, generator=g) - 1
    right = surgery_terms(mu, logvar, samples_per_point=50, generator=g)
    assert abs(right.gap) < 4 * right.gap_se and 0 < right.mutual_info < right.log_n
    with monkeypatch.context() as m:                            # log q(z) without its -log n
        original = AggregatePosterior.log_prob
        m.setattr(AggregatePosterior, "log_prob", lambda self, z: original(self, z) + math.log(len(self.mu)))
        t = surgery_terms(mu, logvar, samples_per_point=50, generator=g)
        assert abs(t.gap) < 4 * t.gap_se                        # the identity cannot see it ...
        assert t.mutual_info < 0                                # ... the bounds on I_q can
    with monkeypatch.context() as m:                            # the closed-form Gaussian KL without its 1/2
        m.setattr(priors, "gaussian_kl", lambda *a, **k: 2 * gaussian_kl(*a, **k))
        t = surgery_terms(mu, logvar, samples_per_point=50, generator=g)
        assert abs(t.gap) > 10 * t.gap_se                       # the identity catches this one


def test_fitting_a_prior_lowers_the_marginal_kl_by_the_elbo_gain():
    g = torch.Generator().manual_seed(3)
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    mu = centres[torch.arange(300) % 2] + 0.3 * torch.randn(300, 2, generator=g)
    logvar = torch.full((300, 2), -3.0)
    prior = MixturePrior(2, 4, seed=0)
    before = surgery_terms(mu, logvar, prior.log_prob, generator=g).marginal_kl
    history = fit_prior(prior, mu, logvar, steps=600, lr=2e-2, progress=False)
    after = surgery_terms(mu, logvar, prior.log_prob, generator=g).marginal_kl
    assert history.losses[-1] < history.losses[0] and after < before / 3
    standard = surgery_terms(mu, logvar, generator=g).marginal_kl
    assert after < standard - 0.5                                   # a bimodal q(z) is far from N(0, I)


# --- VAE with a prior ---------------------------------------------------------------------------------
def test_elbo_with_a_prior_module_is_an_unbiased_estimate_of_the_closed_form_kl():
    torch.manual_seed(0)
    enc, dec = GaussianEncoder(6, 3, (16,)), BernoulliDecoder(3, (6,), (16,))
    x = (torch.rand(5, 6) > 0.5).float()
    with torch.no_grad():
        mc = torch.stack([elbo_terms(x, enc, dec, StandardNormalPrior(3))[1] for _ in range(20000)])
        closed = elbo_terms(x, enc, dec)[1]
    assert (((mc.mean(0) - closed).abs()) < 5 * mc.std(0) / math.sqrt(len(mc))).all()
    vae = VAE(enc, dec, StandardNormalPrior(3))
    torch.manual_seed(1); a = iwae_bound(x, enc, dec, 4)
    torch.manual_seed(1); b = vae.iwae(x, 4)
    assert torch.allclose(a, b, atol=1e-6)
    assert vae.sample(4).shape == (4, 6)
    torch.manual_seed(2); rec, kl = vae.elbo_terms(x)
    torch.manual_seed(2); assert torch.allclose(vae.loss(x, beta=2.0), -(rec - 2.0 * kl).mean())   # beta weights the KL term


def test_rate_distortion_adds_up():
    torch.manual_seed(0)
    vae = VAE(GaussianEncoder(6, 3, (16,)), BernoulliDecoder(3, (6,), (16,)))
    x = (torch.rand(40, 6) > 0.5).float()
    rd = rate_distortion(vae, x, n_samples=2000)
    with torch.no_grad():
        mu, logvar = vae.encoder(x)
        mean_elbo = torch.stack([vae.elbo(x) for _ in range(2000)]).mean().item()
    assert rd["rate"] == pytest.approx(gaussian_kl(mu, logvar).mean().item(), rel=1e-5)
    assert rd["kl_per_dim"].sum().item() == pytest.approx(rd["rate"], rel=1e-5)
    assert -mean_elbo == pytest.approx(rd["rate"] + rd["distortion"], abs=0.05)


# --- the autoregressive decoder ----------------------------------------------------------------------
def test_autoregressive_decoder_is_autoregressive_and_normalised():
    torch.manual_seed(0)
    dec = AutoregressiveBernoulliDecoder(2, (1, 2, 3), hidden=32).double()
    with torch.no_grad():
        for p in dec.parameters():
            p.normal_(0, 0.7)
    z = torch.randn(1, 2, dtype=torch.float64)
    x0 = torch.rand(1, 6, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda v: dec.logits(v, z)[0], x0)[:, 0]     # [6, 6]: d logit_i / d x_j
    assert (jac.triu().abs() < 1e-12).all() and (jac.tril(-1).abs() > 0).any()            # logit i sees x_{<i} only
    configs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=torch.float64).reshape(64, 1, 2, 3)
    total = dec.log_prob(configs, z.expand(64, 2)).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-10)                                           # sums to 1 over all 2^6 images
    assert dec.log_prob(configs[:5], torch.randn(7, 5, 2, dtype=torch.float64)).shape == (7, 5)
    s = dec.sample(torch.randn(4, 2, dtype=torch.float64))
    assert s.shape == (4, 1, 2, 3) and set(s.unique().tolist()) <= {0.0, 1.0}


# --- vector quantisation ---------------------------------------------------------------------------
def test_vector_quantize_is_nearest_neighbour_with_a_straight_through_gradient():
    g = torch.Generator().manual_seed(0)
    z_e = torch.randn(6, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    codebook = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    q = vector_quantize(z_e, codebook)
    brute = torch.cdist(z_e.detach().reshape(-1, 4), codebook.detach()).argmin(-1).reshape(6, 3)
    assert torch.equal(q.indices, brute)
    assert torch.allclose(q.z_q, codebook[brute], atol=1e-12)
    up = torch.randn(6, 3, 4, generator=g, dtype=torch.float64)
    g_e, g_c = torch.autograd.grad((q.z_q * up).sum(), (z_e, codebook), allow_unused=True)
    assert torch.allclose(g_e, up) and g_c is None                       # identity to z_e, nothing to the codes
    assert torch.autograd.grad(q.codebook_loss, z_e, retain_graph=True, allow_unused=True)[0] is None
    assert torch.autograd.grad(q.commitment_loss, codebook, retain_graph=True, allow_unused=True)[0] is None
    assert q.codebook_loss.item() == pytest.approx(((z_e - codebook[brute]) ** 2).sum(-1).mean().item())
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        vector_quantize(torch.zeros(3, 5), codebook)


def test_codebook_usage_and_vqvae_training():
    assert codebook_usage(torch.arange(8).repeat(5), 8)["perplexity"] == pytest.approx(8.0)
    one = codebook_usage(torch.zeros(20, dtype=torch.long), 8)
    assert one["perplexity"] == pytest.approx(1.0) and one["used"] == 1
    torch.manual_seed(0)
    x = (torch.rand(4, 1, 4, 4) > 0.5).float()[torch.arange(64) % 4]      # four prototypes: a code tuple for each
    model = VQVAE((1, 4, 4), n_codes=8, code_dim=2, n_positions=3, hidden=(32,))
    model.init_codebook_(x)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(400):
        loss = model.loss(x)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    logits, q = model(x)
    assert torch.allclose(model.elbo(x), model.log_likelihood(x, logits) - 3 * math.log(8))
    assert q.indices.shape == (64, 3) and model.sample(5).shape == (5, 1, 4, 4)


# --- the beta explorer ---------------------------------------------------------------------------------
def test_beta_explorer_follows_the_sweep():
    torch.manual_seed(0)
    x = (torch.rand(30, 1, 4, 4) > 0.5).float()
    labels = torch.arange(30) % 10
    vaes = {}
    for beta, scale in ((0.5, 1.0), (4.0, 0.0)):
        vae = VAE(GaussianEncoder(16, 3, (16,)), BernoulliDecoder(3, (1, 4, 4), (16,)))
        with torch.no_grad():                     # beta = 4 stands in for a collapsed model: q(z|x) = N(0, I)
            vae.encoder.net[-1].weight.mul_(scale), vae.encoder.net[-1].bias.mul_(scale)
        vaes[beta] = vae
    s1, s2 = beta_state(vaes, 0.5, x, labels), beta_state(vaes, 4.0, x, labels)
    assert s1.betas == [0.5, 4.0] and s1.active > 0 and s2.active == 0 and (s2.kl_per_dim < ACTIVE_NATS).all()
    assert s1.recons.shape == (8, 4, 4) and s1.means.shape == (30, 2)
    with pytest.raises(ValueError, match="not in the sweep"):
        beta_state(vaes, 1.0, x, labels)
    explorer = BetaExplorer(vaes, x, labels)
    first = explorer.image.value
    explorer.slider.value = 4.0
    assert explorer.image.value != first and explorer.image.value[:4] == b"\x89PNG"


def test_a_vae_samples_through_its_prior_and_its_decoder():
    torch.manual_seed(0)
    mixture = MixturePrior(3, 2, seed=0)
    with torch.no_grad():
        mixture.means.copy_(torch.tensor([[40.0, 0.0, 0.0], [40.0, 0.0, 0.0]]))   # far from N(0, I): a prior that is used shows
    dec = BernoulliDecoder(3, (1, 2, 2), (8,))
    vae = VAE(GaussianEncoder(4, 3, (8,)), dec, mixture)
    gen = torch.Generator().manual_seed(1)
    z = mixture.sample(5, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(vae.sample(5, generator=gen), torch.sigmoid(dec(z)))
    ar = VAE(GaussianEncoder(4, 3, (8,)), AutoregressiveBernoulliDecoder(3, (1, 2, 2), hidden=8))
    s = ar.sample(6)
    assert s.shape == (6, 1, 2, 2) and set(s.unique().tolist()) <= {0.0, 1.0}
