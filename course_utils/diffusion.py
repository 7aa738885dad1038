"""Denoising diffusion probabilistic models (chapter 07): schedules, the forward chain, the posterior, the ELBO,
ancestral sampling and guidance.

Notation of the notes (lecture 8): ``beta_t``, ``alpha_t = 1 - beta_t``, ``alpha_bar_t = prod_{s<=t} alpha_s``, with
``t = 0..T``; ``beta_0 = 0`` and ``alpha_bar_0 = 1`` so that index ``t`` of every tensor *is* the ``t`` of the notes
(``t = 1`` is the first noising step; libraries that index from 0 store ``alpha_bar_{t+1}`` at ``[t]``).

- :class:`Schedule`: ``Schedule.linear(T, beta_1=1e-4, beta_T=0.02)``, ``Schedule.cosine(T, s=0.008)`` (Nichol &
  Dhariwal, each beta clipped at 0.999); tensors ``betas``, ``alphas``, ``alpha_bars``, ``beta_tildes`` of length
  ``T + 1`` (float64; the methods cast to the data's dtype and device). Methods, with ``t`` an int or a batch ``[B]``
  of ints and data of any shape ``[B, ...]`` (broadcast on ``x.ndim``):
  ``q_sample(x0, t, eps)`` = ``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``;
  ``q_posterior(x0, xt, t) -> (mean, variance)`` of ``q(x_{t-1} | x_t, x_0)``, variance ``beta_tilde_t`` with the
  shape of the mean; ``predict_x0(xt, t, eps)``; ``p_mean(xt, t, eps)`` (the epsilon-form of the reverse mean);
  ``eps_to_score(eps, t)``, ``score_to_eps(score, t)``; ``prior_kl(x0)`` = ``KL(q(x_T | x_0) || N(0, I))``.
- :class:`EpsMLP`: an epsilon-network ``model(x [B, ...], t [B] int, y [B] int or None) -> eps [B, ...]`` with a
  sinusoidal time embedding (:func:`timestep_embedding`, frequencies ``1 ... 1/max_period``) and, when
  ``n_classes`` is given, a label embedding with a null label ``n_classes`` (classifier-free guidance).
- :func:`loss_simple` (``L_simple``, with label dropout), :func:`elbo_terms` / :func:`elbo` (the true variational
  bound: ``L_T + sum_{t>=2} L_{t-1} + L_0``, each per data point in nats; ``L_0`` a Gaussian density or a
  discretised Gaussian decoder on ``levels`` grey levels in ``[-1, 1]``), :func:`step_kl`.
- :func:`ancestral_sample`: ``x_T ~ N(0, I)``, then ``x_{t-1} = mu_theta(x_t, t) + sigma_t z`` with
  ``sigma_t^2 = beta_tilde_t`` (default) or ``beta_t``; no noise at the last step.
- :func:`train_ddpm` (chapter 08 reuses it)::

      model, history = train_ddpm(x, schedule, *, labels=None, p_uncond=0.1, model=None, hidden=128, depth=3,
                                  emb_dim=32, steps=2000, batch=256, lr=2e-3, seed=0, progress=True, desc=None,
                                  seconds=None, t_sampling="uniform")

  trains an :class:`EpsMLP` (or ``model``) on the data ``x [N, ...]`` with ``L_simple`` and Adam (cosine decay,
  :func:`course_utils.training.fit`) for a fixed number of steps; with ``labels [N]`` it is class-conditional with
  label dropout ``p_uncond`` (the null label gives the unconditional model). The model lives on ``x``'s device.
  Returns ``(model, history)``; sample with ``ancestral_sample(lambda x, t: model(x, t), schedule, shape)``.
- Guidance: :func:`cfg_eps` (``eps = (1 - w) eps(x, null) + w eps(x, y)``: ``w = 0`` is the unconditional model,
  ``w = 1`` the conditional one, ``w > 1`` guides), :func:`classifier_guided_eps` (``eps - w sqrt(1 - abar_t)
  grad log p(y | x_t)``, i.e. the score ``s + w grad log p(y | x_t)``), :class:`NoisyClassifier`,
  :func:`train_noisy_classifier`.
- :func:`mixture_eps`: the exact epsilon of a Gaussian-mixture data distribution (its ``q_t`` is again a mixture),
  i.e. the exact denoiser, so a sampler can be tested without a network.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from . import seed_everything
from .data import bits_per_dim  # noqa: F401 - re-exported: lecture 07 converts its ELBO with it
from .metrics import gaussian_kl
from .training import fit

__all__ = ["Schedule", "timestep_embedding", "EpsMLP", "loss_simple", "step_kl", "elbo_terms", "elbo",
           "ancestral_sample", "train_ddpm", "cfg_eps", "classifier_guided_eps", "NoisyClassifier",
           "train_noisy_classifier", "mixture_eps", "bits_per_dim", "eps_weight"]

_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------
# Schedules and the forward chain
# ---------------------------------------------------------------------------------------------
class Schedule:
    """A noise schedule ``beta_1..beta_T`` and everything the forward chain and its posterior need.

    Build with :meth:`linear` or :meth:`cosine` (or ``Schedule(betas)`` from a tensor of length ``T + 1`` whose
    entry 0 is 0). Tensors (float64, indexed by ``t = 0..T`` as in the notes): ``betas`` (``beta_0 = 0``),
    ``alphas = 1 - betas``, ``alpha_bars = cumprod(alphas)`` (``alpha_bar_0 = 1``), ``beta_tildes``
    (``beta_tilde_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t``, ``beta_tilde_0 = 0``).
    """

    def __init__(self, betas: torch.Tensor, name: str = "custom"):
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or len(betas) < 2:
            raise ValueError(f"betas must be a 1-D tensor of length T + 1 >= 2 (entry 0 is beta_0 = 0), got shape "
                             f"{tuple(betas.shape)}")
        if betas[0] != 0:
            raise ValueError(f"betas[0] must be 0 (index t = 0 is the data, t = 1 the first noising step), got {betas[0].item()}")
        if not ((betas[1:] > 0) & (betas[1:] < 1)).all():
            raise ValueError("every beta_t for t = 1..T must lie strictly between 0 and 1")
        self.name = name
        self.T = len(betas) - 1
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])
        self.beta_tildes = torch.zeros_like(betas)
        self.beta_tildes[1:] = (1 - abar_prev[1:]) / (1 - self.alpha_bars[1:]) * betas[1:]

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def linear(cls, T: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> "Schedule":
        """``beta_t`` evenly spaced from ``beta_1`` (t = 1) to ``beta_T`` (t = T), as in Ho et al. (2020)."""
        T = _check_T(T)
        if not 0 < beta_1 <= beta_T < 1:
            raise ValueError(f"need 0 < beta_1 <= beta_T < 1, got beta_1 = {beta_1}, beta_T = {beta_T}")
        betas = torch.zeros(T + 1, dtype=torch.float64)
        betas[1:] = torch.linspace(beta_1, beta_T, T, dtype=torch.float64)
        return cls(betas, name=f"linear(T={T})")

    @classmethod
    def cosine(cls, T: int, s: float = 0.008) -> "Schedule":
        """Nichol & Dhariwal (2021): ``abar_t = f(t) / f(0)`` with ``f(t) = cos((t/T + s) / (1 + s) * pi/2)^2``,
        ``beta_t = 1 - abar_t / abar_{t-1}`` clipped at 0.999 (so ``alpha_bars`` is the cumulative product of the
        clipped betas; only the last steps are clipped)."""
        T = _check_T(T)
        if s < 0:
            raise ValueError(f"the offset s must be >= 0, got {s}")
        t = torch.arange(T + 1, dtype=torch.float64)
        f = torch.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
        abar = f / f[0]
        betas = torch.zeros(T + 1, dtype=torch.float64)
        betas[1:] = (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
        return cls(betas, name=f"cosine(T={T})")

    def __repr__(self) -> str:
        return f"Schedule.{self.name}"

    # -- indexing -------------------------------------------------------------------------------
    def _t(self, t, who: str, low: int = 0) -> torch.Tensor:
        """``t`` as a long tensor (0-d or 1-d) after checking its range."""
        if isinstance(t, bool):
            raise TypeError(f"{who}: t must be an int or a tensor of ints, got a bool")
        if isinstance(t, torch.Tensor):
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
                raise TypeError(f"{who}: t must hold integer time steps (t = {low}..{self.T}), got dtype {t.dtype}")
            if t.ndim > 1:
                raise ValueError(f"{who}: t must be an int or a 1-D batch [B] of ints, got shape {tuple(t.shape)}")
            tt = t.long()
        else:
            try:
                tt = torch.tensor(int(t)) if float(t) == int(t) else None
            except (TypeError, ValueError):
                tt = None
            if tt is None:
                raise TypeError(f"{who}: t must be an int or a tensor of ints, got {t!r}")
        if tt.numel() and (tt.min() < low or tt.max() > self.T):
            raise ValueError(f"{who}: t must lie in {low}..{self.T} for this schedule, got values "
                             f"{tt.min().item()}..{tt.max().item()}")
        return tt

    def _at(self, values: torch.Tensor, t, x: torch.Tensor, who: str, low: int = 0) -> torch.Tensor:
        """``values[t]`` shaped to broadcast against ``x [B, ...]`` (on ``x``'s device and dtype)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{who} expects a torch tensor, got {type(x).__name__}")
        tt = self._t(t, who, low)
        v = values[tt.cpu()]
        if tt.ndim == 1:
            if x.ndim == 0 or x.shape[0] != len(tt):
                raise ValueError(f"{who}: a batch of {len(tt)} time steps needs data of shape [{len(tt)}, ...], "
                                 f"got {tuple(x.shape)}")
            v = v.reshape(len(tt), *([1] * (x.ndim - 1)))
        dtype = x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()
        return v.to(device=x.device, dtype=dtype)

    def snr(self, t=None) -> torch.Tensor:
        """Signal-to-noise ratio ``abar_t / (1 - abar_t)`` (all t = 1..T when ``t`` is None)."""
        ab = self.alpha_bars[1:] if t is None else self.alpha_bars[self._t(t, "snr", 1)]
        return ab / (1 - ab)

    # -- the forward chain ----------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """A sample of ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``."""
        _same_shape(x0, eps, "q_sample", "x0", "eps")
        ab = self._at(self.alpha_bars, t, x0, "q_sample")
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def q_step(self, x_prev: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """One step of the chain, ``x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps`` (t >= 1)."""
        _same_shape(x_prev, eps, "q_step", "x_prev", "eps")
        b = self._at(self.betas, t, x_prev, "q_step", low=1)
        return (1 - b).sqrt() * x_prev + b.sqrt() * eps

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``q(x_{t-1} | x_t, x_0) = N(mean, variance I)`` for t >= 1, with
        ``mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) xt`` and
        ``variance = beta_tilde_t`` (returned with the shape of the mean; 0 at t = 1, where x_0 is known)."""
        _same_shape(x0, xt, "q_posterior", "x0", "xt")
        ab = self._at(self.alpha_bars, t, xt, "q_posterior", low=1)
        ab_prev = self._at(self.alpha_bars, self._t(t, "q_posterior", 1) - 1, xt, "q_posterior")
        a = self._at(self.alphas, t, xt, "q_posterior", low=1)
        b = self._at(self.betas, t, xt, "q_posterior", low=1)
        mean = ab_prev.sqrt() * b / (1 - ab) * x0 + a.sqrt() * (1 - ab_prev) / (1 - ab) * xt
        var = self._at(self.beta_tildes, t, xt, "q_posterior", low=1).expand_as(mean)
        return mean, var

    def predict_x0(self, xt: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """Invert ``q_sample``: ``x0 = (xt - sqrt(1 - abar_t) eps) / sqrt(abar_t)``."""
        _same_shape(xt, eps, "predict_x0", "xt", "eps")
        ab = self._at(self.alpha_bars, t, xt, "predict_x0")
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def p_mean(self, xt: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
        """The epsilon-form of the posterior mean, ``mu(x_t, eps) = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)``
        (equal to ``q_posterior(predict_x0(xt, t, eps), xt, t)[0]``); with ``eps = eps_theta`` it is the reverse mean."""
        _same_shape(xt, eps, "p_mean", "xt", "eps")
        ab = self._at(self.alpha_bars, t, xt, "p_mean", low=1)
        a = self._at(self.alphas, t, xt, "p_mean", low=1)
        b = self._at(self.betas, t, xt, "p_mean", low=1)
        return (xt - b / (1 - ab).sqrt() * eps) / a.sqrt()

    def reverse_variance(self, t, x: torch.Tensor, variance: str = "beta_tilde") -> torch.Tensor:
        """``sigma_t^2`` of the reverse kernel, broadcastable against ``x``: ``"beta_tilde"`` (the posterior's
        variance, right when x_0 is a point) or ``"beta"`` (right when x_0 ~ N(0, I)); Ho et al. use either."""
        if variance not in ("beta_tilde", "beta"):
            raise ValueError(f"variance must be 'beta_tilde' or 'beta', got {variance!r}")
        return self._at(self.beta_tildes if variance == "beta_tilde" else self.betas, t, x, "reverse_variance", low=1)

    def eps_to_score(self, eps: torch.Tensor, t) -> torch.Tensor:
        """``score = -eps / sqrt(1 - abar_t)`` (t >= 1): the epsilon-network as a score model (lecture 9.1)."""
        return -eps / (1 - self._at(self.alpha_bars, t, eps, "eps_to_score", low=1)).sqrt()

    def score_to_eps(self, score: torch.Tensor, t) -> torch.Tensor:
        """``eps = -sqrt(1 - abar_t) score`` (t >= 1)."""
        return -(1 - self._at(self.alpha_bars, t, score, "score_to_eps", low=1)).sqrt() * score

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """``L_T = KL(q(x_T | x_0) || N(0, I))`` in nats, per data point ``[B]`` (summed over the other dimensions)."""
        if not isinstance(x0, torch.Tensor) or x0.ndim < 1:
            raise ValueError("prior_kl expects data of shape [B, ...]")
        abT = float(self.alpha_bars[-1])
        mu = math.sqrt(abT) * x0.reshape(len(x0), -1).double()
        return gaussian_kl(mu, torch.full_like(mu, math.log(1 - abT))).to(x0.dtype)


def _check_T(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int (the number of noising steps), got {T!r}")
    return T


def _same_shape(a, b, who: str, na: str, nb: str) -> None:
    for name, v in ((na, a), (nb, b)):
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a torch tensor, got {type(v).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"{who}: {na} and {nb} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


# ---------------------------------------------------------------------------------------------
# The epsilon-network
# ---------------------------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[B] -> [B, dim]``: ``(cos(t w_k), sin(t w_k))`` with frequencies
    ``w_k = max_period^(-k / (dim/2))``, i.e. from 1 down to about ``1 / max_period`` (a minus sign in the exponent;
    without it the frequencies run up to ``max_period`` and the embedding of neighbouring steps is noise)."""
    if dim % 2:
        raise ValueError(f"the embedding dimension must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float().reshape(-1, 1) * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class EpsMLP(nn.Module):
    """``eps_theta(x_t, t[, y])``: a residual MLP on the flattened data with the time embedding (and a label
    embedding) added in every block. ``data_shape`` is the shape of one data point (``(2,)``, ``(1, 8, 8)``).

    With ``n_classes`` it takes labels ``y [B]`` in ``0..n_classes``, where ``n_classes`` is the null label
    ("no condition"): ``model(x, t)`` without ``y`` uses the null label, i.e. the unconditional model.
    """

    def __init__(self, data_shape: Sequence[int] | int, hidden: int = 128, depth: int = 3, emb_dim: int = 32,
                 n_classes: int | None = None, max_period: float = 10_000.0):
        super().__init__()
        self.data_shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
        self.dim = math.prod(self.data_shape)
        self.emb_dim, self.max_period, self.n_classes = emb_dim, max_period, n_classes
        self.time = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label = nn.Embedding(n_classes + 1, hidden) if n_classes else None
        self.inp = nn.Linear(self.dim, hidden)
        self.blocks = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.out = nn.Linear(hidden, self.dim)

    @property
    def null_label(self) -> int:
        if not self.n_classes:
            raise ValueError("this EpsMLP is unconditional (n_classes=None): it has no null label")
        return self.n_classes

    def forward(self, x: torch.Tensor, t, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[1:] != self.data_shape:
            raise ValueError(f"EpsMLP expects data of shape [B, {', '.join(map(str, self.data_shape))}], got {tuple(x.shape)}")
        B = len(x)
        t = torch.as_tensor(t, device=x.device).expand(B) if not isinstance(t, torch.Tensor) or t.ndim == 0 \
            else t.to(x.device)
        c = self.time(timestep_embedding(t, self.emb_dim, self.max_period))          # [B, H]
        if self.label is not None:
            if y is None:
                y = torch.full((B,), self.n_classes, dtype=torch.long, device=x.device)
            c = c + self.label(torch.as_tensor(y, device=x.device).long().expand(B))
        elif y is not None:
            raise ValueError("this EpsMLP is unconditional (n_classes=None) but got labels y")
        h = self.inp(x.reshape(B, -1))                                                  # [B, H]
        for block in self.blocks:
            h = h + block(F.silu(h + c))
        return self.out(F.silu(h)).reshape(x.shape)                                     # [B, ...]


# ---------------------------------------------------------------------------------------------
# Losses: L_simple and the true ELBO
# ---------------------------------------------------------------------------------------------
def _rand_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def loss_simple(model: nn.Module, schedule: Schedule, x0: torch.Tensor, y: torch.Tensor | None = None,
                p_uncond: float = 0.0, generator: torch.Generator | None = None,
                t_sampling: str = "uniform") -> torch.Tensor:
    """``L_simple = E_{t ~ U{1..T}, eps} |eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t)|^2``, averaged
    over the batch and the dimensions. With labels ``y``, each label is replaced by the null label with probability
    ``p_uncond`` (label dropout: one network learns the conditional and the unconditional model).

    ``t_sampling="elbo"`` draws ``t`` in ``2..T`` with probability proportional to the ELBO's weight ``lambda_t``
    (:func:`eps_weight`) instead of uniformly: the loss is then, up to the constant ``sum_t lambda_t``, an unbiased
    (importance-sampled) estimate of the ELBO's ``sum_t L_{t-1}`` per dimension, not of ``L_simple``."""
    if not 0 <= p_uncond <= 1:
        raise ValueError(f"p_uncond is a probability, got {p_uncond}")
    B = len(x0)
    if t_sampling == "uniform":
        t = torch.randint(1, schedule.T + 1, (B,), generator=generator).to(x0.device)
    elif t_sampling == "elbo":
        if schedule.T < 2:
            raise ValueError("t_sampling='elbo' needs T >= 2 (the terms L_{t-1} start at t = 2)")
        w = eps_weight(schedule, torch.arange(2, schedule.T + 1))
        t = (2 + torch.multinomial(w, B, replacement=True, generator=generator)).to(x0.device)
    else:
        raise ValueError(f"t_sampling must be 'uniform' or 'elbo', got {t_sampling!r}")
    eps = _rand_like(x0, generator)
    xt = schedule.q_sample(x0, t, eps)
    if y is None:
        pred = model(xt, t)
    else:
        drop = torch.rand(B, generator=generator).to(x0.device) < p_uncond       # True = drop the label
        y = torch.where(drop, torch.full_like(y, model.null_label), y)
        pred = model(xt, t, y)
    return (pred - eps).pow(2).mean()


def eps_weight(schedule: Schedule, t, variance: str = "beta_tilde") -> torch.Tensor:
    """``lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t))`` (t >= 2): ``L_{t-1} = lambda_t |eps - eps_theta|^2``
    when the reverse variance is ``sigma_t^2 = beta_tilde_t`` (with ``beta_t`` the KL has one more, constant, term)."""
    tt = schedule._t(t, "eps_weight", 2)
    var = (schedule.beta_tildes if variance == "beta_tilde" else schedule.betas)[tt]
    return schedule.betas[tt] ** 2 / (2 * var * schedule.alphas[tt] * (1 - schedule.alpha_bars[tt]))


def step_kl(schedule: Schedule, x0: torch.Tensor, xt: torch.Tensor, t, eps_pred: torch.Tensor,
            variance: str = "beta_tilde") -> torch.Tensor:
    """``L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))`` in nats per data point ``[B]`` (t >= 2), with
    ``p_theta = N(p_mean(x_t, t, eps_pred), sigma_t^2 I)``; a KL of two Gaussians in closed form."""
    mean_q, var_q = schedule.q_posterior(x0, xt, t)
    mean_p = schedule.p_mean(xt, t, eps_pred)
    schedule._t(t, "step_kl", 2)
    var_p = schedule.reverse_variance(t, xt, variance).expand_as(mean_p)
    B = len(x0)
    return gaussian_kl(mean_q.reshape(B, -1), var_q.reshape(B, -1).log(), mean_p.reshape(B, -1),
                       var_p.reshape(B, -1).log())


def _decoder_nll(x0: torch.Tensor, mean: torch.Tensor, std: float, levels: int | None) -> torch.Tensor:
    """``-log p(x_0 | x_1)`` per data point: a Gaussian density (``levels=None``) or a Gaussian discretised on
    ``levels`` evenly spaced values in ``[-1, 1]`` (bins end at the midpoints; the outer bins reach to +-infinity)."""
    B = len(x0)
    x, m = x0.reshape(B, -1).double(), mean.reshape(B, -1).double()
    if levels is None:
        return (0.5 * ((x - m) / std) ** 2 + math.log(std) + 0.5 * _LOG_2PI).sum(1)
    if not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2 (the number of grey levels in [-1, 1]), got {levels!r}")
    grid = torch.linspace(-1, 1, levels, dtype=torch.float64, device=x.device)
    if (torch.cdist(x.reshape(-1, 1), grid.reshape(-1, 1)).min(1).values > 1e-4).any():
        raise ValueError(f"the data must lie on {levels} levels in [-1, 1] for a discrete decoder")
    half = 1.0 / (levels - 1)
    upper = (x + half - m) / std
    lower = (x - half - m) / std
    log_cdf_up = torch.special.log_ndtr(upper)
    log_sf_low = torch.special.log_ndtr(-lower)
    mid = torch.log((torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp_min(1e-300))
    lp = torch.where(x < -1 + 1e-4, log_cdf_up, torch.where(x > 1 - 1e-4, log_sf_low, mid))
    return -lp.sum(1)


def elbo_terms(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: Schedule, x0: torch.Tensor, *,
               levels: int | None = None, variance: str = "beta_tilde",
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The terms of ``-ELBO = L_T + sum_{t=2..T} L_{t-1} + L_0`` per data point, in nats (one Monte Carlo draw of
    ``x_t`` per step and data point; all T steps evaluated, no subsampling of t).

    ``eps_fn(x_t [B, ...], t [B]) -> eps [B, ...]``. ``L_0 = -log p(x_0 | x_1)`` with ``p(x_0 | x_1)`` a Gaussian of
    mean ``mu_theta(x_1, 1)`` and variance ``beta_1`` (``beta_tilde_1 = 0``), discretised on ``levels`` values in
    ``[-1, 1]`` if given (then the bound is on a probability, comparable with a discrete model's).
    Returns ``{"prior" [B], "diffusion" [B], "decoder" [B], "per_step" [T + 1] (mean of L_{t-1} over the batch at
    index t; 0 at t = 0, 1), "nelbo" [B]}``.
    """
    if not isinstance(x0, torch.Tensor) or x0.ndim < 2:
        raise ValueError("elbo_terms expects data of shape [B, ...]")
    B = len(x0)
    prior = schedule.prior_kl(x0).double()
    diffusion = torch.zeros(B, dtype=torch.float64, device=x0.device)
    per_step = torch.zeros(schedule.T + 1, dtype=torch.float64)
    with torch.no_grad():
        for t in range(2, schedule.T + 1):
            tb = torch.full((B,), t, dtype=torch.long, device=x0.device)
            eps = _rand_like(x0, generator)
            xt = schedule.q_sample(x0, tb, eps)
            kl = step_kl(schedule, x0.double(), xt.double(), t, eps_fn(xt, tb).double(), variance)
            diffusion += kl
            per_step[t] = kl.mean().cpu()
        t1 = torch.ones(B, dtype=torch.long, device=x0.device)
        x1 = schedule.q_sample(x0, t1, _rand_like(x0, generator))
        mean1 = schedule.p_mean(x1.double(), 1, eps_fn(x1, t1).double())
        decoder = _decoder_nll(x0, mean1, math.sqrt(schedule.betas[1].item()), levels)
    return {"prior": prior, "diffusion": diffusion, "decoder": decoder, "per_step": per_step,
            "nelbo": prior + diffusion + decoder}


def elbo(eps_fn, schedule: Schedule, x0: torch.Tensor, **kwargs) -> tuple[float, float]:
    """``(mean ELBO, its standard error)`` in nats per data point over the batch ``x0`` (see :func:`elbo_terms`)."""
    n = -elbo_terms(eps_fn, schedule, x0, **kwargs)["nelbo"]
    return float(n.mean()), float(n.std() / math.sqrt(len(n)))


# ---------------------------------------------------------------------------------------------
# Ancestral sampling
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def ancestral_sample(eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], schedule: Schedule,
                     shape: Sequence[int], *, variance: str = "beta_tilde", generator: torch.Generator | None = None,
                     device: torch.device | str | None = None, x_T: torch.Tensor | None = None,
                     keep: Sequence[int] = (), clip: float | None = None
                     ) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """``x_T ~ N(0, I)``; for ``t = T..1``: ``x_{t-1} = mu(x_t, t, eps_fn(x_t, t)) + sigma_t z`` with ``sigma_t^2`` =
    ``beta_tilde_t`` or ``beta_t`` (``variance``) and no noise at ``t = 1``. ``eps_fn(x [B, ...], t [B] long)``.
    Returns ``x_0 [shape]`` (float32), or ``(x_0, {t: x_t})`` for the steps listed in ``keep`` (``T`` and ``0`` allowed).
    ``clip=c`` clamps the predicted ``x_0`` to ``[-c, c]`` and uses the posterior mean of the clamped ``x_0`` (only for
    data known to lie in that box, e.g. digits in ``[-1, 1]``; off by default: it destroys 2-D data in ``[-4, 4]``)."""
    shape = tuple(shape)
    if x_T is None:
        x = torch.randn(shape, generator=generator)
        x = x.to(device) if device is not None else x
    else:
        if tuple(x_T.shape) != shape:
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {shape}")
        x = x_T.clone()
    kept = {}
    keep = set(keep)
    for t in range(schedule.T, 0, -1):
        if t in keep:
            kept[t] = x.cpu().clone()
        tb = torch.full((shape[0],), t, dtype=torch.long, device=x.device)
        eps = eps_fn(x, tb)
        if clip is None:
            mean = schedule.p_mean(x, t, eps)
        else:
            mean = schedule.q_posterior(schedule.predict_x0(x, t, eps).clamp(-clip, clip), x, t)[0]
        if t > 1:
            std = schedule.reverse_variance(t, x, variance).sqrt()
            x = mean + std * _rand_like(x, generator)
        else:
            x = mean
    if 0 in keep:
        kept[0] = x.cpu().clone()
    return (x, kept) if keep else x


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def train_ddpm(x: torch.Tensor, schedule: Schedule, *, labels: torch.Tensor | None = None, p_uncond: float = 0.1,
               model: nn.Module | None = None, hidden: int = 128, depth: int = 3, emb_dim: int = 32,
               steps: int | None = 2000, batch: int = 256, lr: float = 2e-3, seed: int = 0, progress: bool = True,
               desc: str | None = None, seconds: float | None = None, t_sampling: str = "uniform"):
    """Train an epsilon-network on data ``x [N, ...]`` with ``L_simple`` for ``steps`` Adam steps (cosine decay), or
    for ``seconds`` of wall clock (``steps=None, seconds=...``: how ``course bench models`` gives every family the
    same budget; not reproducible step for step).

    ``model`` defaults to ``EpsMLP(x.shape[1:], hidden, depth, emb_dim, n_classes)``; with ``labels [N]`` (ints in
    ``0..n_classes-1``) it is class-conditional with label dropout ``p_uncond``. Everything lives on ``x``'s device.
    Returns ``(model, history)``; the model is in eval mode. ``model=`` an already trained network continues its
    training (a fine-tune); ``t_sampling="elbo"`` trains on the ELBO's own weighting of the time steps instead of
    ``L_simple``'s uniform one (see :func:`loss_simple`).
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ValueError("train_ddpm expects data of shape [N, ...]")
    if labels is not None and (labels.shape != (len(x),) or labels.dtype != torch.long):
        raise ValueError(f"labels must be a long tensor of shape [{len(x)}], got {labels.dtype} {tuple(labels.shape)}")
    seed_everything(seed)
    n_classes = int(labels.max()) + 1 if labels is not None else None
    if model is None:
        model = EpsMLP(tuple(x.shape[1:]), hidden, depth, emb_dim, n_classes)
    model = model.to(x.device).train()
    labels = labels.to(x.device) if labels is not None else None

    def loss():
        i = torch.randint(len(x), (batch,), device=x.device)
        return loss_simple(model, schedule, x[i], None if labels is None else labels[i], p_uncond,
                           t_sampling=t_sampling)

    history = fit(loss, model, steps=steps, seconds=seconds, lr=lr, seed=seed, progress=progress,
                  desc=desc or f"DDPM, {schedule!r}")
    return model.eval(), history


# ---------------------------------------------------------------------------------------------
# Guidance
# ---------------------------------------------------------------------------------------------
def cfg_eps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | int, w: float) -> torch.Tensor:
    """Classifier-free guidance (lecture 9.1, scale ``w`` = the notes' gamma):
    ``eps = (1 - w) eps(x, null) + w eps(x, y) = eps(x, null) + w (eps(x, y) - eps(x, null))``; ``w = 0`` is the
    unconditional model, ``w = 1`` the conditional one, ``w > 1`` pushes towards ``y``. Equivalently the score
    ``s(x) + w (s(x|y) - s(x))``, i.e. ``w`` multiplies the implicit classifier's gradient."""
    B = len(x)
    y = torch.as_tensor(y, device=x.device).long().expand(B)
    null = torch.full((B,), model.null_label, dtype=torch.long, device=x.device)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, y]))
    e_u, e_c = both[:B], both[B:]
    return e_u + w * (e_c - e_u)


class NoisyClassifier(nn.Module):
    """``p(y | x_t, t)``: a residual MLP classifier of noisy data with the same time embedding as :class:`EpsMLP`;
    ``forward(x [B, ...], t [B]) -> logits [B, n_classes]``."""

    def __init__(self, data_shape: Sequence[int] | int, n_classes: int, hidden: int = 128, depth: int = 2,
                 emb_dim: int = 32):
        super().__init__()
        self.data_shape = (data_shape,) if isinstance(data_shape, int) else tuple(data_shape)
        self.emb_dim, self.n_classes = emb_dim, n_classes
        self.time = nn.Sequential(nn.Linear(emb_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(math.prod(self.data_shape), hidden)
        self.blocks = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        if x.shape[1:] != self.data_shape:
            raise ValueError(f"NoisyClassifier expects data of shape [B, {', '.join(map(str, self.data_shape))}], got {tuple(x.shape)}")
        t = torch.as_tensor(t, device=x.device).expand(len(x))
        c = self.time(timestep_embedding(t, self.emb_dim))
        h = self.inp(x.reshape(len(x), -1))
        for block in self.blocks:
            h = h + block(F.silu(h + c))
        return self.head(F.silu(h))


def train_noisy_classifier(x: torch.Tensor, labels: torch.Tensor, schedule: Schedule, *, hidden: int = 128,
                           steps: int = 1000, batch: int = 256, lr: float = 2e-3, seed: int = 0,
                           progress: bool = True) -> tuple[NoisyClassifier, object]:
    """Train :class:`NoisyClassifier` by cross-entropy on ``(q_sample(x, t, eps), t)`` with ``t ~ U{0..T}``."""
    seed_everything(seed)
    n_classes = int(labels.max()) + 1
    clf = NoisyClassifier(tuple(x.shape[1:]), n_classes, hidden).to(x.device).train()
    labels = labels.to(x.device)

    def loss():
        i = torch.randint(len(x), (batch,), device=x.device)
        t = torch.randint(0, schedule.T + 1, (batch,), device=x.device)
        xt = schedule.q_sample(x[i], t, torch.randn_like(x[i]))
        return F.cross_entropy(clf(xt, t), labels[i])

    history = fit(loss, clf, steps=steps, lr=lr, seed=seed, progress=progress, desc="noise-conditioned classifier")
    return clf.eval(), history


def classifier_guided_eps(eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor, y, classifier: nn.Module, w: float,
                          schedule: Schedule) -> torch.Tensor:
    """Classifier guidance (lecture 9.1): the guided score is ``s(x_t) + w grad log p(y | x_t)``; in epsilon form
    ``eps - w sqrt(1 - abar_t) grad_x log p(y | x_t, t)``. ``w = 0`` leaves ``eps`` unchanged."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logp = F.log_softmax(classifier(xg, t), -1)
        y = torch.as_tensor(y, device=x.device).long().expand(len(x))
        (grad,) = torch.autograd.grad(logp.gather(1, y[:, None]).sum(), xg)
    return eps + w * schedule.score_to_eps(grad, t)             # score_to_eps(g) = -sqrt(1 - abar_t) g


# ---------------------------------------------------------------------------------------------
# The exact denoiser of a Gaussian mixture
# ---------------------------------------------------------------------------------------------
def mixture_eps(schedule: Schedule, means: torch.Tensor, std: float, weights: torch.Tensor | None = None
                ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The exact ``eps*(x_t, t) = -sqrt(1 - abar_t) grad log q_t(x_t)`` for data ``sum_k w_k N(m_k, std^2 I)``:
    ``q_t`` is the mixture with means ``sqrt(abar_t) m_k`` and variance ``abar_t std^2 + 1 - abar_t``
    (score by :func:`course_utils.score.mixture_score`). Returns ``eps_fn(x [B, D], t [B] or int)`` for the samplers."""
    from .score import mixture_score

    means = torch.as_tensor(means, dtype=torch.float64)

    def eps_fn(x: torch.Tensor, t) -> torch.Tensor:
        tt = schedule._t(t, "mixture_eps", 1)
        out = torch.empty_like(x)
        for tv in (tt.unique() if tt.ndim else tt.reshape(1)):
            ab = schedule.alpha_bars[int(tv)].item()
            rows = (tt == tv) if tt.ndim else slice(None)
            _, score = mixture_score(x[rows].double(), means.to(x.device) * math.sqrt(ab),
                                     math.sqrt(ab * std**2 + 1 - ab), None if weights is None else weights.to(x.device))
            out[rows] = (-math.sqrt(1 - ab) * score).to(x.dtype)
        return out

    return eps_fn
