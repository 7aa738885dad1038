"""Vector quantisation and the VQ-VAE (chapter 04), on ``[..., d]`` vectors and a codebook ``[K, d]``.

- :func:`vector_quantize`: nearest-neighbour lookup, the straight-through output, and the codebook and commitment losses;
- :class:`VQVAE`: an MLP encoder to ``M`` vectors of size ``d`` per image, each quantised against one shared codebook of
  ``K`` codes, and a Bernoulli MLP decoder. With a uniform prior over the ``K^M`` code tuples and a deterministic
  (one-hot) posterior, ``KL(q(c|x) || p(c)) = M log K`` and the ELBO is ``log p(x|z_q) - M log K``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from . import seed_everything
from .training import fit
from .vae import BernoulliDecoder, _mlp

__all__ = ["Quantized", "vector_quantize", "codebook_usage", "VQVAE", "train_digits_vqvae"]


@dataclass
class Quantized:
    z_q: torch.Tensor              # [..., d] straight-through output: the value of e_k*, the gradient of z_e
    indices: torch.Tensor          # [...] int64: k* = argmin_k ||z_e - e_k||
    codebook_loss: torch.Tensor    # scalar: mean ||sg[z_e] - e_k*||^2 (moves the codes only)
    commitment_loss: torch.Tensor  # scalar: mean ||z_e - sg[e_k*]||^2 (moves the encoder only)


def vector_quantize(z_e: torch.Tensor, codebook: torch.Tensor) -> Quantized:
    """Quantise every ``d``-vector of ``z_e [..., d]`` to its nearest code of ``codebook [K, d]``.

    ``z_q = z_e + sg[e_k* - z_e]`` equals ``e_k*`` in value, while ``dz_q/dz_e = I``: the straight-through estimator
    passes the decoder's gradient at ``e_k*`` unchanged to the encoder. The losses are squared distances summed over
    ``d`` and averaged over the other dimensions.
    """
    if codebook.ndim != 2:
        raise ValueError(f"codebook must have shape [K, d], got {tuple(codebook.shape)}")
    if z_e.shape[-1] != codebook.shape[1]:
        raise ValueError(f"z_e must have shape [..., {codebook.shape[1]}] to match the codebook, got {tuple(z_e.shape)}")
    flat = z_e.reshape(-1, z_e.shape[-1])
    dist = (flat**2).sum(-1, keepdim=True) - 2 * flat @ codebook.T + (codebook**2).sum(-1)   # [N, K]
    idx = dist.argmin(-1)
    e = codebook[idx].reshape(z_e.shape)
    codebook_loss = ((z_e.detach() - e) ** 2).sum(-1).mean()
    commitment_loss = ((z_e - e.detach()) ** 2).sum(-1).mean()
    return Quantized(z_e + (e - z_e).detach(), idx.reshape(z_e.shape[:-1]), codebook_loss, commitment_loss)


def codebook_usage(indices: torch.Tensor, k: int) -> dict:
    """How a codebook of ``k`` codes is used: ``counts [k]``, ``used`` (codes chosen at least once), and the
    ``perplexity`` ``exp(H(usage))`` (``k`` when every code is used equally, 1 when one code takes everything)."""
    counts = torch.bincount(indices.flatten().cpu(), minlength=k).double()
    p = counts / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return {"counts": counts, "used": int((counts > 0).sum()), "perplexity": math.exp(entropy)}


class VQVAE(nn.Module):
    """``x [B, *shape] -> z_e [B, M, d] -> z_q -> logits [B, *shape]`` with one codebook ``[K, d]``.

    ``loss(x)`` is ``-log p(x|z_q) + codebook_loss + beta * commitment_loss`` (``beta`` = 0.25 as in van den Oord et al.);
    ``elbo(x) = log p(x|z_q) - M log K`` per image.
    """

    def __init__(self, in_shape: Sequence[int], n_codes: int = 32, code_dim: int = 4, n_positions: int = 4,
                 hidden: Sequence[int] = (128, 128), beta: float = 0.25):
        super().__init__()
        self.in_shape = tuple(in_shape)
        d_in = math.prod(self.in_shape)
        self.encoder = _mlp([d_in, *hidden, n_positions * code_dim])
        self.decoder = BernoulliDecoder(n_positions * code_dim, self.in_shape, tuple(reversed(hidden)))
        self.codebook = nn.Parameter(torch.randn(n_codes, code_dim))
        self.n_codes, self.code_dim, self.n_positions, self.beta = n_codes, code_dim, n_positions, beta

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``z_e [B, M, d]``, before quantisation."""
        return self.encoder(x.flatten(1)).unflatten(-1, (self.n_positions, self.code_dim))

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        return self.decoder(z_q.flatten(-2))

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Logits for code tuples ``indices [B, M]``."""
        return self.decode(self.codebook[indices])

    def forward(self, x: torch.Tensor):
        q = vector_quantize(self.encode(x), self.codebook)
        return self.decode(q.z_q), q

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return self.decoder.log_prob(x, logits)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        logits, q = self(x)
        return -self.log_likelihood(x, logits).mean() + q.codebook_loss + self.beta * q.commitment_loss

    @torch.no_grad()
    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        logits, _ = self(x)
        return self.log_likelihood(x, logits) - self.n_positions * math.log(self.n_codes)

    @torch.no_grad()
    def init_codebook_(self, x: torch.Tensor, seed: int = 0) -> None:
        """Set the codes to encoder outputs of random training images, so that every code starts where the data are."""
        z = self.encode(x).reshape(-1, self.code_dim)
        pick = torch.randperm(len(z), generator=torch.Generator().manual_seed(seed))[: self.n_codes].to(z.device)
        self.codebook.copy_(z[pick])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images of code tuples drawn from the uniform prior."""
        idx = torch.randint(self.n_codes, (n, self.n_positions), generator=generator).to(self.codebook.device)
        return torch.sigmoid(self.decode_indices(idx))


def train_digits_vqvae(x_train: torch.Tensor, *, steps: int = 2000, lr: float = 2e-3, batch: int = 128, seed: int = 0,
                       init_from_data: bool = True, progress: bool = True, **kwargs):
    """Train a :class:`VQVAE` on binarised images ``x_train [N, 1, H, W]``; ``kwargs`` go to the constructor.
    ``init_from_data`` starts the codes at encoder outputs. Returns ``(model, history)``."""
    seed_everything(seed)
    model = VQVAE(tuple(x_train.shape[1:]), **kwargs).to(x_train.device)
    if init_from_data:
        model.init_codebook_(x_train, seed)
    history = fit(lambda: model.loss(x_train[torch.randint(len(x_train), (batch,), device=x_train.device)]), model,
                  steps=steps, lr=lr, seed=seed, progress=progress, desc=f"VQ-VAE, K = {model.n_codes}")
    return model, history
