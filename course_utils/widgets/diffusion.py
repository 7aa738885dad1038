"""Chapter 07: the DDPM explorer. A t slider shows the forward marginal q(x_t) of a 2-D toy (the data noised in closed
form) next to the reverse chain's particles at the same t; a guidance-scale slider picks which recorded reverse chain
(one per scale w) is shown."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch

from ..diffusion import Schedule
from ._base import Explorer


# --- 1. the maths ------------------------------------------------------------------------------
@dataclass
class DDPMState:
    t: int
    w: float
    forward: torch.Tensor          # [N, 2] samples of q(x_t)
    reverse: torch.Tensor          # [M, 2] the reverse chain's particles at step t
    alpha_bar: float


def ddpm_state(schedule: Schedule, data: torch.Tensor, chains: dict, t: int, w: float, seed: int = 0) -> DDPMState:
    """``forward = q_sample(data, t, eps)`` with a fixed seed; ``reverse = chains[w][t]``. ``chains`` maps each guidance
    scale ``w`` to ``{t: particles [M, 2]}`` (as returned by ``ancestral_sample(..., keep=...)``)."""
    if w not in chains:
        raise ValueError(f"no reverse chain recorded for w = {w}; recorded: {sorted(chains)}")
    if t not in chains[w]:
        raise ValueError(f"step t = {t} was not recorded for w = {w}; recorded steps: {sorted(chains[w])}")
    eps = torch.randn(data.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    fwd = schedule.q_sample(data.double().cpu(), t, eps)
    return DDPMState(t=t, w=w, forward=fwd, reverse=chains[w][t].double().cpu(),
                     alpha_bar=float(schedule.alpha_bars[t]))


# --- 2. the picture ----------------------------------------------------------------------------
def ddpm_figure(state: DDPMState, lims: float = 4.5):
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), sharex=True, sharey=True)
    axes[0].scatter(*state.forward[:2000].T, s=2, alpha=0.5, color="C0")
    axes[0].set_title(f"forward: q(x_t), t = {state.t}, abar_t = {state.alpha_bar:.3f}", fontsize=9)
    axes[1].scatter(*state.reverse[:2000].T, s=2, alpha=0.5, color="C1")
    axes[1].set_title(f"reverse chain at t = {state.t}, guidance w = {state.w:g}", fontsize=9)
    for ax in axes:
        ax.set_xlim(-lims, lims); ax.set_ylim(-lims, lims); ax.set_aspect("equal")
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


# --- 3. the controls ---------------------------------------------------------------------------
class DDPMExplorer(Explorer):
    def __init__(self, schedule: Schedule, data: torch.Tensor, chains: dict):
        import ipywidgets as W

        self.schedule, self.data, self.chains = schedule, data, chains
        scales = sorted(chains)
        steps = sorted(chains[scales[0]])
        self.t = W.SelectionSlider(options=steps[::-1], value=steps[-1], description="t")
        self.w = W.SelectionSlider(options=scales, value=scales[0], description="guidance w")
        self._start([W.HBox([self.t, self.w])], [self.t, self.w])

    def state(self):
        return ddpm_state(self.schedule, self.data, self.chains, self.t.value, self.w.value)

    def figure(self, state):
        return ddpm_figure(state)


def ddpm_explorer(schedule: Schedule, data: torch.Tensor, chains: dict):
    """The widget: ``schedule``, toy ``data [N, 2]``, ``chains = {w: {t: particles [M, 2]}}`` (every w with the same steps)."""
    return DDPMExplorer(schedule, data, chains).widget
