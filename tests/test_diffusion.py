"""Tests for course_utils.diffusion (chapter 07): schedules, the forward chain, the posterior, the ELBO terms, the
epsilon-network, sampling and guidance. Each test names the mistake it would catch."""

import math

import pytest
import torch

from course_utils import set_threads
from course_utils.diffusion import Schedule


@pytest.fixture(autouse=True, scope="module")
def _course_threads():
    set_threads()      # the course's thread policy (one thread on a 2-core machine)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------
def test_linear_schedule_is_indexed_like_the_notes():
    s = Schedule.linear(1000)
    assert len(s.betas) == len(s.alphas) == len(s.alpha_bars) == len(s.beta_tildes) == 1001 and s.T == 1000
    assert s.betas[0] == 0 and s.alpha_bars[0] == 1 and s.beta_tildes[0] == 0
    assert math.isclose(s.betas[1].item(), 1e-4) and math.isclose(s.betas[1000].item(), 0.02)
    assert torch.allclose(s.betas[1:], torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    # alpha_bar_t = prod_{s=1..t} (1 - beta_s), by an explicit loop (catches an off-by-one cumprod)
    running = [1.0]
    for t in range(1, 1001):
        running.append(running[-1] * (1 - s.betas[t].item()))
    assert torch.allclose(s.alpha_bars, torch.tensor(running, dtype=torch.float64), rtol=1e-12)
    assert math.isclose(s.alpha_bars[1].item(), 1 - 1e-4)
    assert s.alpha_bars[-1] < 1e-4               # T = 1000 reaches noise


def test_short_linear_chain_does_not_reach_noise():
    # PITFALLS: with 1e-4..0.02 and T = 50, abar_T is about 0.60; the prior KL is far from 0
    s = Schedule.linear(50)
    assert 0.58 < s.alpha_bars[-1].item() < 0.62
    x0 = torch.full((4, 2), 1.5)
    assert (s.prior_kl(x0) > 0.5).all()
    assert (Schedule.linear(1000).prior_kl(x0) < 1e-3).all()


def test_cosine_schedule_matches_nichol_dhariwal():
    T, s0 = 200, 0.008
    s = Schedule.cosine(T, s=s0)
    t = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos((t / T + s0) / (1 + s0) * math.pi / 2) ** 2
    abar = f / f[0]
    assert s.betas[0] == 0 and s.alpha_bars[0] == 1
    assert s.betas.max() <= 0.999 and math.isclose(s.betas[T].item(), 0.999)        # clipped at the end
    # before the clipped step, alpha_bars is f(t)/f(0) exactly
    assert torch.allclose(s.alpha_bars[:T], abar[:T], rtol=1e-10, atol=1e-14)
    assert torch.allclose(s.alpha_bars, torch.cumprod(1 - s.betas, 0))
    # with T = 1000 the cosine schedule destroys information more slowly than the linear one
    assert Schedule.cosine(1000).alpha_bars[250] > 1.5 * Schedule.linear(1000).alpha_bars[250]


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="positive int"):
        Schedule.linear(0)
    with pytest.raises(ValueError, match="beta_1"):
        Schedule.linear(10, beta_1=0.5, beta_T=0.1)
    with pytest.raises(ValueError, match="betas\\[0\\]"):
        Schedule(torch.tensor([0.1, 0.2]))
    s = Schedule.linear(10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="0..10"):
        s.q_sample(x, 11, x)
    with pytest.raises(ValueError, match="1..10"):
        s.q_posterior(x, x, 0)
    with pytest.raises(TypeError, match="integer"):
        s.q_sample(x, torch.tensor([0.5, 1.0, 2.0]), x)
    with pytest.raises(ValueError, match="batch of 2"):
        s.q_sample(x, torch.tensor([1, 2]), x)
    with pytest.raises(ValueError, match="same shape"):
        s.q_sample(x, 1, torch.zeros(3, 3))


# ---------------------------------------------------------------------------------------------
# The forward chain
# ---------------------------------------------------------------------------------------------
def test_q_sample_is_the_marginal_of_the_step_by_step_chain():
    torch.manual_seed(0)
    s = Schedule.linear(20, beta_1=0.01, beta_T=0.2)
    x0 = torch.tensor([1.5, -0.7], dtype=torch.float64).expand(40_000, 2)
    x = x0.clone()
    for t in range(1, 9):
        x = s.q_step(x, t, torch.randn_like(x))
    ab = s.alpha_bars[8].item()
    mean_err = (x.mean(0) - math.sqrt(ab) * x0[0]).abs().max().item()
    se = math.sqrt((1 - ab) / len(x))
    assert mean_err < 5 * se
    assert torch.allclose(x.var(0), torch.full((2,), 1 - ab, dtype=torch.float64), rtol=0.03)
    # the same moments from q_sample in one step, and an off-by-one (abar_{t-1}) is visibly wrong
    y = s.q_sample(x0, 8, torch.randn_like(x0))
    assert (y.mean(0) - x.mean(0)).abs().max() < 6 * se
    assert abs(math.sqrt(s.alpha_bars[7].item()) - math.sqrt(ab)) * 1.5 > 10 * se


def test_q_sample_broadcasts_over_any_shape_and_batched_t():
    s = Schedule.cosine(50)
    x0, eps = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    t = torch.tensor([0, 1, 10, 49, 50])
    xt = s.q_sample(x0, t, eps)
    assert xt.shape == x0.shape and xt.dtype == torch.float32
    for i in range(5):
        assert torch.allclose(xt[i], s.q_sample(x0[i:i + 1], int(t[i]), eps[i:i + 1])[0], atol=1e-6)
    assert torch.allclose(xt[0], x0[0])                                   # t = 0 is the data
    assert torch.allclose(s.predict_x0(xt, t, eps), x0, atol=1e-4)          # round trip
    # a python int and a 0-d tensor give the same
    assert torch.equal(s.q_sample(x0, 7, eps), s.q_sample(x0, torch.tensor(7), eps))


# ---------------------------------------------------------------------------------------------
# The posterior
# ---------------------------------------------------------------------------------------------
def _posterior_by_conditioning(s, x0, xt, t):
    """q(x_{t-1} | x_t, x_0) by conditioning the joint Gaussian of (x_{t-1}, x_t) given x_0 (independent of the
    completed-square formula): x_{t-1} ~ N(sqrt(abar_{t-1}) x0, 1 - abar_{t-1}), x_t = sqrt(alpha_t) x_{t-1} + ..."""
    ab_prev, ab, a = s.alpha_bars[t - 1].item(), s.alpha_bars[t].item(), s.alphas[t].item()
    m_prev, v_prev = math.sqrt(ab_prev) * x0, 1 - ab_prev
    cov = math.sqrt(a) * v_prev
    v_t = 1 - ab
    mean = m_prev + cov / v_t * (xt - math.sqrt(ab) * x0)
    var = v_prev - cov ** 2 / v_t
    return mean, var


@pytest.mark.parametrize("make", [lambda: Schedule.linear(100), lambda: Schedule.cosine(100)])
def test_q_posterior_matches_gaussian_conditioning(make):
    s = make()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 3, dtype=torch.float64, generator=g)
    xt = torch.randn(6, 3, dtype=torch.float64, generator=g)
    for t in (1, 2, 37, 100):
        mean, var = s.q_posterior(x0, xt, t)
        m_ref, v_ref = _posterior_by_conditioning(s, x0, xt, t)
        assert mean.shape == var.shape == x0.shape
        assert torch.allclose(mean, m_ref, rtol=1e-9, atol=1e-12)
        assert torch.allclose(var, torch.full_like(var, v_ref), rtol=1e-9, atol=1e-15)
        assert math.isclose(s.beta_tildes[t].item(), max(v_ref, 0.0), rel_tol=1e-8, abs_tol=1e-15)
    assert (s.q_posterior(x0, xt, 1)[1] == 0).all()                       # x_0 is known at t = 1
    # batched t
    t = torch.tensor([1, 5, 9, 50, 99, 100])
    mean, var = s.q_posterior(x0, xt, t)
    for i in range(6):
        m_ref, v_ref = _posterior_by_conditioning(s, x0[i], xt[i], int(t[i]))
        assert torch.allclose(mean[i], m_ref) and torch.allclose(var[i], torch.full((3,), v_ref, dtype=torch.float64))


def test_eps_form_of_the_mean_and_score():
    s = Schedule.linear(200)
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 2, 100, 200])
    xt = s.q_sample(x0, t, eps)
    assert torch.allclose(s.p_mean(xt, t, eps), s.q_posterior(x0, xt, t)[0], atol=1e-10)
    # score of q(x_t | x_0) = -(x_t - sqrt(abar) x0)/(1 - abar) = -eps / sqrt(1 - abar)
    ab = s.alpha_bars[t].view(4, 1, 1, 1)
    assert torch.allclose(s.eps_to_score(eps, t), -(xt - ab.sqrt() * x0) / (1 - ab))
    assert torch.allclose(s.score_to_eps(s.eps_to_score(eps, t), t), eps)


# ---------------------------------------------------------------------------------------------
# ELBO terms
# ---------------------------------------------------------------------------------------------
from course_utils.diffusion import (EpsMLP, ancestral_sample, bits_per_dim, cfg_eps, classifier_guided_eps, elbo,
                                    elbo_terms, eps_weight, loss_simple, mixture_eps, step_kl, timestep_embedding,
                                    train_ddpm)
from course_utils.metrics import gaussian_kl, relative_to_noise_floor, sliced_wasserstein


def test_step_kl_is_the_closed_form_gaussian_kl_and_its_eps_weight():
    s = Schedule.linear(100)
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.randn(7, 3, generator=g, dtype=torch.float64), torch.randn(7, 3, generator=g, dtype=torch.float64)
    eps_hat = eps + 0.2 * torch.randn(7, 3, generator=g, dtype=torch.float64)
    for t in (2, 3, 50, 100):
        xt = s.q_sample(x0, t, eps)
        kl = step_kl(s, x0, xt, t, eps_hat)
        # independent: 1-D Gaussian KL, per coordinate, summed
        m_q, v_q = _posterior_by_conditioning(s, x0, xt, t)
        m_p = (xt - s.betas[t] / (1 - s.alpha_bars[t]).sqrt() * eps_hat) / s.alphas[t].sqrt()
        ref = (0.5 * (m_q - m_p) ** 2 / v_q).sum(1)                       # same variances: only the mean term
        assert torch.allclose(kl, ref, rtol=1e-7)
        assert torch.allclose(kl, eps_weight(s, t) * (eps - eps_hat).pow(2).sum(1), rtol=1e-7)
        # with sigma_t^2 = beta_t there is an extra, mean-independent term: KL(N(0, b~) || N(0, b)) per coordinate
        kl_beta = step_kl(s, x0, xt, t, eps_hat, variance="beta")
        extra = 0.5 * (s.beta_tildes[t] / s.betas[t] - 1 - (s.beta_tildes[t] / s.betas[t]).log()) * 3
        assert torch.allclose(kl_beta, kl * s.beta_tildes[t] / s.betas[t] + extra, rtol=1e-7)
    with pytest.raises(ValueError, match="2..100"):
        step_kl(s, x0, x0, 1, eps)


def test_elbo_terms_of_gaussian_data_with_the_exact_denoiser():
    # data N(0, v0) in 1-D: q_t = N(0, abar v0 + 1 - abar) and the exact eps* is linear. Then, independently,
    # E L_{t-1} = c_t^2 Var(x0 | x_t) / (2 beta~_t) with c_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t), and the ELBO
    # is below log p(x0).
    v0 = 0.5
    s = Schedule.linear(200, beta_1=1e-3, beta_T=0.05)

    def eps_star(x, t):
        ab = s.alpha_bars[t].view(-1, 1).to(x)
        return (1 - ab).sqrt() * x / (ab * v0 + 1 - ab)

    g = torch.Generator().manual_seed(4)
    n = 4000
    x0 = math.sqrt(v0) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    log_p = (-0.5 * x0 ** 2 / v0 - 0.5 * math.log(2 * math.pi * v0)).sum(1)
    terms = elbo_terms(eps_star, s, x0, generator=g)
    for t in (2, 5, 50, 200):
        ab, ab_prev = s.alpha_bars[t].item(), s.alpha_bars[t - 1].item()
        c = math.sqrt(ab_prev) * s.betas[t].item() / (1 - ab)
        expected = c**2 * v0 * (1 - ab) / (ab * v0 + 1 - ab) / (2 * s.beta_tildes[t].item())
        rel_se = math.sqrt(2 / n)                                          # a scaled chi^2_1 per data point
        assert abs(terms["per_step"][t].item() / expected - 1) < 4 * rel_se, t
    gap = -terms["nelbo"] - log_p                                          # ELBO - log p <= 0 in mean
    assert gap.mean() < 3 * gap.std() / math.sqrt(n)
    # half of the exact eps is a clearly worse bound
    worse = -elbo_terms(lambda x, t: 0.5 * eps_star(x, t), s, x0, generator=g)["nelbo"]
    assert worse.mean() < -terms["nelbo"].mean() - 0.5
    assert elbo(eps_star, s, x0[:100], generator=g)[1] > 0


def test_discrete_decoder_is_a_probability():
    from course_utils.diffusion import _decoder_nll
    x = torch.tensor([[-1.0, 1.0, -1.0]])
    m = torch.tensor([[0.3, -0.2, -0.9]])
    nll = _decoder_nll(x, m, 0.5, levels=2)
    p = torch.distributions.Normal(m, 0.5)
    ref = -(torch.log(p.cdf(torch.zeros(1))[0, 0]) + torch.log(1 - p.cdf(torch.zeros(1))[0, 1])
            + torch.log(p.cdf(torch.zeros(1))[0, 2]))
    assert torch.allclose(nll.float(), ref.reshape(1), atol=1e-5)
    # the levels' probabilities sum to 1 (3 levels: -1, 0, 1)
    tot = sum(torch.exp(-_decoder_nll(torch.tensor([[v]]), torch.tensor([[0.2]]), 0.7, levels=3)) for v in (-1.0, 0.0, 1.0))
    assert abs(tot.item() - 1) < 1e-9
    with pytest.raises(ValueError, match="levels"):
        _decoder_nll(torch.tensor([[0.3]]), torch.tensor([[0.0]]), 0.5, levels=2)
    assert math.isclose(bits_per_dim(64 * math.log(2), 64), 1.0)


# ---------------------------------------------------------------------------------------------
# Network, training, sampling, guidance
# ---------------------------------------------------------------------------------------------
def test_time_embedding_frequencies_decrease_from_one():
    e = timestep_embedding(torch.tensor([0, 1, 2, 500]), 32)
    assert e.shape == (4, 32)
    assert torch.allclose(e[0, :16], torch.ones(16)) and torch.allclose(e[0, 16:], torch.zeros(16))
    # with the right sign the lowest frequency is 10^-4 * ..., so neighbouring steps embed close together
    assert (e[1] - e[2]).norm() < (e[1] - e[3]).norm()
    assert (e[1] - e[2]).norm() < 1.5                 # the wrong sign (frequencies up to 1e4) gives ~ random vectors
    with pytest.raises(ValueError, match="even"):
        timestep_embedding(torch.tensor([1]), 7)


def test_eps_mlp_shapes_labels_and_null_label():
    torch.manual_seed(0)
    m = EpsMLP((1, 8, 8), hidden=32, n_classes=10)
    x, t = torch.randn(5, 1, 8, 8), torch.tensor([1, 2, 3, 4, 5])
    assert m(x, t).shape == x.shape and m(x, 7).shape == x.shape
    assert torch.equal(m(x, t), m(x, t, torch.full((5,), 10)))            # no label = the null label
    assert not torch.allclose(m(x, t, torch.zeros(5, dtype=torch.long)), m(x, t))
    with pytest.raises(ValueError, match="shape"):
        m(torch.randn(5, 64), t)
    with pytest.raises(ValueError, match="unconditional"):
        EpsMLP(2)(torch.randn(3, 2), 1, torch.zeros(3, dtype=torch.long))


def test_cfg_convention_w0_unconditional_w1_conditional():
    torch.manual_seed(0)
    m = EpsMLP(2, hidden=16, n_classes=3)
    x, t, y = torch.randn(6, 2), torch.full((6,), 5), torch.tensor([0, 1, 2, 0, 1, 2])
    assert torch.allclose(cfg_eps(m, x, t, y, 0.0), m(x, t), atol=1e-6)
    assert torch.allclose(cfg_eps(m, x, t, y, 1.0), m(x, t, y), atol=1e-6)
    e3 = cfg_eps(m, x, t, y, 3.0)
    assert torch.allclose(e3, m(x, t) + 3 * (m(x, t, y) - m(x, t)), atol=1e-5)


def test_classifier_guidance_at_w1_gives_the_component_score():
    # two 1-D... 2-D Gaussian components: p(y | x_t) exact; guided score at w = 1 = score of component y
    from course_utils.score import mixture_score
    s = Schedule.cosine(50)
    means = torch.tensor([[2.0, 0.0], [-2.0, 0.0]], dtype=torch.float64)
    std = 0.3
    eps_fn = mixture_eps(s, means, std)

    class Exact(torch.nn.Module):
        def forward(self, x, t):
            ab = s.alpha_bars[t].to(x).reshape(-1, 1)
            return -(x[:, None, :] - ab.sqrt()[:, :, None] * means).pow(2).sum(-1) / (2 * (ab * std**2 + 1 - ab))

    x = torch.randn(5, 2, dtype=torch.float64)
    t = torch.full((5,), 20)
    ab = s.alpha_bars[20].item()
    guided = classifier_guided_eps(eps_fn(x, t), x, t, 1, Exact(), 1.0, s)
    _, sc1 = mixture_score(x, math.sqrt(ab) * means[1:], math.sqrt(ab * std**2 + 1 - ab))
    assert torch.allclose(s.eps_to_score(guided, t), sc1, atol=1e-8)
    assert torch.allclose(classifier_guided_eps(eps_fn(x, t), x, t, 1, Exact(), 0.0, s), eps_fn(x, t))


def test_ancestral_sampling_with_the_exact_denoiser_recovers_the_mixture():
    from course_utils.data import toy
    from course_utils.score import toy_mixture
    p = toy("8gaussians")
    means, std, w = toy_mixture(p)
    s = Schedule.cosine(100)
    torch.manual_seed(0)
    xs, kept = ancestral_sample(mixture_eps(s, means, std, w), s, (3000, 2), generator=torch.Generator().manual_seed(0),
                                keep=(100, 50, 0))
    assert set(kept) == {100, 50, 0} and torch.equal(kept[0], xs)
    rs = [relative_to_noise_floor(sliced_wasserstein, xs.double(), lambda n: p.sample((n,))) for _ in range(3)]
    assert sum(r["distance"] for r in rs) / sum(r["floor"] for r in rs) < 2.0
    # the x_T are N(0, I)
    assert abs(kept[100].std().item() - 1) < 0.05
    # sampling with the wrong reverse mean (eps ignored) does not recover it
    bad = ancestral_sample(lambda x, t: torch.zeros_like(x), s, (3000, 2), generator=torch.Generator().manual_seed(0))
    assert sliced_wasserstein(bad.double(), p.sample((3000,))) > 5 * rs[0]["floor"]


def test_train_ddpm_loss_falls_and_is_reproducible():
    from course_utils.data import toy
    x = toy("8gaussians").sample((2000,), generator=torch.Generator().manual_seed(0)).float()
    s = Schedule.cosine(50)
    m1, h1 = train_ddpm(x, s, hidden=32, steps=200, batch=128, progress=False)
    m2, h2 = train_ddpm(x, s, hidden=32, steps=200, batch=128, progress=False)
    assert h1.losses == h2.losses
    first, last = sum(h1.losses[:30]) / 30, sum(h1.losses[-30:]) / 30
    assert last < 0.8 * first
    y = torch.randint(4, (2000,))
    mc, _ = train_ddpm(x, s, labels=y, hidden=32, steps=20, batch=64, progress=False)
    assert mc.n_classes == 4
    with pytest.raises(ValueError, match="labels"):
        train_ddpm(x, s, labels=y[:10], steps=1, progress=False)
    with pytest.raises(ValueError, match="probability"):
        loss_simple(mc, s, x[:4], y[:4], p_uncond=1.5)


class _LabelSpy(EpsMLP):
    """An EpsMLP that records every label batch it is called with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = []

    def forward(self, x, t, y=None):
        if y is not None:
            self.seen.append(torch.as_tensor(y).detach().cpu().clone())
        return super().forward(x, t, y)


@pytest.mark.parametrize("p_uncond", [0.2, 0.7])
def test_label_dropout_drops_with_probability_p_uncond(p_uncond):
    # classifier-free guidance's label dropout: each label becomes the null label with probability p_uncond (the MIT
    # labs once shipped the inverted `rand > p_uncond`, which still trains, but keeps the labels with that probability)
    x = torch.randn(400, 2)
    y = torch.randint(3, (400,))
    spy = _LabelSpy(2, hidden=8, n_classes=3)
    train_ddpm(x, Schedule.cosine(20), labels=y, p_uncond=p_uncond, model=spy, steps=10, batch=500, progress=False)
    seen = torch.cat(spy.seen)                                             # 5000 labels seen in training
    null = (seen == spy.null_label).double().mean().item()
    se = math.sqrt(p_uncond * (1 - p_uncond) / len(seen))
    assert abs(null - p_uncond) < 4 * se, (null, p_uncond)                 # the inverted dropout gives 1 - p_uncond
    assert set(seen[seen != spy.null_label].tolist()) <= {0, 1, 2}         # kept labels are the data's own
    # the extremes: p_uncond = 0 keeps every label, p_uncond = 1 drops every one; no labels: never a null label
    for p, expected in ((0.0, 0.0), (1.0, 1.0)):
        spy.seen.clear()
        loss_simple(spy, Schedule.cosine(20), x, y, p_uncond=p, generator=torch.Generator().manual_seed(0))
        assert (torch.cat(spy.seen) == spy.null_label).double().mean().item() == expected
    # the dropped labels are the null label that w = 0 of classifier-free guidance evaluates
    xq, tq = torch.randn(5, 2), torch.full((5,), 7)
    with torch.no_grad():
        assert torch.allclose(cfg_eps(spy, xq, tq, torch.zeros(5, dtype=torch.long), 0.0),
                              spy(xq, tq, torch.full((5,), spy.null_label)), atol=1e-6)


def test_elbo_time_sampling_follows_the_elbo_weights():
    # t_sampling="elbo" draws t in 2..T with probability lambda_t / sum(lambda): importance sampling of sum_t L_{t-1}
    s = Schedule.linear(40, beta_1=1e-3, beta_T=0.1)
    seen = []

    class TSpy(torch.nn.Module):
        def forward(self, x, t, y=None):
            seen.append(t.clone())
            return torch.zeros_like(x)

    n = 40_000
    loss_simple(TSpy(), s, torch.zeros(n, 1), generator=torch.Generator().manual_seed(0), t_sampling="elbo")
    t = seen[0]
    lam = eps_weight(s, torch.arange(2, 41))
    p = lam / lam.sum()
    freq = torch.bincount(t, minlength=41)[2:].double() / n
    assert t.min() >= 2 and t.max() <= 40
    assert ((freq - p).abs() < 4 * (p * (1 - p) / n).sqrt() + 1e-12).all()
    seen.clear()
    loss_simple(TSpy(), s, torch.zeros(n, 1), generator=torch.Generator().manual_seed(0))      # the default: uniform 1..T
    assert seen[0].min() == 1 and abs(torch.bincount(seen[0], minlength=41)[1:].double().std() / (n / 40)) < 0.05
    with pytest.raises(ValueError, match="t_sampling"):
        loss_simple(TSpy(), s, torch.zeros(4, 1), t_sampling="lambda")


def test_ddpm_widget_state_and_figure():
    import matplotlib.pyplot as plt
    from course_utils.widgets import ddpm_figure, ddpm_state
    s = Schedule.cosine(20)
    data = torch.randn(300, 2) * 0.1 + 2.0
    chains = {w: {t: torch.randn(50, 2) * (1 + w) for t in (0, 10, 20)} for w in (0.0, 2.0)}
    st0, st20 = ddpm_state(s, data, chains, 0, 0.0), ddpm_state(s, data, chains, 20, 0.0)
    assert torch.allclose(st0.forward, data.double())                      # t = 0: the data
    assert abs(st20.forward.mean().item()) < 0.3 and st20.alpha_bar < 1e-3  # t = T: noise
    assert torch.equal(ddpm_state(s, data, chains, 10, 2.0).reverse, chains[2.0][10].double())
    with pytest.raises(ValueError, match="guidance|recorded"):
        ddpm_state(s, data, chains, 10, 1.0)
    with pytest.raises(ValueError, match="recorded"):
        ddpm_state(s, data, chains, 5, 0.0)
    fig = ddpm_figure(st20)
    assert len(fig.axes) == 2
    plt.close(fig)
