"""Homework feedback: checks that say what was expected, not stack traces.

Every helper raises :class:`CheckFailed` (an ``AssertionError``, so nbgrader scores the cell 0)
with one clear message. In Jupyter the message is shown without a traceback.

>>> z = call(student_fn, x, name="log_det_planar")            # doctest: +SKIP
>>> expect_tensor(z, shape=(128,), name="log_det_planar(x)")   # doctest: +SKIP
>>> expect_close(z, reference, atol=1e-5, name="log_det_planar(x)")  # doctest: +SKIP

Hidden checks (the grader's, in ``### BEGIN HIDDEN TESTS`` blocks of a homework source) are functions of
``student`` decorated with :func:`hidden_test`; see its docstring.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import math
import sys

import torch

__all__ = ["CheckFailed", "call", "expect", "expect_tensor", "expect_close", "expect_density_fit", "diagnose", "passed",
           "hidden_test", "LocalStudent"]


class CheckFailed(AssertionError):
    """A homework check that failed; shown in Jupyter as one line, without a traceback."""

    def _render_traceback_(self) -> list[str]:  # IPython uses this instead of the traceback
        return [f"\x1b[1;31mCheck failed:\x1b[0m {self}"]


def _fail(message: str) -> None:
    raise CheckFailed(message) from None


def call(fn: Callable, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
    """Call the student's ``fn(*args, **kwargs)``; turn an exception into a clear message."""
    label = name or getattr(fn, "__name__", "your function")
    if not callable(fn):
        _fail(f"{label} should be a function (or class), but it is a {type(fn).__name__}")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        _fail(f"{label} is not implemented yet: replace `raise NotImplementedError()` with your code")
    except CheckFailed:
        raise
    except Exception as err:  # noqa: BLE001 - any student error becomes feedback
        if getattr(err, "grading_failure", False):  # the grader lost the kernel: not the student's error message
            raise
        kind = getattr(err, "student_error_type", type(err).__name__)  # raised in the student's kernel (grading)
        message = str(getattr(err, "student_error_message", err))
        _fail(f"{label} raised {kind}: {message[:200]!r}" if hasattr(err, "student_error_type") else
              f"{label} raised {kind}: {message}")


def expect(condition: bool, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds."""
    if not bool(condition):
        _fail(message)


def expect_tensor(value: Any, shape: Sequence[int] | None = None, name: str = "the result",
                  dtype: torch.dtype | None = None, finite: bool = True) -> torch.Tensor:
    """Check that ``value`` is a tensor of the given ``shape`` (and floating ``dtype``), free of NaN/inf."""
    if not isinstance(value, torch.Tensor):
        _fail(f"{name} should be a torch.Tensor{'' if shape is None else f' of shape {tuple(shape)}'}, "
              f"but it is a {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        _fail(f"{name} should have shape {tuple(shape)}, but it has shape {tuple(value.shape)}")
    if value.is_complex() and dtype is None:
        _fail(f"{name} should be real, but it has the complex dtype {value.dtype}")
    if dtype is not None and value.dtype != dtype:
        _fail(f"{name} should have dtype {dtype}, but it has dtype {value.dtype}")
    if finite and torch.is_floating_point(value):
        bad = ~torch.isfinite(value)
        if bad.any():
            kind = "NaN" if torch.isnan(value).any() else "inf"
            _fail(f"{name} contains {kind} values ({int(bad.sum())} of {value.numel()} entries); "
                  "look for a log of a non-positive number or a division by zero")
    return value


def expect_close(value: Any, expected: torch.Tensor | float, atol: float = 1e-5, rtol: float = 1e-4,
                 name: str = "the result") -> None:
    """Check ``value`` against ``expected`` within ``atol + rtol * |expected|``, elementwise."""
    expected_t = torch.as_tensor(expected, dtype=torch.float64)
    value = expect_tensor(value if isinstance(value, torch.Tensor) else torch.as_tensor(value),
                          shape=tuple(expected_t.shape), name=name)
    v = value.detach().double().cpu()
    err = (v - expected_t).abs()
    tol = atol + rtol * expected_t.abs()
    if not (err <= tol).all():  # (a NaN anywhere fails: NaN <= tol is false)
        i = int((err - tol).flatten().argmax())
        _fail(f"{name} is off: at entry {i} it is {v.flatten()[i].item():.6g} but should be "
              f"{expected_t.flatten()[i].item():.6g} (largest error {err.max().item():.3g}, tolerance {atol:g} + {rtol:g}*|expected|)")


def expect_density_fit(log_q: torch.Tensor, log_p: torch.Tensor, bound: float, name: str = "the model") -> float:
    """A model's log-density ``log_q`` at draws of the target, whose own log-density there is ``log_p``: check that q is
    a normalised density fitted to p, and return the KL gap KL(p || q) = E_p[log p - log q].

    A normalised q puts mass E_p[q/p] <= 1 where p lives, and its KL gap is at least 0 (up to the Monte Carlo
    error); a "model" whose log_prob is shifted up, or is simply large, fails both. The gap must be below ``bound``.
    """
    diff = (torch.as_tensor(log_p) - torch.as_tensor(log_q)).double().detach().cpu()
    kl, se = diff.mean().item(), diff.std().item() / max(1.0, len(diff)) ** 0.5
    mass = (-diff).exp().mean().item()
    expect(math.isfinite(kl) and math.isfinite(mass), f"{name}: the KL gap is not finite: did the training diverge?")
    expect(mass < 1.05 and kl > -4 * se, f"{name}: log_prob is not a normalised density (it puts mass {mass:.3g} where "
           f"the target lives, and its KL gap {kl:.3g} is below zero, impossible for a density)")
    expect(kl < bound, f"{name}: the KL gap should be below {bound} nats, but it is {kl:.4f}")
    return kl


def diagnose(value: Any, wrong: dict[str, Any], atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Name a known mistake: fail with ``message`` if ``value`` matches the wrong answer ``wrong[message]``.

    Call it before :func:`expect_close`, with the answers the common mistakes give (NaN matches NaN), so that
    a student reads "the log-det uses alpha instead of log(alpha)" instead of "entry 3 is off".
    """
    if not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            return
    v = value.detach().double().cpu()
    for message, answer in wrong.items():
        a = torch.as_tensor(answer).detach().double().cpu()
        if a.shape == v.shape and torch.allclose(v, a, atol=atol, rtol=rtol, equal_nan=True):
            _fail(message)


def passed(what: str) -> None:
    """Print a short confirmation after a check cell's assertions."""
    print(f"✓ {what}")


# ---------------------------------------------------------------------------------------------------------------
# hidden checks: written once, run in the solution notebook and by the grader
# ---------------------------------------------------------------------------------------------------------------
_HIDDEN_REGISTRY: list | None = None  # the grader sets a list: hidden tests are collected, not run


class LocalStudent:
    """The notebook's own namespace as ``student``: what a hidden test sees when the solution notebook runs it.

    The grader passes a :class:`course_utils.course.rpc.Remote` instead, with the same methods, whose calls go
    into the student's sandboxed kernel and come back as data."""

    def __init__(self, namespace: dict):
        self._ns = namespace

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._ns:
            raise NameError(f"name {name!r} is not defined in your notebook (did you rename it or skip its cell?)")
        return self._ns[name]

    def value(self, ref: Any) -> Any:
        """The value behind ``ref`` (with the grader, an attribute or global fetched from the kernel)."""
        return ref

    def type_name(self, obj: Any) -> str:
        """``module.QualName`` of a student's object."""
        return f"{type(obj).__module__}.{type(obj).__qualname__}"

    def code(self, source: str, **env: Any) -> Callable:
        """A small function such as ``"lambda x: x @ A.T"`` with data ``env`` bound (with the grader, the kernel
        builds it, so it can be passed to the student's functions)."""
        return eval(source, {"torch": torch, "math": math, **env})  # noqa: S307 - the homework author's own source


def hidden_test(fn: Callable) -> Callable:
    """Declare a hidden check: ``fn(student)`` calls the student's functions as ``student.name(...)`` on inputs it
    makes itself from explicit seeds, and fails with :class:`CheckFailed` (the ``expect_*`` helpers).

    In a notebook it runs at once on the notebook's own names (so the solution notebook proves it passes). When
    ``course grade`` grades, it never enters the student's kernel: the grader runs it in its own clean process, where
    ``student.name(...)`` sends the arguments into the sandboxed kernel and gets the results back as data; the task's
    points are earned only when it passes there. Put it inside ``### BEGIN HIDDEN TESTS`` of the task's check cell;
    it may use the names of the setup cell and of other locked cells that call no student code."""
    if _HIDDEN_REGISTRY is not None:
        _HIDDEN_REGISTRY.append(fn)
        return fn
    import random

    import numpy as np

    # the notebook's random streams are left as they were: a hidden test (which the grader runs after the notebook,
    # not in the middle of it) must not change what the cells after it print
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    try:
        fn(LocalStudent(sys._getframe(1).f_globals))
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
    return fn
