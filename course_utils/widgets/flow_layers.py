"""Chapter 02: a trained 2-D flow, layer by layer, in either direction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import numpy as np
import torch

from ._base import Explorer


@dataclass
class FlowLayersState:
    """Points and grid lines after ``k`` layers, in one direction, with the running log-determinant."""

    direction: str            # "data → base" or "base → data"
    k: int                    # layers applied so far
    n_layers: int
    layer_name: str           # the layer applied last ('' when k == 0)
    points: np.ndarray        # [N, 2]
    grid: list[np.ndarray]    # grid lines, each [M, 2]
    log_det: np.ndarray       # [N] running log|det| of the map applied so far, per point
    mean_log_det: list[float]  # mean running log-det after 0..n_layers layers
    log_det_range: float = 1.0  # largest |running log-det| over all layers: one colour scale for every k


def _grid_lines(lims, n_lines=13, n_points=200) -> list[torch.Tensor]:
    t = torch.linspace(lims[0], lims[1], n_points)
    vals = torch.linspace(lims[0], lims[1], n_lines)
    return [torch.stack([torch.full_like(t, v), t], 1) for v in vals] + [torch.stack([t, torch.full_like(t, v)], 1) for v in vals]


@torch.no_grad()
def flow_layers_state(flow, x: torch.Tensor, k: int, direction: str = "data → base", lims=(-4.5, 4.5)) -> FlowLayersState:
    """Apply the first ``k`` layers of ``flow`` (a :class:`course_utils.flows.Flow`) to data ``x`` and a grid
    (``direction="data → base"``), or the last ``k`` inverse layers to base samples (``"base → data"``)."""
    layers = list(flow.layers)
    n = len(layers)
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and the number of layers ({n}), got {k}")
    if direction not in ("data → base", "base → data"):
        raise ValueError("direction must be 'data → base' or 'base → data'")
    p = next(flow.parameters())
    if direction == "data → base":
        pts, grid_lims = x.to(p), lims
        steps = [lambda h, layer=layer: layer(h) for layer in layers]
        names = [type(layer).__name__ for layer in layers]
    else:
        pts = torch.randn(len(x), x.shape[1], generator=torch.Generator().manual_seed(0)).to(p)
        grid_lims = (-3.0, 3.0)
        steps = [lambda h, layer=layer: layer.inverse(h) for layer in reversed(layers)]
        names = [type(layer).__name__ + "⁻¹" for layer in reversed(layers)]
    grid = [g.to(p) for g in _grid_lines(grid_lims)]
    log_det = torch.zeros(len(pts), dtype=p.dtype, device=p.device)
    means, shown, spread = [0.0], None, 0.0
    for i, step in enumerate(steps):
        if i == k:
            shown = (pts.clone(), [g.clone() for g in grid], log_det.clone())
        pts, ld = step(pts)
        grid = [step(g)[0] for g in grid]
        log_det = log_det + ld
        means.append(float(log_det.mean()))
        spread = max(spread, float(log_det.abs().max()))
    if shown is None:
        shown = (pts, grid, log_det)
    pts_k, grid_k, ld_k = shown
    return FlowLayersState(direction, k, n, names[k - 1] if k else "", pts_k.cpu().numpy(),
                           [g.cpu().numpy() for g in grid_k], ld_k.cpu().numpy(), means, spread or 1.0)


def flow_layers_figure(state: FlowLayersState, view=(-4.5, 4.5)):
    """Left: samples (coloured by their running log|det|) and the moving grid; right: the mean running log-det."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1.15, 1]})
    for line in state.grid:
        ax.plot(line[:, 0], line[:, 1], color="0.8", lw=0.5, zorder=1)
    # a diverging map centred at 0 on one scale for every k; black edges keep the points visible where log|det| = 0
    # (at k = 0 every point is there, and the map's centre colour is a light grey)
    r = state.log_det_range
    sc = ax.scatter(state.points[:, 0], state.points[:, 1], c=state.log_det, s=7, cmap="coolwarm", vmin=-r, vmax=r,
                    edgecolors="k", linewidths=0.15, zorder=2)
    cb = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label("running log|det| of each point (0: white)", fontsize=9)
    ax.set_xlim(*view); ax.set_ylim(*view); ax.set_aspect("equal")
    start = "data" if state.direction == "data → base" else "base N(0, I)"
    title = f"{start}, after {state.k} of {state.n_layers} layers" + (f"\nlast: {state.layer_name}" if state.k else "\n(no layer applied)")
    ax.set_title(title, fontsize=10)
    ax2.plot(range(len(state.mean_log_det)), state.mean_log_det, "o-", color="C0", ms=3)
    ax2.axvline(state.k, color="C3", ls="--")
    ax2.set_xlabel("layers applied"); ax2.set_ylabel("mean running log|det|")
    ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_title(f"{state.direction}: log-dets add up, layer by layer", fontsize=10)
    fig.tight_layout()
    return fig


class FlowLayersExplorer(Explorer):
    """Slider over the layers of a trained 2-D flow; a toggle for the direction. ``.widget`` to display."""

    def __init__(self, flow, x: torch.Tensor, lims=(-4.5, 4.5)):
        import ipywidgets as W

        self.flow, self.x, self.lims = flow, x, lims
        n = len(flow.layers)
        self.slider = W.IntSlider(value=0, min=0, max=n, step=1, description="layers", continuous_update=False)
        self.direction = W.ToggleButtons(options=["data → base", "base → data"], value="data → base")
        self._start([W.HBox([self.slider, self.direction])], watch=[self.slider, self.direction])

    def state(self) -> FlowLayersState:
        return flow_layers_state(self.flow, self.x, self.slider.value, self.direction.value, self.lims)

    def figure(self, state: FlowLayersState):
        return flow_layers_figure(state, self.lims)


def flow_layers_explorer(flow, x: torch.Tensor, lims=(-4.5, 4.5)):
    """Display-ready layer-by-layer explorer of a 2-D flow (an ipywidgets box)."""
    return FlowLayersExplorer(flow, x, lims).widget
