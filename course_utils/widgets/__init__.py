"""Interactive explorers, one module per chapter, all built on one pattern (:mod:`course_utils.widgets._base`):
a *state* function does the maths, a *figure* function draws it, and an ipywidgets :class:`Explorer` only wires
controls to the two, so tests need no browser.

- Chapter 01, :mod:`.cov`:          :func:`cov_explorer`, the change-of-variables explorer.
- Chapter 02, :mod:`.flow_layers`:  :func:`flow_layers_explorer`, a trained flow layer by layer.
- Chapter 03, :mod:`.latent`:       :func:`latent_explorer`, the latent space of a 2-D VAE.
- Chapter 04, :mod:`.beta`:         :func:`beta_explorer`, a beta-VAE sweep: rate, distortion, reconstructions.

A widget module imports the library (models, ``plotting``) and ``._base``; never a notebook, never the ``course``
machinery (``tests/test_layout.py`` checks it).
"""

from ._base import Explorer
from .beta import ACTIVE_NATS, BetaExplorer, beta_explorer, beta_figure, beta_measurements, beta_state
from .cov import COV_TRANSFORMS, CovExplorer, cov_explorer, cov_figure, cov_state
from .flow_layers import FlowLayersExplorer, flow_layers_explorer, flow_layers_figure, flow_layers_state
from .latent import LatentExplorer, latent_explorer, latent_figure, latent_state

__all__ = ["Explorer",
           "COV_TRANSFORMS", "cov_state", "cov_figure", "cov_explorer", "CovExplorer",
           "flow_layers_state", "flow_layers_figure", "flow_layers_explorer", "FlowLayersExplorer",
           "latent_state", "latent_figure", "latent_explorer", "LatentExplorer",
           "ACTIVE_NATS", "beta_measurements", "beta_state", "beta_figure", "beta_explorer", "BetaExplorer"]
