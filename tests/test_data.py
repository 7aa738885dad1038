import math

import numpy as np
import pytest
import torch

from course_utils.data import TOY_NAMES, load_digits, toy


def grid(lo=-5.5, hi=5.5, m=221):
    g = torch.linspace(lo, hi, m, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="xy")
    return torch.stack([X, Y], -1).reshape(-1, 2), (hi - lo) / (m - 1)


def test_zoo_has_the_required_targets():
    assert {"moons", "circles", "swissroll", "8gaussians", "checkerboard", "pinwheel", "spirals"} <= set(TOY_NAMES)


@pytest.mark.parametrize("name", TOY_NAMES)
def test_density_integrates_to_one(name):
    p = toy(name)
    pts, h = grid()
    total = float(p.log_prob(pts).exp().sum() * h * h)
    assert abs(total - 1) < 0.01, f"{name}: density integrates to {total}"


@pytest.mark.parametrize("name", TOY_NAMES)
def test_density_agrees_with_histogram_of_samples(name):
    """Bin masses by integrating the density (4x4 sub-grid per bin) against a histogram of 200k samples."""
    p = toy(name)
    torch.manual_seed(0)
    x = p.sample((200_000,)).double()
    edges = np.linspace(-5, 5, 41)  # bins of 0.25
    counts, _, _ = np.histogram2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=[edges, edges])
    freq = counts / len(x)
    sub = 8
    fine = torch.linspace(-5, 5, 40 * sub + 1, dtype=torch.float64)
    mids = 0.5 * (fine[1:] + fine[:-1])
    X, Y = torch.meshgrid(mids, mids, indexing="ij")
    dens = p.log_prob(torch.stack([X, Y], -1).reshape(-1, 2)).exp().reshape(40 * sub, 40 * sub)
    mass = dens.reshape(40, sub, 40, sub).sum((1, 3)).numpy() * (10 / (40 * sub)) ** 2
    tv = 0.5 * np.abs(freq - mass).sum()
    assert tv < 0.03, f"{name}: total variation between histogram and density is {tv:.4f}"
    # and a bin-wise check where there is mass: relative error within 5 standard errors
    big = mass > 2e-3
    se = np.sqrt(mass[big] / len(x))
    assert (np.abs(freq[big] - mass[big]) < 5 * se + 1e-3).mean() > 0.98


def test_samples_have_shape_and_are_reproducible():
    p = toy("moons")
    a = p.sample((3, 4), generator=torch.Generator().manual_seed(1))
    b = p.sample((3, 4), generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 4, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert p.log_prob(a).shape == (3, 4)


def test_checkerboard_is_uniform_on_dark_squares():
    p = toy("checkerboard")
    lp = p.log_prob(torch.tensor([[-2.9, -2.9], [-1.4, -2.9], [10.0, 0.0]]))
    assert lp[0] == pytest.approx(-math.log(18)) and lp[1] == -math.inf and lp[2] == -math.inf
    assert p.entropy_estimate()[0] == pytest.approx(math.log(18))


def test_entropy_estimate_matches_closed_form_for_a_wide_gaussian_mixture():
    from course_utils.data import GaussianMixture2D

    p = GaussianMixture2D(torch.zeros(1, 2), std=0.7)  # one component: H = log(2 pi e sigma^2)
    h, se = p.entropy_estimate(100_000)
    assert abs(h - math.log(2 * math.pi * math.e * 0.49)) < 5 * se


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match="expected one of .*moons"):
        toy("moon")
    p = toy("spirals")
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 2\].*\(10, 3\)"):
        p.log_prob(torch.zeros(10, 3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        p.log_prob(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="floating-point"):
        p.log_prob(torch.zeros(3, 2, dtype=torch.long))


def test_digits():
    x, y = load_digits("train")
    xt, yt = load_digits("test")
    assert x.shape == (1438, 1, 8, 8) and xt.shape == (359, 1, 8, 8)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))
    x2, _ = load_digits("train")
    assert torch.equal(x, x2)  # fixed split
    # disjoint: no test image equals a train image with the same label index pattern
    flat, flat_t = x.reshape(len(x), -1), xt.reshape(len(xt), -1)
    assert len(flat) + len(flat_t) == 1797
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_digits("validation")
