"""Chapter 06: a noise level sigma and a Langevin step size: q_sigma, its exact and learned score fields, and particles."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..score import langevin, smoothed_score
from ._base import Explorer


@dataclass
class ScoreState:
    sigma: float
    step_size: float
    lims: tuple[float, float]
    density: np.ndarray        # [n, n] q_sigma on the fine grid (rows: y)
    arrows_xy: np.ndarray      # [m*m, 2] coarse grid points
    exact: np.ndarray          # [m*m, 2] exact score of q_sigma there
    learned: np.ndarray | None  # [m*m, 2] the model's score there (None without a model)
    particles: np.ndarray      # [P, 2] after the Langevin steps
    n_steps: int
    rel_error: float           # sqrt(E_q ||s_theta - s||^2 / E_q ||s||^2) on the grid, weighted by q_sigma (nan: no model)


@torch.no_grad()
def score_state(target, sigma: float, step_size: float, model=None, n_steps: int = 100, n_particles: int = 500,
                grid: int = 120, arrows: int = 17, seed: int = 0) -> ScoreState:
    """Everything the score explorer shows: ``q_sigma`` of a toy mixture ``target`` on a grid, its exact score and a noise-
    conditioned ``model(x, sigma)``'s score on a coarse grid, and ``n_particles`` started uniformly on the square after
    ``n_steps`` Langevin steps of size ``step_size`` with the model's score (the exact one without a model)."""
    if sigma < 0 or step_size <= 0:
        raise ValueError(f"sigma must be >= 0 and step_size > 0, got {sigma}, {step_size}")
    exact_fn = smoothed_score(target, sigma)
    lims = target.lims
    g = torch.linspace(lims[0], lims[1], grid, dtype=torch.float64)
    X, Y = torch.meshgrid(g, g, indexing="xy")
    log_q, _ = exact_fn(torch.stack([X, Y], -1).reshape(-1, 2))
    a = torch.linspace(lims[0] + 0.25, lims[1] - 0.25, arrows, dtype=torch.float64)
    AX, AY = torch.meshgrid(a, a, indexing="xy")
    pts = torch.stack([AX, AY], -1).reshape(-1, 2)
    lq_pts, exact = exact_fn(pts)
    learned, rel = None, float("nan")
    if model is not None:
        p0 = next(model.parameters())
        learned = model(pts.to(p0), max(sigma, 1e-3)).double().cpu()
        w = torch.softmax(lq_pts, 0)[:, None]
        rel = math.sqrt(float((w * (learned - exact) ** 2).sum() / (w * exact**2).sum()))

        def score(x):
            return model(x.to(p0), max(sigma, 1e-3)).to(x)
    else:
        def score(x):
            return exact_fn(x)[1]
    gen = torch.Generator().manual_seed(seed)
    x0 = lims[0] + (lims[1] - lims[0]) * torch.rand(n_particles, 2, generator=gen)
    x = langevin(score, x0, step_size, n_steps, generator=gen)
    return ScoreState(float(sigma), float(step_size), lims, log_q.exp().reshape(grid, grid).numpy(), pts.numpy(),
                      exact.numpy(), None if learned is None else learned.numpy(), x.cpu().numpy(), n_steps, rel)


def score_figure(state: ScoreState):
    """Three panels: q_sigma with its exact score, the learned score (and its error), the Langevin particles over q_sigma."""
    fig, axes = plt.subplots(1, 3, figsize=(12.6, 4.9))
    ext = (*state.lims, *state.lims)
    vmax = float(state.density.max())
    for ax in axes:
        ax.imshow(state.density, origin="lower", extent=ext, cmap="Greys", vmin=0, vmax=vmax)
        ax.set_xlim(*state.lims); ax.set_ylim(*state.lims); ax.set_aspect("equal")
        ax.set_xticks([]); ax.set_yticks([])

    def quiver(ax, field, color):
        norm = np.linalg.norm(field, axis=1, keepdims=True)
        unit = field / np.maximum(norm, 1e-12)            # directions; length grows with log of the size
        length = np.log1p(norm)
        ax.quiver(state.arrows_xy[:, 0], state.arrows_xy[:, 1], unit[:, 0] * length[:, 0], unit[:, 1] * length[:, 0],
                  color=color, angles="xy", scale_units="xy", scale=4.0, width=0.004)

    quiver(axes[0], state.exact, "C0")
    axes[0].set_title(f"$q_\\sigma$, σ = {state.sigma:.3g}, and its exact score\n(arrow length: log(1 + |score|))", fontsize=9)
    if state.learned is not None:
        quiver(axes[1], state.learned, "C3")
        axes[1].set_title(f"learned score $s_\\theta(x, σ)$\nrelative error (weighted by $q_\\sigma$): {state.rel_error:.2f}",
                          fontsize=9)
    else:
        axes[1].set_title("no learned model given", fontsize=9)
    axes[2].scatter(state.particles[:, 0], state.particles[:, 1], s=4, color="C1", alpha=0.7, linewidths=0)
    who = "learned" if state.learned is not None else "exact"
    axes[2].set_title(f"{len(state.particles)} particles from a uniform start after {state.n_steps}\n"
                      f"Langevin steps, η = {state.step_size:.3g} ({who} score)", fontsize=9)
    fig.tight_layout()
    return fig


class ScoreExplorer(Explorer):
    """A sigma slider and a step-size slider over a toy mixture target and (optionally) a noise-conditioned score model."""

    def __init__(self, target, model=None, sigmas=(0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
                 step_sizes=(1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3), n_steps: int = 100):
        import ipywidgets as W

        self.target, self.model, self.n_steps = target, model, n_steps
        self.sigma = W.SelectionSlider(options=[(f"{s:g}", float(s)) for s in sigmas], value=float(sigmas[len(sigmas) // 2]),
                                       description="σ", continuous_update=False)
        self.step = W.SelectionSlider(options=[(f"{s:g}", float(s)) for s in step_sizes], value=float(step_sizes[3]),
                                      description="step η", continuous_update=False)
        self._start([W.HBox([self.sigma, self.step])], watch=[self.sigma, self.step])

    def state(self) -> ScoreState:
        return score_state(self.target, self.sigma.value, self.step.value, self.model, n_steps=self.n_steps)

    def figure(self, state: ScoreState):
        return score_figure(state)


def score_explorer(target, model=None, **kw):
    """Display-ready explorer of ``q_sigma``, its exact and learned scores and Langevin particles (an ipywidgets box)."""
    return ScoreExplorer(target, model, **kw).widget
