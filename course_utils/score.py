"""Scores, Langevin dynamics, denoising score matching and the NCSN (chapter 06).

Notation (lectures 6.2 and 7 of the notes): the score of a density is ``s(x) = grad_x log p(x)``; data ``x ~ p_data``
smoothed by Gaussian noise, ``x_sigma = x + sigma * eps``, has the density ``q_sigma``.

- :func:`langevin`: the unadjusted Langevin chain ``x <- x + (eta/2) s(x) + sqrt(eta) eps``;
- :func:`annealed_langevin`: Langevin at each noise level of a ladder ``sigma_1 > ... > sigma_L`` in turn, with the
  step ``eta_i = step_size * sigma_i^2 / sigma_L^2``;
- :func:`dsm_loss`: the denoising score-matching loss ``mean_batch ||s(x + sigma eps) + eps / sigma||^2`` (no 1/2, no
  weight); :func:`ncsn_loss`: its sigma^2-weighted average over a noise ladder for a noise-conditioned score model;
- :class:`NoiseConditionalScoreNet`: an MLP ``s(x, sigma)``; :func:`train_ncsn` trains one;
- :func:`mixture_score`: ``log q`` and its score for a mixture of isotropic Gaussians in any dimension. Gaussian noise
  keeps a mixture a mixture (each component's variance grows by sigma^2), so this is the exact score of ``q_sigma`` for
  ``8gaussians`` and for the curves of the toy zoo (whose densities are mixtures over quadrature nodes):
  :func:`toy_mixture` reads ``(means, std, weights)`` off a toy target, :func:`smoothed_score` adds the noise.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from .training import History, fit

__all__ = ["langevin", "annealed_langevin", "geometric_sigmas", "dsm_loss", "ncsn_loss", "NoiseConditionalScoreNet",
           "train_ncsn", "mixture_score", "toy_mixture", "smoothed_score", "tweedie_denoise", "autograd_score"]

_LOG_2PI = math.log(2 * math.pi)


def _check_points(x, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a torch tensor of points [..., D], got {type(x).__name__}")
    if x.ndim == 0 or not torch.is_floating_point(x):
        raise ValueError(f"{who} expects a floating-point tensor of points [..., D], got shape {tuple(x.shape)} "
                         f"and dtype {x.dtype}")


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``; drawn on the generator's device (CPU by default), then moved."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=generator.device).to(x.device)


def _positive(value: float, name: str, who: str) -> float:
    if isinstance(value, torch.Tensor):
        value = float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{who}: {name} must be a positive number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Langevin dynamics
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def langevin(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, step_size: float, n_steps: int,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The unadjusted Langevin chain ``x_{l+1} = x_l + (eta/2) s(x_l) + sqrt(eta) eps_l``, ``eps_l ~ N(0, I)``.

    ``score(x)`` returns a tensor shaped like ``x [N, D]`` (any shape works); ``step_size`` is ``eta``; returns the
    final ``x`` after ``n_steps`` steps (the input is not modified). The noise is tied to the step: its variance is
    ``eta``, the drift's step ``eta / 2``; any other pairing samples another law. On ``N(0, s^2)`` the chain's
    stationary law is ``N(0, s^2 / (1 - eta / (4 s^2)))``, so the bias is O(eta), and it diverges for ``eta >= 4 s^2``.
    """
    _check_points(x, "langevin")
    eta = _positive(step_size, "step_size", "langevin")
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 0:
        raise ValueError(f"langevin: n_steps must be a whole number >= 0, got {n_steps!r}")
    x = x.clone()
    for _ in range(n_steps):
        s = score(x)
        if not isinstance(s, torch.Tensor) or s.shape != x.shape:
            raise ValueError(f"langevin: score(x) must return a tensor shaped like x {tuple(x.shape)}, got "
                             f"{tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}")
        x = x + 0.5 * eta * s + math.sqrt(eta) * _randn_like(x, generator)
    return x


def geometric_sigmas(sigma_max: float, sigma_min: float, n: int) -> torch.Tensor:
    """The NCSN noise ladder ``sigma_1 > ... > sigma_n``, geometric from ``sigma_max`` down to ``sigma_min`` (float64).

    (The notes index the ladder upwards, ``sigma_1 < ... < sigma_T``; the course uses the sampling order, largest first.)
    """
    hi, lo = _positive(sigma_max, "sigma_max", "geometric_sigmas"), _positive(sigma_min, "sigma_min", "geometric_sigmas")
    if not hi > lo or n < 2:
        raise ValueError(f"geometric_sigmas needs sigma_max > sigma_min and n >= 2, got {hi}, {lo}, {n}")
    return torch.logspace(math.log10(hi), math.log10(lo), n, dtype=torch.float64)


@torch.no_grad()
def annealed_langevin(score: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor, sigmas: Sequence[float],
                      n_steps: int, step_size: float, generator: torch.Generator | None = None,
                      denoise: bool = True, return_path: bool = False):
    """Annealed Langevin dynamics (Song & Ermon 2019): :func:`langevin` with ``s(., sigma_i)`` for ``n_steps`` steps at
    each level of the ladder ``sigma_1 > ... > sigma_L``, starting from ``x`` (e.g. ``sigma_1 * randn``).

    The step shrinks with the noise, ``eta_i = step_size * sigma_i^2 / sigma_L^2``, so that the signal-to-noise ratio of a
    step is the same at every level. With ``denoise`` a last Tweedie step ``x + sigma_L^2 s(x, sigma_L)`` removes the
    remaining noise of level ``sigma_L`` (it returns the posterior mean ``E[x_0 | x_{sigma_L}]``).
    ``score(x, sigma)`` takes a float ``sigma``. Returns ``x``, or ``(x, [x after each level])`` with ``return_path``.
    """
    _check_points(x, "annealed_langevin")
    sig = [float(s) for s in sigmas]
    if len(sig) < 1 or any(not math.isfinite(s) or s <= 0 for s in sig) or any(a <= b for a, b in zip(sig, sig[1:])):
        raise ValueError(f"annealed_langevin: sigmas must be positive and strictly decreasing (largest first), got {sig}")
    _positive(step_size, "step_size", "annealed_langevin")
    path = []
    for s in sig:
        x = langevin(lambda y, s=s: score(y, s), x, step_size * s**2 / sig[-1] ** 2, n_steps, generator)
        path.append(x)
    if denoise:
        x = tweedie_denoise(x, score(x, sig[-1]), sig[-1])
    return (x, path) if return_path else x


def tweedie_denoise(x_noisy: torch.Tensor, score: torch.Tensor, sigma) -> torch.Tensor:
    """Tweedie's formula ``E[x | x_sigma] = x_sigma + sigma^2 grad log q_sigma(x_sigma)`` (``score`` is that gradient)."""
    return x_noisy + torch.as_tensor(sigma, dtype=x_noisy.dtype, device=x_noisy.device) ** 2 * score


# ---------------------------------------------------------------------------------------------
# Denoising score matching
# ---------------------------------------------------------------------------------------------
def _per_sample(sigma, x: torch.Tensor, who: str) -> torch.Tensor:
    """``sigma`` (a number, or a tensor [B]) as a tensor broadcastable against ``x [B, ...]``."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 1 and len(s) == len(x):
        s = s.reshape(-1, *([1] * (x.ndim - 1)))
    elif s.ndim != 0:
        raise ValueError(f"{who}: sigma must be a number or a tensor [B] with one value per sample, got shape {tuple(s.shape)}")
    if not torch.isfinite(s).all() or (s <= 0).any():
        raise ValueError(f"{who}: sigma must be positive")
    return s


def dsm_loss(score: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, sigma, generator: torch.Generator | None = None,
             reduction: str = "mean") -> torch.Tensor:
    """Denoising score matching: ``mean_batch || s(x + sigma eps) + eps / sigma ||^2``, summed over dimensions.

    The target is the score of the noising kernel, ``grad log q(x_sigma | x) = -(x_sigma - x) / sigma^2 = -eps / sigma``
    (minus sign, sigma to the first power). No 1/2 and no sigma^2 weight: the caller applies the NCSN weighting
    (:func:`ncsn_loss`). ``x [B, ...]``; ``sigma`` a number or a tensor ``[B]``; ``reduction="none"`` returns the ``[B]``
    per-sample losses. Its minimiser over all functions is the score of ``q_sigma`` (the DSM theorem).
    """
    _check_points(x, "dsm_loss")
    if reduction not in ("mean", "none"):
        raise ValueError(f"dsm_loss: reduction must be 'mean' or 'none', got {reduction!r}")
    s = _per_sample(sigma, x, "dsm_loss")
    eps = _randn_like(x, generator)
    out = score(x + s * eps)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise ValueError(f"dsm_loss: score(x) must return a tensor shaped like x {tuple(x.shape)}, got "
                         f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
    per = (out + eps / s).pow(2).flatten(1).sum(1)       # [B]
    return per.mean() if reduction == "mean" else per


def ncsn_loss(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The NCSN objective: each sample gets a level ``i ~ U{1..L}`` and the loss ``sigma_i^2 * ||s(x_i, sigma_i) + eps/sigma_i||^2``
    (:func:`dsm_loss` per sample), averaged over the batch. The ``sigma^2`` weight makes every level's loss O(1), since the
    optimal ``||s||`` scales as ``1/sigma``. ``model(x [B, D], sigma [B]) -> [B, D]``.
    """
    _check_points(x, "ncsn_loss")
    sigmas = torch.as_tensor(sigmas, dtype=x.dtype, device=x.device)
    idx = torch.randint(len(sigmas), (len(x),), generator=generator,
                        device=generator.device if generator is not None else "cpu").to(x.device)
    sig = sigmas[idx]                                                                 # [B]
    per = dsm_loss(lambda xt: model(xt, sig), x, sig, generator=generator, reduction="none")
    return (sig**2 * per).mean()


class NoiseConditionalScoreNet(nn.Module):
    """A noise-conditioned score model ``s_theta(x, sigma) = f_theta(x / sqrt(data_var + sigma^2), log sigma) / sigma``.

    ``f`` is an MLP (SiLU) on ``D + 1`` inputs. Dividing by sigma gives the output the right scale at every level (the
    true score of ``q_sigma`` has size ~ 1/sigma where data are sparse); scaling the input keeps it O(1) at every level.
    ``forward(x [B, D], sigma)`` with ``sigma`` a number or a tensor ``[B]``; returns ``[B, D]``.
    """

    def __init__(self, dim: int = 2, hidden: int = 128, depth: int = 3, data_var: float = 1.0):
        super().__init__()
        layers, width = [], dim + 1
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)
        self.dim, self.data_var = dim, float(data_var)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"NoiseConditionalScoreNet expects x of shape [B, {self.dim}], got {tuple(x.shape)}")
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.expand(len(x)) if s.ndim == 0 else s.reshape(len(x))
        s = s[:, None]                                                                    # [B, 1]
        h = torch.cat([x / torch.sqrt(self.data_var + s**2), torch.log(s)], dim=1)       # [B, D + 1]
        return self.net(h) / s


def train_ncsn(x_train: torch.Tensor, sigmas: torch.Tensor, *, steps: int = 2000, batch_size: int = 512, lr: float = 5e-3,
               hidden: int = 128, depth: int = 3, seed: int = 0, device=None, progress: bool = True,
               desc: str = "NCSN") -> tuple[NoiseConditionalScoreNet, History]:
    """Train a :class:`NoiseConditionalScoreNet` on ``x_train [N, D]`` with :func:`ncsn_loss` over ``sigmas`` for ``steps``
    Adam steps (cosine decay, seeded). Returns ``(model, history)``; the model is on ``device`` (default: ``x_train``'s)."""
    from . import seed_everything

    _check_points(x_train, "train_ncsn")
    if x_train.ndim != 2:
        raise ValueError(f"train_ncsn expects training points [N, D], got shape {tuple(x_train.shape)}")
    dev = x_train.device if device is None else torch.device(device)
    seed_everything(seed)
    model = NoiseConditionalScoreNet(x_train.shape[1], hidden, depth, data_var=float(x_train.var(0).mean())).to(dev)
    x_train = x_train.to(dev)
    sig = torch.as_tensor(sigmas, dtype=x_train.dtype, device=dev)

    def loss():
        return ncsn_loss(model, x_train[torch.randint(len(x_train), (batch_size,), device=dev)], sig)

    history = fit(loss, model, steps=steps, lr=lr, seed=None, progress=progress, desc=desc)
    return model, history


# ---------------------------------------------------------------------------------------------
# Exact scores of Gaussian mixtures (and of Gaussian-smoothed toy targets)
# ---------------------------------------------------------------------------------------------
def mixture_score(x: torch.Tensor, means: torch.Tensor, stds, weights=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``log q(x)`` and its score for ``q = sum_k w_k N(mu_k, s_k^2 I)`` in ``D`` dimensions.

    ``x [..., D]``; ``means [K, D]``; ``stds`` one number (shared) or ``[K]``; ``weights [K]`` positive, summing to 1
    (default: equal). Returns ``(log_q [...], score [..., D])`` with
    ``score(x) = sum_k r_k(x) (mu_k - x) / s_k^2``, ``r_k = w_k N(x; mu_k, s_k^2) / q(x)`` (responsibilities, by logsumexp).
    Computed in the dtype of ``x``; use float64 far from the data.

    Gaussian noise of std sigma turns this mixture into the same one with ``s_k^2 + sigma^2``; the diffusion chain's
    ``q(x_t | x_0) = N(sqrt(abar) x_0, (1 - abar) I)`` turns it into means ``sqrt(abar) mu_k`` and variances
    ``abar s_k^2 + 1 - abar``: both are again this function.
    """
    _check_points(x, "mixture_score")
    means = torch.as_tensor(means, dtype=x.dtype, device=x.device)
    if means.ndim != 2 or means.shape[1] != x.shape[-1]:
        raise ValueError(f"mixture_score: means must be [K, D] with D = {x.shape[-1]} (the last dimension of x), "
                         f"got {tuple(means.shape)}")
    K, D = means.shape
    stds = torch.as_tensor(stds, dtype=x.dtype, device=x.device)
    if stds.ndim == 0:
        stds = stds.expand(K)
    if stds.shape != (K,) or not torch.isfinite(stds).all() or (stds <= 0).any():
        raise ValueError(f"mixture_score: stds must be one positive number or [K] = [{K}] positive numbers")
    if weights is None:
        log_w = torch.full((K,), -math.log(K), dtype=x.dtype, device=x.device)
    else:
        w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
        if w.shape != (K,) or (w <= 0).any() or abs(float(w.sum()) - 1) > 1e-5:
            raise ValueError(f"mixture_score: weights must be [K] = [{K}] positive numbers that sum to 1")
        log_w = w.log()
    diff = means - x.unsqueeze(-2)                                                        # [..., K, D]
    var = stds**2
    log_comp = log_w - 0.5 * diff.pow(2).sum(-1) / var - 0.5 * D * (_LOG_2PI + var.log())   # [..., K]
    log_q = torch.logsumexp(log_comp, dim=-1)
    resp = torch.softmax(log_comp, dim=-1)                                                # [..., K]
    score = (resp.unsqueeze(-1) * diff / var.unsqueeze(-1)).sum(-2)
    return log_q, score


def toy_mixture(dist) -> tuple[torch.Tensor, float, torch.Tensor]:
    """``(means [K, 2], std, weights [K])`` of a toy target that is a Gaussian mixture (float64).

    ``8gaussians`` (a :class:`~course_utils.data.GaussianMixture2D`) is one exactly. A curve target
    (:class:`~course_utils.data.CurveMixture`: ``moons``, ``circles``, ...) is the mixture over its quadrature nodes that
    its ``log_prob`` computes. The ``checkerboard`` is not a mixture of Gaussians: ValueError.
    """
    from .data import CurveMixture, GaussianMixture2D

    if isinstance(dist, GaussianMixture2D):
        K = len(dist.centers)
        return dist.centers.clone(), dist.std, torch.full((K,), 1.0 / K, dtype=torch.float64)
    if isinstance(dist, CurveMixture):
        means = torch.cat(dist._nodes)
        weights = torch.cat([torch.full((len(n),), float(w) / len(n), dtype=torch.float64)
                             for w, n in zip(dist.weights, dist._nodes)])
        return means, dist.noise, weights
    raise ValueError(f"toy_mixture: {dist!r} is not a Gaussian mixture (8gaussians and the curve targets are)")


def smoothed_score(dist, sigma: float = 0.0) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The exact ``x -> (log q_sigma(x), grad log q_sigma(x))`` of a toy mixture target smoothed by ``N(0, sigma^2 I)``
    (``sigma = 0``: the target itself). Evaluated in float64, returned in the dtype of ``x``."""
    means, std, weights = toy_mixture(dist)
    if sigma < 0:
        raise ValueError(f"smoothed_score: sigma must be >= 0, got {sigma}")
    total = math.sqrt(std**2 + sigma**2)

    def fn(x: torch.Tensor):
        _check_points(x, "smoothed_score")
        flat = x.detach().reshape(-1, x.shape[-1]).double()
        parts = [mixture_score(c, means.to(x.device), total, weights.to(x.device)) for c in flat.split(4096)]
        lq = torch.cat([p[0] for p in parts]).reshape(x.shape[:-1]).to(x.dtype)
        sc = torch.cat([p[1] for p in parts]).reshape(x.shape).to(x.dtype)
        return lq, sc

    return fn


def autograd_score(log_prob: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> grad_x log_prob(x)`` by autograd (``log_prob`` must be differentiable, ``[..., D] -> [...]``)."""

    def score(x: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(log_prob(xg).sum(), xg)
        return g

    return score
