"""Chapter 08: trajectories of flow-matching models from noise to data, for a chosen solver and NFE."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..metrics import relative_to_noise_floor, sliced_wasserstein
from ._base import Explorer

ODE_NFES = (1, 2, 4, 8, 16, 32)


def _swd(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a.double(), b.double())


@dataclass
class OdeState:
    coupling: str
    method: str
    nfe: int
    paths: np.ndarray       # [K + 1, n_paths, 2] trajectories drawn
    samples: np.ndarray     # [n, 2] end points
    truth: np.ndarray       # [n, 2] a fresh exact sample of the target (the reference drawn under the samples)
    ratio: float            # sliced Wasserstein distance to fresh data / noise floor
    low_density: float      # share of samples where the target's density is below its 1 % quantile (exact: ~0.01)
    straightness: float     # of the model's flow (fine Heun solve), not of the coarse path drawn


@torch.no_grad()
def ode_state(models: dict, target, coupling: str, method: str = "euler", nfe: int = 4, n: int = 1000,
              n_paths: int = 60, seed: int = 0, share=None) -> OdeState:
    """Integrate the velocity model ``models[coupling]`` from ``N(0, I)`` (t = 0) to data (t = 1) with ``method``
    (``"euler"`` or ``"heun"``) at ``nfe`` evaluations (Heun: ``nfe // 2`` steps, at least 1) and measure the samples
    against ``target`` (a toy distribution): sliced W2 ÷ its noise floor, and the low-density share
    (``share``, a :class:`~course_utils.flow_matching.LowDensityShare` of ``target``; built here if not given).
    The straightness is the model's own (Heun, 64 NFE, 500 paths), so it does not change with the solver."""
    from ..flow_matching import LowDensityShare, fm_sample, straightness

    if coupling not in models:
        raise ValueError(f"coupling must be one of {sorted(models)}, got {coupling!r}")
    if method not in ("euler", "heun"):
        raise ValueError(f"method must be 'euler' or 'heun', got {method!r}")
    if nfe < 1 or (method == "heun" and nfe < 2):
        raise ValueError(f"nfe must be >= 1 for Euler and >= 2 for Heun, got {nfe}")
    share = share if share is not None else LowDensityShare(target)
    model = models[coupling]
    device = next(model.parameters()).device
    steps = nfe if method == "euler" else nfe // 2
    path, used = fm_sample(model, n, steps=steps, method=method, generator=torch.Generator().manual_seed(seed),
                           device=device, keep_path=True)
    path = path.cpu()
    fine, _ = fm_sample(model, 500, steps=32, method="heun", generator=torch.Generator().manual_seed(seed),
                        device=device, keep_path=True)
    g = torch.Generator().manual_seed(seed + 1)          # one stream: the reference and the fresh draw differ
    ratio = relative_to_noise_floor(_swd, path[-1], lambda m: target.sample((m,), generator=g))["ratio"]
    truth = target.sample((n,), generator=torch.Generator().manual_seed(seed + 2))
    return OdeState(coupling, method, used, path[:, :n_paths].numpy(), path[-1].numpy(), truth.numpy(), ratio,
                    share(path[-1]), straightness(fine.cpu()))


def ode_figure(state: OdeState):
    """Trajectories (left) and the end points over a fresh exact sample (right), with both measures in the titles."""
    fig, axs = plt.subplots(1, 2, figsize=(8.5, 4.4))
    ax = axs[0]
    for k in range(state.paths.shape[1]):
        ax.plot(state.paths[:, k, 0], state.paths[:, k, 1], "-", color="C0", lw=0.7, alpha=0.6)
    ax.plot(state.paths[0, :, 0], state.paths[0, :, 1], "o", color="0.4", ms=2.5, label="noise, t = 0")
    ax.plot(state.paths[-1, :, 0], state.paths[-1, :, 1], "o", color="C3", ms=2.5, label="sample, t = 1")
    ax.set_title(f"{state.coupling} coupling, {state.method}, NFE = {state.nfe}\n"
                 f"straightness of the flow {state.straightness:.3f} (0 = straight)", fontsize=9)
    ax = axs[1]
    ax.scatter(state.truth[:, 0], state.truth[:, 1], s=2, color="0.65", linewidths=0, label="exact sample")
    ax.scatter(state.samples[:, 0], state.samples[:, 1], s=2, color="C3", alpha=0.7, linewidths=0, label="model sample")
    ax.set_title(f"sliced W2 ÷ noise floor = {state.ratio:.2f}\n"
                 f"low-density share {state.low_density:.3f} (exact ≈ 0.01)", fontsize=9)
    for ax in axs:
        ax.set_xlim(-4.5, 4.5); ax.set_ylim(-4.5, 4.5); ax.set_aspect("equal")
        ax.set_xlabel("$x_1$", fontsize=9); ax.set_ylabel("$x_2$", fontsize=9)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False, markerscale=2)
    fig.tight_layout()
    return fig


class OdeExplorer(Explorer):
    """Dropdowns for the coupling and the solver, a slider for the NFE."""

    def __init__(self, models: dict, target):
        import ipywidgets as W

        if not models:
            raise ValueError("ode_explorer needs at least one model, {name: velocity model}")
        from ..flow_matching import LowDensityShare

        self.models, self.target, self.share = models, target, LowDensityShare(target)
        self.coupling = W.Dropdown(options=list(models), description="coupling")
        self.method = W.Dropdown(options=["euler", "heun"], description="solver")
        self.nfe = W.SelectionSlider(options=list(ODE_NFES[1:]), value=4, description="NFE", continuous_update=False)
        self._start([W.HBox([self.coupling, self.method]), self.nfe], watch=[self.coupling, self.method, self.nfe])

    def state(self) -> OdeState:
        return ode_state(self.models, self.target, self.coupling.value, self.method.value, self.nfe.value,
                         share=self.share)

    def figure(self, state: OdeState):
        return ode_figure(state)


def ode_explorer(models: dict, target):
    """Display-ready explorer of flow-matching models ``{name: velocity model}`` on a toy ``target``."""
    return OdeExplorer(models, target).widget
