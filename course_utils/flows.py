"""Reference flow layers, one convention for the whole course.

A layer maps *data towards the base distribution*:

- ``layer.forward(x) -> (z, log_det)`` with ``log_det = log|det dz/dx|`` per sample, shape ``[B]``;
- ``layer.inverse(z) -> (x, log_det)`` with ``log_det = log|det dx/dz|`` of the inverse map, so a
  round trip's two log-dets sum to zero.

A :class:`Flow` is a list of layers plus a base density, so ``log_prob`` is one pass,
``sample`` is one reverse pass, and layer-by-layer pictures come for free (:meth:`Flow.trajectory`).
Chapter 01 builds the elementwise and planar layers here; later chapters add their own.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["FlowLayer", "ElementwiseAffine", "SinhArcsinh", "Planar", "Flow", "standard_normal_log_prob"]


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
