"""Interactive explorers, one module per chapter, all built on one pattern (:mod:`course_utils.widgets._base`):
a *state* function does the maths, a *figure* function draws it, and an ipywidgets :class:`Explorer` only wires
controls to the two, so tests need no browser.

- Chapter 01, :mod:`.cov`:          :func:`cov_explorer`, the change-of-variables explorer.
- Chapter 02, :mod:`.flow_layers`:  :func:`flow_layers_explorer`, a trained flow layer by layer.
- Chapter 03, :mod:`.latent`:       :func:`latent_explorer`, the latent space of a 2-D VAE.
- Chapter 04, :mod:`.beta`:         :func:`beta_explorer`, a beta-VAE sweep: rate, distortion, reconstructions.
- Chapter 06, :mod:`.score`:        :func:`score_explorer`, q_sigma, exact and learned scores, Langevin particles.
- Chapter 05, :mod:`.gan`:          :func:`gan_explorer`, recorded GAN / WGAN runs step by step.
- Chapter 07, :mod:`.diffusion`:    :func:`ddpm_explorer`, forward marginals and reverse particles at t, guidance w.
- Chapter 08, :mod:`.ode`:          :func:`ode_explorer`, flow-matching trajectories for a chosen solver and NFE.

A widget module imports the library (models, ``plotting``) and ``._base``; never a notebook, never the ``course``
machinery (``tests/test_layout.py`` checks it).
"""

from ._base import Explorer
from .beta import ACTIVE_NATS, BetaExplorer, beta_explorer, beta_figure, beta_measurements, beta_state
from .cov import COV_TRANSFORMS, CovExplorer, cov_explorer, cov_figure, cov_state
from .flow_layers import FlowLayersExplorer, flow_layers_explorer, flow_layers_figure, flow_layers_state
from .gan import GANExplorer, gan_explorer, gan_figure, gan_recorder, gan_state
from .latent import LatentExplorer, latent_explorer, latent_figure, latent_state
from .score import ScoreExplorer, score_explorer, score_figure, score_state
from .ode import ODE_NFES, OdeExplorer, ode_explorer, ode_figure, ode_state
from .diffusion import DDPMExplorer, ddpm_explorer, ddpm_figure, ddpm_state

__all__ = ["Explorer",
           "COV_TRANSFORMS", "cov_state", "cov_figure", "cov_explorer", "CovExplorer",
           "flow_layers_state", "flow_layers_figure", "flow_layers_explorer", "FlowLayersExplorer",
           "latent_state", "latent_figure", "latent_explorer", "LatentExplorer",
           "ODE_NFES", "ode_state", "ode_figure", "ode_explorer", "OdeExplorer",
           "ACTIVE_NATS", "beta_measurements", "beta_state", "beta_figure", "beta_explorer", "BetaExplorer",
           "gan_recorder", "gan_state", "gan_figure", "gan_explorer", "GANExplorer",
           "score_state", "score_figure", "score_explorer", "ScoreExplorer",
           "ddpm_state", "ddpm_figure", "ddpm_explorer", "DDPMExplorer"]
