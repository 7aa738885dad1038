"""Priors for a VAE's latent space, the aggregate posterior, and ELBO surgery (chapter 04).

Every prior is a module with ``log_prob(z [..., L]) -> [...]`` and ``sample(n, generator=None) -> [n, L]``, so
:class:`course_utils.vae.VAE` takes any of them as ``prior=``.

- :class:`StandardNormalPrior`: ``N(0, I)``;
- :class:`MixturePrior`: a learnable mixture of diagonal Gaussians ``sum_k pi_k N(z; m_k, diag s_k^2)``;
- :class:`FlowPrior`: a learnable flow from :mod:`course_utils.flows` on the latent space;
- :class:`AggregatePosterior`: ``q(z) = (1/n) sum_i q(z|x_i)``, the optimal prior for a given encoder and data set;
- :func:`surgery_terms`: the KL term split into mutual information and marginal KL,
  ``mean_i KL(q(z|x_i) || p(z)) = I_q(x; z) + KL(q(z) || p(z))``, each estimated with its Monte Carlo standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from .flows import standard_normal_log_prob
from .metrics import gaussian_kl
from .training import fit
from .vae import gaussian_log_prob

__all__ = ["StandardNormalPrior", "MixturePrior", "FlowPrior", "AggregatePosterior", "SurgeryTerms", "surgery_terms",
           "fit_prior", "aggregate_log_prob_error"]

_LOG_2PI = math.log(2 * math.pi)


def _check_latents(z: torch.Tensor, dim: int, who: str) -> None:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{who} expects a torch tensor of latents [..., {dim}], got {type(z).__name__}")
    if z.shape[-1] != dim:
        raise ValueError(f"{who} expects latents of shape [..., {dim}], got {tuple(z.shape)}")


class StandardNormalPrior(nn.Module):
    """``p(z) = N(0, I_L)``, with no parameters."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("_anchor", torch.zeros(()))  # carries device and dtype

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        _check_latents(z, self.latent_dim, "StandardNormalPrior.log_prob")
        return standard_normal_log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator).to(self._anchor)


class MixturePrior(nn.Module):
    """``p(z) = sum_k softmax(logits)_k N(z; means_k, diag exp(logvars_k))`` with ``K`` learnable components in ``L`` dims.

    The means start as ``init_scale`` times standard-normal draws (seeded), the variances at 1, the weights equal.
    """

    def __init__(self, latent_dim: int, n_components: int, init_scale: float = 1.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.means = nn.Parameter(init_scale * torch.randn(n_components, latent_dim, generator=g))
        self.logvars = nn.Parameter(torch.zeros(n_components, latent_dim))
        self.logits = nn.Parameter(torch.zeros(n_components))
        self.latent_dim = latent_dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        _check_latents(z, self.latent_dim, "MixturePrior.log_prob")
        log_comp = gaussian_log_prob(z.unsqueeze(-2), self.means, self.logvars)    # [..., K]
        return torch.logsumexp(F.log_softmax(self.logits, -1) + log_comp, dim=-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.multinomial(F.softmax(self.logits, -1).cpu(), n, replacement=True, generator=generator).to(self.means.device)
        eps = torch.randn(n, self.latent_dim, generator=generator).to(self.means)
        return self.means[k] + torch.exp(0.5 * self.logvars[k]) * eps


class FlowPrior(nn.Module):
    """``p(z)`` given by a normalizing flow (``course_utils.flows.Flow``) on the latent space; batch dims of any rank."""

    def __init__(self, flow: nn.Module):
        super().__init__()
        self.flow = flow
        self.latent_dim = flow.dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        _check_latents(z, self.latent_dim, "FlowPrior.log_prob")
        return self.flow.log_prob(z.reshape(-1, self.latent_dim)).reshape(z.shape[:-1])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.flow.sample(n, generator=generator)


class AggregatePosterior(nn.Module):
    """``q(z) = (1/n) sum_i N(z; mu_i, diag exp(logvar_i))``: the mixture of an encoder's posteriors over a data set.

    ``mu``, ``logvar``: ``[n, L]`` (kept in float64). ``log_prob`` costs ``n`` Gaussian evaluations per point, done as
    matrix products in chunks of ``chunk`` points.
    """

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor, chunk: int = 1024):
        super().__init__()
        if mu.ndim != 2 or mu.shape != logvar.shape:
            raise ValueError(f"mu and logvar must both have shape [n, L], got {tuple(mu.shape)} and {tuple(logvar.shape)}")
        self.register_buffer("mu", mu.detach().double())
        self.register_buffer("logvar", logvar.detach().double())
        self.latent_dim, self.chunk = mu.shape[1], chunk

    def component_log_probs(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z_m; mu_i, diag var_i)`` for every point and component: ``z [M, L] -> [M, n]`` (float64)."""
        z = z.double()
        prec = torch.exp(-self.logvar)                                        # [n, L]
        quad = (z**2) @ prec.T - 2 * z @ (self.mu * prec).T + (self.mu**2 * prec).sum(-1)
        return -0.5 * (quad + self.logvar.sum(-1) + self.latent_dim * _LOG_2PI)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        _check_latents(z, self.latent_dim, "AggregatePosterior.log_prob")
        flat = z.reshape(-1, self.latent_dim)
        out = torch.cat([torch.logsumexp(self.component_log_probs(c), -1) for c in flat.split(self.chunk)])
        return (out - math.log(len(self.mu))).reshape(z.shape[:-1]).to(z.dtype)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, return_index: bool = False):
        i = torch.randint(len(self.mu), (n,), generator=generator).to(self.mu.device)
        z = self.mu[i] + torch.exp(0.5 * self.logvar[i]) * torch.randn(n, self.latent_dim, generator=generator,
                                                                         dtype=torch.float64).to(self.mu.device)
        return (z, i) if return_index else z


@dataclass
class SurgeryTerms:
    """The three terms of ELBO surgery, in nats per data point, each with its Monte Carlo standard error."""
    avg_kl: float           # mean_i KL(q(z|x_i) || p(z))
    avg_kl_se: float        # 0 when in closed form
    mutual_info: float      # I_q(x; z) = mean_i KL(q(z|x_i) || q(z)), at most log n
    mutual_info_se: float
    marginal_kl: float      # KL(q(z) || p(z))
    marginal_kl_se: float
    n: int                  # data points

    @property
    def log_n(self) -> float:
        return math.log(self.n)

    @property
    def gap(self) -> float:
        """``avg_kl - (mutual_info + marginal_kl)``: zero up to Monte Carlo error."""
        return self.avg_kl - self.mutual_info - self.marginal_kl

    @property
    def gap_se(self) -> float:
        return math.sqrt(self.avg_kl_se**2 + self.mutual_info_se**2 + self.marginal_kl_se**2)

    def __str__(self) -> str:
        return (f"mean KL(q(z|x) || p(z)) = {self.avg_kl:.3f} ± {self.avg_kl_se:.3f}\n"
                f"I_q(x; z)               = {self.mutual_info:.3f} ± {self.mutual_info_se:.3f}   (at most log n = {self.log_n:.3f})\n"
                f"KL(q(z) || p(z))        = {self.marginal_kl:.3f} ± {self.marginal_kl_se:.3f}\n"
                f"sum of the two          = {self.mutual_info + self.marginal_kl:.3f}; "
                f"difference {self.gap:+.3f} ± {self.gap_se:.3f}")


def _stratified_mean_se(v: torch.Tensor) -> tuple[float, float]:
    """Mean and standard error of ``(1/n) sum_i mean_s v[s, i]`` for draws ``v [S, n]``, S per data point: every point is in
    the sum, so only the spread of the draws *within* each point is Monte Carlo error."""
    s, n = v.shape
    var_within = v.var(0) if s > 1 else torch.zeros(n, dtype=v.dtype)
    return v.mean().item(), (var_within.sum() / s).sqrt().item() / n


@torch.no_grad()
def surgery_terms(mu: torch.Tensor, logvar: torch.Tensor, prior_log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  samples_per_point: int = 10, generator: torch.Generator | None = None) -> SurgeryTerms:
    """Estimate ``mean_i KL(q(z|x_i) || p(z))``, ``I_q(x; z)`` and ``KL(q(z) || p(z))`` for posteriors ``N(mu_i, diag exp(logvar_i))``.

    ``mu``, ``logvar``: ``[n, L]``, the encoder's outputs on the data set. ``prior_log_prob``: ``z [M, L] -> [M]``, default
    ``N(0, I)`` (then the mean KL is in closed form). Each term gets its own draws, ``samples_per_point`` per data point
    (stratified: the standard errors count only the spread of the draws), so that checking ``mean KL = I + marginal KL`` tests the three estimates, not one identity per sample.
    """
    agg = AggregatePosterior(mu, logvar)
    n, L = agg.mu.shape
    log_p = prior_log_prob if prior_log_prob is not None else standard_normal_log_prob

    def draw():
        eps = torch.randn(samples_per_point, n, L, generator=generator, dtype=torch.float64).to(agg.mu.device)
        return (agg.mu + torch.exp(0.5 * agg.logvar) * eps).reshape(-1, L), torch.arange(n, device=agg.mu.device).repeat(samples_per_point)

    def per_point(v):        # [S * n] -> [S, n]: the draws of each data point in a column
        return v.reshape(samples_per_point, n)

    if prior_log_prob is None:
        kl = gaussian_kl(agg.mu, agg.logvar)
        avg_kl, avg_kl_se = kl.mean().item(), 0.0
    else:
        z, i = draw()
        avg_kl, avg_kl_se = _stratified_mean_se(per_point(gaussian_log_prob(z, agg.mu[i], agg.logvar[i]) - log_p(z.to(mu.dtype)).double()))
    z, i = draw()
    mi = per_point(gaussian_log_prob(z, agg.mu[i], agg.logvar[i]) - agg.log_prob(z))
    z, _ = draw()
    mkl = per_point(agg.log_prob(z) - log_p(z.to(mu.dtype)).double())
    return SurgeryTerms(avg_kl, avg_kl_se, *_stratified_mean_se(mi), *_stratified_mean_se(mkl), n)


def fit_prior(prior: nn.Module, mu: torch.Tensor, logvar: torch.Tensor, *, steps: int = 1000, batch: int = 512,
              lr: float = 5e-3, seed: int = 0, progress: bool = True, desc: str = "prior"):
    """Fit a prior to a frozen encoder's aggregate posterior: maximise ``E_{q(z)} log p(z)`` (= minimise
    ``KL(q(z) || p(z))``, the only ELBO term a prior changes). Returns the training history."""
    agg = AggregatePosterior(mu, logvar)
    gen = torch.Generator().manual_seed(seed)
    dtype = next(prior.parameters()).dtype
    return fit(lambda: -prior.log_prob(agg.sample(batch, generator=gen).to(dtype)).mean(), prior, steps=steps, lr=lr,
               seed=seed, progress=progress, desc=desc)


def aggregate_log_prob_error(mu: torch.Tensor, logvar: torch.Tensor, n_points: int = 2000,
                             generator: torch.Generator | None = None) -> float:
    """Largest ``|AggregatePosterior.log_prob - reference|`` on ``n_points`` draws from ``q(z)``, where the reference is
    ``torch.distributions``' mixture of the same Gaussians: an independent check of ``log q(z)``.

    ELBO surgery's identity ``mean KL = I_q + KL(q(z) || p(z))`` cannot catch an error ``e(z)`` in ``log q(z)``: it enters
    the two terms as ``-E_q[e]`` and ``+E_q[e]`` and cancels. This comparison catches it.
    """
    agg = AggregatePosterior(mu, logvar)
    D = torch.distributions
    ref = D.MixtureSameFamily(D.Categorical(logits=torch.zeros(len(agg.mu), dtype=torch.float64, device=agg.mu.device)),
                              D.Independent(D.Normal(agg.mu, torch.exp(0.5 * agg.logvar)), 1))
    z = agg.sample(n_points, generator=generator)
    return (agg.log_prob(z).double() - ref.log_prob(z)).abs().max().item()
