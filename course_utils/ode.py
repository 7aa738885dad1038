"""Continuous time: ODE solvers, divergences, exact ODE log-likelihoods, SDEs and the probability-flow ODE.

Conventions (chapter 08):

- a vector field is called as ``f(t, x)`` (``torchdiffeq``'s convention), ``x`` of shape ``[B, *event]``, ``t`` a
  0-d tensor; it returns a tensor of ``x``'s shape;
- :func:`odeint` returns the state at every time of ``ts`` (``[len(ts), *x0.shape]``), taking one step per interval
  of ``ts``; ``f`` is evaluated 1 (Euler) or 2 (Heun) times per step. Wrap ``f`` in :class:`CountNFE` to count;
- log-densities along an ODE: ``d log p_t(x(t)) / dt = -div f(x(t), t)`` (the instantaneous change of variables);
  :func:`ode_log_likelihood` integrates ``(f, -div f)`` from the data time to the noise time;
- the VP-SDE (:class:`VPSDE`) runs from data at ``t = 0`` to noise at ``t = 1``, like ``score_sde``; its
  :meth:`VPSDE.reverse` turns into the probability-flow ODE with one flag, and broadcasts on ``x.ndim``.
  (Flow matching, :mod:`course_utils.flow_matching`, runs the other way: noise at ``t = 0``, data at ``t = 1``.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["odeint", "euler_step", "heun_step", "CountNFE", "divergence", "divergence_hutchinson",
           "ode_log_likelihood", "standard_normal_log_prob", "euler_maruyama", "OrnsteinUhlenbeck", "VPSDE",
           "ReverseSDE", "expand_t", "eps_to_score_fn", "ddim_sample"]

VectorField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
METHODS = ("euler", "heun")


# --- ODE solvers ---------------------------------------------------------------------------------
class CountNFE:
    """Wrap a vector field ``f(t, x)`` and count its evaluations in ``.nfe`` (number of function evaluations)."""

    def __init__(self, f: VectorField):
        if not callable(f):
            raise TypeError(f"CountNFE needs a callable f(t, x), got {type(f).__name__}")
        self.f, self.nfe = f, 0

    def __call__(self, t, x):
        self.nfe += 1
        return self.f(t, x)


def euler_step(f: VectorField, t: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One Euler step ``x + h f(t, x)`` (1 evaluation of ``f``; local error O(h^2), global O(h))."""
    return x + h * f(t, x)


def heun_step(f: VectorField, t: torch.Tensor, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """One Heun step (explicit trapezoid): predict ``x' = x + h f(t, x)``, then average the slopes at both ends,
    ``x + h/2 (f(t, x) + f(t + h, x'))`` (2 evaluations; local error O(h^3), global O(h^2))."""
    k1 = f(t, x)
    k2 = f(t + h, x + h * k1)
    return x + 0.5 * h * (k1 + k2)


_STEPS = {"euler": euler_step, "heun": heun_step}


def odeint(f: VectorField, x0: torch.Tensor, ts: torch.Tensor, method: str = "euler") -> torch.Tensor:
    """Solve ``dx/dt = f(t, x)``, ``x(ts[0]) = x0`` with one fixed step per interval of ``ts``.

    Same calling convention as ``torchdiffeq.odeint(f, x0, ts, method="euler" | "heun2")``; returns the states at
    every time of ``ts``, shape ``[len(ts), *x0.shape]`` (``out[0]`` is ``x0``). ``ts`` may decrease (integrate
    backwards in time). NFE = ``(len(ts) - 1)`` for Euler, ``2 (len(ts) - 1)`` for Heun.
    """
    if method not in _STEPS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(x0, torch.Tensor) or not torch.is_floating_point(x0):
        raise TypeError("odeint needs x0 as a floating-point torch.Tensor")
    ts = torch.as_tensor(ts, dtype=x0.dtype, device=x0.device)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError(f"ts must be a 1-D tensor of at least 2 times, got shape {tuple(ts.shape)}")
    d = ts[1:] - ts[:-1]
    if not ((d > 0).all() or (d < 0).all()):
        raise ValueError("ts must be strictly increasing or strictly decreasing")
    step = _STEPS[method]
    xs, x = [x0], x0
    for i in range(len(ts) - 1):
        x = step(f, ts[i], x, ts[i + 1] - ts[i])
        xs.append(x)
    return torch.stack(xs)


# --- divergences -----------------------------------------------------------------------------------
def _grad(out: torch.Tensor, x: torch.Tensor, v: torch.Tensor | None = None, create_graph: bool = False) -> torch.Tensor:
    """``v^T ∂out/∂x`` (zeros where ``out`` does not depend on ``x``, e.g. a constant field)."""
    if not out.requires_grad:
        return torch.zeros_like(x)
    return torch.autograd.grad(out, x, v, create_graph=create_graph, retain_graph=True, allow_unused=True,
                               materialize_grads=True)[0]


def divergence(f: VectorField, t: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """Exact divergence ``tr(∂f/∂x)`` of ``f(t, ·)`` at each row of ``x`` ``[B, D]``: one backward pass per dimension.
    Returns ``[B]``. Rows must not interact (``f`` acts on each sample alone)."""
    if x.ndim != 2:
        raise ValueError(f"divergence expects x of shape [B, D], got {tuple(x.shape)}")
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        fx = f(t, x)
        div = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(x.shape[1]):
            div = div + _grad(fx[:, i].sum(), x, create_graph=create_graph)[:, i]
    return div


def divergence_hutchinson(f: VectorField, t: torch.Tensor, x: torch.Tensor, n_probes: int = 1,
                          probe: str = "rademacher", generator: torch.Generator | None = None,
                          create_graph: bool = False) -> torch.Tensor:
    """Hutchinson's unbiased estimate ``mean_k eps_k^T (∂f/∂x) eps_k`` of the divergence, ``E[eps eps^T] = I``.

    ``probe="rademacher"`` (±1 entries; per probe, variance ``||A||_F^2 + tr(A^2) - 2 sum_i A_ii^2``) or
    ``"gaussian"`` (variance ``||A||_F^2 + tr(A^2)``), with ``A = ∂f/∂x``: Rademacher probes never do worse. One vector-Jacobian product per probe; probes are drawn in ``x``'s dtype and device.
    Returns ``[B]``.
    """
    if probe not in ("rademacher", "gaussian"):
        raise ValueError(f"probe must be 'rademacher' or 'gaussian', got {probe!r}")
    if n_probes < 1:
        raise ValueError(f"n_probes must be >= 1, got {n_probes}")
    with torch.enable_grad():
        x = x if x.requires_grad else x.detach().requires_grad_(True)
        fx = f(t, x)
        est = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in range(n_probes):
            # draw on the CPU generator's device, then move: works with a CPU generator and a GPU tensor
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            if probe == "rademacher":
                eps = eps.sign()
            eps = eps.to(x.device)
            vjp = _grad(fx, x, eps, create_graph=create_graph)
            est = est + (vjp * eps).flatten(1).sum(1)
    return est / n_probes


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over all but the first dimension: ``[B, ...] -> [B]``."""
    return -0.5 * (z.flatten(1) ** 2).sum(1) - 0.5 * z[0].numel() * math.log(2 * math.pi)


def ode_log_likelihood(f: VectorField, x: torch.Tensor, t_data: float, t_noise: float,
                       noise_log_prob: Callable[[torch.Tensor], torch.Tensor] = standard_normal_log_prob,
                       steps: int = 100, method: str = "heun", div: str = "exact", n_probes: int = 1,
                       generator: torch.Generator | None = None, return_nfe: bool = False):
    """Exact (up to the solver) log-density of ``x`` ``[B, D]`` under the flow of ``dx/dt = f(t, x)`` that carries
    ``noise_log_prob`` at ``t_noise`` to the data at ``t_data``.

    Integrates the augmented ODE ``d/dt (x, l) = (f, -div f)`` from ``(x, 0)`` at ``t_data`` to ``t_noise`` with
    ``steps`` fixed steps; then ``log p_data(x) = noise_log_prob(x(t_noise)) - l(t_noise)``.
    ``div="exact"`` (D backward passes per evaluation) or ``"hutchinson"`` (unbiased, ``n_probes`` probes; fixed
    probes along the path). Returns ``[B]`` (and the NFE of ``f`` if ``return_nfe``).
    """
    if div not in ("exact", "hutchinson"):
        raise ValueError(f"div must be 'exact' or 'hutchinson', got {div!r}")
    if x.ndim != 2:
        raise ValueError(f"ode_log_likelihood expects x of shape [B, D], got {tuple(x.shape)}")
    counted = CountNFE(f)
    d = x.shape[1]
    if div == "hutchinson":
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        eps = eps.sign().to(x.device)   # Rademacher, in x's dtype

    def augmented(t, state):
        with torch.enable_grad():
            y = state[:, :d].detach().requires_grad_(True)
            fy = counted(t, y)
            if div == "exact":
                dv = torch.zeros(len(y), dtype=y.dtype, device=y.device)
                for i in range(d):
                    dv = dv + _grad(fy[:, i].sum(), y)[:, i]
            else:
                dv = (_grad(fy, y, eps) * eps).sum(1)
        return torch.cat([fy.detach(), -dv.detach()[:, None]], 1)

    ts = torch.linspace(t_data, t_noise, steps + 1, dtype=x.dtype, device=x.device)
    state = odeint(augmented, torch.cat([x.detach(), x.new_zeros(len(x), 1)], 1), ts, method)[-1]
    logp = noise_log_prob(state[:, :d]) - state[:, d]
    return (logp, counted.nfe) if return_nfe else logp


# --- SDEs ------------------------------------------------------------------------------------------------
def expand_t(t, x: torch.Tensor) -> torch.Tensor:
    """A time ``t`` (a number, a 0-d tensor or one time per sample ``[B]``) shaped to broadcast against ``x``
    ``[B, *event]``: ``[B, 1, ..., 1]`` with ``x.ndim`` dimensions (any data shape, not only images)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        return t.expand(x.shape[0]).reshape(-1, *([1] * (x.ndim - 1)))
    if t.shape != x.shape[:1]:
        raise ValueError(f"t must be a number or one time per sample (shape [{x.shape[0]}]), got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def euler_maruyama(drift: VectorField, diffusion: Callable, x0: torch.Tensor, ts: torch.Tensor,
                   generator: torch.Generator | None = None, keep_path: bool = False) -> torch.Tensor:
    """Simulate ``dx = drift(t, x) dt + diffusion(t, x) dw`` on the grid ``ts`` (increasing or decreasing):
    ``x + drift h + g sqrt(|h|) eps`` with ``eps ~ N(0, I)`` drawn **here, once** per step (``diffusion`` returns the
    coefficient g, never noise). Returns the final state, or ``[len(ts), *x0.shape]`` if ``keep_path``."""
    ts = torch.as_tensor(ts, dtype=x0.dtype, device=x0.device)
    if ts.ndim != 1 or len(ts) < 2:
        raise ValueError("ts must be a 1-D tensor of at least 2 times")
    x, path = x0, [x0]
    for i in range(len(ts) - 1):
        t, h = ts[i], ts[i + 1] - ts[i]
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = x + drift(t, x) * h + diffusion(t, x) * h.abs().sqrt() * eps
        if keep_path:
            path.append(x)
    return torch.stack(path) if keep_path else x


@dataclass
class OrnsteinUhlenbeck:
    """``dx = -theta x dt + sigma dw``: Gaussian marginals ``x_t ~ N(x_0 e^{-theta t}, sigma^2 (1 - e^{-2 theta t}) / (2 theta))``,
    stationary law ``N(0, sigma^2 / (2 theta))``."""

    theta: float = 1.0
    sigma: float = 1.0

    def __post_init__(self):
        if self.theta <= 0 or self.sigma <= 0:
            raise ValueError(f"theta and sigma must be positive, got theta={self.theta}, sigma={self.sigma}")

    def drift(self, t, x):
        return -self.theta * x

    def diffusion(self, t, x):
        return self.sigma

    def marginal(self, x0: torch.Tensor, t: float) -> tuple[torch.Tensor, float]:
        """Mean and standard deviation of ``x_t`` given ``x_0``."""
        var = self.sigma ** 2 * (1 - math.exp(-2 * self.theta * t)) / (2 * self.theta)
        return x0 * math.exp(-self.theta * t), math.sqrt(var)

    @property
    def stationary_var(self) -> float:
        return self.sigma ** 2 / (2 * self.theta)


class VPSDE:
    """The variance-preserving SDE ``dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw`` on ``t in [0, 1]`` with
    ``beta(t) = beta_min + t (beta_max - beta_min)``: the continuous limit of DDPM's chain with
    ``beta_i ≈ beta((i - 1) / T) / T``, i.e. Euler–Maruyama's left-point rule on step ``i``'s interval
    ``[(i - 1) / T, i / T]`` (``Schedule.linear(1000)``, ``beta`` from 1e-4 to 0.02, gives the defaults; its
    ``alpha_bars[i]`` matches ``alpha(i / T)^2`` up to O(1/T)).

    ``marginal_prob(x0, t) -> (mean, std)`` with ``mean = alpha(t) x0``, ``std = sqrt(1 - alpha(t)^2)``,
    ``log alpha(t) = -1/4 t^2 (beta_max - beta_min) - 1/2 t beta_min`` (so ``alpha(t)^2`` is the ᾱ of chapter 07).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 <= beta_min <= beta_max:
            raise ValueError(f"need 0 <= beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.T = 1.0

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        """``log alpha(t) = -1/2 ∫_0^t beta(s) ds`` (the log of the mean coefficient)."""
        return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha_bar(self, t):
        """``alpha(t)^2``, the continuous ᾱ(t)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.exp(2 * self.log_alpha(t))

    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift ``-1/2 beta(t) x`` and diffusion coefficient ``sqrt(beta(t))`` (broadcast against ``x``)."""
        tb = expand_t(t, x)
        b = self.beta(tb)
        return -0.5 * b * x, b.sqrt()

    def marginal_prob(self, x0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of ``x_t`` given ``x_0`` (both broadcast against ``x0``)."""
        la = self.log_alpha(expand_t(t, x0))
        return la.exp() * x0, (1 - (2 * la).exp()).sqrt()

    def prior_sampling(self, shape, generator: torch.Generator | None = None, device=None, dtype=torch.float32):
        return torch.randn(shape, generator=generator, dtype=dtype).to(device or "cpu")

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        return standard_normal_log_prob(z)

    def reverse(self, score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE ``dx = [f - g^2 score] dt + g dw̄`` (integrated from ``t = 1`` down to 0), or with
        ``probability_flow=True`` the probability-flow ODE ``dx = [f - 1/2 g^2 score] dt`` (diffusion 0).
        ``score_fn(x, t)`` approximates ``∇_x log p_t(x)``."""
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """Reverse of a forward SDE with a score (see :meth:`VPSDE.reverse`). ``sde(x, t)`` gives (drift, diffusion)
    in forward time ``t``; integrate with a decreasing time grid. ``ode_field(t, x)`` is the drift as an
    ``f(t, x)`` vector field (for :func:`odeint`, when ``probability_flow``)."""

    def __init__(self, forward: VPSDE, score_fn, probability_flow: bool):
        self.forward, self.score_fn, self.probability_flow = forward, score_fn, bool(probability_flow)

    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        f, g = self.forward.sde(x, t)
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        score = self.score_fn(x, tt.expand(x.shape[0]) if tt.ndim == 0 else tt)
        drift = f - g ** 2 * score * (0.5 if self.probability_flow else 1.0)
        return drift, (torch.zeros_like(g) if self.probability_flow else g)

    def ode_field(self, t, x):
        return self.sde(x, t)[0]

    def drift(self, t, x):
        return self.sde(x, t)[0]

    def diffusion(self, t, x):
        return self.sde(x, t)[1]


# --- a trained DDPM (chapter 07) in continuous time ---------------------------------------------------------
def eps_to_score_fn(eps_fn: Callable, sde: VPSDE, T: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The score ``s(x, t) = -eps(x, t T) / std(t)`` of an epsilon-network trained on a DDPM chain of ``T`` steps
    whose continuous limit is ``sde`` (``Schedule.linear(1000)`` and ``VPSDE(0.1, 20)``): the chain's step ``i``
    sits at ``t = i / T``, and the network is queried at the (fractional) step ``t T``."""
    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        tt = tt.expand(x.shape[0]) if tt.ndim == 0 else tt
        std = (1 - torch.exp(2 * sde.log_alpha(expand_t(tt, x)))).sqrt()
        return -eps_fn(x, tt * T) / std
    return score


@torch.no_grad()
def ddim_sample(eps_fn: Callable, schedule, shape, steps: int, eta: float = 0.0,
                generator: torch.Generator | None = None, x_T: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """DDIM (Song, Meng & Ermon, 2021) with ``steps`` network calls on a chapter-07 :class:`Schedule` (index
    ``t = 0..T``, ``alpha_bars[0] = 1``). It visits ``tau = round(linspace(T, 0, steps + 1))`` (``T`` first, the data
    index 0 last: exactly ``steps`` evaluations of ``eps_fn``), and from ``tau_i`` to ``tau_{i+1} = s``:
    ``x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)``. ``eta = 0``: deterministic (an Euler
    discretisation of the PF-ODE, see chapter 08); ``eta = 1``: the ancestral sampler's variance on the coarse grid.
    ``eps_fn(x, t [B] long)``. Returns ``x_0`` of ``shape``."""
    if not isinstance(steps, int) or not 1 <= steps <= schedule.T:
        raise ValueError(f"steps must be an int in 1..T = {schedule.T}, got {steps!r}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    x = torch.randn(tuple(shape), generator=generator).to(device or "cpu") if x_T is None else x_T.clone()
    taus = torch.linspace(schedule.T, 0, steps + 1).round().long().tolist()
    ab = schedule.alpha_bars
    for t, s in zip(taus[:-1], taus[1:]):
        a_t, a_s = float(ab[t]), float(ab[s])
        eps = eps_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
        x = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma ** 2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, generator=generator).to(x.device)
    return x
