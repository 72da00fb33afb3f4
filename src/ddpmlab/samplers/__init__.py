"""Reverse-process samplers, one algorithm per file, and their registry.

``ddpm``, ``ddim`` and ``dpm_solver`` run a chain over K of the T timesteps (``spacing``
picks them); ``euler`` and ``heun`` step along the flow's time grid (a flow run's, or a DDPM
run's probability-flow ODE in the flow's time); ``ode`` integrates the probability-flow ODE
(sampling and the exact likelihood).
A request is a :class:`SamplerSpec`, checked once by :func:`check`; the registry
:data:`SAMPLERS` runs it (:func:`reverse_chain`).
"""

from ddpmlab.samplers.ddim import ddim_chain, ddim_sample, ddim_step
from ddpmlab.samplers.ddpm import ddpm_chain, ddpm_sample
from ddpmlab.samplers.dpm_solver import dpm_solver_chain, dpm_solver_sample
from ddpmlab.samplers.ode import network_field, ode_nll, ode_sample
from ddpmlab.samplers.registry import (
    SAMPLERS,
    STEPPED,
    check,
    check_objective,
    describe,
    reverse_chain,
    sampler_named,
    stepped_for,
)
from ddpmlab.samplers.spacing import DEFAULT_SPACING, SPACINGS, default_spacing, timesteps
from ddpmlab.samplers.spec import SamplerSpec

__all__ = [
    "DEFAULT_SPACING",
    "SAMPLERS",
    "SPACINGS",
    "STEPPED",
    "SamplerSpec",
    "check",
    "check_objective",
    "ddim_chain",
    "ddim_sample",
    "ddim_step",
    "ddpm_chain",
    "ddpm_sample",
    "default_spacing",
    "describe",
    "dpm_solver_chain",
    "dpm_solver_sample",
    "network_field",
    "ode_nll",
    "ode_sample",
    "reverse_chain",
    "sampler_named",
    "stepped_for",
    "timesteps",
]
