"""course_utils: the shared package of *Deep Generative Models, derived and implemented*.

Small modules with one job each (see the README):

- :mod:`course_utils.data`      toy 2-D targets with exact densities, and the 8x8 digits
- :mod:`course_utils.metrics`   sample distances, Gaussian KL, noise floors
- :mod:`course_utils.training`  one small training loop with a progress bar
- :mod:`course_utils.flows`     reference flow layers (``forward(x) -> (z, log_det)``)
- :mod:`course_utils.vae`       VAE parts, ELBO and IWAE bounds, a model with exact answers, an autoregressive decoder
- :mod:`course_utils.priors`    mixture, flow and aggregate-posterior priors; ELBO surgery
- :mod:`course_utils.vq`        vector quantisation with straight-through, the VQ-VAE
- :mod:`course_utils.plotting`  densities, samples, image grids
- :mod:`course_utils.widgets`   one explorer module per chapter; update logic is a plain function
- :mod:`course_utils.checks`    homework feedback helpers
- :mod:`course_utils.course`    the instructor's ``course`` command (build, check, grade, bench); the library never
  imports it

Every notebook starts with :func:`seed_everything`, :func:`get_device` and :func:`set_threads`.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.1.0"

__all__ = ["seed_everything", "get_device", "set_threads", "default_threads", "__version__"]


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) and return a seeded CPU generator.

    Call it at the top of a notebook, and again before any cell whose printed numbers
    must be the same on every run.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed_everything expects an int seed, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def get_device(prefer: str | None = None) -> torch.device:
    """The device to compute on: ``prefer`` if given, else ``$COURSE_DEVICE``, else CUDA when present, else CPU.

    Every notebook calls this once, so the same code runs on a laptop CPU and on a GPU.
    """
    name = prefer or os.environ.get("COURSE_DEVICE")
    if name:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for, but torch sees no CUDA GPU; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def default_threads() -> int:
    """The course's thread policy: ``$COURSE_THREADS`` if set, else leave one core free for the rest of the laptop
    (the browser, JupyterLab, a second kernel), and use at most 4.

    Why (2-core CPU, torch 2.13, one training step of a small flow / an MLP at batch 1024, README "Budgets"): with an
    idle machine two threads gain little over one on models this small, but with one other busy process two
    threads on two cores are 7-14x *slower* than one, because the threads wait on each other's time slices.
    """
    env = os.environ.get("COURSE_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"COURSE_THREADS must be a whole number of threads, got {env!r}") from None
        if n < 1:
            raise ValueError(f"COURSE_THREADS must be at least 1, got {n}")
        return n
    return max(1, min(4, _available_cpus() - 1))


def set_threads(n: int | None = None) -> int:
    """Apply the course's one thread policy to PyTorch (call it once, at the top of a notebook); return the count.

    ``n`` overrides the policy for this process; otherwise :func:`default_threads` decides.
    """
    if n is None:
        n = default_threads()
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_threads expects a positive whole number of threads, got {n!r}")
    torch.set_num_threads(n)
    return n
