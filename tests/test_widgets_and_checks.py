import pytest
import torch

from course_utils.checks import CheckFailed, call, expect, expect_close, expect_tensor
from course_utils.widgets import COV_TRANSFORMS, CovExplorer, cov_figure, cov_state


@pytest.mark.parametrize("kind", list(COV_TRANSFORMS))
def test_cov_state_formula_integrates_to_one_and_matches_the_histogram(kind):
    s = cov_state(kind)
    assert abs(s.integral - 1) < 2e-3
    assert s.hist_tv < 0.03  # noise floor for 20k samples in 60 bins is about 0.02
    assert s.density.shape == s.y.shape and (s.density >= 0).all()


def test_cov_state_with_a_decreasing_map_needs_the_absolute_value():
    s = cov_state("affine", -2.0, 1.0)
    assert abs(s.integral - 1) < 2e-3 and s.hist_tv < 0.03
    assert (s.log_det == pytest.approx(0.6931, abs=1e-3))


def test_cov_state_detects_a_wrong_formula(monkeypatch):
    """The histogram comparison is not hollow: drop the Jacobian factor and it fails."""
    import course_utils.widgets.cov as w

    real = w._transform

    def no_jacobian(kind, p1, p2):
        push, pull, rng = real(kind, p1, p2)
        return push, (lambda y: (pull(y)[0], torch.zeros_like(y))), rng

    monkeypatch.setattr(w, "_transform", no_jacobian)
    s = w.cov_state("affine", 2.0, 0.0)
    assert s.hist_tv > 0.1 and abs(s.integral - 1) > 0.5


def test_explorer_updates_its_picture_and_reports_bad_parameters():
    e = CovExplorer("affine", n_samples=2000)
    before = e.image.value
    e.s1.value = -1.0
    assert e.image.value != before and len(e.image.value) > 1000
    e.menu.value = "exp"
    assert e.s1.description == "s"
    after_menu = e.image.value
    e.menu.value = "affine"
    e.s1.value = 0.0
    assert "not invertible" in e.message.value
    assert e.image.value != after_menu
    cov_figure(cov_state("sinh-arcsinh"))


def test_unknown_transform():
    with pytest.raises(ValueError, match="expected one of"):
        cov_state("cubic")


def _stub(x):
    raise NotImplementedError()


def test_checks_give_one_clear_message():
    with pytest.raises(CheckFailed, match="not implemented yet"):
        call(_stub, 1)
    with pytest.raises(CheckFailed, match="raised ZeroDivisionError"):
        call(lambda: 1 / 0, name="f")
    with pytest.raises(CheckFailed, match=r"shape \(3,\), but it has shape \(4,\)"):
        expect_tensor(torch.zeros(4), shape=(3,))
    with pytest.raises(CheckFailed, match="NaN"):
        expect_tensor(torch.tensor([1.0, float("nan")]))
    with pytest.raises(CheckFailed, match="should be a torch.Tensor"):
        expect_tensor([1, 2])
    with pytest.raises(CheckFailed, match="is off: at entry 1 it is 2.5 but should be 2"):
        expect_close(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]))
    with pytest.raises(CheckFailed, match="custom"):
        expect(False, "custom")
    expect_close(torch.tensor([1.0, 2.0]), [1.0, 2.0])  # passes silently
    assert issubclass(CheckFailed, AssertionError)
    assert CheckFailed("x")._render_traceback_() == ["\x1b[1;31mCheck failed:\x1b[0m x"]


def _small_flow():
    from course_utils.flows import maf_flow

    torch.manual_seed(0)
    flow = maf_flow(2, n_layers=2, hidden=(8,), data=torch.randn(100, 2) * 2 + 1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow


def test_flow_layers_state_follows_the_flow_in_both_directions():
    from course_utils.widgets import flow_layers_state

    flow, x = _small_flow(), torch.randn(50, 2)
    n = len(flow.layers)
    s0 = flow_layers_state(flow, x, 0)
    assert torch.allclose(torch.from_numpy(s0.points), x) and (s0.log_det == 0).all() and s0.layer_name == ""
    sn = flow_layers_state(flow, x, n)
    z, ld = flow(x)
    assert torch.allclose(torch.from_numpy(sn.points), z.detach(), atol=1e-5)
    assert torch.allclose(torch.from_numpy(sn.log_det), ld.detach(), atol=1e-5)
    assert len(sn.mean_log_det) == n + 1 and abs(sn.mean_log_det[-1] - float(ld.detach().mean())) < 1e-4
    back = flow_layers_state(flow, x, n, "base → data")
    z0 = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(torch.from_numpy(back.points), flow.inverse(z0)[0].detach(), atol=1e-5)
    assert back.layer_name.endswith("⁻¹")
    with pytest.raises(ValueError, match="between 0"):
        flow_layers_state(flow, x, n + 1)


def test_flow_layers_explorer_redraws():
    from course_utils.widgets import FlowLayersExplorer, flow_layers_figure, flow_layers_state

    flow = _small_flow()
    e = FlowLayersExplorer(flow, torch.randn(200, 2))
    first = e.image.value
    e.slider.value = 2
    second = e.image.value
    e.direction.value = "base → data"
    assert len({first, second, e.image.value}) == 3
    flow_layers_figure(flow_layers_state(flow, torch.randn(10, 2), 1))


def test_latent_explorer_decodes_the_chosen_point():
    from course_utils.vae import VAE, BernoulliDecoder, GaussianEncoder
    from course_utils.widgets import LatentExplorer, latent_figure, latent_state

    torch.manual_seed(0)
    vae = VAE(GaussianEncoder(64, 2, (16,)), BernoulliDecoder(2, (1, 8, 8), (16,)))
    x, y = (torch.rand(30, 1, 8, 8) > 0.5).float(), torch.arange(30) % 10
    means = vae.encoder(x)[0].detach()
    s = latent_state(vae, 0.5, -1.0, means, y)
    expected = torch.sigmoid(vae.decoder(torch.tensor([[0.5, -1.0]])))[0, 0].detach().numpy()
    assert s.image.shape == (8, 8) and abs(s.image - expected).max() < 1e-6
    latent_figure(s)
    e = LatentExplorer(vae, x, y)
    before = e.image.value
    e.s2.value = 1.5
    assert e.image.value != before
    with pytest.raises(ValueError, match="2-D latent"):
        LatentExplorer(VAE(GaussianEncoder(64, 3, (8,)), BernoulliDecoder(3, (1, 8, 8), (8,))), x, y)
