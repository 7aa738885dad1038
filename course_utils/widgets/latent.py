"""Chapter 03: the latent space of a 2-D VAE."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._base import Explorer


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
    """Left: encoder means of the test set coloured by label, the chosen z marked; right: the decoder's mean image at z."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.6, 4), gridspec_kw={"width_ratios": [1.35, 1]})
    sc = ax.scatter(state.means[:, 0], state.means[:, 1], c=state.labels, cmap="tab10", s=9, vmin=-0.5, vmax=9.5)
    fig.colorbar(sc, ax=ax, ticks=range(10), fraction=0.046, pad=0.04, label="digit")
    ax.plot(*state.z, marker="X", color="k", ms=14, mec="w", mew=1.5, clip_on=False, zorder=5)   # visible at the edges too
    pad = 0.04 * (lims[1] - lims[0])
    ax.set_xlim(lims[0] - pad, lims[1] + pad); ax.set_ylim(lims[0] - pad, lims[1] + pad); ax.set_aspect("equal")
    ax.set_xlabel("$z_1$"); ax.set_ylabel("$z_2$"); ax.set_title("posterior means of test digits", fontsize=10)
    im = ax2.imshow(state.image, cmap="gray_r", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04, label="p(pixel = 1 | z)")
    ax2.set_xticks([]); ax2.set_yticks([])
    ax2.set_title(f"decoder mean at z = ({state.z[0]:.1f}, {state.z[1]:.1f})", fontsize=10)
    fig.tight_layout()
    return fig


class LatentExplorer(Explorer):
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
        self._start([W.HBox([self.s1, self.s2])], watch=[self.s1, self.s2])

    def state(self) -> LatentState:
        return latent_state(self.vae, self.s1.value, self.s2.value, self.means, self.labels)

    def figure(self, state: LatentState):
        return latent_figure(state, self.lims)


def latent_explorer(vae, x: torch.Tensor, labels: torch.Tensor):
    """Display-ready explorer of a 2-D VAE latent space (an ipywidgets box)."""
    return LatentExplorer(vae, x, labels).widget
