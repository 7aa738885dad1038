"""Data with known answers: the 2-D toy zoo with exact densities, and the 8x8 digits.

Every toy target is a :class:`torch.distributions.Distribution` on R^2 with

- ``sample(sample_shape)``: draws from the target (seed with ``course_utils.seed_everything``
  or pass ``generator=``);
- ``log_prob(x)``: the exact, normalised log-density, ``x`` of shape ``[..., 2]``.

How each density is exact:

- *mixtures* (``8gaussians``) sum their components with ``logsumexp``;
- *curves with Gaussian noise* (``moons``, ``circles``, ``swissroll``, ``pinwheel``, ``spirals``):
  a sample is ``c(t) + sigma * eps`` with ``t ~ U[0, 1]`` on a curve ``c``, so
  ``p(x) = int_0^1 N(x; c(t), sigma^2 I) dt``, computed by dense midpoint quadrature in ``t``
  (point spacing far below ``sigma``, so the quadrature error is negligible);
- the ``checkerboard`` is uniform on its dark squares.

Nothing is downloaded: the digits ship inside scikit-learn. Likelihoods on discrete data (the binarised digits) are
compared on one footing: :func:`dequantize` turns integer data into a density problem, :func:`bits_per_dim` is the one
conversion from nats per data point.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch.distributions import Distribution, constraints

__all__ = ["TOY_NAMES", "toy", "ToyDistribution", "CurveMixture", "GaussianMixture2D", "Checkerboard", "load_digits",
           "dequantize", "bits_per_dim"]

_LOG_2PI = math.log(2 * math.pi)


def _as_size(sample_shape) -> torch.Size:
    if isinstance(sample_shape, int):
        return torch.Size([sample_shape])
    return torch.Size(sample_shape)


class ToyDistribution(Distribution):
    """Base class of the toy zoo: a distribution on R^2 with exact ``log_prob``.

    Subclasses implement ``_sample(n, generator) -> [n, 2]`` and ``_log_prob(x) -> [N]`` on a flat batch.
    ``lims`` is a square ``(lo, hi)`` that holds essentially all of the mass (for plots and grids).
    """

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False
    name = "toy"
    lims = (-4.5, 4.5)

    def __init__(self):
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([2]), validate_args=False)

    # -- public API -------------------------------------------------------------------------
    def sample(self, sample_shape=torch.Size(), generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw samples of shape ``[*sample_shape, 2]`` (float32)."""
        shape = _as_size(sample_shape)
        n = int(np.prod(shape)) if len(shape) else 1
        with torch.no_grad():
            x = self._sample(n, generator)
        return x.reshape(*shape, 2).to(torch.float32)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of points ``x`` of shape ``[..., 2]``; returns shape ``[...]``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}.log_prob expects a torch.Tensor of shape [..., 2], got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != 2:
            raise ValueError(f"{self.name}.log_prob expects points of shape [..., 2] (last dimension 2), got shape {tuple(x.shape)}")
        if not torch.is_floating_point(x):
            raise TypeError(f"{self.name}.log_prob expects a floating-point tensor, got dtype {x.dtype}")
        flat = x.detach().reshape(-1, 2).to(torch.float64)
        out = torch.cat([self._log_prob(chunk) for chunk in flat.split(2048)]) if len(flat) else flat.new_zeros(0)
        return out.reshape(x.shape[:-1]).to(x.dtype).to(x.device)

    def entropy_estimate(self, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
        """Monte Carlo estimate of the differential entropy ``H(p) = -E_p[log p(x)]`` in nats.

        Returns ``(estimate, standard_error)``. Used to turn a model's test NLL into a KL gap.
        """
        g = torch.Generator().manual_seed(seed)
        lp = self.log_prob(self.sample((n,), generator=g).double())
        return float(-lp.mean()), float(lp.std() / math.sqrt(n))

    def __repr__(self) -> str:
        return f"toy({self.name!r})"

    # -- to implement -----------------------------------------------------------------------
    def _sample(self, n: int, generator) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class GaussianMixture2D(ToyDistribution):
    """Equal-weight mixture of isotropic Gaussians with the given ``centers`` ``[K, 2]`` and ``std``."""

    def __init__(self, centers: torch.Tensor, std: float, name: str = "mixture"):
        super().__init__()
        self.centers = torch.as_tensor(centers, dtype=torch.float64)
        if self.centers.ndim != 2 or self.centers.shape[1] != 2:
            raise ValueError(f"centers must have shape [K, 2], got {tuple(self.centers.shape)}")
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.std = float(std)
        self.name = name

    def _sample(self, n, generator):
        k = torch.randint(len(self.centers), (n,), generator=generator)
        return self.centers[k] + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def _log_prob(self, x):
        d2 = torch.cdist(x, self.centers).pow(2)  # [N, K]
        comp = -d2 / (2 * self.std**2) - _LOG_2PI - 2 * math.log(self.std)
        return torch.logsumexp(comp, dim=1) - math.log(len(self.centers))


class CurveMixture(ToyDistribution):
    """Mixture of curves with isotropic Gaussian noise.

    ``curves`` are functions ``c(t): [M] -> [M, 2]`` on ``t in [0, 1]``; a sample picks curve ``k`` with
    probability ``weights[k]``, ``t ~ U[0, 1]``, and returns ``c_k(t) + noise * eps``. The density
    ``sum_k w_k int_0^1 N(x; c_k(t), noise^2 I) dt`` is computed by midpoint quadrature in ``t`` with
    nodes ``spacing * noise`` apart along each curve (the error is far below a percent for spacing 0.1).
    """

    def __init__(self, curves: Sequence[Callable[[torch.Tensor], torch.Tensor]], noise: float,
                 weights: Sequence[float] | None = None, name: str = "curves", spacing: float = 0.1):
        super().__init__()
        if noise <= 0:
            raise ValueError(f"noise must be positive, got {noise}")
        self.curves = list(curves)
        w = torch.full((len(self.curves),), 1.0 / len(self.curves), dtype=torch.float64) if weights is None \
            else torch.as_tensor(weights, dtype=torch.float64)
        if len(w) != len(self.curves) or (w <= 0).any() or abs(float(w.sum()) - 1) > 1e-9:
            raise ValueError("weights must be positive, one per curve, and sum to 1")
        self.weights = w
        self.noise = float(noise)
        self.name = name
        self._nodes = []  # one [M_k, 2] tensor of quadrature nodes per curve
        fine = torch.linspace(0, 1, 20_001, dtype=torch.float64)
        for c in self.curves:
            length = float((c(fine).diff(dim=0)).norm(dim=1).sum())
            m = max(64, math.ceil(length / (spacing * self.noise)))
            self._nodes.append(c((torch.arange(m, dtype=torch.float64) + 0.5) / m))

    def _sample(self, n, generator):
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        t = torch.rand(n, generator=generator, dtype=torch.float64)
        out = torch.empty(n, 2, dtype=torch.float64)
        for i, c in enumerate(self.curves):
            sel = k == i
            if sel.any():
                out[sel] = c(t[sel])
        return out + self.noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def _log_prob(self, x):
        s2 = self.noise**2
        parts = []
        for w, nodes in zip(self.weights, self._nodes):
            d2 = (x.pow(2).sum(1, keepdim=True) + nodes.pow(2).sum(1) - 2 * x @ nodes.T).clamp_min(0)  # [N, M]
            log_k = -d2 / (2 * s2) - _LOG_2PI - math.log(s2)
            parts.append(math.log(w) + torch.logsumexp(log_k, dim=1) - math.log(len(nodes)))
        return torch.logsumexp(torch.stack(parts, 1), dim=1)


class Checkerboard(ToyDistribution):
    """Uniform on the dark squares of a ``cells x cells`` board covering ``[-half, half]^2``."""

    def __init__(self, cells: int = 4, half: float = 3.0):
        super().__init__()
        self.name = "checkerboard"
        self.cells, self.half = cells, float(half)
        self.side = 2 * self.half / cells
        ij = [(i, j) for i in range(cells) for j in range(cells) if (i + j) % 2 == 0]
        self._dark = torch.tensor(ij, dtype=torch.float64)  # [K, 2] (column, row) indices
        self._log_density = -math.log(len(ij) * self.side**2)

    def _sample(self, n, generator):
        k = torch.randint(len(self._dark), (n,), generator=generator)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        return -self.half + (self._dark[k] + u) * self.side

    def _log_prob(self, x):
        ij = torch.floor((x + self.half) / self.side)
        inside = ((ij >= 0) & (ij < self.cells)).all(1) & ((ij.sum(1) % 2) == 0)
        return torch.where(inside, torch.full_like(x[:, 0], self._log_density), torch.full_like(x[:, 0], -math.inf))

    def entropy_estimate(self, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
        return -self._log_density, 0.0  # uniform: H = log(area), exactly


# ---------------------------------------------------------------------------------------------
# The zoo. All targets live in roughly [-4, 4]^2.
# ---------------------------------------------------------------------------------------------
def _arc(cx, cy, r, a0, a1):
    return lambda t: torch.stack([cx + r * torch.cos(a0 + (a1 - a0) * t), cy + r * torch.sin(a0 + (a1 - a0) * t)], -1)


def _spiral(r0, r1, turns, phase):
    def c(t):
        r = r0 + (r1 - r0) * t
        a = phase + 2 * math.pi * turns * t
        return torch.stack([r * torch.cos(a), r * torch.sin(a)], -1)
    return c


def _swissroll(t):
    s = (1.5 + 3.0 * t) * math.pi  # angle from 1.5 pi to 4.5 pi
    r = s / (4.5 * math.pi) * 3.6
    return torch.stack([r * torch.cos(s), r * torch.sin(s)], -1)


def _make(name: str) -> ToyDistribution:
    if name == "moons":  # scikit-learn's two moons, centred and scaled by 2
        return CurveMixture([_arc(-1.0, -0.5, 2.0, 0.0, math.pi), _arc(1.0, 0.5, 2.0, math.pi, 2 * math.pi)],
                            noise=0.15, name=name)
    if name == "circles":
        return CurveMixture([_arc(0.0, 0.0, 3.0, 0.0, 2 * math.pi), _arc(0.0, 0.0, 1.5, 0.0, 2 * math.pi)],
                            noise=0.15, name=name)
    if name == "swissroll":
        return CurveMixture([_swissroll], noise=0.15, name=name)
    if name == "8gaussians":
        a = torch.arange(8, dtype=torch.float64) * math.pi / 4
        return GaussianMixture2D(2.8 * torch.stack([torch.cos(a), torch.sin(a)], 1), std=0.25, name=name)
    if name == "checkerboard":
        return Checkerboard()
    if name == "pinwheel":  # five curved arms
        return CurveMixture([_spiral(0.6, 3.6, 0.22, 2 * math.pi * k / 5) for k in range(5)], noise=0.15, name=name)
    if name == "spirals":  # two interleaved spirals
        return CurveMixture([_spiral(0.3, 3.6, 1.25, 0.0), _spiral(0.3, 3.6, 1.25, math.pi)], noise=0.15, name=name)
    raise AssertionError(name)  # pragma: no cover


TOY_NAMES: tuple[str, ...] = ("moons", "circles", "swissroll", "8gaussians", "checkerboard", "pinwheel", "spirals")


def toy(name: str) -> ToyDistribution:
    """The toy target ``name`` (one of :data:`TOY_NAMES`) as a Distribution with exact ``log_prob``.

    >>> p = toy("moons"); x = p.sample((5,)); p.log_prob(x).shape
    torch.Size([5])
    """
    if name not in TOY_NAMES:
        raise ValueError(f"unknown toy target {name!r}; expected one of {', '.join(TOY_NAMES)}")
    return _make(name)


# ---------------------------------------------------------------------------------------------
# Digits
# ---------------------------------------------------------------------------------------------
def load_digits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 digits shipped with scikit-learn, as ``(images [N, 1, 8, 8] float32 in [0, 1], labels [N] int64)``.

    ``split`` is ``"train"`` (1438 images) or ``"test"`` (359 images); the split is fixed (a seeded
    permutation), so every notebook and grader sees the same images.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    perm = np.random.RandomState(0).permutation(len(d.target))
    n_train = int(round(0.8 * len(perm)))
    idx = perm[:n_train] if split == "train" else perm[n_train:]
    x = torch.from_numpy(d.images[idx] / 16.0).float().unsqueeze(1)
    y = torch.from_numpy(d.target[idx]).long()
    return x, y


# ---------------------------------------------------------------------------------------------
# Likelihoods on discrete data: one footing, one unit
# ---------------------------------------------------------------------------------------------
def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantisation of integer-valued data (e.g. binarised pixels in {0, 1}): ``x + u``, ``u ~ U[0, 1)`` per entry.

    The cells ``[x, x + 1)`` have unit volume, so a density ``p`` of ``x + u`` gives the discrete model
    ``P(x) = int p(x + u) du`` with ``log P(x) >= E_u log p(x + u)``: its dequantised log-likelihood is a lower bound on a
    discrete log-likelihood, comparable with a VAE's ELBO on the same data (rescaling ``x + u``, e.g. to [0, 1), would
    shift every log-density by ``D log(scale)``; keep unit cells or add that term). See ``flows.dequantized_bound``.
    """
    if not torch.is_floating_point(x):
        x = x.float()
    if not torch.equal(x, x.round()):
        raise ValueError("dequantize expects integer-valued data (e.g. binarised pixels in {0, 1}); got non-integer entries")
    return x + torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def bits_per_dim(nats: torch.Tensor | float, dims: int) -> torch.Tensor | float:
    """Convert nats per data point to bits per dimension: ``nats / (dims * ln 2)`` (the one place the course converts).

    Pass a negative log-likelihood (or a negative bound) in nats per data point and the number of dimensions of one data
    point: 64 for an 8x8 image.
    """
    if not isinstance(dims, int) or dims < 1:
        raise ValueError(f"dims must be a positive int (the number of dimensions of one data point), got {dims!r}")
    return nats / (dims * math.log(2))
