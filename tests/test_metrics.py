import math

import pytest
import torch

from course_utils.metrics import energy_distance, gaussian_kl, mmd, relative_to_noise_floor, sliced_wasserstein


def _gauss(n, mu, s, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return mu + s * torch.randn(n, d, generator=g, dtype=torch.float64)


def _rbf_mean(mu1, s1, mu2, s2, h, d):
    """E exp(-|X - Y|^2 / (2 h^2)) for independent X ~ N(mu1, s1^2 I), Y ~ N(mu2, s2^2 I)."""
    v = h * h + s1 * s1 + s2 * s2
    return (h * h / v) ** (d / 2) * math.exp(-((mu1 - mu2) ** 2) * d / (2 * v))


def test_mmd_matches_closed_form_for_gaussians():
    d, h = 2, 1.0
    x, y = _gauss(3000, 0.0, 1.0, seed=1), _gauss(3000, 0.5, 1.0, seed=2)
    exact = _rbf_mean(0, 1, 0, 1, h, d) + _rbf_mean(0.5, 1, 0.5, 1, h, d) - 2 * _rbf_mean(0, 1, 0.5, 1, h, d)
    assert mmd(x, y, bandwidths=(h,)) == pytest.approx(exact, abs=0.004)


def test_mmd_is_near_zero_for_equal_distributions_and_default_bandwidths_work():
    x, y = _gauss(2000, 0.0, 1.0, seed=1), _gauss(2000, 0.0, 1.0, seed=2)
    assert abs(mmd(x, y)) < 0.01
    assert mmd(x, _gauss(2000, 1.0, 1.0, seed=3)) > 0.1


def test_energy_distance_matches_closed_form_in_1d():
    # X ~ N(0, 1), Y ~ N(d, 1): E|X-Y| with X-Y ~ N(-d, 2); E|X-X'| = E|Y-Y'| = 2/sqrt(pi)
    dlt = 1.0
    s = math.sqrt(2)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-dlt**2 / (2 * s * s)) + dlt * (1 - 2 * 0.5 * math.erfc(dlt / s / math.sqrt(2)))
    exact = 2 * e_xy - 2 * (2 / math.sqrt(math.pi))
    x, y = _gauss(4000, 0.0, 1.0, d=1, seed=4), _gauss(4000, dlt, 1.0, d=1, seed=5)
    assert energy_distance(x, y) == pytest.approx(exact, abs=0.03)


def test_sliced_wasserstein_of_a_translation():
    # y = x + delta exactly: every projection is shifted by theta.delta, so SW_2^2 = E (theta.delta)^2 = |delta|^2 / d
    x = _gauss(1000, 0.0, 1.0, d=3, seed=6)
    delta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    sw = sliced_wasserstein(x, x + delta, n_projections=4000)
    assert sw == pytest.approx(float(delta.norm()) / math.sqrt(3), rel=0.03)
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x[:500] + delta, n_projections=4000) > 0.5  # unequal sizes work


def test_gaussian_kl_against_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mq, lq = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g) * 0.5
    mp, lp = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g) * 0.5
    ours = gaussian_kl(mq, lq, mp, lp)
    q = torch.distributions.Independent(torch.distributions.Normal(mq, (0.5 * lq).exp()), 1)
    p = torch.distributions.Independent(torch.distributions.Normal(mp, (0.5 * lp).exp()), 1)
    assert torch.allclose(ours, torch.distributions.kl_divergence(q, p), atol=1e-5)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(ours, mc, atol=0.03)
    assert gaussian_kl(torch.zeros(4), torch.zeros(4)).item() == 0.0  # standard-normal default
    with pytest.raises(ValueError, match="last"):
        gaussian_kl(torch.tensor(0.0), torch.tensor(0.0))


def test_noise_floor_ratio():
    truth = lambda n: _gauss(n, 0.0, 1.0, seed=torch.randint(10**6, ()).item())  # noqa: E731
    torch.manual_seed(0)
    good = relative_to_noise_floor(sliced_wasserstein, truth(2000), truth)
    bad = relative_to_noise_floor(sliced_wasserstein, _gauss(2000, 0.7, 1.0, seed=9), truth)
    assert 0.3 < good["ratio"] < 3
    assert bad["ratio"] > 5
    assert set(good) == {"distance", "floor", "ratio"}
    same = lambda n: _gauss(n, 0.0, 1.0, seed=3)  # noqa: E731  (a sampler seeded anew: both truth draws are equal)
    with pytest.raises(ValueError, match="same points twice"):
        relative_to_noise_floor(sliced_wasserstein, truth(100), same)
    g = torch.Generator().manual_seed(4)
    stream = lambda n: torch.randn(n, 2, generator=g, dtype=torch.float64)  # noqa: E731
    ratios = [relative_to_noise_floor(sliced_wasserstein, stream(2000), stream, repeats=10)["ratio"] for _ in range(5)]
    assert all(0.75 < r < 1.35 for r in ratios), ratios  # averaged: a sample of the truth scores about 1
    with pytest.raises(ValueError, match="repeats"):
        relative_to_noise_floor(sliced_wasserstein, truth(100), truth, repeats=0)
    with pytest.raises(ValueError, match="negative"):  # the unbiased energy distance of matching samples can be < 0
        relative_to_noise_floor(lambda a, b: -1.0, truth(100), truth)


def test_metrics_reject_bad_input():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        mmd(x, torch.randn(10))
    with pytest.raises(ValueError, match="same dimension"):
        energy_distance(x, torch.randn(10, 3))
    with pytest.raises(ValueError, match="NaN"):
        sliced_wasserstein(x, torch.full((10, 2), float("nan")))
