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
- :mod:`course_utils.widgets`   one explorer per chapter; update logic is a plain function
- :mod:`course_utils.checks`    homework feedback helpers
- ``course`` (:mod:`course_utils.cli`) build, check and grade homework
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__version__ = "0.1.0"

__all__ = ["seed_everything", "get_device", "__version__"]


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
