"""Plotting helpers: densities on a grid, samples, image grids, and figures as PNG bytes.

Every function draws on a Matplotlib ``Axes`` you pass in and returns it, so notebooks compose
panels freely. :func:`figure_png` renders a figure to PNG bytes (widgets show these).
"""

from __future__ import annotations

import io
from typing import Callable

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["density_grid", "plot_density", "plot_density_row", "diverging_limits", "plot_samples", "image_grid", "figure_png",
           "plot_zoo"]

Lims = tuple[float, float]


def density_grid(log_prob: Callable[[torch.Tensor], torch.Tensor], lims: Lims = (-4.5, 4.5), n: int = 200):
    """Evaluate ``exp(log_prob)`` on an ``n x n`` grid over ``lims^2``.

    Returns ``(xs, ys, density [n, n], cell_area)``; ``density.sum() * cell_area`` approximates
    the integral of the density over the square.
    """
    g = torch.linspace(lims[0], lims[1], n)
    X, Y = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([X, Y], -1).reshape(-1, 2)
    with torch.no_grad():
        dens = log_prob(pts).exp().reshape(n, n)
    h = (lims[1] - lims[0]) / (n - 1)
    return g.numpy(), g.numpy(), dens.cpu().numpy(), h * h


def plot_density(ax, log_prob, lims: Lims = (-4.5, 4.5), n: int = 200, title: str | None = None, cmap: str = "viridis",
                 vmin: float | None = None, vmax: float | None = None):
    """Image of the density ``exp(log_prob)`` on ``lims^2`` (colour scale ``[vmin, vmax]``, default: this panel's range).

    To compare a truth with a model, give every panel the same scale: :func:`plot_density_row` does that.
    """
    xs, ys, dens, _ = density_grid(log_prob, lims, n)
    ax.imshow(dens, origin="lower", extent=(lims[0], lims[1], lims[0], lims[1]), cmap=cmap, aspect="equal",
              vmin=vmin, vmax=vmax)
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def plot_density_row(axes, log_probs, lims: Lims = (-4.5, 4.5), n: int = 200, titles=None, cmap: str = "viridis",
                     colorbar: bool = True, fontsize: float = 9):
    """Densities ``exp(log_prob)`` of several models of one target side by side, on ONE colour scale ``[0, max]`` (so a
    brighter panel means a higher density, not a different scale), with one colour bar. Returns the shared ``vmax``."""
    grids = [density_grid(lp, lims, n)[2] for lp in log_probs]
    vmax = float(max(g.max() for g in grids))
    titles = titles or [None] * len(grids)
    im = None
    for ax, dens, title in zip(axes, grids, titles):
        im = ax.imshow(dens, origin="lower", extent=(lims[0], lims[1], lims[0], lims[1]), cmap=cmap, aspect="equal",
                       vmin=0.0, vmax=vmax)
        ax.set_xticks([]); ax.set_yticks([])
        if title:
            ax.set_title(title, fontsize=fontsize)
    if colorbar and im is not None:
        from mpl_toolkits.axes_grid1 import make_axes_locatable  # a bar beside the last panel; tight_layout-safe

        cax = make_axes_locatable(ax).append_axes("right", size="6%", pad=0.05)
        cb = ax.figure.colorbar(im, cax=cax)
        cb.ax.tick_params(labelsize=8)
        cb.set_label("density (shared scale)", fontsize=8)
    return vmax


def diverging_limits(values) -> dict:
    """``dict(vmin=-m, vmax=m)`` with ``m = max|values|``: a diverging colour map centred at zero (pass with ``**``)."""
    v = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    m = float(np.nanmax(np.abs(v))) if v.size else 1.0
    return dict(vmin=-(m or 1.0), vmax=(m or 1.0))


def plot_samples(ax, x: torch.Tensor, lims: Lims | None = (-4.5, 4.5), title: str | None = None, s: float = 2.0,
                 alpha: float = 0.4, color: str = "C0", **kw):
    """Scatter of 2-D samples ``x [N, 2]``."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, color=color, linewidths=0, **kw)
    if lims is not None:
        ax.set_xlim(*lims); ax.set_ylim(*lims)
    ax.set_aspect("equal")
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def image_grid(ax, images: torch.Tensor, nrow: int = 8, title: str | None = None, cmap: str = "gray_r",
               frame: float | None = None):
    """Tile ``images [N, 1, H, W]`` (values in [0, 1]) into one picture, ``nrow`` per row, one pixel of ``frame``
    (default: the images' minimum, i.e. invisible) between them."""
    imgs = images.detach().cpu().float()
    if imgs.ndim != 4 or imgs.shape[1] != 1:
        raise ValueError(f"image_grid expects images of shape [N, 1, H, W], got {tuple(imgs.shape)}")
    n, _, h, w = imgs.shape
    rows = (n + nrow - 1) // nrow
    canvas = torch.ones(rows * (h + 1) + 1, nrow * (w + 1) + 1) * (float(imgs.min()) if frame is None else frame)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + c * (w + 1): 1 + c * (w + 1) + w] = imgs[i, 0]
    ax.imshow(canvas.numpy(), cmap=cmap, vmin=0, vmax=1)
    ax.set_xticks([]); ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def figure_png(fig, dpi: int = 80, close: bool = True) -> bytes:
    """Render a Matplotlib figure to PNG bytes (and close it, unless ``close=False``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return buf.getvalue()


def plot_zoo(names=None, n: int = 2000, density: bool = True):
    """One panel per toy target: the exact density (or samples)."""
    from .data import TOY_NAMES, toy

    names = list(names or TOY_NAMES)
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.5))
    for ax, name in zip(np.atleast_1d(axes), names):
        p = toy(name)
        if density:
            plot_density(ax, p.log_prob, p.lims, n=150, title=name)
        else:
            plot_samples(ax, p.sample((n,)), p.lims, title=name)
    fig.tight_layout()
    return fig
