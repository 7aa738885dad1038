"""Chapter 01: the change-of-variables explorer (a transform, its density by the formula, and a histogram)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..flows import SinhArcsinh
from ..plotting import figure_png
from ._base import Explorer


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


# --- 1. the maths ------------------------------------------------------------------------------
def _transform(kind: str, p1: float, p2: float):
    """Return ``(push, pull, y_range)`` for the 1-D map ``y = g(x)`` of the base variable ``x``.

    ``push(x) -> (y, log|dy/dx|)``, ``pull(y) -> (x, log|dx/dy|)``.
    """
    if kind == "affine":  # y = a x + b
        a, b = p1, p2
        if abs(a) < 1e-6:
            raise ValueError("the affine map y = a x + b is not invertible for a = 0; choose a != 0")
        push = lambda x: (a * x + b, torch.full_like(x, math.log(abs(a))))  # noqa: E731
        pull = lambda y: ((y - b) / a, torch.full_like(y, -math.log(abs(a))))  # noqa: E731
        return push, pull, (b - 4.5 * abs(a), b + 4.5 * abs(a))
    if kind == "sinh-arcsinh":  # y = sinh((asinh(x) + skew) / delta), the inverse of flows.SinhArcsinh
        if p2 <= 0:
            raise ValueError("sinh-arcsinh needs a tail weight delta > 0")
        layer = SinhArcsinh(1, skew=p1, log_delta=math.log(p2)).double()

        def push(x):
            with torch.no_grad():
                y, ld = layer.inverse(x[:, None])
            return y[:, 0], ld

        def pull(y):
            with torch.no_grad():
                x, ld = layer.forward(y[:, None])
            return x[:, 0], ld

        lo, hi = (float(push(torch.tensor([v], dtype=torch.float64))[0]) for v in (-3.5, 3.5))
        return push, pull, (lo, hi)
    if kind == "exp":  # y = exp(s x + m): a log-normal
        s, m = p1, p2
        if s <= 0:
            raise ValueError("exp needs a scale s > 0")
        push = lambda x: (torch.exp(s * x + m), math.log(s) + s * x + m)  # noqa: E731
        pull = lambda y: ((torch.log(y) - m) / s, -math.log(s) - torch.log(y))  # noqa: E731
        return push, pull, (1e-4, math.exp(m + 3.5 * s))
    raise ValueError(f"unknown transform {kind!r}; expected one of {', '.join(COV_TRANSFORMS)}")


#: transform name -> (first parameter (label, min, max, default), second parameter (...), formula)
COV_TRANSFORMS = {
    "affine": (("a", -3.0, 3.0, 1.5), ("b", -2.0, 2.0, 0.5), "x = g(z) = a·z + b"),
    "sinh-arcsinh": (("skew ε", -2.0, 2.0, 0.8), ("tail δ", 0.3, 2.5, 0.7), "x = g(z) = sinh((asinh z + ε)/δ)"),
    "exp": (("s", 0.1, 1.5, 0.5), ("m", -1.0, 1.0, 0.0), "x = g(z) = exp(s·z + m)"),
}


@dataclass
class CovState:
    """Everything the explorer shows, as NumPy arrays and numbers."""

    kind: str
    params: tuple[float, float]
    x: np.ndarray            # base grid
    base_density: np.ndarray  # N(x; 0, 1)
    y: np.ndarray            # grid in the pushed space
    density: np.ndarray      # p_Y(y) = p_X(g^{-1}(y)) |d g^{-1}/dy| : the formula
    hist_edges: np.ndarray
    hist_density: np.ndarray  # histogram of g(x_i), x_i ~ N(0, 1), normalised
    log_det: np.ndarray      # log |dy/dx| along the base grid
    integral: float          # int p_Y(y) dy over the y grid (should be ~1)
    hist_tv: float           # total variation between histogram and formula (bin masses)


def cov_state(kind: str = "affine", p1: float | None = None, p2: float | None = None,
              n_samples: int = 20_000, seed: int = 0, bins: int = 60) -> CovState:
    """Push ``N(0, 1)`` through the 1-D transform ``kind`` with parameters ``(p1, p2)``.

    Computes the pushforward density by the change-of-variables formula and, independently, a
    histogram of pushed samples, so the two can be compared.
    """
    if kind not in COV_TRANSFORMS:
        raise ValueError(f"unknown transform {kind!r}; expected one of {', '.join(COV_TRANSFORMS)}")
    spec1, spec2, _ = COV_TRANSFORMS[kind]
    p1 = spec1[3] if p1 is None else float(p1)
    p2 = spec2[3] if p2 is None else float(p2)
    push, pull, (ylo, yhi) = _transform(kind, p1, p2)

    x = torch.linspace(-4, 4, 401, dtype=torch.float64)
    base = torch.exp(-0.5 * x**2 - _LOG_SQRT_2PI)
    _, log_det = push(x)

    y = torch.linspace(ylo, yhi, 2001, dtype=torch.float64)
    xb, log_det_inv = pull(y)
    density = torch.exp(-0.5 * xb**2 - _LOG_SQRT_2PI + log_det_inv)
    integral = float(torch.trapezoid(density, y))

    g = torch.Generator().manual_seed(seed)
    ys, _ = push(torch.randn(n_samples, generator=g, dtype=torch.float64))
    edges = np.linspace(ylo, yhi, bins + 1)
    counts, _ = np.histogram(ys.numpy(), bins=edges)
    width = edges[1] - edges[0]
    hist_density = counts / (n_samples * width)
    # bin masses by the formula: integrate the density over each bin (fine trapezoid)
    fine = torch.linspace(ylo, yhi, bins * 40 + 1, dtype=torch.float64)
    fx, fld = pull(fine)
    fd = torch.exp(-0.5 * fx**2 - _LOG_SQRT_2PI + fld).numpy()
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (fd[1:] + fd[:-1]) * np.diff(fine.numpy()))])
    bin_mass = cum[::40][1:] - cum[::40][:-1]
    tv = 0.5 * float(np.abs(counts / n_samples - bin_mass).sum())
    return CovState(kind, (p1, p2), x.numpy(), base.numpy(), y.numpy(), density.numpy(), edges, hist_density,
                    log_det.numpy(), integral, tv)


# --- 2. the picture ----------------------------------------------------------------------------
def cov_figure(state: CovState):
    """Three panels: base density, pushforward (formula over histogram), and log|dx/dz|.

    Labels follow lecture 01: base ``z ~ N(0, 1)``, data ``x = g(z)``, ``f = g^{-1}`` maps data to base, and the formula
    is ``p_X(x) = p_Z(f(x)) |f'(x)|``. (The state's field names keep ``x`` for the base grid and ``y`` for the data grid.)
    """
    formula = COV_TRANSFORMS[state.kind][2]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ax = axes[0]
    ax.fill_between(state.x, state.base_density, color="C0", alpha=0.3)
    ax.plot(state.x, state.base_density, color="C0")
    ax.set_title("base  $p_Z(z) = \\mathcal{N}(z; 0, 1)$", fontsize=10)
    ax.set_xlabel("z")
    ax = axes[1]
    centers = 0.5 * (state.hist_edges[1:] + state.hist_edges[:-1])
    ax.bar(centers, state.hist_density, width=np.diff(state.hist_edges), color="0.75", label="histogram of $g(z_i)$")
    ax.plot(state.y, state.density, color="C3", lw=2, label="formula $p_Z(f(x))\\,|f'(x)|$")
    ax.set_title(f"pushforward, {formula}\n∫p = {state.integral:.3f}, TV(hist, formula) = {state.hist_tv:.3f}", fontsize=10)
    ax.set_xlabel("x")
    ax.set_ylim(0, 1.35 * max(float(state.density.max()), float(state.hist_density.max())))  # headroom: legend off the data
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    ax = axes[2]
    ax.plot(state.x, state.log_det, color="C2")
    ax.axhline(0, color="0.6", lw=0.8, ls="--")
    ax.set_title("$\\log|g'(z)|$ (>0 stretches, <0 compresses)", fontsize=10)
    ax.set_xlabel("z")
    fig.tight_layout()
    return fig


# --- 3. the widget -----------------------------------------------------------------------------
class CovExplorer(Explorer):
    """The change-of-variables explorer: a transform menu, two sliders, and the three panels.

    ``explorer.widget`` is the ipywidgets box to display; ``explorer.update()`` redraws (the
    sliders call it). ``explorer.image.value`` holds the current PNG bytes.
    """

    def __init__(self, kind: str = "sinh-arcsinh", n_samples: int = 20_000):
        import ipywidgets as W

        self.n_samples = n_samples
        self.menu = W.Dropdown(options=list(COV_TRANSFORMS), value=kind, description="transform")
        self.s1 = W.FloatSlider(step=0.05, continuous_update=False, readout_format=".2f")
        self.s2 = W.FloatSlider(step=0.05, continuous_update=False, readout_format=".2f")
        self.message = W.HTML()
        self._set_sliders(kind)
        self.menu.observe(self._on_menu, names="value")
        self._start([W.HBox([self.menu, self.s1, self.s2]), self.message], watch=[self.s1, self.s2])

    def _set_sliders(self, kind):
        self._muted = True
        for slider, (label, lo, hi, default) in zip((self.s1, self.s2), COV_TRANSFORMS[kind][:2]):
            slider.min, slider.max = -1e9, 1e9  # widen first so the new range is always accepted
            slider.min, slider.max, slider.value, slider.description = lo, hi, default, label
        self._muted = False

    def _on_menu(self, change):
        self._set_sliders(change["new"])
        self.update()

    def state(self) -> CovState:
        return cov_state(self.menu.value, self.s1.value, self.s2.value, n_samples=self.n_samples)

    def figure(self, state: CovState):
        return cov_figure(state)

    def update(self) -> None:
        if getattr(self, "_muted", False):
            return
        try:
            state = self.state()
        except ValueError as err:
            self.message.value = f"<b style='color:#b00'>{err}</b>"
            return
        self.message.value = (f"∫ p_Y = {state.integral:.4f} &nbsp; | &nbsp; total variation between histogram "
                              f"and formula: {state.hist_tv:.4f}")
        self.image.value = figure_png(self.figure(state))


def cov_explorer(kind: str = "sinh-arcsinh"):
    """Display-ready change-of-variables explorer (an ipywidgets box)."""
    return CovExplorer(kind).widget
