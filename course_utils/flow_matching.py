"""Flow matching: probability paths, the conditional flow-matching loss, couplings, a velocity network.

Time runs from noise at ``t = 0`` (``x_0 ~ N(0, I)``) to data at ``t = 1`` (``x_1 ~ p_data``), as in the notes
(``X_t = (1 - t) X_0 + t X_1``). A path is separate from the solver (:func:`course_utils.ode.odeint`):

>>> path = LinearPath()
>>> x_t, u_t = path.sample(x0, x1, t)           # doctest: +SKIP
>>> loss = cfm_loss(model, x0, x1, t, path)      # doctest: +SKIP

The marginal velocity ``u_t(x) = E[u_t(x | x_0, x_1) | x_t = x]`` is what the model learns; for a Gaussian-mixture
target it is known in closed form (:func:`gmm_marginal_velocity`), which lets the notebook check CFM = FM + const.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .ode import CountNFE, ode_log_likelihood, odeint, standard_normal_log_prob

__all__ = ["LinearPath", "cfm_loss", "independent_coupling", "ot_coupling", "gmm_marginal_velocity",
           "VelocityMLP", "train_flow_matching", "fm_sample", "fm_log_prob", "straightness", "LowDensityShare"]


class LinearPath:
    """The straight (conditional optimal-transport) path ``x_t = (1 - (1 - sigma_min) t) x_0 + t x_1`` with the
    conditional velocity ``u_t(x | x_0, x_1) = x_1 - (1 - sigma_min) x_0`` (``sigma_min = 0``: rectified flow)."""

    def __init__(self, sigma_min: float = 0.0):
        if not 0 <= sigma_min < 1:
            raise ValueError(f"sigma_min must be in [0, 1), got {sigma_min}")
        self.sigma_min = float(sigma_min)

    def sample(self, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_t, u_t)`` for noise ``x0`` and data ``x1`` ``[B, D]`` at times ``t`` ``[B]``."""
        if x0.shape != x1.shape:
            raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        tb = t.reshape(-1, *([1] * (x0.ndim - 1)))
        a = 1 - (1 - self.sigma_min) * tb
        return a * x0 + tb * x1, x1 - (1 - self.sigma_min) * x0


def cfm_loss(model: Callable, x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, path: LinearPath | None = None):
    """Conditional flow-matching loss ``mean ||v(t, x_t) - u_t(x_t | x_0, x_1)||^2`` (summed over dimensions)."""
    x_t, u_t = (path or LinearPath()).sample(x0, x1, t)
    return ((model(t, x_t) - u_t) ** 2).flatten(1).sum(1).mean()


# --- couplings ------------------------------------------------------------------------------------------
def independent_coupling(x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs as drawn: ``(x_0, x_1) ~ p_0 ⊗ p_data``."""
    return x0, x1


def ot_coupling(x0: torch.Tensor, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mini-batch optimal-transport coupling: reorder ``x0`` so that the pairs solve the exact OT problem between the
    two batches (squared Euclidean cost, uniform weights; ``ot.emd`` returns a permutation matrix for equal sizes)."""
    import ot

    if len(x0) != len(x1):
        raise ValueError(f"ot_coupling needs batches of equal size, got {len(x0)} and {len(x1)}")
    cost = torch.cdist(x0.flatten(1), x1.flatten(1)).pow(2).double().cpu().numpy()
    w = torch.full((len(x0),), 1.0 / len(x0), dtype=torch.float64).numpy()
    plan = ot.emd(w, w, cost)
    perm = torch.as_tensor(plan.argmax(0), device=x0.device)   # for each x1[j], its partner x0[perm[j]]
    return x0[perm], x1


COUPLINGS = {"independent": independent_coupling, "ot": ot_coupling}


# --- closed-form marginal velocity for a Gaussian mixture -------------------------------------------------------
def gmm_marginal_velocity(x: torch.Tensor, t: torch.Tensor, means: torch.Tensor, std: float,
                          weights: torch.Tensor | None = None) -> torch.Tensor:
    """``u_t(x) = E[x_1 - x_0 | x_t = x]`` on the straight path (``sigma_min = 0``) when ``x_0 ~ N(0, I)`` and
    ``x_1 ~ sum_k w_k N(mu_k, std^2 I)``.

    Given component k, ``x_t ~ N(t mu_k, s_t^2 I)`` with ``s_t^2 = (1 - t)^2 + t^2 std^2``, and by Gaussian
    conditioning ``E[x_1 - x_0 | x_t, k] = mu_k + (t std^2 - (1 - t)) / s_t^2 (x_t - t mu_k)``; average over the
    posterior of k. ``x`` ``[B, D]``, ``t`` ``[B]``; returns ``[B, D]``.
    """
    means = means.to(x)
    k = len(means)
    logw = (torch.full((k,), -math.log(k), dtype=x.dtype, device=x.device) if weights is None
            else weights.to(x).log())
    tb = t.reshape(-1, 1, 1).to(x)                                   # [B, 1, 1]
    s2 = (1 - tb) ** 2 + tb ** 2 * std ** 2                          # [B, 1, 1]
    r = x[:, None, :] - tb * means[None]                             # [B, K, D]
    logits = logw - 0.5 * (r ** 2).sum(-1) / s2[..., 0]              # [B, K] (the common normaliser cancels)
    post = torch.softmax(logits, dim=1)[..., None]                   # [B, K, 1]
    cond = means[None] + (tb * std ** 2 - (1 - tb)) / s2 * r         # [B, K, D]
    return (post * cond).sum(1)


# --- the model -------------------------------------------------------------------------------------------
class VelocityMLP(nn.Module):
    """A velocity field ``v(t, x)`` for ``x`` ``[B, D]``: an MLP on ``x`` and Fourier features of ``t``
    (``t`` a number, a 0-d tensor or ``[B]``). Called with ``torchdiffeq``'s ``(t, x)`` order."""

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, n_freq: int = 4):
        super().__init__()
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError("dim, hidden and depth must be positive")
        self.dim = dim
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(n_freq, dtype=torch.float32))
        layers, d_in = [], dim + 1 + 2 * n_freq
        for _ in range(depth):
            layers += [nn.Linear(d_in, hidden), nn.SiLU()]
            d_in = hidden
        layers.append(nn.Linear(d_in, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"VelocityMLP expects x of shape [B, {self.dim}], got {tuple(x.shape)}")
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.expand(x.shape[0]) if t.ndim == 0 else t.reshape(-1)
        ft = t[:, None] * self.freqs.to(x.dtype)
        return self.net(torch.cat([x, t[:, None], ft.sin(), ft.cos()], 1))


def train_flow_matching(x_train: torch.Tensor, *, coupling: str = "independent", steps: int = 3000, batch: int = 256,
                        lr: float = 1e-2, hidden: int = 128, depth: int = 3, model: nn.Module | None = None,
                        seed: int = 0, progress: bool = True, desc: str | None = None, device=None, seconds: float | None = None):
    """Train a :class:`VelocityMLP` (or ``model``) by conditional flow matching on rows of ``x_train`` ``[N, D]``.

    Each step draws a data batch, a noise batch, pairs them (``coupling``: ``"independent"`` or ``"ot"``) and
    ``t ~ U[0, 1]``. A fixed number of steps (seeded, so reproducible). Returns ``(model, history)``.
    """
    from .training import fit

    if coupling not in COUPLINGS:
        raise ValueError(f"coupling must be one of {list(COUPLINGS)}, got {coupling!r}")
    if x_train.ndim != 2:
        raise ValueError(f"x_train must have shape [N, D], got {tuple(x_train.shape)}")
    torch.manual_seed(seed)
    model = model if model is not None else VelocityMLP(x_train.shape[1], hidden, depth)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(dev)
    data = x_train.to(dev)
    pair, path = COUPLINGS[coupling], LinearPath()
    gen = torch.Generator().manual_seed(seed)

    def loss():
        x1 = data[torch.randint(len(data), (batch,), generator=gen).to(dev)]
        x0 = torch.randn(x1.shape, generator=gen).to(dev)
        x0, x1 = pair(x0, x1)
        t = torch.rand(batch, generator=gen).to(dev)
        return cfm_loss(model, x0, x1, t, path)

    history = fit(loss, model, steps=steps, seconds=seconds, lr=lr, seed=None, progress=progress,
                  desc=desc or f"FM ({coupling})")
    return model, history


@torch.no_grad()
def fm_sample(model: Callable, n: int, dim: int = 2, steps: int = 50, method: str = "heun",
              generator: torch.Generator | None = None, device=None, keep_path: bool = False):
    """Samples by integrating ``dx/dt = v(t, x)`` from ``N(0, I)`` at ``t = 0`` to ``t = 1``; returns
    ``(samples [n, dim], nfe)`` (or the whole path ``[steps + 1, n, dim]`` if ``keep_path``)."""
    x0 = torch.randn(n, dim, generator=generator).to(device or "cpu")
    f = CountNFE(model)
    xs = odeint(f, x0, torch.linspace(0.0, 1.0, steps + 1), method)
    return (xs if keep_path else xs[-1]), f.nfe


def fm_log_prob(model: Callable, x: torch.Tensor, steps: int = 50, method: str = "heun", div: str = "exact") -> torch.Tensor:
    """Exact (up to the solver) ``log p_1(x)`` of a flow-matching model: integrate from data (t = 1) back to noise."""
    return ode_log_likelihood(model, x, t_data=1.0, t_noise=0.0, noise_log_prob=standard_normal_log_prob,
                              steps=steps, method=method, div=div)


def straightness(path: torch.Tensor) -> float:
    """How far a trajectory ``[K + 1, B, D]`` on the uniform grid of ``[0, 1]`` is from a straight line at constant
    speed: ``E_B ∫_0^1 ||dx/dt - (x_1 - x_0)||^2 dt`` (0 for straight paths; Liu et al.'s straightness)."""
    k = path.shape[0] - 1
    vel = (path[1:] - path[:-1]) * k                   # [K, B, D] finite-difference velocity
    chord = path[-1] - path[0]                         # [B, D]
    return float(((vel - chord) ** 2).sum(-1).mean())


class LowDensityShare:
    """The share of samples that land where a toy target's exact density is low: ``log p(x)`` below its own
    ``q``-quantile under ``p`` (estimated once from ``n_ref`` exact draws, seeded). Exact samples score about ``q``;
    samples strung between the modes of a mixture, or between the arcs of ``moons``, score more.

    A precision-like diagnostic next to a sample distance: it is blind to dropped modes and to samples squeezed onto
    the densest part, but its noise is binomial (``sqrt(s (1 - s) / n)``), far below a distance's on a few thousand
    points. ``share = LowDensityShare(toy("moons")); share(x)`` for ``x`` ``[n, 2]``; ``share.threshold`` is the
    log-density cut.
    """

    def __init__(self, target, q: float = 0.01, n_ref: int = 10_000, seed: int = 0):
        if not 0 < q < 1:
            raise ValueError(f"q must lie in (0, 1), got {q}")
        self.target, self.q = target, float(q)
        ref = target.sample((n_ref,), generator=torch.Generator().manual_seed(seed))
        self.threshold = float(torch.quantile(target.log_prob(ref).double(), self.q))

    def __call__(self, x: torch.Tensor) -> float:
        return float((self.target.log_prob(x.detach().cpu()) < self.threshold).double().mean())
