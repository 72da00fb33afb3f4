"""Reverse-process samplers, one algorithm per file; ``spacing`` picks the visited steps;
``ode`` integrates the probability-flow ODE (sampling and the exact likelihood)."""

from ddpmlab.samplers.ddim import ddim_chain, ddim_sample, ddim_step
from ddpmlab.samplers.ddpm import ddpm_chain, ddpm_sample
from ddpmlab.samplers.dpm_solver import dpm_solver_chain, dpm_solver_sample
from ddpmlab.samplers.ode import network_field, ode_nll, ode_sample
from ddpmlab.samplers.spacing import DEFAULT_SPACING, SPACINGS, default_spacing, timesteps

__all__ = ["DEFAULT_SPACING", "SPACINGS", "ddim_chain", "ddim_sample", "ddim_step", "ddpm_chain",
           "ddpm_sample", "default_spacing", "dpm_solver_chain", "dpm_solver_sample",
           "network_field", "ode_nll", "ode_sample", "timesteps"]
