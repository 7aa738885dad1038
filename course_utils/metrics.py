"""Sample distances, the Gaussian KL, and noise floors.

A sample distance between model samples and target samples is only meaningful next to its
*noise floor*: the same distance between two fresh samples of the target itself. Report
``distance / floor`` (see :func:`relative_to_noise_floor`): about 1 means "as close as the
truth is to itself", much larger means the model is off.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["mmd", "energy_distance", "sliced_wasserstein", "gaussian_kl", "relative_to_noise_floor"]


def _check_pair(x: torch.Tensor, y: torch.Tensor, fn: str) -> tuple[torch.Tensor, torch.Tensor]:
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn} expects torch tensors of shape [N, D]; {name} is a {type(t).__name__}")
        if t.ndim != 2:
            raise ValueError(f"{fn} expects samples of shape [N, D]; {name} has shape {tuple(t.shape)}")
        if len(t) < 2:
            raise ValueError(f"{fn} needs at least 2 samples in each set; {name} has {len(t)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{fn}: {name} contains NaN or inf values")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{fn}: x and y must have the same dimension D, got {x.shape[1]} and {y.shape[1]}")
    return x.detach().double(), y.detach().double().to(x.device)


def mmd(x: torch.Tensor, y: torch.Tensor, bandwidths: tuple[float, ...] | None = None) -> float:
    """Unbiased estimate of the squared MMD with a sum of RBF kernels ``exp(-|a-b|^2 / (2 h^2))``.

    ``x: [N, D]``, ``y: [M, D]``. ``bandwidths`` default to the median pairwise distance of the
    pooled sample times ``(0.25, 0.5, 1, 2, 4)``. Returns a float (can be slightly negative
    when the distributions are equal, since the estimator is unbiased).
    """
    x, y = _check_pair(x, y, "mmd")
    if bandwidths is None:
        z = torch.cat([x, y])[:2000]
        med = torch.pdist(z).median().clamp_min(1e-12)
        bandwidths = tuple(float(med) * s for s in (0.25, 0.5, 1.0, 2.0, 4.0))
    dxx, dyy, dxy = torch.cdist(x, x).pow(2), torch.cdist(y, y).pow(2), torch.cdist(x, y).pow(2)
    n, m = len(x), len(y)
    total = 0.0
    for h in bandwidths:
        kxx, kyy, kxy = (torch.exp(-d / (2 * h * h)) for d in (dxx, dyy, dxy))
        total += float((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                       + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    return total


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (U-statistics for the within-set terms).

    ``x: [N, D]``, ``y: [M, D]``. Zero exactly when the distributions are equal.
    """
    x, y = _check_pair(x, y, "energy_distance")
    n, m = len(x), len(y)
    exy = torch.cdist(x, y).mean()
    exx = torch.cdist(x, x).sum() / (n * (n - 1))
    eyy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * exy - exx - eyy)


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, n_projections: int = 256, p: int = 2,
                       seed: int = 0) -> float:
    """Sliced Wasserstein-p distance, ``(E_theta W_p^p(theta.x, theta.y))^(1/p)`` over random unit directions.

    ``x: [N, D]``, ``y: [M, D]``; when ``N != M`` the 1-D quantile functions are compared on a
    common grid. Directions come from a fixed ``seed``, so the value is reproducible.
    """
    x, y = _check_pair(x, y, "sliced_wasserstein")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64).to(x.device)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta, dim=0)
    py, _ = torch.sort(y @ theta, dim=0)
    if len(px) != len(py):
        q = (torch.arange(max(len(px), len(py)), dtype=torch.float64, device=x.device) + 0.5) / max(len(px), len(py))
        px = px[(q * len(px)).long()]
        py = py[(q * len(py)).long()]
    return float((px - py).abs().pow(p).mean() ** (1.0 / p))


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor,
                mu_p: torch.Tensor | float = 0.0, logvar_p: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``KL(N(mu_q, diag exp(logvar_q)) || N(mu_p, diag exp(logvar_p)))``, summed over the last dimension.

    Shapes broadcast; the result has the broadcast shape without its last dimension. The default
    ``p`` is the standard normal, as in the VAE's KL term:
    ``0.5 * sum(exp(lq - lp) + (mu_q - mu_p)^2 / exp(lp) - 1 + lp - lq)``.
    """
    mu_q, logvar_q = torch.as_tensor(mu_q), torch.as_tensor(logvar_q)
    mu_p = torch.as_tensor(mu_p, dtype=mu_q.dtype, device=mu_q.device)
    logvar_p = torch.as_tensor(logvar_p, dtype=mu_q.dtype, device=mu_q.device)
    if mu_q.ndim == 0:
        raise ValueError("gaussian_kl expects tensors with a last (event) dimension, e.g. shape [B, D]")
    kl = 0.5 * (torch.exp(logvar_q - logvar_p) + (mu_q - mu_p) ** 2 / torch.exp(logvar_p) - 1 + logvar_p - logvar_q)
    return kl.sum(-1)


def relative_to_noise_floor(distance: Callable[[torch.Tensor, torch.Tensor], float], samples: torch.Tensor,
                            sample_truth: Callable[[int], torch.Tensor]) -> dict[str, float]:
    """A sample distance next to its noise floor.

    ``distance(samples, truth_1)`` is compared with ``distance(truth_2, truth_1)`` where ``truth_1``
    and ``truth_2`` are two fresh draws of ``len(samples)`` points from ``sample_truth(n)``.
    Returns ``{"distance", "floor", "ratio"}``; a ratio near 1 means the model's samples are as
    close to the truth as the truth is to itself.
    """
    n = len(samples)
    ref, fresh = sample_truth(n), sample_truth(n)
    d = float(distance(samples, ref))
    floor = float(distance(fresh, ref))
    ratio = d / floor if floor > 0 else math.inf
    return {"distance": d, "floor": floor, "ratio": ratio}
