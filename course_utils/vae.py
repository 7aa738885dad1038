"""Latent-variable models: the VAE's parts, its bounds, and a model with exact answers.

Shapes: data ``x [B, ...]``, latents ``z [B, L]`` (or ``[K, B, L]`` for K samples per data point).

- :class:`GaussianEncoder`: ``x -> (mu, logvar)`` of ``q(z|x) = N(mu, diag exp(logvar))``;
- :class:`BernoulliDecoder`: ``z -> logits`` of ``p(x|z) = prod Bernoulli(sigmoid(logits))``;
- :func:`elbo`: the reparameterised ELBO per data point, ``E_q[log p(x|z)] - KL(q(z|x) || N(0, I))`` (KL in closed form);
- :func:`iwae_bound`: ``E[log (1/K) sum_k p(x, z_k) / q(z_k|x)]`` per data point (K = 1 is the ELBO);
- :class:`LinearGaussian`: ``p(z) = N(0, I)``, ``p(x|z) = N(Wz + b, s^2 I)``, whose ``log p(x)`` and posterior are exact, so every
  bound can be checked against the truth.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .metrics import gaussian_kl

__all__ = ["GaussianEncoder", "BernoulliDecoder", "VAE", "reparameterize", "gaussian_log_prob", "elbo", "iwae_bound",
           "LinearGaussian"]

_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z; mu, diag exp(logvar))`` summed over the last dimension (shapes broadcast)."""
    return -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + _LOG_2PI).sum(-1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """``z = mu + exp(logvar / 2) * eps``: ``[B, L]``, or ``[k, B, L]`` when ``k`` is given. Differentiable in mu, logvar."""
    shape = mu.shape if k is None else (k, *mu.shape)
    return mu + torch.exp(0.5 * logvar) * torch.randn(shape, dtype=mu.dtype, device=mu.device)


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class GaussianEncoder(nn.Module):
    """``x [B, *shape] -> (mu [B, L], logvar [B, L])``, an MLP on the flattened input."""

    def __init__(self, in_features: int, latent_dim: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = _mlp([in_features, *hidden, 2 * latent_dim])
        self.latent_dim = latent_dim

    def forward(self, x):
        mu, logvar = self.net(x.flatten(1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-12.0, 8.0)


class BernoulliDecoder(nn.Module):
    """``z [..., L] -> logits [..., *out_shape]`` of independent Bernoulli pixels."""

    def __init__(self, latent_dim: int, out_shape: Sequence[int], hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.out_shape = tuple(out_shape)
        self.net = _mlp([latent_dim, *hidden, math.prod(self.out_shape)])

    def forward(self, z):
        return self.net(z).unflatten(-1, self.out_shape)

    def log_prob(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` summed over pixels: ``x [B, *shape]`` against ``logits [..., B, *shape]`` -> ``[..., B]``."""
        x = x.expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(-len(self.out_shape)).sum(-1)


class VAE(nn.Module):
    """An encoder, a decoder and the standard-normal prior."""

    def __init__(self, encoder: GaussianEncoder, decoder: BernoulliDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        return elbo(x, self.encoder, self.decoder)

    def iwae(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return iwae_bound(x, self.encoder, self.decoder, k)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``sigmoid(logits)`` of ``n`` prior samples."""
        p = next(self.parameters())
        z = torch.randn(n, self.encoder.latent_dim, generator=generator).to(p)
        return torch.sigmoid(self.decoder(z))


def elbo(x: torch.Tensor, encoder: nn.Module, decoder: nn.Module) -> torch.Tensor:
    """Reparameterised single-sample ELBO per data point ``[B]``: ``log p(x|z) - KL(q(z|x) || N(0, I))``, z ~ q(z|x)."""
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar)
    return decoder.log_prob(x, decoder(z)) - gaussian_kl(mu, logvar)


def iwae_bound(x: torch.Tensor, encoder: nn.Module, decoder: nn.Module, k: int) -> torch.Tensor:
    """The importance-weighted bound with ``k`` samples per data point, ``[B]``:
    ``log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x)``, ``z_j ~ q(z|x)``. Non-decreasing in k in expectation, and
    ``-> log p(x)`` as ``k -> infinity``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar, k)                                   # [k, B, L]
    log_w = (decoder.log_prob(x, decoder(z)) + gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
             - gaussian_log_prob(z, mu, logvar))                        # [k, B]
    return torch.logsumexp(log_w, 0) - math.log(k)


class LinearGaussian(nn.Module):
    """``p(z) = N(0, I_L)``, ``p(x|z) = N(W z + b, s^2 I_D)``: a latent-variable model with exact answers.

    ``log_marginal(x)``: ``log N(x; b, W W^T + s^2 I)``. ``posterior(x)``: ``p(z|x) = N(m, S)`` with
    ``S = (I + W^T W / s^2)^{-1}`` and ``m = S W^T (x - b) / s^2``. ``decoder_log_prob(x, z)``: ``log p(x|z)``.
    """

    def __init__(self, W: torch.Tensor, b: torch.Tensor, s: float):
        super().__init__()
        self.register_buffer("W", torch.as_tensor(W, dtype=torch.float64))
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float64))
        self.s = float(s)
        D, L = self.W.shape
        if self.b.shape != (D,):
            raise ValueError(f"b must have shape ({D},), got {tuple(self.b.shape)}")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        D, L = self.W.shape
        z = torch.randn(n, L, generator=generator, dtype=torch.float64)
        return z @ self.W.T + self.b + self.s * torch.randn(n, D, generator=generator, dtype=torch.float64)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[B, L]`` and covariance ``[L, L]`` of ``p(z|x)``."""
        L = self.W.shape[1]
        S = torch.linalg.inv(torch.eye(L, dtype=torch.float64) + self.W.T @ self.W / self.s**2)
        return (x - self.b) @ self.W @ S / self.s**2, S

    # as a decoder for :func:`elbo` / :func:`iwae_bound`: its "parameters" of p(x|z) are z itself
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decoder_log_prob(x, z)

    def exact_encoder(self):
        """``x -> (mean, log-variance)`` of the exact posterior, when it is diagonal (W with orthogonal columns)."""
        S = self.posterior(self.b[None])[1]
        if not torch.allclose(S, torch.diag(torch.diagonal(S)), atol=1e-10):
            raise ValueError("the exact posterior is not diagonal: choose W with orthogonal columns")
        return lambda x: (self.posterior(x)[0], torch.diagonal(S).log().expand(len(x), -1))

    def decoder_log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)`` for ``x [B, D]`` and ``z [..., B, L]`` -> ``[..., B]``."""
        mean = z @ self.W.T + self.b
        return -0.5 * (((x - mean) / self.s) ** 2).sum(-1) - len(self.b) * (math.log(self.s) + 0.5 * _LOG_2PI)
