"""One small training loop for the whole course.

>>> history = fit(lambda: model_loss(), model, steps=2000, lr=1e-2)   # doctest: +SKIP

``loss_fn()`` draws its own batch and returns a scalar tensor; :func:`fit` does the rest:
seeding, the optimiser, a cosine learning-rate decay, a ``tqdm.auto`` progress bar (a widget in
JupyterLab, text elsewhere), a step budget and/or a wall-clock budget, and the loss history.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from . import get_device, seed_everything

__all__ = ["fit", "History", "fit_toy_density", "format_table", "seconds_per_call"]


@dataclass
class History:
    """What a run did: the loss at every step, the steps taken, the wall-clock seconds."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    stopped_by: str = "steps"

    def smoothed(self, window: int = 50) -> list[float]:
        """Running mean of the loss over ``window`` steps (for plots)."""
        out, acc = [], 0.0
        for i, v in enumerate(self.losses):
            acc += v
            if i >= window:
                acc -= self.losses[i - window]
            out.append(acc / min(i + 1, window))
        return out


def fit(loss_fn: Callable[[], torch.Tensor], params: nn.Module | Iterable[torch.nn.Parameter], *,
        steps: int | None = None, seconds: float | None = None, lr: float = 1e-2,
        weight_decay: float = 0.0, schedule: str | None = "cosine", clip_grad: float | None = None,
        seed: int | None = 0, progress: bool = True, desc: str = "training",
        device: torch.device | str | None = None) -> History:
    """Minimise ``loss_fn()`` with Adam for ``steps`` steps or ``seconds`` of wall clock, whichever comes first.

    ``device``: move a module there first (``"auto"`` means :func:`course_utils.get_device`); by default
    training runs wherever the parameters already are. ``loss_fn`` must put its batch on the same device.
    ``schedule="cosine"`` decays the learning rate to zero over ``steps``, or over ``seconds`` when no step budget is given.
    A non-finite loss stops the run with an error that names the step.
    """
    if steps is None and seconds is None:
        raise ValueError("fit needs a budget: pass steps=..., seconds=..., or both")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if schedule not in (None, "cosine"):
        raise ValueError(f"schedule must be None or 'cosine', got {schedule!r}")
    time_cosine = schedule == "cosine" and steps is None  # a wall-clock budget: decay over the seconds instead
    if seed is not None:
        seed_everything(seed)
    if device is not None:
        if not isinstance(params, nn.Module):
            raise TypeError("fit(device=...) needs an nn.Module; move plain parameters yourself")
        params.to(get_device() if device == "auto" else torch.device(device))
    param_list = list(params.parameters() if isinstance(params, nn.Module) else params)
    if not param_list:
        raise ValueError("fit got no parameters to train")
    opt = torch.optim.Adam(param_list, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))) \
        if schedule == "cosine" and not time_cosine else None

    history = History()
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False, mininterval=0.5)
    try:
        step = 0
        while steps is None or step < steps:
            loss = loss_fn()
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise TypeError("loss_fn must return a scalar torch.Tensor")
            if not torch.isfinite(loss):
                raise RuntimeError(f"the loss became {float(loss.detach())} at step {step}; lower the learning rate or check the model")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(param_list, clip_grad)
            opt.step()
            if sched is not None:
                sched.step()
            elif time_cosine:
                frac = min(1.0, (time.perf_counter() - start) / seconds)
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
            history.losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            if step % 25 == 0:
                bar.set_postfix(loss=f"{sum(history.losses[-25:]) / 25:.4f}")
            if seconds is not None and time.perf_counter() - start > seconds:
                history.stopped_by = "seconds"
                break
    finally:
        bar.close()
    history.steps = step
    history.seconds = time.perf_counter() - start
    return history


def fit_toy_density(make_model: Callable[[torch.Tensor], nn.Module], target: str, *, steps: int | None = 2000,
                    seconds: float | None = None, batch_size: int = 512, lr: float = 3e-3, n_train: int = 20_000,
                    n_test: int = 20_000, seed: int = 0, device: torch.device | str | None = None,
                    progress: bool = True, desc: str | None = None):
    """Fit a density model to a toy target by maximum likelihood and measure it against the truth.

    ``make_model(x_train)`` builds the model (it may use the data, e.g. to standardise); the model needs
    ``log_prob(x) -> [B]``. Train and test sets are fixed draws (``seed``). Returns ``(model, history, row)`` where
    ``row`` has the test NLL, the target's entropy on the test set, the KL gap ``mean(log p - log q)`` with its
    standard error, the training seconds and the number of parameters.
    """
    from .data import toy  # local: keep `training` free of data dependencies at import

    p = toy(target)
    gen = torch.Generator().manual_seed(seed)
    x_train, x_test = p.sample((n_train,), generator=gen), p.sample((n_test,), generator=gen)
    seed_everything(seed)
    model = make_model(x_train)
    dev = get_device() if device in (None, "auto") else torch.device(device)
    model.to(dev)
    x_train_d = x_train.to(dev)

    def nll():
        return -model.log_prob(x_train_d[torch.randint(len(x_train_d), (batch_size,), device=dev)]).mean()

    history = fit(nll, model, steps=steps, seconds=seconds, lr=lr, seed=None, clip_grad=10.0, progress=progress,
                  desc=desc or target)
    with torch.no_grad():
        lq = torch.cat([model.log_prob(chunk.to(dev)).cpu() for chunk in x_test.split(4096)])
    lp = p.log_prob(x_test)
    diff = (lp - lq).double()
    row = {"target": target, "test NLL": -lq.mean().item(), "entropy": -lp.mean().item(), "KL gap": diff.mean().item(),
           "± s.e.": (diff.std() / math.sqrt(len(diff))).item(), "seconds": history.seconds, "steps": history.steps,
           "params": sum(q.numel() for q in model.parameters())}
    return model, history, row


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts as an aligned text table (floats to 3 decimals)."""
    columns = columns or list(rows[0])
    cells = [[f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def seconds_per_call(fn: Callable[[], object], repeats: int = 3) -> float:
    """Wall-clock seconds of one call of ``fn()``: one warm-up call, then the fastest of ``repeats`` timed calls.

    The fastest call is the one least disturbed by whatever else the machine is doing. For cost comparisons (one network
    pass against D sequential passes): compare ratios measured in one run, not absolute times across machines.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
