"""Chapter 02 layers: round trips, log-dets against autograd, autoregressive structure, O(D) log-dets."""

import pytest
import torch

from course_utils.flows import (IAF, MADE, MAF, AffineCoupling, Flow, LULinear, QRLinear, Reverse, checkerboard_masks,
                                made_masks, realnvp)


from course_utils.flows import jacobian_log_det as _jac_log_det
from course_utils.flows import randomize_ as _randomize


def _layers(dim):
    order = torch.randperm(dim, generator=torch.Generator().manual_seed(dim))
    return [LULinear(dim, seed=1), QRLinear(dim), Reverse(dim), MAF(dim, (16, 16)), MAF(dim, (16,), order=order),
            IAF(dim, (16, 16)), AffineCoupling(dim, checkerboard_masks(dim, 1)[0], (16,)),
            AffineCoupling(dim, checkerboard_masks(dim, 2)[1], (16,), additive=True)]


@pytest.mark.parametrize("dim", [2, 3, 6])
def test_round_trip_and_log_dets_against_autograd(dim):
    x = torch.randn(12, dim, dtype=torch.float64)
    for k, layer in enumerate(_layers(dim)):
        layer = _randomize(layer, seed=k).double()
        name = type(layer).__name__
        z, ld = layer(x)
        x_back, ld_inv = layer.inverse(z)
        assert torch.allclose(x_back, x, atol=1e-8), name
        assert torch.allclose(ld + ld_inv, torch.zeros_like(ld), atol=1e-8), name
        assert torch.allclose(ld, _jac_log_det(lambda v: layer(v[None])[0][0], x), atol=1e-8), name
        assert torch.allclose(ld_inv, _jac_log_det(lambda v: layer.inverse(v[None])[0][0], z), atol=1e-8), name


def test_linear_log_dets_are_the_determinant():
    for layer in (LULinear(5, seed=3), QRLinear(5)):
        _randomize(layer, seed=4).double()
        W = layer.weight() if isinstance(layer, LULinear) else torch.mm(*layer.factors())
        assert torch.allclose(layer(torch.zeros(1, 5, dtype=torch.float64))[1][0], torch.linalg.slogdet(W).logabsdet)
    Q, _ = _randomize(QRLinear(4), seed=5).factors()
    assert torch.allclose(Q @ Q.T, torch.eye(4), atol=1e-5)


@pytest.mark.parametrize("order", [None, [2, 0, 3, 1]])
def test_made_is_autoregressive(order):
    made = _randomize(MADE(4, (32, 32), order=None if order is None else torch.tensor(order))).double()
    x = torch.randn(4, dtype=torch.float64)
    J_mu = torch.autograd.functional.jacobian(lambda v: made(v[None])[0][0], x)
    J_alpha = torch.autograd.functional.jacobian(lambda v: made(v[None])[1][0], x)
    rank = torch.arange(4) if order is None else torch.tensor(order)
    allowed = rank[None, :] < rank[:, None]  # output i may depend on input j only if j comes before i
    for J in (J_mu, J_alpha):
        assert (J[~allowed] == 0).all()
        assert (J[allowed] != 0).float().mean() > 0.8  # and it does use (almost all of) what it may


def test_made_masks_shapes_and_errors():
    masks = made_masks(3, [8, 8])
    assert [tuple(m.shape) for m in masks] == [(8, 3), (8, 8), (3, 8)]
    with pytest.raises(ValueError, match="permutation"):
        made_masks(3, [8], order=torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="0/1 vector"):
        AffineCoupling(2, torch.tensor([1.0, 1.0]))


def test_maf_density_is_one_pass_and_iaf_sampling_is_one_pass():
    calls = {"n": 0}
    maf, iaf = _randomize(MAF(5, (16,))), _randomize(IAF(5, (16,)))
    for layer in (maf, iaf):
        layer.made.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    x = torch.randn(3, 5)
    calls["n"] = 0; maf(x); assert calls["n"] == 1           # MAF density: 1 pass
    calls["n"] = 0; maf.inverse(x); assert calls["n"] == 6   # MAF sampling: D passes (+1 for the log-det)
    calls["n"] = 0; iaf.inverse(x); assert calls["n"] == 1   # IAF sampling: 1 pass
    calls["n"] = 0; iaf(x); assert calls["n"] == 6           # IAF density of external data: D passes


def test_realnvp_density_integrates_to_one():
    flow = _randomize(realnvp(2, n_layers=4, hidden=(16,), linear=True), scale=0.2).double()
    g = torch.linspace(-14, 14, 561, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="xy")
    with torch.no_grad():
        dens = flow.log_prob(torch.stack([X, Y], -1).reshape(-1, 2)).exp()
    assert abs(float(dens.sum() * (g[1] - g[0]) ** 2) - 1) < 0.01
    assert isinstance(flow, Flow) and flow.sample(5).shape == (5, 2)
