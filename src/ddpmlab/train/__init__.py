"""Training a denoiser: :class:`Trainer` (Ho et al. 2020, Algorithm 1) with its gradient
backends (:mod:`ddpmlab.train.gradients`)."""

from ddpmlab.train.trainer import Diverged, Trainer, default_snapshots, lr_factor

__all__ = ["Diverged", "Trainer", "default_snapshots", "lr_factor"]
