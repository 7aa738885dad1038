"""Latent-variable models: the VAE's parts, its bounds, and a model with exact answers.

Shapes: data ``x [B, ...]``, latents ``z [B, L]`` (or ``[K, B, L]`` for K samples per data point).

- :class:`GaussianEncoder`: ``x -> (mu, logvar)`` of ``q(z|x) = N(mu, diag exp(logvar))``;
- :class:`BernoulliDecoder`: ``z -> logits`` of ``p(x|z) = prod Bernoulli(sigmoid(logits))``;
- :func:`elbo`: the reparameterised ELBO per data point, ``E_q[log p(x|z)] - KL(q(z|x) || N(0, I))`` (KL in closed form);
- :func:`iwae_bound`: ``E[log (1/K) sum_k p(x, z_k) / q(z_k|x)]`` per data point (K = 1 is the ELBO);
- :class:`LinearGaussian`: ``p(z) = N(0, I)``, ``p(x|z) = N(Wz + b, s^2 I)``, whose ``log p(x)`` and posterior are exact, so every
  bound can be checked against the truth;
- :class:`AutoregressiveBernoulliDecoder`: ``p(x|z) = prod_i p(x_i | x_{<i}, z)``, a decoder strong enough to ignore ``z``
  (posterior collapse, chapter 04);
- :func:`rate_distortion`, :func:`train_digits_vae`: the measurements and the one training routine chapters 03-04 share.

A :class:`VAE` takes an optional learnable ``prior`` (any module with ``log_prob(z [..., L]) -> [...]`` and ``sample(n)``,
e.g. from :mod:`course_utils.priors`); without one the prior is ``N(0, I)`` and the KL term is in closed form.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from . import seed_everything
from .flows import MaskedLinear, made_masks, standard_normal_log_prob
from .metrics import gaussian_kl
from .training import fit

__all__ = ["GaussianEncoder", "BernoulliDecoder", "AutoregressiveBernoulliDecoder", "VAE", "reparameterize",
           "gaussian_log_prob", "elbo", "elbo_terms", "iwae_bound", "LinearGaussian", "rate_distortion", "train_digits_vae"]

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
    """An encoder, a decoder and a prior: ``N(0, I)`` (closed-form KL) when ``prior`` is None, else a learnable module."""

    def __init__(self, encoder: GaussianEncoder, decoder: nn.Module, prior: nn.Module | None = None):
        super().__init__()
        self.encoder, self.decoder, self.prior = encoder, decoder, prior

    def elbo_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One reparameterised sample of ``(log p(x|z), KL term)`` per data point, each ``[B]``; ELBO = first - second."""
        return elbo_terms(x, self.encoder, self.decoder, self.prior)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        rec, kl = self.elbo_terms(x)
        return rec - kl

    def loss(self, x: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
        """The beta-VAE objective to minimise, ``-mean(log p(x|z) - beta * KL)``; beta = 1 is the negative ELBO."""
        rec, kl = self.elbo_terms(x)
        return -(rec - beta * kl).mean()

    def iwae(self, x: torch.Tensor, k: int) -> torch.Tensor:
        return iwae_bound(x, self.encoder, self.decoder, k, self.prior)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``sigmoid(logits)`` of ``n`` prior samples (binary draws for an autoregressive decoder)."""
        p = next(self.parameters())
        if self.prior is None:
            z = torch.randn(n, self.encoder.latent_dim, generator=generator).to(p)
        else:
            z = self.prior.sample(n, generator=generator).to(p)
        if isinstance(self.decoder, AutoregressiveBernoulliDecoder):    # draws pixel by pixel: binary images
            return self.decoder.sample(z, generator=generator)
        return torch.sigmoid(self.decoder(z))


def elbo_terms(x: torch.Tensor, encoder: nn.Module, decoder: nn.Module, prior: nn.Module | None = None):
    """``(log p(x|z), KL term)`` per data point, ``[B]`` each, with one reparameterised ``z ~ q(z|x)``.

    The KL term is ``KL(q(z|x) || N(0, I))`` in closed form when ``prior`` is None, else its one-sample estimate
    ``log q(z|x) - log p(z)`` at the same ``z`` (unbiased; what a learnable prior needs).
    """
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar)
    rec = decoder.log_prob(x, decoder(z))
    kl = gaussian_kl(mu, logvar) if prior is None else gaussian_log_prob(z, mu, logvar) - prior.log_prob(z)
    return rec, kl


def elbo(x: torch.Tensor, encoder: nn.Module, decoder: nn.Module, prior: nn.Module | None = None) -> torch.Tensor:
    """Reparameterised single-sample ELBO per data point ``[B]``: ``log p(x|z) - KL(q(z|x) || p(z))``, z ~ q(z|x)
    (the KL in closed form for the default ``N(0, I)`` prior)."""
    rec, kl = elbo_terms(x, encoder, decoder, prior)
    return rec - kl


def iwae_bound(x: torch.Tensor, encoder: nn.Module, decoder: nn.Module, k: int, prior: nn.Module | None = None) -> torch.Tensor:
    """The importance-weighted bound with ``k`` samples per data point, ``[B]``:
    ``log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x)``, ``z_j ~ q(z|x)``. Non-decreasing in k in expectation, and
    ``-> log p(x)`` as ``k -> infinity``. ``prior`` defaults to ``N(0, I)``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mu, logvar = encoder(x)
    z = reparameterize(mu, logvar, k)                                   # [k, B, L]
    log_prior = standard_normal_log_prob(z) if prior is None else prior.log_prob(z)
    log_w = decoder.log_prob(x, decoder(z)) + log_prior - gaussian_log_prob(z, mu, logvar)   # [k, B]
    return torch.logsumexp(log_w, 0) - math.log(k)


class AutoregressiveBernoulliDecoder(nn.Module):
    """``p(x|z) = prod_i Bernoulli(x_i; sigmoid(logit_i(x_{<i}, z)))``: a MADE over the pixels, conditioned on ``z``.

    It can model the digits on its own, so a VAE with it is free to ignore ``z`` (posterior collapse). Its
    "parameters" of ``p(x|z)`` are ``z`` itself: ``forward(z) = z``, and ``log_prob(x, z)`` runs the masked network on ``x``.
    """

    def __init__(self, latent_dim: int, out_shape: Sequence[int], hidden: int = 256):
        super().__init__()
        self.out_shape = tuple(out_shape)
        d = math.prod(self.out_shape)
        m_hidden, m_out = made_masks(d, (hidden,))
        self.x_to_h, self.h_to_logit = MaskedLinear(m_hidden), MaskedLinear(m_out)
        self.z_to_h, self.z_to_logit = nn.Linear(latent_dim, hidden), nn.Linear(latent_dim, d)
        self.dim = d

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def logits(self, x_flat: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[..., D]``: logit ``i`` sees ``x_{<i}`` and ``z``."""
        h = F.relu(self.x_to_h(x_flat) + self.z_to_h(z))
        return self.h_to_logit(h) + self.z_to_logit(z)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)``: ``x [B, *shape]``, ``z [..., B, L]`` -> ``[..., B]``."""
        x_flat = x.flatten(1).expand(*z.shape[:-1], self.dim)
        return -F.binary_cross_entropy_with_logits(self.logits(x_flat, z), x_flat, reduction="none").sum(-1)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Binary images ``[B, *shape]`` drawn pixel by pixel (``D`` passes) given ``z [B, L]``."""
        x = torch.zeros(len(z), self.dim, dtype=z.dtype, device=z.device)
        for i in range(self.dim):
            p = torch.sigmoid(self.logits(x, z)[:, i])
            u = torch.rand(len(z), generator=generator).to(z)
            x[:, i] = (u < p).to(z.dtype)
        return x.unflatten(-1, self.out_shape)


@torch.no_grad()
def rate_distortion(vae: VAE, x: torch.Tensor, n_samples: int = 10) -> dict:
    """Rate (mean ``KL(q(z|x) || N(0, I))``, closed form), distortion (mean ``-log p(x|z)``, ``n_samples`` draws) and the
    mean KL of each latent dimension ``[L]``, all in nats per data point, for a VAE with the standard-normal prior."""
    mu, logvar = vae.encoder(x)
    per_dim = gaussian_kl(mu.unsqueeze(-1), logvar.unsqueeze(-1)).mean(0)     # [L]: each dimension on its own
    rec = torch.stack([vae.decoder.log_prob(x, vae.decoder(reparameterize(mu, logvar))) for _ in range(n_samples)])
    return {"rate": per_dim.sum().item(), "distortion": -rec.mean().item(), "kl_per_dim": per_dim.cpu()}


def train_digits_vae(x_train: torch.Tensor, latent_dim: int = 8, *, steps: int = 2000, beta: float = 1.0,
                     hidden: Sequence[int] = (128, 128), decoder: nn.Module | None = None, prior: nn.Module | None = None,
                     lr: float = 2e-3, batch: int = 128, seed: int = 0, progress: bool = True, desc: str | None = None):
    """Train a VAE (MLP encoder; Bernoulli MLP decoder unless ``decoder`` is given; ``N(0, I)`` unless ``prior`` is
    given) on binarised images ``x_train [N, 1, H, W]`` by minimising ``-mean(log p(x|z) - beta * KL)`` with Adam.
    Returns ``(vae, history)``. The VAE lives on ``x_train``'s device. Chapters 03 and 04 train all their VAEs here."""
    seed_everything(seed)
    shape = tuple(x_train.shape[1:])
    d = math.prod(shape)
    vae = VAE(GaussianEncoder(d, latent_dim, hidden), decoder if decoder is not None else BernoulliDecoder(latent_dim, shape, hidden),
              prior).to(x_train.device)

    def loss():
        return vae.loss(x_train[torch.randint(len(x_train), (batch,), device=x_train.device)], beta)

    history = fit(loss, vae, steps=steps, lr=lr, seed=seed, progress=progress,
                  desc=desc or f"VAE, {latent_dim}-D latent, beta = {beta:g}")
    return vae, history


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
