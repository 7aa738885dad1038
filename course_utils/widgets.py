"""Interactive explorers, one per chapter.

Each explorer is split in three so tests need no browser:

1. a *state* function (plain numbers in, arrays out) that does all the maths;
2. a *figure* function that draws a state with Matplotlib;
3. the ipywidgets wrapper, which only wires sliders to 1 and 2 and shows the PNG.

Chapter 01: :func:`cov_explorer`, the change-of-variables explorer.
Chapter 02: :func:`flow_layers_explorer`, a trained flow layer by layer.
Chapter 03: :func:`latent_explorer`, the latent space of a 2-D VAE.
Chapter 04: :func:`beta_explorer`, a beta-VAE sweep: rate, distortion, reconstructions, latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from .flows import SinhArcsinh
from .plotting import figure_png, image_grid

__all__ = ["COV_TRANSFORMS", "cov_state", "cov_figure", "cov_explorer", "CovExplorer",
           "flow_layers_state", "flow_layers_figure", "flow_layers_explorer", "FlowLayersExplorer",
           "latent_state", "latent_figure", "latent_explorer", "LatentExplorer",
           "beta_measurements", "beta_state", "beta_figure", "beta_explorer", "BetaExplorer"]

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
    "affine": (("a", -3.0, 3.0, 1.5), ("b", -2.0, 2.0, 0.5), "y = a·x + b"),
    "sinh-arcsinh": (("skew ε", -2.0, 2.0, 0.8), ("tail δ", 0.3, 2.5, 0.7), "y = sinh((asinh x + ε)/δ)"),
    "exp": (("s", 0.1, 1.5, 0.5), ("m", -1.0, 1.0, 0.0), "y = exp(s·x + m)"),
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
    """Three panels: base density, pushforward (formula over histogram), and log|dy/dx|."""
    formula = COV_TRANSFORMS[state.kind][2]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ax = axes[0]
    ax.fill_between(state.x, state.base_density, color="C0", alpha=0.3)
    ax.plot(state.x, state.base_density, color="C0")
    ax.set_title("base  $p_X(x) = \\mathcal{N}(x; 0, 1)$")
    ax.set_xlabel("x")
    ax = axes[1]
    centers = 0.5 * (state.hist_edges[1:] + state.hist_edges[:-1])
    ax.bar(centers, state.hist_density, width=np.diff(state.hist_edges), color="0.75", label="histogram of $g(x_i)$")
    ax.plot(state.y, state.density, color="C3", lw=2, label="formula $p_X(g^{-1}(y))\\,|dg^{-1}/dy|$")
    ax.set_title(f"pushforward, {formula}\n∫p = {state.integral:.3f}, TV(hist, formula) = {state.hist_tv:.3f}", fontsize=10)
    ax.set_xlabel("y")
    ax.legend(fontsize=7, loc="best")
    ax = axes[2]
    ax.plot(state.x, state.log_det, color="C2")
    ax.axhline(0, color="0.6", lw=0.8, ls="--")
    ax.set_title("$\\log|dy/dx|$ (>0 stretches, <0 compresses)", fontsize=10)
    ax.set_xlabel("x")
    fig.tight_layout()
    return fig


# --- 3. the widget -----------------------------------------------------------------------------
class CovExplorer:
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
        self.image = W.Image(format="png")
        self.message = W.HTML()
        self._set_sliders(kind)
        self.menu.observe(self._on_menu, names="value")
        for s in (self.s1, self.s2):
            s.observe(lambda _change: self.update(), names="value")
        self.widget = W.VBox([W.HBox([self.menu, self.s1, self.s2]), self.message, self.image])
        self.update()

    def _set_sliders(self, kind):
        self._muted = True
        for slider, (label, lo, hi, default) in zip((self.s1, self.s2), COV_TRANSFORMS[kind][:2]):
            slider.min, slider.max = -1e9, 1e9  # widen first so the new range is always accepted
            slider.min, slider.max, slider.value, slider.description = lo, hi, default, label
        self._muted = False

    def _on_menu(self, change):
        self._set_sliders(change["new"])
        self.update()

    def update(self) -> None:
        if getattr(self, "_muted", False):
            return
        try:
            state = cov_state(self.menu.value, self.s1.value, self.s2.value, n_samples=self.n_samples)
        except ValueError as err:
            self.message.value = f"<b style='color:#b00'>{err}</b>"
            return
        self.message.value = (f"∫ p_Y = {state.integral:.4f} &nbsp; | &nbsp; total variation between histogram "
                              f"and formula: {state.hist_tv:.4f}")
        self.image.value = figure_png(cov_figure(state))


def cov_explorer(kind: str = "sinh-arcsinh"):
    """Display-ready change-of-variables explorer (an ipywidgets box)."""
    return CovExplorer(kind).widget


# =============================================================================================
# Chapter 02: a flow, layer by layer
# =============================================================================================
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
    means, shown = [0.0], None
    for i, step in enumerate(steps):
        if i == k:
            shown = (pts.clone(), [g.clone() for g in grid], log_det.clone())
        pts, ld = step(pts)
        grid = [step(g)[0] for g in grid]
        log_det = log_det + ld
        means.append(float(log_det.mean()))
    if shown is None:
        shown = (pts, grid, log_det)
    pts_k, grid_k, ld_k = shown
    return FlowLayersState(direction, k, n, names[k - 1] if k else "", pts_k.cpu().numpy(),
                           [g.cpu().numpy() for g in grid_k], ld_k.cpu().numpy(), means)


def flow_layers_figure(state: FlowLayersState, view=(-4.5, 4.5)):
    """Left: samples (coloured by their running log|det|) and the moving grid; right: the mean running log-det."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4), gridspec_kw={"width_ratios": [1.15, 1]})
    for line in state.grid:
        ax.plot(line[:, 0], line[:, 1], color="0.75", lw=0.6)
    sc = ax.scatter(state.points[:, 0], state.points[:, 1], c=state.log_det, s=4, cmap="coolwarm", linewidths=0)
    fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label="running log|det| of each point")
    ax.set_xlim(*view); ax.set_ylim(*view); ax.set_aspect("equal")
    start = "data" if state.direction == "data → base" else "base N(0, I)"
    title = f"{start}, after {state.k} of {state.n_layers} layers" + (f"\nlast: {state.layer_name}" if state.k else "\n(no layer applied)")
    ax.set_title(title, fontsize=10)
    ax2.plot(range(len(state.mean_log_det)), state.mean_log_det, "o-", color="C0", ms=3)
    ax2.axvline(state.k, color="C3", ls="--")
    ax2.set_xlabel("layers applied"); ax2.set_ylabel("mean running log|det|")
    ax2.set_title(f"{state.direction}: log-dets add up, layer by layer", fontsize=10)
    fig.tight_layout()
    return fig


class FlowLayersExplorer:
    """Slider over the layers of a trained 2-D flow; a toggle for the direction. ``.widget`` to display."""

    def __init__(self, flow, x: torch.Tensor, lims=(-4.5, 4.5)):
        import ipywidgets as W

        self.flow, self.x, self.lims = flow, x, lims
        n = len(flow.layers)
        self.slider = W.IntSlider(value=0, min=0, max=n, step=1, description="layers", continuous_update=False)
        self.direction = W.ToggleButtons(options=["data → base", "base → data"], value="data → base")
        self.image = W.Image(format="png")
        self.slider.observe(lambda _c: self.update(), names="value")
        self.direction.observe(lambda _c: self.update(), names="value")
        self.widget = W.VBox([W.HBox([self.slider, self.direction]), self.image])
        self.update()

    def update(self) -> None:
        state = flow_layers_state(self.flow, self.x, self.slider.value, self.direction.value, self.lims)
        self.image.value = figure_png(flow_layers_figure(state, self.lims))


def flow_layers_explorer(flow, x: torch.Tensor, lims=(-4.5, 4.5)):
    """Display-ready layer-by-layer explorer of a 2-D flow (an ipywidgets box)."""
    return FlowLayersExplorer(flow, x, lims).widget


# =============================================================================================
# Chapter 03: the latent space of a 2-D VAE
# =============================================================================================
@dataclass
class LatentState:
    z: tuple[float, float]
    image: np.ndarray        # [H, W] decoded mean image at z
    means: np.ndarray        # [N, 2] encoder means of a data set
    labels: np.ndarray       # [N]


@torch.no_grad()
def latent_state(vae, z1: float, z2: float, means: torch.Tensor, labels: torch.Tensor) -> LatentState:
    """Decode the latent point ``(z1, z2)`` of a VAE with a 2-D latent (``vae.decoder(z) -> logits [1, 1, H, W]``)."""
    p = next(vae.parameters())
    logits = vae.decoder(torch.tensor([[z1, z2]]).to(p))
    if logits.ndim != 4 or logits.shape[:2] != (1, 1):
        raise ValueError(f"the decoder should return logits of shape [1, 1, H, W], got {tuple(logits.shape)}")
    return LatentState((z1, z2), torch.sigmoid(logits)[0, 0].cpu().numpy(), means.cpu().numpy(), labels.cpu().numpy())


def latent_figure(state: LatentState, lims=(-3.5, 3.5)):
    """Left: encoder means of the test set coloured by label, the chosen z marked; right: the decoded digit."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.6, 4), gridspec_kw={"width_ratios": [1.35, 1]})
    sc = ax.scatter(state.means[:, 0], state.means[:, 1], c=state.labels, cmap="tab10", s=9, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), fraction=0.046, pad=0.04, label="digit")
    ax.plot(*state.z, marker="X", color="k", ms=14, mec="w", mew=1.5)
    ax.set_xlim(*lims); ax.set_ylim(*lims); ax.set_aspect("equal")
    ax.set_xlabel("$z_1$"); ax.set_ylabel("$z_2$"); ax.set_title("posterior means of test digits", fontsize=10)
    ax2.imshow(state.image, cmap="gray_r", vmin=0, vmax=1)
    ax2.set_xticks([]); ax2.set_yticks([])
    ax2.set_title(f"decoded at z = ({state.z[0]:.1f}, {state.z[1]:.1f})", fontsize=10)
    fig.tight_layout()
    return fig


class LatentExplorer:
    """Two sliders over a 2-D latent space; the picture shows where z lies among the data and what it decodes to."""

    def __init__(self, vae, x: torch.Tensor, labels: torch.Tensor, lims=(-3.5, 3.5)):
        import ipywidgets as W

        with torch.no_grad():
            self.means = vae.encoder(x.to(next(vae.parameters())))[0]
        if self.means.shape[1] != 2:
            raise ValueError(f"the latent explorer needs a 2-D latent space, got {self.means.shape[1]} dimensions")
        self.vae, self.labels, self.lims = vae, labels, lims
        self.s1 = W.FloatSlider(value=0.0, min=lims[0], max=lims[1], step=0.1, description="z₁", continuous_update=False)
        self.s2 = W.FloatSlider(value=0.0, min=lims[0], max=lims[1], step=0.1, description="z₂", continuous_update=False)
        self.image = W.Image(format="png")
        for s in (self.s1, self.s2):
            s.observe(lambda _c: self.update(), names="value")
        self.widget = W.VBox([W.HBox([self.s1, self.s2]), self.image])
        self.update()

    def update(self) -> None:
        state = latent_state(self.vae, self.s1.value, self.s2.value, self.means, self.labels)
        self.image.value = figure_png(latent_figure(state, self.lims))


def latent_explorer(vae, x: torch.Tensor, labels: torch.Tensor):
    """Display-ready explorer of a 2-D VAE latent space (an ipywidgets box)."""
    return LatentExplorer(vae, x, labels).widget


# =============================================================================================
# Chapter 04: a beta-VAE sweep
# =============================================================================================
ACTIVE_NATS = 0.01   # a latent dimension with a mean KL below this carries (almost) no information: collapsed


@torch.no_grad()
def beta_measurements(vaes: dict, x: torch.Tensor, n_samples: int = 10) -> dict:
    """Rate, distortion and per-dimension KL of each VAE of a sweep ``{beta: vae}`` on ``x`` (seeded), keyed by beta."""
    from .vae import rate_distortion

    torch.manual_seed(0)
    return {beta: rate_distortion(vae, x.to(next(vae.parameters())), n_samples) for beta, vae in vaes.items()}


@dataclass
class BetaState:
    beta: float
    betas: list[float]
    rates: list[float]
    distortions: list[float]
    kl_per_dim: np.ndarray     # [L] of the chosen beta
    originals: np.ndarray      # [n, H, W]
    recons: np.ndarray         # [n, H, W] decoded posterior means
    means: np.ndarray          # [N, 2] posterior means in the two most informative dimensions
    dims: tuple[int, int]      # which dimensions those are
    labels: np.ndarray         # [N]

    @property
    def active(self) -> int:
        return int((self.kl_per_dim > ACTIVE_NATS).sum())


@torch.no_grad()
def beta_state(vaes: dict, beta: float, x: torch.Tensor, labels: torch.Tensor, measurements: dict | None = None,
               n_show: int = 8) -> BetaState:
    """Everything the beta explorer shows for one ``beta`` of a sweep ``{beta: vae}`` (VAEs with a Bernoulli MLP decoder)."""
    if beta not in vaes:
        raise ValueError(f"beta = {beta} is not in the sweep; choose one of {sorted(vaes)}")
    measurements = measurements if measurements is not None else beta_measurements(vaes, x)
    betas = sorted(vaes)
    vae = vaes[beta]
    x = x.to(next(vae.parameters()))
    mu, _ = vae.encoder(x)
    kl = measurements[beta]["kl_per_dim"].numpy()
    dims = tuple(int(d) for d in np.argsort(-kl)[:2])
    recon = torch.sigmoid(vae.decoder(mu[:n_show]))
    return BetaState(beta, betas, [measurements[b]["rate"] for b in betas], [measurements[b]["distortion"] for b in betas],
                     kl, x[:n_show, 0].cpu().numpy(), recon[:, 0].cpu().numpy(), mu[:, list(dims)].cpu().numpy(), dims,
                     labels.cpu().numpy())


def beta_figure(state: BetaState):
    """Rate-distortion curve, per-dimension KL, reconstructions, and the two most informative latent dimensions."""
    fig = plt.figure(figsize=(13, 3.6))
    gs = fig.add_gridspec(1, 4, width_ratios=[1.2, 1, 0.9, 1.2])
    ax = fig.add_subplot(gs[0])
    ax.plot(state.rates, state.distortions, "o-", color="0.6", ms=4)
    for b, r, d in zip(state.betas, state.rates, state.distortions):
        ax.annotate(f"β={b:g}", (r, d), textcoords="offset points", xytext=(4, 3), fontsize=7, color="0.35")
    i = state.betas.index(state.beta)
    r0, d0 = state.rates[i], state.distortions[i]
    ax.plot(r0, d0, "o", color="C3", ms=9)
    top = max(state.rates) + 1
    ax.plot([0, top], [r0 + d0, r0 + d0 - top], ls=":", color="C3", lw=1)
    ax.set_xlim(-0.5, top); ax.set_ylim(0, max(state.distortions) + 2)
    ax.set_xlabel("rate  E KL(q(z|x)‖p(z))  [nats]"); ax.set_ylabel("distortion  −E log p(x|z)  [nats]")
    ax.set_title(f"β = {state.beta:g}: R = {r0:.2f}, D = {d0:.2f}\n(dotted: same −ELBO = R + D = {r0 + d0:.2f})", fontsize=9)

    ax = fig.add_subplot(gs[1])
    colours = ["C0" if k > ACTIVE_NATS else "0.7" for k in state.kl_per_dim]
    dims = np.arange(1, len(state.kl_per_dim) + 1)
    ax.bar(dims, state.kl_per_dim, color=colours)
    ax.set_xticks(dims)
    ax.axhline(ACTIVE_NATS, color="k", lw=0.6, ls="--")
    ax.set_yscale("symlog", linthresh=0.01); ax.set_ylim(0, max(4.0, state.kl_per_dim.max() * 1.3))
    ax.set_xlabel("latent dimension $j$"); ax.set_ylabel("mean KL of $z_j$ [nats]")
    ax.set_title(f"{state.active} of {len(state.kl_per_dim)} dimensions active\n(grey: KL < {ACTIVE_NATS}, collapsed)", fontsize=9)

    ax = fig.add_subplot(gs[2])
    n, h, w = state.originals.shape
    cols = (n + 1) // 2                       # two blocks of rows: originals above their reconstructions
    rows = [block[r * cols:(r + 1) * cols] for r in range(2) for block in (state.originals, state.recons)]
    image_grid(ax, torch.from_numpy(np.concatenate(rows))[:, None], nrow=cols, frame=0.3)   # light grey frames
    ax.set_yticks([1 + k * (h + 1) + h / 2 for k in range(4)])
    ax.set_yticklabels(["test", "recon.", "test", "recon."], fontsize=8)
    ax.set_title("test digits and their reconstructions\n(decoded posterior means)", fontsize=9)

    ax = fig.add_subplot(gs[3])
    sc = ax.scatter(state.means[:, 0], state.means[:, 1], c=state.labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), fraction=0.046, pad=0.04, label="digit")
    ax.set_xlim(-3.5, 3.5); ax.set_ylim(-3.5, 3.5); ax.set_aspect("equal")
    ax.set_xlabel(f"$z_{{{state.dims[0] + 1}}}$"); ax.set_ylabel(f"$z_{{{state.dims[1] + 1}}}$")
    ax.set_title("posterior means, two most\ninformative dimensions", fontsize=9)
    fig.tight_layout()
    return fig


class BetaExplorer:
    """A slider over the betas of a trained sweep ``{beta: vae}``; the picture shows that VAE's rate and distortion.
    ``measurements``: :func:`beta_measurements` of the sweep on ``x``, when already computed."""

    def __init__(self, vaes: dict, x: torch.Tensor, labels: torch.Tensor, measurements: dict | None = None):
        import ipywidgets as W

        if len(vaes) < 2:
            raise ValueError("the beta explorer needs a sweep of at least two VAEs, {beta: vae}")
        self.vaes, self.x, self.labels = vaes, x, labels
        self.measurements = measurements if measurements is not None else beta_measurements(vaes, x)
        betas = sorted(vaes)
        start = min(betas, key=lambda b: abs(math.log(b)))  # the plain VAE (beta = 1) when the sweep has it
        self.slider = W.SelectionSlider(options=[(f"{b:g}", b) for b in betas], value=start, description="β",
                                        continuous_update=False)
        self.image = W.Image(format="png")
        self.slider.observe(lambda _c: self.update(), names="value")
        self.widget = W.VBox([self.slider, self.image])
        self.update()

    def update(self) -> None:
        state = beta_state(self.vaes, self.slider.value, self.x, self.labels, self.measurements)
        self.image.value = figure_png(beta_figure(state))


def beta_explorer(vaes: dict, x: torch.Tensor, labels: torch.Tensor, measurements: dict | None = None):
    """Display-ready explorer of a beta-VAE sweep ``{beta: vae}`` on test data ``x`` with ``labels`` (an ipywidgets box)."""
    return BetaExplorer(vaes, x, labels, measurements).widget
