"""The course's checks can fail: plant a deliberate mistake in the package and show that the checks the package tests
and the lectures run catch it.

Each test monkeypatches one plausible slip into ``course_utils`` (a log-det with the wrong sign, a density missing its
normaliser, a broken aggregate posterior, a KL with the wrong sign, an IWAE without its 1/K) and runs the SAME check
functions the suite runs (imported from the package's test modules, or the package's own check helpers that the
lectures assert on), requiring them to fail. A mistake that no check notices would mean a hollow check. Fast: no
notebook is executed.
"""

import math

import pytest
import torch

import course_utils.flows as flows
import course_utils.priors as priors
import course_utils.vae as vae_module
import test_flows
import test_flows_ch02
import test_priors_vq
import test_vae
from course_utils.flows import Flow, Planar, SinhArcsinh, jacobian_log_det
from course_utils.priors import AggregatePosterior, aggregate_log_prob_error, surgery_terms


def _fails(check, *args):
    """Run a check; return True if it fails (an AssertionError, as pytest's asserts raise)."""
    try:
        check(*args)
    except AssertionError:
        return True
    return False


# --- a log-det with the wrong sign -----------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["SinhArcsinh", "Planar", "ElementwiseAffine"])
def test_a_log_det_with_the_wrong_sign_is_caught(monkeypatch, layer):
    cls = getattr(flows, layer)
    forward = cls.forward
    monkeypatch.setattr(cls, "forward", lambda self, x: (lambda z, ld: (z, -ld))(*forward(self, x)))
    # the package test (round trip, cancellation, autograd Jacobian) and the composed flow's test both fail
    assert _fails(test_flows.test_every_layer_round_trips_and_log_dets_match_autograd, 2)
    assert _fails(test_flows.test_flow_composes_log_dets_and_its_density_integrates_to_one)


def test_lecture_01_per_layer_check_catches_a_wrong_layer_log_det(monkeypatch):
    """Lecture 01 checks each layer's log-det against that layer's autograd Jacobian (not the flow's sum against itself)."""
    torch.manual_seed(2)
    flow2 = Flow([Planar(2, init_scale=1.2), SinhArcsinh(2, skew=0.5, log_delta=0.3), Planar(2, init_scale=1.2)]).double()
    x2 = torch.randn(32, 2, dtype=torch.float64)

    def lecture_check():
        h = x2
        for layer in flow2.layers:
            reference = jacobian_log_det(lambda v: layer(v[None])[0][0], h)
            h, ld = layer(h)
            assert torch.allclose(ld, reference, atol=1e-8), type(layer).__name__

    lecture_check()                                              # the true layers pass
    forward = SinhArcsinh.forward
    monkeypatch.setattr(SinhArcsinh, "forward", lambda self, x: (lambda z, ld: (z, 0.5 * ld))(*forward(self, x)))
    assert _fails(lecture_check)
    # the old check (the flow's sum against the sum of the same per-layer numbers) could not fail: it passes here
    _, total = flow2(x2)
    h, parts = x2, []
    for layer in flow2.layers:
        h, ld = layer(h)
        parts.append(ld)
    assert torch.allclose(total, torch.stack(parts).sum(0))


def test_a_made_that_sees_its_own_input_is_caught(monkeypatch):
    made_masks = flows.made_masks

    def leaky(*args, **kwargs):
        masks = made_masks(*args, **kwargs)
        masks[-1] = torch.ones_like(masks[-1])                   # outputs see every hidden unit: not autoregressive
        return masks

    monkeypatch.setattr(flows, "made_masks", leaky)
    assert _fails(test_flows_ch02.test_made_is_autoregressive, None)


# --- a density missing its normaliser ----------------------------------------------------------------------------
def test_a_base_density_missing_its_normaliser_is_caught(monkeypatch):
    monkeypatch.setattr(flows, "standard_normal_log_prob", lambda z: -0.5 * (z**2).sum(-1))   # no -D/2 log(2 pi)
    assert _fails(test_flows.test_flow_composes_log_dets_and_its_density_integrates_to_one)
    assert _fails(test_flows_ch02.test_realnvp_density_integrates_to_one)


def test_a_mixture_prior_missing_its_normaliser_is_caught(monkeypatch):
    log_prob = priors.MixturePrior.log_prob
    # unnormalised weights: the logits where log_softmax(logits) belongs
    monkeypatch.setattr(priors.MixturePrior, "log_prob",
                        lambda self, z: log_prob(self, z) + torch.logsumexp(self.logits, -1))
    assert _fails(test_priors_vq.test_mixture_prior_matches_torch_and_integrates_to_one)


# --- a broken aggregate posterior ----------------------------------------------------------------------------------
def _posteriors(seed=2, n=50):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g) - 1


@pytest.mark.parametrize("broken", ["missing -log n", "standard deviation exp(logvar)"])
def test_a_broken_aggregate_posterior_passes_the_identity_but_not_the_log_q_check(monkeypatch, broken):
    """Lecture 04 §1: the surgery identity cannot catch a wrong log q(z) (the error cancels between I_q and the marginal
    KL), so the lecture also asserts log q(z) against an independent implementation, and the two extremes."""
    mu, logvar = _posteriors()
    assert aggregate_log_prob_error(mu, logvar, generator=torch.Generator().manual_seed(5)) < 1e-8   # the true one passes
    original = AggregatePosterior.log_prob
    if broken == "missing -log n":
        monkeypatch.setattr(AggregatePosterior, "log_prob", lambda self, z: original(self, z) + math.log(len(self.mu)))
    else:
        def too_wide(self, z):                                       # exp(logvar) read as the standard deviation
            z, lv = z.double(), 2 * self.logvar
            return -0.5 * ((((z[:, None, :] - self.mu) ** 2) / lv.exp()).sum(-1) + lv.sum(-1) + self.latent_dim * math.log(2 * math.pi))
        monkeypatch.setattr(AggregatePosterior, "component_log_probs", too_wide)
    terms = surgery_terms(mu, logvar, samples_per_point=50, generator=torch.Generator().manual_seed(0))
    assert abs(terms.gap) < 4 * terms.gap_se + 1e-9              # the identity still holds: it cannot see this mistake
    assert aggregate_log_prob_error(mu, logvar, generator=torch.Generator().manual_seed(5)) > 1e-3   # the lecture's check does
    assert _fails(test_priors_vq.test_aggregate_posterior_is_the_mixture_of_the_posteriors)


def test_the_surgery_extremes_catch_a_missing_log_n(monkeypatch):
    original = AggregatePosterior.log_prob
    monkeypatch.setattr(AggregatePosterior, "log_prob", lambda self, z: original(self, z) + math.log(len(self.mu)))
    assert _fails(test_priors_vq.test_surgery_terms_add_up_and_hit_the_extremes)


def test_lecture_04_best_prior_claim_is_not_by_construction():
    """Lecture 04 §2 asserts that q(z) beats every other prior on the training ELBO. By the surgery, the gain of a prior p
    over N(0, I) is KL(q(z)||N) - KL(q(z)||p), so q(z) wins by KL(q(z)||p) >= 0: a prior that is NOT q(z) has a positive
    marginal KL, and a wrong q(z) (here: too wide) is not the best prior any more."""
    mu, logvar = _posteriors(3, 80)
    agg, wider = AggregatePosterior(mu, logvar), AggregatePosterior(mu, logvar + 1.0)
    right = surgery_terms(mu, logvar, agg.log_prob, samples_per_point=20, generator=torch.Generator().manual_seed(1))
    wrong = surgery_terms(mu, logvar, wider.log_prob, samples_per_point=20, generator=torch.Generator().manual_seed(1))
    assert abs(right.marginal_kl) < 1e-6 and wrong.marginal_kl > 4 * wrong.marginal_kl_se + 0.01


# --- a KL with the wrong sign, an IWAE without its 1/K -------------------------------------------------------------
def test_an_elbo_that_adds_the_kl_is_caught(monkeypatch):
    kl = vae_module.gaussian_kl
    monkeypatch.setattr(vae_module, "gaussian_kl", lambda *a, **k: -kl(*a, **k))
    # the suite's check that the ELBO is exact, in expectation, with the true posterior
    assert _fails(test_vae.test_elbo_is_exact_with_the_true_posterior)


def test_an_iwae_without_its_one_over_k_is_caught(monkeypatch):
    """With the exact posterior every importance weight equals p(x), so the K-sample bound is log p(x) exactly for every
    K (test_vae checks K = 1; homework 03 checks K = 7): a missing 1/K adds log K."""
    iwae = vae_module.iwae_bound
    model = test_vae._model(1)
    x = model.sample(8, torch.Generator().manual_seed(2))

    def exactness_check():
        for k in (1, 7):
            assert torch.allclose(vae_module.iwae_bound(x, model.exact_encoder(), model, k), model.log_marginal(x), atol=1e-9)

    exactness_check()
    monkeypatch.setattr(vae_module, "iwae_bound", lambda x, enc, dec, k, *a, **kw: iwae(x, enc, dec, k, *a, **kw) + math.log(k))
    assert _fails(exactness_check)
