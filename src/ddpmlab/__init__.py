"""ddpmlab: denoising diffusion probabilistic models (Ho et al. 2020), every step shown.

It learns a distribution from examples (2-D point clouds, a word or a picture as a shape,
small images) and generates new ones, with the forward noising, the learned reverse
process, figures and animations, and sample quality beside the floor a perfect model
scores. It began as an implementation of *the source text*: a French MyST course notebook on
DDPMs (the forward process, the noise schedules, the training loop, the MLP and U-Net noise
predictors, the sampler and the figures), whose slips it corrects from the cited papers
(docs, "The source text's slips").

The public API::

    import ddpmlab

    config = ddpmlab.default_config("moons", {"train": {"steps": 2000}})
    run = ddpmlab.train_run(config, "runs/moons")
    x = run.sample(1000, seed=0, sampler=ddpmlab.SamplerSpec("ddim", steps=20))
    print(ddpmlab.score(run, sampler="ddpm"))

The names are loaded on first use: the maths and sampling do not pay for the metrics'
and figures' libraries (scipy, scikit-learn, POT, matplotlib) at start-up.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING, Any

try:  # the version is written once, in pyproject.toml
    __version__ = importlib.metadata.version("ddpmlab")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "unknown"

#: public name -> the module that defines it
_EXPORTS = {
    # configuration
    "RunConfig": "ddpmlab.config", "DataConfig": "ddpmlab.config",
    "DiffusionConfig": "ddpmlab.config", "ModelConfig": "ddpmlab.config",
    "TrainConfig": "ddpmlab.config", "default_config": "ddpmlab.modalities",
    "UserError": "ddpmlab.errors",
    # the maths
    "NoiseSchedule": "ddpmlab.schedules", "make_schedule": "ddpmlab.schedules",
    "q_sample": "ddpmlab.diffusion", "diffusion_loss": "ddpmlab.diffusion",
    "nll_bound": "ddpmlab.likelihood", "GaussianMixture": "ddpmlab.mixture",
    # samplers
    "SamplerSpec": "ddpmlab.samplers", "SAMPLERS": "ddpmlab.samplers",
    "ddpm_sample": "ddpmlab.samplers", "ddim_sample": "ddpmlab.samplers",
    "dpm_solver_sample": "ddpmlab.samplers", "ode_sample": "ddpmlab.samplers",
    # networks and training
    "build_network": "ddpmlab.models", "Trainer": "ddpmlab.train",
    # runs
    "Run": "ddpmlab.runs.run", "open_run": "ddpmlab.runs.run",
    "train_run": "ddpmlab.runs.training", "Evaluation": "ddpmlab.runs.evaluation",
    "score": "ddpmlab.runs.evaluation", "evaluate_run": "ddpmlab.runs.evaluation",
    "score_classes": "ddpmlab.runs.evaluation", "sweep": "ddpmlab.runs.sweep",
    "run_bound": "ddpmlab.runs.likelihood", "run_exact_nll": "ddpmlab.runs.likelihood",
    "make_figures": "ddpmlab.runs.figures", "animate": "ddpmlab.runs.figures",
}

__all__ = [
    "SAMPLERS",
    "DataConfig",
    "DiffusionConfig",
    "Evaluation",
    "GaussianMixture",
    "ModelConfig",
    "NoiseSchedule",
    "Run",
    "RunConfig",
    "SamplerSpec",
    "TrainConfig",
    "Trainer",
    "UserError",
    "animate",
    "build_network",
    "ddim_sample",
    "ddpm_sample",
    "default_config",
    "diffusion_loss",
    "dpm_solver_sample",
    "evaluate_run",
    "make_figures",
    "make_schedule",
    "nll_bound",
    "ode_sample",
    "open_run",
    "q_sample",
    "run_bound",
    "run_exact_nll",
    "score",
    "score_classes",
    "sweep",
    "train_run",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ddpmlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from ddpmlab.config import DataConfig, DiffusionConfig, ModelConfig, RunConfig, TrainConfig
    from ddpmlab.diffusion import diffusion_loss, q_sample
    from ddpmlab.errors import UserError
    from ddpmlab.likelihood import nll_bound
    from ddpmlab.mixture import GaussianMixture
    from ddpmlab.modalities import default_config
    from ddpmlab.models import build_network
    from ddpmlab.runs.evaluation import Evaluation, evaluate_run, score, score_classes
    from ddpmlab.runs.figures import animate, make_figures
    from ddpmlab.runs.likelihood import run_bound, run_exact_nll
    from ddpmlab.runs.run import Run, open_run
    from ddpmlab.runs.sweep import sweep
    from ddpmlab.runs.training import train_run
    from ddpmlab.samplers import (
        SAMPLERS,
        SamplerSpec,
        ddim_sample,
        ddpm_sample,
        dpm_solver_sample,
        ode_sample,
    )
    from ddpmlab.schedules import NoiseSchedule, make_schedule
    from ddpmlab.train import Trainer
