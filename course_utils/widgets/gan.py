"""Chapter 05: a recorded GAN / WGAN run, step by step: generator samples over the true density, the discriminator's
or critic's field as a heat map, and both losses; a control switches between runs trained with different losses."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ._base import Explorer


def gan_recorder(generator: torch.nn.Module, critic: torch.nn.Module, lim: float = 4.5, n_grid: int = 60,
                 n_samples: int = 500, latent_dim: int = 2, seed: int = 0):
    """A ``record(step)`` function for :func:`course_utils.gan.train_gan`: generator samples from fixed latents (the same
    points move from snapshot to snapshot) and the critic's output on an ``n_grid x n_grid`` grid over ``[-lim, lim]^2``.
    Draws from its own generator, so recording does not change the training run."""
    z = torch.randn(n_samples, latent_dim, generator=torch.Generator().manual_seed(seed))
    g = torch.linspace(-lim, lim, n_grid)
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)

    @torch.no_grad()
    def record(step: int) -> dict:
        dev = next(generator.parameters()).device
        return {"samples": generator(z.to(dev)).cpu().numpy(),
                "field": critic(grid.to(dev)).reshape(n_grid, n_grid).cpu().numpy(), "lim": lim}

    return record


@dataclass
class GANState:
    loss: str
    step: int
    steps: list[int]           # the snapshot steps of this run
    samples: np.ndarray        # [n, 2]
    field: np.ndarray          # [G, G]: discriminator D(x) = sigmoid(logit) (GAN) or critic value minus its grid mean (WGAN)
    vmin: float                # the colour scale [vmin, vmax], one per run (shared along the step slider):
    vmax: float                # [0, 1] for a discriminator, [-m, m] with m the largest |field| of the run for a critic
    lim: float
    density: np.ndarray        # [G, G] true density on the same grid
    d_losses: np.ndarray       # [steps] the whole run's losses, to draw up to `step`
    g_losses: np.ndarray

    @property
    def is_wgan(self) -> bool:
        return self.loss.startswith("wgan")


def gan_state(runs: dict, loss: str, index: int, density: np.ndarray) -> GANState:
    """Snapshot ``index`` of the run trained with ``loss``; ``runs`` maps a loss name to a ``GANHistory`` recorded with
    :func:`gan_recorder`; ``density`` is the true density on the recorder's grid."""
    if loss not in runs:
        raise ValueError(f"no run was recorded for loss {loss!r}; recorded: {', '.join(runs)}")
    hist = runs[loss]
    if not hist.snapshots:
        raise ValueError(f"the {loss!r} run has no snapshots: train it with record=gan_recorder(...), record_every=...")
    if not 0 <= index < len(hist.snapshots):
        raise ValueError(f"snapshot index must be in 0..{len(hist.snapshots) - 1}, got {index}")
    if loss.startswith("wgan"):                # one scale per run, shared along the step slider, centred at 0
        m = max(float(np.abs(_shown_field(s["field"], loss)).max()) for _, s in hist.snapshots) or 1.0
        vmin, vmax = -m, m
    else:                                      # a probability: the same [0, 1] for every snapshot, centred at 1/2
        vmin, vmax = 0.0, 1.0
    step, snap = hist.snapshots[index]
    return GANState(loss, step, [s for s, _ in hist.snapshots], snap["samples"], _shown_field(snap["field"], loss), vmin,
                    vmax, snap["lim"], density, np.asarray(hist.d_losses), np.asarray(hist.g_losses))


def _shown_field(field: np.ndarray, loss: str) -> np.ndarray:
    """The field as drawn: a discriminator as its probability ``D = sigmoid(logit)`` (its logits run to +-30 early in a
    run and to +-2 late, so no one scale shows them both); a critic minus its grid mean (defined up to a constant)."""
    if loss.startswith("wgan"):
        return field - field.mean()
    return 1.0 / (1.0 + np.exp(-np.clip(field, -60, 60)))


def gan_figure(state: GANState):
    """Left: samples over the true density; middle: the discriminator's probability D(x) or the critic's value (a
    diverging map centred at 1/2 or 0, one colour scale for every snapshot of the run: ``state.vmin, state.vmax``);
    right: both losses up to the current step."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    ext = (-state.lim, state.lim, -state.lim, state.lim)
    ax = axes[0]
    ax.imshow(state.density, extent=ext, origin="lower", cmap="Greys")
    ax.scatter(state.samples[:, 0], state.samples[:, 1], s=3, color="C1", alpha=0.7)
    ax.set_xlim(-state.lim, state.lim); ax.set_ylim(-state.lim, state.lim); ax.set_aspect("equal")
    ax.set_title(f"{state.loss}, step {state.step}: samples (orange)\nover the true density (grey)", fontsize=9)
    ax = axes[1]
    im = ax.imshow(state.field, extent=ext, origin="lower", cmap="RdBu_r", vmin=state.vmin, vmax=state.vmax)
    ax.contour(state.density, extent=ext, levels=3, colors="k", linewidths=0.5)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_aspect("equal")
    what = "critic f(x) − its mean (one scale per run)" if state.is_wgan else "discriminator D(x) (1/2: undecided)"
    ax.set_title(f"{what}\n(red: looks real, blue: looks generated)", fontsize=9)
    ax = axes[2]
    n = max(state.step, 1)
    t = np.arange(1, len(state.d_losses) + 1)
    ax.plot(t[:n], state.d_losses[:n], lw=0.8, label="critic loss" if state.is_wgan else "discriminator loss")
    ax.plot(t[:n], state.g_losses[:n], lw=0.8, label="generator loss")
    ax.set_xlim(0, len(t))
    lo = min(state.d_losses.min(), state.g_losses.min()); hi = max(state.d_losses.max(), state.g_losses.max())
    ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    ax.set_xlabel("generator step"); ax.legend(fontsize=8, loc="upper right")
    ax.set_title("losses of the run up to this step", fontsize=9)
    fig.tight_layout()
    return fig


class GANExplorer(Explorer):
    """A loss selector (the recorded runs) and a step slider (their snapshots)."""

    def __init__(self, runs: dict, target):
        import ipywidgets as W

        if not runs:
            raise ValueError("the GAN explorer needs at least one recorded run {loss: GANHistory}")
        self.runs = runs
        first = next(iter(runs.values()))
        if not first.snapshots:
            raise ValueError("the runs have no snapshots: train them with record=gan_recorder(...), record_every=...")
        lim, n = first.snapshots[0][1]["lim"], first.snapshots[0][1]["field"].shape[0]
        g = torch.linspace(-lim, lim, n, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
        self.density = target.log_prob(grid).exp().reshape(n, n).numpy()
        self.loss = W.ToggleButtons(options=list(runs), value=list(runs)[0], description="loss")
        self.slider = W.IntSlider(value=len(first.snapshots) - 1, min=0, max=len(first.snapshots) - 1,
                                  description="snapshot", continuous_update=False)
        self._syncing = False
        self.loss.observe(self._sync_slider, names="value")       # registered first: runs before the redraw
        self._start([self.loss, self.slider], watch=[self.loss, self.slider])

    def _sync_slider(self, change) -> None:
        """Runs may have different numbers of snapshots: give the slider the new run's range, at the same fraction of
        the run (the end stays the end)."""
        old_n, new_n = (len(self.runs[change[k]].snapshots) - 1 for k in ("old", "new"))
        frac = self.slider.value / old_n if old_n else 1.0
        self._syncing = True
        try:
            self.slider.max = max(new_n, 0)
            self.slider.value = round(frac * new_n)
        finally:
            self._syncing = False

    def update(self) -> None:
        if not self._syncing:                                     # one redraw per user action
            super().update()

    def state(self) -> GANState:
        n = len(self.runs[self.loss.value].snapshots)
        return gan_state(self.runs, self.loss.value, min(self.slider.value, n - 1), self.density)

    def figure(self, state: GANState):
        return gan_figure(state)


def gan_explorer(runs: dict, target):
    """Display-ready explorer of recorded runs ``{loss name: GANHistory}`` on a toy ``target`` (an ipywidgets box)."""
    return GANExplorer(runs, target).widget
