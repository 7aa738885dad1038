"""Chapter 04: a beta-VAE sweep: rate, distortion, reconstructions, latents."""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..plotting import image_grid
from ._base import Explorer


ACTIVE_NATS = 0.01   # a latent dimension with a mean KL below this carries (almost) no information: collapsed


@torch.no_grad()
def beta_measurements(vaes: dict, x: torch.Tensor, n_samples: int = 10) -> dict:
    """Rate, distortion and per-dimension KL of each VAE of a sweep ``{beta: vae}`` on ``x`` (seeded), keyed by beta."""
    from ..vae import rate_distortion

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
    lim: float = 3.5           # half-width of the latent panel, the same for every beta of the sweep

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
    # one scale for the whole sweep, so that moving the slider shows the code spreading or shrinking (small betas spread
    # the posterior means beyond the prior's +-3.5)
    reach = max(v.encoder(x.to(next(v.parameters())))[0].abs().max().item() for v in vaes.values())
    return BetaState(beta, betas, [measurements[b]["rate"] for b in betas], [measurements[b]["distortion"] for b in betas],
                     kl, x[:n_show, 0].cpu().numpy(), recon[:, 0].cpu().numpy(), mu[:, list(dims)].cpu().numpy(), dims,
                     labels.cpu().numpy(), max(3.5, 1.05 * reach))


def beta_figure(state: BetaState):
    """Rate-distortion curve, per-dimension KL, reconstructions, and the two most informative latent dimensions."""
    fig = plt.figure(figsize=(13, 3.6))
    gs = fig.add_gridspec(1, 4, width_ratios=[1.2, 1, 0.9, 1.2])
    ax = fig.add_subplot(gs[0])
    ax.plot(state.rates, state.distortions, "o-", color="0.6", ms=4)
    for b, r, d in zip(state.betas, state.rates, state.distortions):
        ax.annotate(f"β={b:g}", (r, d), textcoords="offset points", xytext=(6, 4), fontsize=8, color="0.35")
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
    ax.set_xlim(-state.lim, state.lim); ax.set_ylim(-state.lim, state.lim); ax.set_aspect("equal")
    ax.set_xlabel(f"$z_{{{state.dims[0] + 1}}}$"); ax.set_ylabel(f"$z_{{{state.dims[1] + 1}}}$")
    ax.set_title("posterior means, two most\ninformative dimensions", fontsize=9)
    fig.tight_layout()
    return fig


class BetaExplorer(Explorer):
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
        self._start([self.slider], watch=[self.slider])

    def state(self) -> BetaState:
        return beta_state(self.vaes, self.slider.value, self.x, self.labels, self.measurements)

    def figure(self, state: BetaState):
        return beta_figure(state)


def beta_explorer(vaes: dict, x: torch.Tensor, labels: torch.Tensor, measurements: dict | None = None):
    """Display-ready explorer of a beta-VAE sweep ``{beta: vae}`` on test data ``x`` with ``labels`` (an ipywidgets box)."""
    return BetaExplorer(vaes, x, labels, measurements).widget
