import math

import pytest
import torch

from course_utils.flows import ElementwiseAffine, Flow, Planar, SinhArcsinh, standard_normal_log_prob


def _random_layers(dim, seed=0):
    """Layers with random, non-zero parameters (a zero init would hide bugs)."""
    torch.manual_seed(seed)
    layers = [ElementwiseAffine(dim), SinhArcsinh(dim), Planar(dim), ElementwiseAffine(dim), SinhArcsinh(dim)]
    with torch.no_grad():
        for layer in layers:
            for p in layer.parameters():
                p.copy_(0.6 * torch.randn_like(p))
    return [layer.double() for layer in layers]


from course_utils.flows import jacobian_log_det as _autograd_log_det  # noqa: E402


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_every_layer_round_trips_and_log_dets_match_autograd(dim):
    x = 1.5 * torch.randn(32, dim, dtype=torch.float64)
    for layer in _random_layers(dim, seed=dim):
        z, ld = layer(x)
        assert z.shape == x.shape and ld.shape == (32,)
        x_back, ld_inv = layer.inverse(z)
        assert torch.allclose(x_back, x, atol=1e-8), type(layer).__name__
        assert torch.allclose(ld + ld_inv, torch.zeros(32, dtype=torch.float64), atol=1e-8), type(layer).__name__
        ref = _autograd_log_det(lambda v: layer(v[None])[0][0], x)
        assert torch.allclose(ld, ref, atol=1e-8), type(layer).__name__
        ref_inv = _autograd_log_det(lambda v: layer.inverse(v[None])[0][0], z)
        assert torch.allclose(ld_inv, ref_inv, atol=1e-6), type(layer).__name__


def test_planar_stays_invertible_when_u_opposes_w():
    layer = Planar(2).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([1.0, 0.0]))
        layer.u.copy_(torch.tensor([-5.0, 0.0]))  # raw u.w = -5 < -1; u_hat fixes it
    assert float((layer.u_hat() @ layer.w).detach()) > -1
    x = torch.linspace(-3, 3, 50, dtype=torch.float64)[:, None].repeat(1, 2)
    z, _ = layer(x)
    assert (z[1:, 0] > z[:-1, 0]).all()  # monotone along w
    assert torch.allclose(layer.inverse(z)[0], x, atol=1e-8)


def test_flow_composes_log_dets_and_its_density_integrates_to_one():
    flow = Flow(_random_layers(2, seed=3))
    x = torch.randn(16, 2, dtype=torch.float64)
    z, ld = flow(x)
    ref = _autograd_log_det(lambda v: flow(v[None])[0][0], x)
    assert torch.allclose(ld, ref, atol=1e-8)  # log-dets add under composition
    assert torch.allclose(flow.inverse(z)[0], x, atol=1e-7)
    m, lo, hi = 401, -12.0, 12.0
    g = torch.linspace(lo, hi, m, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="xy")
    with torch.no_grad():
        dens = flow.log_prob(torch.stack([X, Y], -1).reshape(-1, 2)).exp()
    total = float(dens.sum() * ((hi - lo) / (m - 1)) ** 2)
    assert abs(total - 1) < 0.01, total
    assert len(flow.trajectory(x)) == len(flow.layers) + 1
    s = flow.sample(7)
    assert s.shape == (7, 2) and s.dtype == torch.float64


def test_standard_normal_log_prob():
    z = torch.randn(5, 3)
    ref = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    assert torch.allclose(standard_normal_log_prob(z), ref, atol=1e-6)


def test_bad_input_gets_clear_errors():
    with pytest.raises(ValueError, match=r"shape \[B, 2\], got \(5, 3\)"):
        ElementwiseAffine(2)(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="same dim"):
        Flow([ElementwiseAffine(2), ElementwiseAffine(3)])
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        Flow([SinhArcsinh(2)]).log_prob(torch.zeros(4))
