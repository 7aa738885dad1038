"""Reference flow layers, one convention for the whole course.

A layer maps *data towards the base distribution*:

- ``layer.forward(x) -> (z, log_det)`` with ``log_det = log|det dz/dx|`` per sample, shape ``[B]``;
- ``layer.inverse(z) -> (x, log_det)`` with ``log_det = log|det dx/dz|`` of the inverse map, so a
  round trip's two log-dets sum to zero.

A :class:`Flow` is a list of layers plus a base density, so ``log_prob`` is one pass,
``sample`` is one reverse pass, and layer-by-layer pictures come for free (:meth:`Flow.trajectory`).
Chapter 01 builds the elementwise and planar layers; chapter 02 the linear (LU, QR), autoregressive
(MADE, MAF, IAF) and coupling (NICE, RealNVP) layers. Chapter 03 compares exact likelihoods on the binary digits:
:class:`BernoulliMADE` (an autoregressive model of binary vectors) and a flow on dequantised data
(:func:`dequantized_bound`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from .data import dequantize

__all__ = ["FlowLayer", "ElementwiseAffine", "SinhArcsinh", "Planar", "Flow", "standard_normal_log_prob",
           "Reverse", "LULinear", "QRLinear", "made_masks", "MADE", "MAF", "IAF", "AffineCoupling",
           "checkerboard_masks", "realnvp", "standardize", "maf_flow", "BernoulliMADE", "LogitTransform", "dequantized_bound",
           "jacobian_log_det", "randomize_"]


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension: ``[B, D] -> [B]``."""
    return -0.5 * z.pow(2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _check_input(x: torch.Tensor, dim: int, who: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{who} expects a torch.Tensor of shape [B, {dim}], got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{who} expects input of shape [B, {dim}], got {tuple(x.shape)}")


class FlowLayer(nn.Module):
    """One invertible layer. ``dim`` is the event dimension D; inputs are ``[B, D]``."""

    def __init__(self, dim: int):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim}")
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


class ElementwiseAffine(FlowLayer):
    """``z = x * exp(log_scale) + shift``; ``log_det = sum(log_scale)`` for every sample."""

    def __init__(self, dim: int, log_scale: torch.Tensor | None = None, shift: torch.Tensor | None = None):
        super().__init__(dim)
        self.log_scale = nn.Parameter(torch.zeros(dim) if log_scale is None else torch.as_tensor(log_scale, dtype=torch.float32).clone())
        self.shift = nn.Parameter(torch.zeros(dim) if shift is None else torch.as_tensor(shift, dtype=torch.float32).clone())

    def forward(self, x):
        _check_input(x, self.dim, "ElementwiseAffine.forward")
        z = x * self.log_scale.exp() + self.shift
        return z, self.log_scale.sum().expand(len(x))

    def inverse(self, z):
        _check_input(z, self.dim, "ElementwiseAffine.inverse")
        x = (z - self.shift) * (-self.log_scale).exp()
        return x, (-self.log_scale.sum()).expand(len(z))


def _log_cosh(a: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(a, -a) - math.log(2.0)


class SinhArcsinh(FlowLayer):
    """The sinh-arcsinh map, a monotone elementwise nonlinearity with a closed-form inverse.

    ``z = sinh(delta * asinh(x) - skew)`` with ``delta = exp(log_delta) > 0``. ``skew`` moves
    mass to one side, ``delta`` thins (``delta > 1``) or fattens (``delta < 1``) the tails.
    ``dz/dx = delta * cosh(delta * asinh(x) - skew) / sqrt(1 + x^2) > 0``.
    """

    def __init__(self, dim: int, skew: torch.Tensor | float = 0.0, log_delta: torch.Tensor | float = 0.0):
        super().__init__(dim)
        self.skew = nn.Parameter(torch.full((dim,), 0.0) + torch.as_tensor(skew, dtype=torch.float32))
        self.log_delta = nn.Parameter(torch.full((dim,), 0.0) + torch.as_tensor(log_delta, dtype=torch.float32))

    def forward(self, x):
        _check_input(x, self.dim, "SinhArcsinh.forward")
        delta = self.log_delta.exp()
        a = delta * torch.asinh(x) - self.skew
        log_det = (self.log_delta + _log_cosh(a) - 0.5 * torch.log1p(x * x)).sum(-1)
        return torch.sinh(a), log_det

    def inverse(self, z):
        _check_input(z, self.dim, "SinhArcsinh.inverse")
        delta = self.log_delta.exp()
        b = (torch.asinh(z) + self.skew) / delta
        x = torch.sinh(b)
        # log|dx/dz| = -log|dz/dx| evaluated at x, with delta*asinh(x) - skew = asinh(z)
        log_det = -(self.log_delta + _log_cosh(torch.asinh(z)) - 0.5 * torch.log1p(x * x)).sum(-1)
        return x, log_det


class Planar(FlowLayer):
    """Planar layer ``z = x + u_hat * tanh(w.x + b)`` (Rezende & Mohamed, 2015).

    ``log|det dz/dx| = log|1 + tanh'(w.x + b) * u_hat.w|`` by the matrix determinant lemma.
    Invertibility needs ``u_hat.w >= -1``; we enforce ``u_hat.w > -1`` with
    ``u_hat = u + (softplus(w.u) - 1 - w.u) * w / |w|^2``. The inverse has no closed form: project
    on ``w`` and solve the monotone scalar equation ``w.z = a + (w.u_hat) tanh(a + b)`` for ``a`` by
    bisection, then ``x = z - u_hat tanh(a + b)``. Cheap forward, iterative inverse.
    """

    def __init__(self, dim: int, init_scale: float = 0.5):
        super().__init__(dim)
        self.u = nn.Parameter(init_scale * torch.randn(dim))
        self.w = nn.Parameter(init_scale * torch.randn(dim))
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> torch.Tensor:
        wu = self.w @ self.u
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / self.w.pow(2).sum().clamp_min(1e-12)

    def forward(self, x):
        _check_input(x, self.dim, "Planar.forward")
        u = self.u_hat()
        a = x @ self.w + self.b  # [B]
        h = torch.tanh(a)
        z = x + h[:, None] * u
        log_det = torch.log((1 + (1 - h * h) * (u @ self.w)).abs() + 1e-12)
        return z, log_det

    @torch.no_grad()
    def _solve_projection(self, wz: torch.Tensor, wu: torch.Tensor, iters: int = 80) -> torch.Tensor:
        lo, hi = wz.double() - wu.abs().double() - 1e-6, wz.double() + wu.abs().double() + 1e-6
        b, wu, wz = self.b.double(), wu.double(), wz.double()
        for _ in range(iters):  # g(a) = a + wu tanh(a + b) - wz is increasing in a
            mid = 0.5 * (lo + hi)
            g = mid + wu * torch.tanh(mid + b) - wz
            lo, hi = torch.where(g < 0, mid, lo), torch.where(g < 0, hi, mid)
        return 0.5 * (lo + hi)

    def inverse(self, z):
        _check_input(z, self.dim, "Planar.inverse")
        u = self.u_hat()
        wz, wu = z @ self.w, u @ self.w
        a0 = self._solve_projection(wz, wu).to(z.dtype)  # a = w.x at the solution, without gradients
        # one Newton step taken with gradients: the value stays a0 (the residual is ~0), and autograd
        # gets the implicit-function derivative da/dz = w / (1 + wu * tanh'(a + b))
        t0 = torch.tanh(a0 + self.b)
        a = a0 - (a0 + wu * t0 - wz) / (1 + wu * (1 - t0 * t0))
        x = z - torch.tanh(a + self.b)[:, None] * u
        # differentiable log-det of the inverse, evaluated at the recovered x
        h = torch.tanh(x @ self.w + self.b)
        log_det = -torch.log((1 + (1 - h * h) * (u @ self.w)).abs() + 1e-12)
        return x, log_det


class Flow(nn.Module):
    """A normalizing flow: ``layers`` applied in order from data to base, and a standard-normal base.

    - ``forward(x) -> (z, log_det)``: the whole map and the summed log-det, ``[B, D] -> [B, D], [B]``;
    - ``inverse(z) -> (x, log_det)``: the layers' inverses in reverse order;
    - ``log_prob(x) = log N(z; 0, I) + log_det``: the change-of-variables formula, ``[B, D] -> [B]``;
    - ``sample(n) -> [n, D]``: base samples pushed through the inverse;
    - ``trajectory(x)``: the list of intermediate points, data first, base last.
    """

    def __init__(self, layers: Sequence[FlowLayer]):
        super().__init__()
        layers = list(layers)
        if not layers:
            raise ValueError("a Flow needs at least one layer")
        dims = {layer.dim for layer in layers}
        if len(dims) != 1:
            raise ValueError(f"all layers of a Flow must have the same dim, got {sorted(dims)}")
        self.layers = nn.ModuleList(layers)
        self.dim = dims.pop()

    def forward(self, x):
        log_det = x.new_zeros(len(x))
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z):
        log_det = z.new_zeros(len(z))
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return z, log_det

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.dim, "Flow.log_prob")
        z, log_det = self(x)
        return standard_normal_log_prob(z) + log_det

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        z = torch.randn(n, self.dim, generator=generator).to(device=p.device, dtype=p.dtype)
        return self.inverse(z)[0]

    @torch.no_grad()
    def trajectory(self, x: torch.Tensor) -> list[torch.Tensor]:
        points = [x]
        for layer in self.layers:
            x, _ = layer(x)
            points.append(x)
        return points


# =============================================================================================
# Chapter 02: linear, autoregressive and coupling layers
# =============================================================================================
class Reverse(FlowLayer):
    """Reverse the order of the coordinates (a permutation: ``log_det = 0``)."""

    def forward(self, x):
        _check_input(x, self.dim, "Reverse.forward")
        return x.flip(-1), x.new_zeros(len(x))

    def inverse(self, z):
        _check_input(z, self.dim, "Reverse.inverse")
        return z.flip(-1), z.new_zeros(len(z))


class LULinear(FlowLayer):
    """``z = W x + b`` with ``W = P L U``: ``P`` a fixed permutation, ``L`` unit lower-triangular, ``U`` upper-triangular
    with positive diagonal ``exp(log_diag)``. ``log|det W| = sum(log_diag)`` costs O(D) instead of O(D^3); the inverse is
    two triangular solves.
    """

    def __init__(self, dim: int, seed: int = 0):
        super().__init__(dim)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("perm", torch.randperm(dim, generator=g))
        self.lower = nn.Parameter(torch.zeros(dim, dim))
        self.upper = nn.Parameter(torch.zeros(dim, dim))
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(self.dim, dtype=self.lower.dtype, device=self.lower.device)
        L = torch.tril(self.lower, -1) + eye
        U = torch.triu(self.upper, 1) + torch.diag(self.log_diag.exp())
        return L, U

    def weight(self) -> torch.Tensor:
        L, U = self.factors()
        return (L @ U)[torch.argsort(self.perm)]  # rows permuted: W = P L U

    def forward(self, x):
        _check_input(x, self.dim, "LULinear.forward")
        z = x @ self.weight().T + self.bias
        return z, self.log_diag.sum().expand(len(x))

    def inverse(self, z):
        _check_input(z, self.dim, "LULinear.inverse")
        L, U = self.factors()
        y = (z - self.bias)[:, self.perm].T  # P^T (z - b), columns are samples
        y = torch.linalg.solve_triangular(L, y, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(U, y, upper=True).T
        return x, (-self.log_diag.sum()).expand(len(z))


class QRLinear(FlowLayer):
    """``z = Q R x + b`` with ``Q = matrix_exp(A - A^T)`` orthogonal (``det Q = 1``) and ``R`` upper-triangular with
    positive diagonal ``exp(log_diag)``: ``log|det| = sum(log_diag)``; the inverse is ``R^{-1} Q^T (z - b)``.
    """

    def __init__(self, dim: int):
        super().__init__(dim)
        self.skew = nn.Parameter(torch.zeros(dim, dim))
        self.upper = nn.Parameter(torch.zeros(dim, dim))
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        Q = torch.linalg.matrix_exp(self.skew - self.skew.T)
        R = torch.triu(self.upper, 1) + torch.diag(self.log_diag.exp())
        return Q, R

    def forward(self, x):
        _check_input(x, self.dim, "QRLinear.forward")
        Q, R = self.factors()
        return x @ (Q @ R).T + self.bias, self.log_diag.sum().expand(len(x))

    def inverse(self, z):
        _check_input(z, self.dim, "QRLinear.inverse")
        Q, R = self.factors()
        x = torch.linalg.solve_triangular(R, Q.T @ (z - self.bias).T, upper=True).T
        return x, (-self.log_diag.sum()).expand(len(z))


def made_masks(dim: int, hidden: Sequence[int], order: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Masks of a MADE network (Germain et al., 2015) for inputs in autoregressive ``order`` (default 0..D-1).

    Input ``i`` gets degree ``order[i]``; hidden unit ``k`` of each layer a degree ``m_k`` in ``[0, D-2]`` (cycled);
    a hidden unit sees inputs with degree ``<= m_k``; output ``i`` sees hidden units with degree ``< order[i]``. So
    output ``i`` depends only on inputs that come before it in the order. Returns one ``[out, in]`` mask per layer,
    the last for a single output block of size D (repeat it for several parameters per dimension).
    """
    if dim < 2:
        raise ValueError(f"MADE needs dim >= 2, got {dim}")
    deg_in = torch.arange(dim) if order is None else torch.as_tensor(order)
    if sorted(deg_in.tolist()) != list(range(dim)):
        raise ValueError(f"order must be a permutation of 0..{dim - 1}, got {deg_in.tolist()}")
    degrees = [deg_in]
    for h in hidden:
        degrees.append(torch.arange(h) % (dim - 1))
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((deg_in[:, None] > degrees[-1][None, :]).float())
    return masks


class MaskedLinear(nn.Linear):
    def __init__(self, mask: torch.Tensor):
        super().__init__(mask.shape[1], mask.shape[0])
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def _made_net(dim: int, hidden: Sequence[int], order: torch.Tensor | None, outputs_per_dim: int) -> nn.Sequential:
    """The masked MLP of a MADE: ``[B, D] -> [B, outputs_per_dim * D]``, output block ``k``, entry ``i`` seeing ``x_{<i}``."""
    masks = made_masks(dim, hidden, order)
    layers: list[nn.Module] = []
    for m in masks[:-1]:
        layers += [MaskedLinear(m), nn.ReLU()]
    layers.append(MaskedLinear(masks[-1].repeat(outputs_per_dim, 1)))
    return nn.Sequential(*layers)


class MADE(nn.Module):
    """Autoregressive network: ``x [B, D] -> (mu, alpha)``, each ``[B, D]``, where output ``i`` depends on ``x_{<i}`` only
    (in ``order``). Used by :class:`MAF` and :class:`IAF`.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), order: torch.Tensor | None = None):
        super().__init__()
        self.net = _made_net(dim, hidden, order, 2)  # mu and alpha
        self.dim = dim

    def forward(self, x):
        mu, alpha = self.net(x).chunk(2, dim=-1)
        return mu, alpha


def _soft_clamp(a: torch.Tensor, bound: float) -> torch.Tensor:
    """A smooth clamp to ``(-bound, bound)``: keeps log-scales finite early in training."""
    return bound * torch.tanh(a / bound)


class _AffineAutoregressive(FlowLayer):
    """Shared part of MAF and IAF: a MADE conditioner ``h -> (mu, alpha)`` and the two ways to use it.

    * one pass: condition on the *known* side (``_normalize_given`` / ``_generate_given``);
    * D passes: condition on the side being computed, one coordinate at a time (``_sequential``).
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), order: torch.Tensor | None = None, bound: float = 5.0):
        super().__init__(dim)
        self.made = MADE(dim, hidden, order)
        self.order = torch.arange(dim) if order is None else torch.as_tensor(order)
        self.bound = bound

    def _params(self, h):
        mu, alpha = self.made(h)
        return mu, _soft_clamp(alpha, self.bound)

    def _normalize_given(self, x):
        """z = (x - mu(x)) exp(-alpha(x)) in one pass; log|det dz/dx| = -sum(alpha)."""
        mu, alpha = self._params(x)
        return (x - mu) * torch.exp(-alpha), -alpha.sum(-1)

    def _generate_given(self, z):
        """x = z exp(alpha(z)) + mu(z) in one pass; log|det dx/dz| = +sum(alpha)."""
        mu, alpha = self._params(z)
        return z * torch.exp(alpha) + mu, alpha.sum(-1)

    def _sequential(self, given, normalize: bool):
        """Compute the other side when the conditioner needs it: D passes, in the autoregressive order."""
        out = torch.zeros_like(given)
        for i in torch.argsort(self.order).tolist():
            mu, alpha = self._params(out)
            out = out.clone()
            out[:, i] = (given[:, i] - mu[:, i]) * torch.exp(-alpha[:, i]) if normalize \
                else given[:, i] * torch.exp(alpha[:, i]) + mu[:, i]
        _, alpha = self._params(out)
        return out, (-alpha.sum(-1) if normalize else alpha.sum(-1))


class MAF(_AffineAutoregressive):
    """Masked autoregressive flow layer (Papamakarios et al., 2017), data towards base:

    ``z_i = (x_i - mu_i(x_{<i})) * exp(-alpha_i(x_{<i}))``, ``log|det dz/dx| = -sum_i alpha_i``.
    Density: one network pass. Sampling (``inverse``): D sequential passes, ``x_i = z_i exp(alpha_i) + mu_i``.
    """

    def forward(self, x):
        _check_input(x, self.dim, "MAF.forward")
        return self._normalize_given(x)

    def inverse(self, z):
        _check_input(z, self.dim, "MAF.inverse")
        return self._sequential(z, normalize=False)


class IAF(_AffineAutoregressive):
    """Inverse autoregressive flow layer (Kingma et al., 2016): the MAF computation run the other way.

    The *sampling* direction is one pass, ``x_i = z_i exp(alpha_i(z_{<i})) + mu_i(z_{<i})``; the density of an external
    ``x`` (``forward``) needs D sequential passes to recover ``z``. ``log|det dz/dx| = -sum_i alpha_i(z_{<i})``.
    """

    def inverse(self, z):
        _check_input(z, self.dim, "IAF.inverse")
        return self._generate_given(z)

    def forward(self, x):
        _check_input(x, self.dim, "IAF.forward")
        return self._sequential(x, normalize=True)


def _mlp(d_in: int, d_out: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h), nn.SiLU()]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class AffineCoupling(FlowLayer):
    """RealNVP coupling layer (Dinh et al., 2017). ``mask`` (0/1, shape ``[D]``) marks the coordinates that pass unchanged
    and condition the others:

    ``z = m*x + (1-m)*(x*exp(s(m*x)) + t(m*x))``, ``log|det| = sum((1-m)*s)`` (the Jacobian is triangular after
    permuting). The log-scale is kept in ``(-bound, bound)`` with a soft clamp for stable training. ``additive=True``
    fixes ``s = 0``: the volume-preserving NICE layer (Dinh et al., 2015).
    The last layer of the conditioner starts at zero, so a new layer is the identity.
    """

    def __init__(self, dim: int, mask: torch.Tensor, hidden: Sequence[int] = (64, 64), additive: bool = False,
                 bound: float = 3.0):
        super().__init__(dim)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.shape != (dim,) or not ((mask == 0) | (mask == 1)).all() or mask.sum() in (0, dim):
            raise ValueError(f"mask must be a 0/1 vector of length {dim} with both values, got {mask.tolist()}")
        self.register_buffer("mask", mask)
        self.additive, self.bound = additive, bound
        self.net = _mlp(dim, dim if additive else 2 * dim, hidden)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _shift_and_log_scale(self, x_kept):
        out = self.net(x_kept)
        if self.additive:
            return out, torch.zeros_like(out)
        t, s = out.chunk(2, dim=-1)
        return t, _soft_clamp(s, self.bound)

    def forward(self, x):
        _check_input(x, self.dim, "AffineCoupling.forward")
        t, s = self._shift_and_log_scale(x * self.mask)
        free = 1 - self.mask
        z = x * self.mask + free * (x * torch.exp(s) + t)
        return z, (free * s).sum(-1)

    def inverse(self, z):
        _check_input(z, self.dim, "AffineCoupling.inverse")
        t, s = self._shift_and_log_scale(z * self.mask)  # the kept part is unchanged, so the same t and s
        free = 1 - self.mask
        x = z * self.mask + free * (z - t) * torch.exp(-s)
        return x, -(free * s).sum(-1)


def checkerboard_masks(dim: int, n: int) -> list[torch.Tensor]:
    """``n`` alternating 0/1 masks of length ``dim`` (even coordinates, then odd ones, ...)."""
    base = (torch.arange(dim) % 2 == 0).float()
    return [base if k % 2 == 0 else 1 - base for k in range(n)]


def realnvp(dim: int, n_layers: int = 8, hidden: Sequence[int] = (64, 64), additive: bool = False,
            linear: bool = False) -> Flow:
    """A RealNVP (or, with ``additive=True``, NICE) flow: alternating coupling layers, optional LU-linear mixing,
    and a final elementwise affine layer (NICE's diagonal scaling)."""
    layers: list[FlowLayer] = []
    for k, m in enumerate(checkerboard_masks(dim, n_layers)):
        if linear:
            layers.append(LULinear(dim, seed=k))
        layers.append(AffineCoupling(dim, m, hidden, additive=additive))
    layers.append(ElementwiseAffine(dim))
    return Flow(layers)


def standardize(x: torch.Tensor) -> ElementwiseAffine:
    """An :class:`ElementwiseAffine` layer initialised to map ``x`` to zero mean and unit variance per coordinate."""
    std, mean = x.std(0).clamp_min(1e-6), x.mean(0)
    return ElementwiseAffine(x.shape[1], log_scale=-std.log(), shift=-mean / std)


def maf_flow(dim: int, n_layers: int = 8, hidden: Sequence[int] = (64, 64), data: torch.Tensor | None = None) -> Flow:
    """A stack of MAF layers with the order reversed in between; standardises ``data`` first when given."""
    layers: list[FlowLayer] = [standardize(data)] if data is not None else []
    for _ in range(n_layers):
        layers += [MAF(dim, hidden), Reverse(dim)]
    return Flow(layers)


# =============================================================================================
# Exact likelihoods on discrete data (chapter 03 puts them next to the VAE)
# =============================================================================================
class BernoulliMADE(nn.Module):
    """MADE as Germain et al. (2015) built it: an autoregressive model of binary vectors,

    ``p(x) = prod_i Bernoulli(x_i; sigmoid(logit_i(x_{<i})))``, the order given by ``order`` (default 0..D-1).

    - ``log_prob(x)``: exact and normalised, all D conditionals from **one** masked pass, ``[B, D] -> [B]``
      (images ``[B, *shape]`` are flattened);
    - ``sample(n)``: **D sequential passes**, one coordinate at a time, ``-> [n, D]`` with entries in {0, 1}.

    The first coordinate in the order sees nothing: its logit is a learned bias, ``log p(x_1)``.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (256,), order: torch.Tensor | None = None):
        super().__init__()
        self.net = _made_net(dim, hidden, order, 1)
        self.register_buffer("order", torch.arange(dim) if order is None else torch.as_tensor(order))
        self.dim = dim

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits ``[B, D]``: logit ``i`` sees only the coordinates before ``i`` in the order."""
        return self.net(x)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or math.prod(x.shape[1:]) != self.dim:
            raise ValueError(f"BernoulliMADE expects a batch [B, {self.dim}] (or images with {self.dim} pixels), "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return x.flatten(1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x = self._flat(x)
        return -F.binary_cross_entropy_with_logits(self.logits(x), x, reduction="none").sum(-1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        p = next(self.parameters())
        x = torch.zeros(n, self.dim, dtype=p.dtype, device=p.device)
        for i in torch.argsort(self.order).tolist():      # coordinate i needs every earlier one: D passes
            prob = torch.sigmoid(self.logits(x)[:, i])
            u = torch.rand(n, generator=generator, dtype=p.dtype).to(p.device)
            x[:, i] = (u < prob).to(p.dtype)
        return x


class LogitTransform(FlowLayer):
    """Maps the box ``(0, scale)^D`` of dequantised data onto R^D (the preprocessing of Dinh et al., 2017):

    ``p = alpha + (1 - 2 alpha) y / scale``, ``z = log p - log(1 - p)``, with
    ``log|det dz/dy| = sum_i [log((1 - 2 alpha) / scale) - log p_i - log(1 - p_i)]``.
    A flow that starts with it puts no mass far outside the data's box, and the sharp edges of the cells are stretched out.
    ``alpha`` keeps the logit finite at the edges. No parameters.
    """

    def __init__(self, dim: int, scale: float = 2.0, alpha: float = 0.01):
        super().__init__(dim)
        if scale <= 0 or not 0 < alpha < 0.5:
            raise ValueError(f"need scale > 0 and 0 < alpha < 0.5, got scale={scale}, alpha={alpha}")
        self.scale, self.alpha = float(scale), float(alpha)

    def _log_det(self, p: torch.Tensor) -> torch.Tensor:
        return (math.log((1 - 2 * self.alpha) / self.scale) - torch.log(p) - torch.log1p(-p)).sum(-1)

    def forward(self, y):
        _check_input(y, self.dim, "LogitTransform.forward")
        p = self.alpha + (1 - 2 * self.alpha) * y / self.scale
        return torch.log(p) - torch.log1p(-p), self._log_det(p)

    def inverse(self, z):
        _check_input(z, self.dim, "LogitTransform.inverse")
        p = torch.sigmoid(z)
        return (p - self.alpha) / (1 - 2 * self.alpha) * self.scale, -self._log_det(p)


def dequantized_bound(log_prob, x: torch.Tensor, k: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """A lower bound on ``log P(x)`` of integer-valued data ``x [B, D]`` under a density ``log_prob`` (``[B, D] -> [B]``).

    Uniform dequantisation: the density ``p`` on R^D defines a discrete model ``P(x) = int_{[0,1)^D} p(x + u) du``,
    whose probabilities sum to at most 1 over the grid (``p`` may put mass off the cells). With ``u_1..u_k ~ U[0,1)^D``,
    ``log (1/k) sum_j p(x + u_j)`` has expectation ``<= log P(x)`` (Jensen), for ``k = 1`` the variational bound
    ``E_u log p(x + u)``, and tightens with ``k`` like :func:`course_utils.vae.iwae_bound` (uniform proposal). Returns
    ``[B]``: one draw of the bound per data point. Training ``p`` by maximum likelihood on ``x + u`` maximises the
    ``k = 1`` bound.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    y = torch.stack([dequantize(x, generator=generator) for _ in range(k)])          # [k, B, D]
    log_p = log_prob(y.reshape(-1, *x.shape[1:])).reshape(k, len(x))
    return torch.logsumexp(log_p, 0) - math.log(k)


# ---------------------------------------------------------------------------------------------
# references for checks and tests
# ---------------------------------------------------------------------------------------------
def jacobian_log_det(fn, x: torch.Tensor) -> torch.Tensor:
    """``log|det J_fn(x_b)|`` for each row ``x_b`` of ``x`` ``[B, D]``, from the full autograd Jacobian.

    The O(D^3) reference that every cheap log-det in the course is checked against.
    """
    return torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(fn, xi)).logabsdet for xi in x])


def randomize_(module: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Overwrite every parameter with ``scale * N(0, 1)`` (in place; returns the module).

    Layers that start as the identity (zero-initialised couplings) make wrong log-dets invisible: check on random weights.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g).to(p))
    return module
