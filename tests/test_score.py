"""Chapter 06: Langevin dynamics, denoising score matching, exact mixture scores, annealed Langevin, the NCSN."""

import math

import pytest
import torch

from course_utils.data import toy
from course_utils.score import (NoiseConditionalScoreNet, annealed_langevin, autograd_score, dsm_loss, geometric_sigmas,
                                langevin, mixture_score, ncsn_loss, smoothed_score, toy_mixture, train_ncsn, tweedie_denoise)

D = torch.distributions


# --- Langevin ----------------------------------------------------------------------------------
@pytest.mark.parametrize("s, eta", [(1.0, 0.2), (1.0, 1.0), (0.5, 0.3), (2.0, 4.0)])
def test_langevin_stationary_variance_on_a_gaussian(s, eta):
    """On N(0, s^2) the chain x' = (1 - eta/(2 s^2)) x + sqrt(eta) eps is stationary at s^2 / (1 - eta / (4 s^2))."""
    n, d = 20_000, 2
    x0 = s * torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x = langevin(lambda y: -y / s**2, x0, eta, 200, generator=torch.Generator().manual_seed(2))
    v = x.var(0).mean().item()
    predicted = s**2 / (1 - eta / (4 * s**2))
    se = predicted * math.sqrt(2 / (n * d))                     # s.e. of a sample variance of a Gaussian
    assert abs(v - predicted) < 5 * se
    if eta / (4 * s**2) > 0.02:                                 # the O(eta) bias is resolved: the naive s^2 is rejected
        assert abs(v - s**2) > 5 * se
    assert abs(x.mean().item()) < 5 * math.sqrt(predicted / (n * d))


def test_langevin_contract_and_errors():
    x = torch.zeros(5, 3)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = langevin(lambda y: -y, x, 0.1, 7, g1), langevin(lambda y: -y, x, 0.1, 7, g2)
    assert a.shape == x.shape and torch.equal(a, b) and torch.equal(x, torch.zeros(5, 3))     # seeded; input untouched
    # one step by hand: x + (eta / 2) s(x) + sqrt(eta) eps
    eps = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    x1 = torch.randn(5, 3)
    step = langevin(lambda y: -2 * y, x1, 0.3, 1, torch.Generator().manual_seed(3))
    assert torch.allclose(step, x1 + 0.15 * (-2 * x1) + math.sqrt(0.3) * eps, atol=1e-6)
    assert torch.equal(langevin(lambda y: -y, x1, 0.3, 0), x1)
    with pytest.raises(ValueError, match="step_size must be a positive"):
        langevin(lambda y: -y, x, -0.1, 3)
    with pytest.raises(ValueError, match="shaped like x"):
        langevin(lambda y: y.sum(-1), x, 0.1, 3)
    with pytest.raises(ValueError, match="n_steps"):
        langevin(lambda y: -y, x, 0.1, 2.5)


# --- exact mixture scores ----------------------------------------------------------------------
def test_mixture_score_matches_torch_and_autograd():
    g = torch.Generator().manual_seed(0)
    means = 2 * torch.randn(4, 3, generator=g, dtype=torch.float64)
    stds = torch.tensor([0.3, 0.7, 1.0, 1.5], dtype=torch.float64)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    ref = D.MixtureSameFamily(D.Categorical(probs=w), D.Independent(D.Normal(means, stds[:, None].expand(4, 3)), 1))
    x = 2 * torch.randn(6, 5, 3, generator=g, dtype=torch.float64)
    lq, sc = mixture_score(x, means, stds, w)
    assert lq.shape == (6, 5) and sc.shape == (6, 5, 3)
    assert torch.allclose(lq, ref.log_prob(x), atol=1e-10)
    assert torch.allclose(sc, autograd_score(ref.log_prob)(x), atol=1e-10)
    # a shared std, equal weights by default
    lq1, _ = mixture_score(x, means, 0.8)
    ref1 = D.MixtureSameFamily(D.Categorical(probs=torch.full((4,), 0.25, dtype=torch.float64)),
                               D.Independent(D.Normal(means, torch.full((4, 3), 0.8, dtype=torch.float64)), 1))
    assert torch.allclose(lq1, ref1.log_prob(x), atol=1e-10)
    far = mixture_score(torch.full((1, 3), 1e3, dtype=torch.float64), means, stds, w)
    assert torch.isfinite(far[0]).all() and torch.isfinite(far[1]).all()
    for bad in (dict(stds=-1.0), dict(weights=torch.tensor([0.5, 0.5, 0.5, 0.5]))):
        kw = dict(stds=stds, weights=w) | bad
        with pytest.raises(ValueError):
            mixture_score(x, means, kw["stds"], kw["weights"])
    with pytest.raises(ValueError, match="means must be"):
        mixture_score(x, means[:, :2], stds, w)


def test_toy_mixtures_are_the_toy_densities_and_smooth_by_adding_variances():
    for name in ("8gaussians", "moons"):
        p = toy(name)
        x = p.sample((300,), generator=torch.Generator().manual_seed(0)).double()
        lq, _ = smoothed_score(p)(x)
        assert torch.allclose(lq, p.log_prob(x), atol=1e-8)
    # q_sigma = p * N(0, sigma^2): Monte Carlo average of p(x - sigma eps) against the closed form
    p, sigma = toy("8gaussians"), 0.6
    x = torch.tensor([[0.0, 0.0], [2.8, 0.3], [1.5, 1.5]], dtype=torch.float64)
    eps = torch.randn(200_000, 1, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mc = p.log_prob((x - sigma * eps).reshape(-1, 2)).reshape(200_000, 3).exp()
    closed = smoothed_score(p, sigma)(x)[0].exp()
    assert ((mc.mean(0) - closed).abs() < 5 * mc.std(0) / math.sqrt(200_000)).all()
    with pytest.raises(ValueError, match="not a Gaussian mixture"):
        toy_mixture(toy("checkerboard"))


def test_tweedie_is_the_posterior_mean_of_a_gaussian_mixture():
    means, s, sigma = torch.tensor([[-2.0, 0.0], [1.0, 1.0]], dtype=torch.float64), 0.5, 0.8
    w = torch.tensor([0.3, 0.7], dtype=torch.float64)
    xt = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    log_q, score = mixture_score(xt, means, math.sqrt(s**2 + sigma**2), w)
    # closed form: responsibilities times each component's posterior mean mu_k + s^2 / (s^2 + sigma^2) (x_t - mu_k)
    comp = -((xt[:, None] - means) ** 2).sum(-1) / (2 * (s**2 + sigma**2)) + w.log()
    r = torch.softmax(comp, -1)
    post = (r[..., None] * (means + s**2 / (s**2 + sigma**2) * (xt[:, None] - means))).sum(1)
    assert torch.allclose(tweedie_denoise(xt, score, sigma), post, atol=1e-10)
    assert not torch.allclose(xt + sigma * score, post, atol=1e-3)          # sigma in place of sigma^2 is wrong


# --- denoising score matching ------------------------------------------------------------------
def test_dsm_loss_minimum_for_gaussian_data_in_closed_form():
    """Data N(0, s^2 I_d): q_sigma = N(0, (s^2 + sigma^2) I), the optimal score is -x / (s^2 + sigma^2), and the minimum of
    E||s(x + sigma eps) + eps / sigma||^2 is d s^2 / (sigma^2 (s^2 + sigma^2))."""
    s, sigma, d, n = 1.5, 0.7, 3, 100_000
    x = s * torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    per = dsm_loss(lambda y: -y / (s**2 + sigma**2), x, sigma, generator=torch.Generator().manual_seed(1), reduction="none")
    minimum = d * s**2 / (sigma**2 * (s**2 + sigma**2))
    assert abs(per.mean().item() - minimum) < 5 * per.std().item() / math.sqrt(n)
    # among linear scores -y / a the loss is smallest at a = s^2 + sigma^2 (common random numbers)
    a_grid = torch.linspace(1.5, 4.0, 26).tolist()
    losses = [dsm_loss(lambda y, a=a: -y / a, x, sigma, generator=torch.Generator().manual_seed(1)).item() for a in a_grid]
    best = a_grid[min(range(len(a_grid)), key=losses.__getitem__)]
    assert abs(best - (s**2 + sigma**2)) < 0.1
    # a score with the wrong sign is far above the minimum
    assert dsm_loss(lambda y: y / (s**2 + sigma**2), x, sigma, generator=torch.Generator().manual_seed(1)).item() > minimum + 2


def test_dsm_loss_contract_and_errors():
    x = torch.randn(8, 2)
    eps = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    got = dsm_loss(lambda y: 0.5 * y, x, 0.3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(got, (0.5 * (x + 0.3 * eps) + eps / 0.3).pow(2).sum(1).mean(), atol=1e-5)
    sig = torch.linspace(0.1, 1.0, 8)
    got = dsm_loss(lambda y: 0.5 * y, x, sig, generator=torch.Generator().manual_seed(0), reduction="none")
    assert torch.allclose(got, (0.5 * (x + sig[:, None] * eps) + eps / sig[:, None]).pow(2).sum(1), atol=1e-5)
    with pytest.raises(ValueError, match="sigma must be positive"):
        dsm_loss(lambda y: y, x, 0.0)
    with pytest.raises(ValueError, match="shaped like x"):
        dsm_loss(lambda y: y[:, :1], x, 0.5)


def test_ncsn_loss_is_the_sigma2_weighted_dsm_and_training_lowers_it():
    sigmas = geometric_sigmas(2.0, 0.1, 5)
    assert sigmas[0] == 2.0 and abs(sigmas[-1] - 0.1) < 1e-12 and (sigmas.diff() < 0).all()
    model = NoiseConditionalScoreNet(2, hidden=16, depth=2)
    x = torch.randn(64, 2)
    loss = ncsn_loss(model, x, sigmas, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(5, (64,), generator=g)
    sig = sigmas.float()[idx]
    per = dsm_loss(lambda y: model(y, sig), x, sig, generator=g, reduction="none")
    assert torch.allclose(loss, (sig**2 * per).mean(), atol=1e-6)
    # training brings the sigma^2-weighted loss towards that of the exact score of q_sigma (common random numbers)
    p = toy("8gaussians")
    means, std, w = toy_mixture(p)
    x_train = p.sample((4000,), generator=torch.Generator().manual_seed(0))
    sigmas = geometric_sigmas(5.0, 0.05, 4)

    def excess(net):
        out = []
        for s in sigmas.tolist():
            with torch.no_grad():
                learned = dsm_loss(lambda y: net(y, s), x_train, s, generator=torch.Generator().manual_seed(1))
            exact = dsm_loss(lambda y: mixture_score(y.double(), means, math.sqrt(std**2 + s**2), w)[1].float(), x_train, s,
                             generator=torch.Generator().manual_seed(1))
            out.append(s**2 * (learned - exact).item())
        return out

    torch.manual_seed(0)
    before = excess(NoiseConditionalScoreNet(2, hidden=64, data_var=float(x_train.var(0).mean())))
    model, hist = train_ncsn(x_train, sigmas, steps=300, hidden=64, lr=1e-2, progress=False)
    after = excess(model)
    assert sum(after) < 0.3 * sum(before) and all(a > -0.05 for a in after)    # the exact score is the minimum
    with pytest.raises(ValueError, match=r"shape \[B, 2\]"):
        model(torch.zeros(3, 3), 1.0)


# --- annealed Langevin with the exact scores reaches the mixture --------------------------------
def _exact_ncsn_score(means, std, w):
    return lambda x, sigma: mixture_score(x, means, math.sqrt(std**2 + sigma**2), w)[1]


def test_annealed_langevin_with_exact_scores_reaches_the_mixture_and_its_weights():
    """Two far-apart modes with weights 0.8 / 0.2: plain Langevin started uniformly keeps the starting split, annealed
    Langevin with the exact scores of q_sigma finds the weights; its samples match the mixture's moments."""
    means = torch.tensor([[-4.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    std, w = 0.5, torch.tensor([0.8, 0.2], dtype=torch.float64)
    n = 2000
    g = torch.Generator().manual_seed(0)
    sigmas = geometric_sigmas(8.0, 0.05, 10)
    x0 = sigmas[0] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    x = annealed_langevin(_exact_ncsn_score(means, std, w), x0, sigmas, 40, 2e-3, generator=g, denoise=False)
    left = (x[:, 0] < 0).double().mean().item()
    assert abs(left - 0.8) < 4 * math.sqrt(0.16 / n)
    k = (x[:, 0] > 0).long()
    within = x - means[k]
    assert abs(within.var(0).mean().item() - std**2) < 0.03
    # plain Langevin at sigma = 0 from a uniform start: modes found, weights not
    x_plain = langevin(lambda y: mixture_score(y, means, std, w)[1], 8 * torch.rand(n, 2, generator=g, dtype=torch.float64) - 4,
                       0.05, 300, g)
    left_plain = (x_plain[:, 0] < 0).double().mean().item()
    assert abs(left_plain - 0.5) < 0.05 and abs(left_plain - 0.8) > 0.2
    with pytest.raises(ValueError, match="strictly decreasing"):
        annealed_langevin(_exact_ncsn_score(means, std, w), x0, sigmas.flip(0), 5, 1e-3)


def test_annealed_langevin_on_8gaussians_with_exact_scores():
    p = toy("8gaussians")
    means, std, w = toy_mixture(p)
    g = torch.Generator().manual_seed(1)
    sigmas = geometric_sigmas(5.0, 0.02, 10)
    x = annealed_langevin(_exact_ncsn_score(means, std, w), 5 * torch.randn(3000, 2, generator=g, dtype=torch.float64),
                          sigmas, 30, 1e-3, generator=g)
    k = torch.cdist(x, means).argmin(1)
    counts = torch.bincount(k, minlength=8).double() / len(x)
    assert (counts - 1 / 8).abs().max() < 4 * math.sqrt((1 / 8) * (7 / 8) / len(x))
    assert abs((x - means[k]).var(0).mean().sqrt().item() - std) < 0.02


# --- the widget --------------------------------------------------------------------------------
def test_score_widget_state_and_figure():
    import matplotlib.pyplot as plt

    from course_utils.widgets import ScoreExplorer, score_figure, score_state

    p = toy("8gaussians")
    exact = score_state(p, 0.3, 0.01, None, n_steps=50, n_particles=200, grid=40)
    assert exact.learned is None and math.isnan(exact.rel_error) and exact.particles.shape == (200, 2)
    assert abs(exact.density.sum() * ((p.lims[1] - p.lims[0]) / 39) ** 2 - 1) < 0.02       # q_sigma integrates to 1
    torch.manual_seed(0)
    model = NoiseConditionalScoreNet(2, hidden=16, depth=2)
    learned = score_state(p, 0.3, 0.01, model, n_steps=50, n_particles=200, grid=40)
    assert learned.learned.shape == exact.exact.shape and learned.rel_error > 0.3              # an untrained model is off
    wide = score_state(p, 3.0, 0.01, None, n_steps=50, n_particles=200, grid=40)
    assert wide.density.max() < exact.density.max()                                             # more noise, flatter q_sigma
    big_step = score_state(p, 0.3, 0.3, None, n_steps=50, n_particles=200, grid=40)
    assert not (big_step.particles == exact.particles).all()
    plt.close(score_figure(learned))
    with pytest.raises(ValueError):
        score_state(p, 0.3, -1.0)
    explorer = ScoreExplorer(p, model, n_steps=20)
    before = explorer.image.value
    explorer.sigma.value = explorer.sigma.options[0][1]
    after_sigma = explorer.image.value
    explorer.step.value = explorer.step.options[-1][1]
    assert before != after_sigma != explorer.image.value
