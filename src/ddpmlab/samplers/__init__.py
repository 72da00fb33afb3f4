"""Reverse-process samplers, one algorithm per file; ``spacing`` picks the visited steps."""

from ddpmlab.samplers.ddim import ddim_chain, ddim_sample, ddim_step
from ddpmlab.samplers.ddpm import ddpm_chain, ddpm_sample
from ddpmlab.samplers.spacing import DEFAULT_SPACING, SPACINGS, timesteps

__all__ = ["DEFAULT_SPACING", "SPACINGS", "ddim_chain", "ddim_sample", "ddim_step", "ddpm_chain",
           "ddpm_sample", "timesteps"]
