import math
import time

import pytest
import torch

from course_utils import get_device, seed_everything
from course_utils.data import toy
from course_utils.flows import ElementwiseAffine, Flow, SinhArcsinh
from course_utils.training import fit


def _run(seed):
    seed_everything(seed)
    model = Flow([ElementwiseAffine(2), SinhArcsinh(2), ElementwiseAffine(2)])
    data = toy("8gaussians").sample((2000,), generator=torch.Generator().manual_seed(0))
    hist = fit(lambda: -model.log_prob(data).mean(), model, steps=150, lr=2e-2, seed=seed, progress=False)
    return model, hist


def test_loss_falls_on_a_fixed_seed_and_is_reproducible():
    _, h1 = _run(0)
    _, h2 = _run(0)
    assert h1.steps == 150 and len(h1.losses) == 150
    assert sum(h1.losses[-10:]) / 10 < h1.losses[0] - 0.5
    assert h1.losses == h2.losses  # same seed, same run


def test_time_budget_stops_the_run():
    w = torch.nn.Parameter(torch.zeros(3))
    hist = fit(lambda: (w - 1).pow(2).sum(), [w], seconds=0.2, progress=False)
    assert hist.stopped_by == "seconds" and hist.seconds < 2 and hist.steps > 1


def test_non_finite_loss_is_reported_with_its_step():
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(RuntimeError, match="step 0"):
        fit(lambda: (w * float("nan")).sum(), [w], steps=5, progress=False)


def test_fit_needs_a_budget_and_parameters():
    w = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="budget"):
        fit(lambda: w.sum(), [w])
    with pytest.raises(ValueError, match="no parameters"):
        fit(lambda: w.sum(), [], steps=1)


def test_device_choice(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert get_device().type == "cpu"
    if not torch.cuda.is_available():
        monkeypatch.delenv("COURSE_DEVICE")
        assert get_device().type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA"):
            get_device("cuda")


def test_fit_moves_a_module_to_the_chosen_device():
    model = torch.nn.Linear(2, 1)
    x = torch.randn(64, 2)
    fit(lambda: model(x).pow(2).mean(), model, steps=3, device="cpu", progress=False)
    assert next(model.parameters()).device.type == "cpu"
    with pytest.raises(TypeError, match="nn.Module"):
        fit(lambda: x.sum(), [torch.nn.Parameter(torch.zeros(1))], steps=1, device="cpu")


def test_time_budget_uses_a_cosine_over_the_seconds():
    w = torch.nn.Parameter(torch.zeros(2))
    seen = []

    def loss():
        seen.append(1)
        return (w - 3).pow(2).sum()

    hist = fit(loss, [w], seconds=0.3, lr=0.1, progress=False)
    assert hist.stopped_by == "seconds" and hist.steps == len(seen) > 5
    assert float((w.detach() - 3).abs().max()) < 3  # it moved towards the minimum


def test_fit_toy_density_and_the_flow_benchmark_run_end_to_end():
    from course_utils.course.bench import bench_flows
    from course_utils.flows import maf_flow
    from course_utils.training import fit_toy_density, format_table

    model, hist, row = fit_toy_density(lambda x: maf_flow(2, 2, (16,), data=x), "8gaussians", steps=50,
                                       n_train=2000, n_test=2000, progress=False)
    assert hist.steps == 50 and set(row) >= {"test NLL", "entropy", "KL gap", "± s.e.", "seconds", "params"}
    assert abs(row["test NLL"] - row["entropy"] - row["KL gap"]) < 1e-4  # the gap is NLL - H on the same points
    assert row["KL gap"] > 0
    assert "KL gap" in format_table([row])
    lines = []
    rows = bench_flows(seconds=0.5, targets=["moons"], models=["NICE"], log=lines.append)
    assert len(rows) == 1 and rows[0]["model"] == "NICE" and rows[0]["seconds"] < 2
    assert any("KL gap" in ln for ln in lines)
    with pytest.raises(SystemExit, match="unknown model"):
        bench_flows(seconds=0.1, targets=["moons"], models=["Glow"], log=lines.append)


def test_the_model_benchmark_runs_every_family_end_to_end():
    """`course bench models`: every family trains for the same budget and gets a row with exact-likelihood numbers."""
    from course_utils.course.bench import bench_models

    lines = []
    rows = bench_models(seconds=0.5, targets=["8gaussians"], n_test=300, log=lines.append)
    names = {r["model"] for r in rows}
    assert {"MAF (ch. 02)", "DDPM, PF-ODE (ch. 07)", "FM, independent (ch. 08)", "FM, OT (ch. 08)"} <= names
    for r in rows:
        assert abs(r["test NLL"] - r["entropy"] - r["KL gap"]) < 1e-6  # the gap is NLL - H on the same points
        assert r["NFE"] >= 1 and r["params"] > 0 and 0 < r["dist / floor"] < math.inf and r["seconds"] < 5
    assert any("KL gap" in ln for ln in lines)
    with pytest.raises(SystemExit, match="unknown model"):
        bench_models(seconds=0.1, targets=["moons"], models=["VAE"], log=lines.append)


def test_seconds_per_call_warms_up_then_times_the_fastest_call():
    from course_utils.training import seconds_per_call

    calls = []
    t = seconds_per_call(lambda: (calls.append(1), time.sleep(0.01)), repeats=2)
    assert len(calls) == 3 and 0.009 < t < 0.5          # one warm-up call, two timed ones, seconds per call
    with pytest.raises(ValueError, match="repeats"):
        seconds_per_call(lambda: None, repeats=0)
