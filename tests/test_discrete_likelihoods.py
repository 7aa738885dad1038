"""Exact likelihoods on discrete data (chapter 03): the autoregressive BernoulliMADE, uniform dequantisation of a flow,
and the one conversion to bits per dimension."""

import itertools
import math

import pytest
import torch

from course_utils.data import bits_per_dim, dequantize
from course_utils.flows import BernoulliMADE, dequantized_bound, maf_flow, randomize_


def _all_binary(dim):
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=dim)), dtype=torch.float64)


def _made(dim, order=None, seed=0):
    return randomize_(BernoulliMADE(dim, (16, 16), order=order), scale=1.0, seed=seed).double()


def test_bernoulli_made_is_normalised_over_every_binary_vector():
    # a logit that sees its own pixel (a mask with >= instead of >) breaks this: the product is then not a distribution
    for order in (None, torch.tensor([2, 0, 5, 1, 4, 3])):
        made = _made(6, order)
        total = made.log_prob(_all_binary(6)).exp().sum()
        assert torch.isclose(total, torch.tensor(1.0, dtype=torch.float64), atol=1e-10), total


def test_bernoulli_made_is_autoregressive_in_its_order():
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    made = _made(6, order, seed=1)
    xs = (torch.rand(30, 6, generator=torch.Generator().manual_seed(0)) > 0.5).double()
    J = torch.stack([torch.autograd.functional.jacobian(lambda v: made.logits(v[None])[0], x) for x in xs])  # [30, 6, 6]
    allowed = order[None, :] < order[:, None]          # logit i may see x_j only if j comes before i
    assert (J[:, ~allowed] == 0).all()
    assert (J.abs().amax(0)[allowed] > 0).all()        # and it does see every earlier pixel
    assert made.logits(torch.zeros(1, 6, dtype=torch.float64)).shape == (1, 6)


def test_bernoulli_made_sampler_matches_its_density():
    # a sampler that ignores the order (0..D-1 instead) or forgets to feed back its draws fails this
    order = torch.tensor([2, 0, 3, 1])
    made = _made(4, order, seed=2)
    n = 100_000
    x = made.sample(n, generator=torch.Generator().manual_seed(3))
    assert x.shape == (n, 4) and set(x.unique().tolist()) <= {0.0, 1.0}
    configs = _all_binary(4)
    p = made.log_prob(configs).exp().detach()
    freq = (x[:, None, :] == configs[None]).all(-1).double().mean(0)
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 5 * se).all(), (freq, p)


def test_bernoulli_made_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match="64"):
        BernoulliMADE(64).log_prob(torch.zeros(3, 63))
    assert BernoulliMADE(64).log_prob(torch.zeros(3, 1, 8, 8)).shape == (3,)   # images are flattened


def _cell_log_prob(log_prob, x, n=200):
    """log P(x) = log of the integral of p over the unit cell [x, x + 1)^2, by the midpoint rule on an n x n grid."""
    t = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    u = torch.stack(torch.meshgrid(t, t, indexing="ij"), -1).reshape(-1, 2)
    return torch.stack([torch.logsumexp(log_prob(xi + u), 0) - math.log(len(u)) for xi in x])


def test_a_dequantised_flow_defines_a_discrete_model_and_the_bound_is_below_it():
    torch.manual_seed(0)
    flow = randomize_(maf_flow(2, n_layers=2, hidden=(8,)), scale=0.3, seed=4).double()
    lp = lambda v: flow.log_prob(v).detach()        # noqa: E731
    # the flow is a density on R^2 (integral 1 over a box holding its mass) ...
    grid = torch.linspace(-12, 12, 801, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    assert abs(lp(pts).exp().sum().item() * (grid[1] - grid[0]).item() ** 2 - 1) < 1e-5
    # ... so the cell probabilities P(x) of the four binary points sum to at most 1 (the rest lies off the cells)
    x = _all_binary(2)
    log_P = _cell_log_prob(lp, x)
    assert 0 < log_P.exp().sum() < 1
    # exp of the one-sample bound is an unbiased estimate of P(x); its log is below log P(x) (Jensen)
    g = torch.Generator().manual_seed(5)
    b1 = dequantized_bound(lp, x.repeat(20_000, 1), 1, g).reshape(-1, 4)        # [S, 4]: S independent draws per point
    p_hat = b1.exp()
    assert ((p_hat.mean(0) - log_P.exp()).abs() < 4 * p_hat.std(0) / math.sqrt(len(p_hat))).all()
    assert (b1.mean(0) < log_P).all()
    # more draws inside the log tighten it towards log P(x), like IWAE
    b50 = dequantized_bound(lp, x.repeat(1000, 1), 50, g).reshape(-1, 4)
    b50_mean, b50_se = b50.mean(0), b50.std(0) / math.sqrt(len(b50))
    assert (b1.mean(0) < b50_mean).all() and (b50_mean <= log_P + 3 * b50_se).all()
    assert ((log_P - b50_mean).abs() < 0.2 * (log_P - b1.mean(0))).all()


def test_dequantize_fills_unit_cells_and_rejects_non_integers():
    x = torch.tensor([[0.0, 1.0, 3.0]]).expand(1000, 3)
    y = dequantize(x, generator=torch.Generator().manual_seed(0))
    assert ((y >= x) & (y < x + 1)).all() and (y - x).std(0).min() > 0.25      # uniform on [0, 1): std 0.289
    with pytest.raises(ValueError, match="integer"):
        dequantize(torch.tensor([[0.5, 1.0]]))


def test_bits_per_dim_is_nats_over_dims_log_2():
    assert math.isclose(bits_per_dim(64 * math.log(2), 64), 1.0)
    assert torch.allclose(bits_per_dim(torch.tensor([0.0, 2 * math.log(2)]), 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="dims"):
        bits_per_dim(1.0, 0)


def test_logit_transform_round_trip_and_log_det_against_autograd():
    from course_utils.flows import LogitTransform, jacobian_log_det

    layer = LogitTransform(3, scale=2.0, alpha=0.05)
    y = 2 * torch.rand(7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    z, ld = layer(y)
    y_back, ld_inv = layer.inverse(z)
    assert torch.allclose(y_back, y, atol=1e-10) and torch.allclose(ld + ld_inv, torch.zeros(7, dtype=torch.float64))
    assert torch.allclose(ld, jacobian_log_det(lambda v: layer(v[None])[0][0], y), atol=1e-10)
    with pytest.raises(ValueError):
        LogitTransform(3, alpha=0.5)
