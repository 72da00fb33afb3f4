"""Heun's second-order method on the flow's ODE dx/dt = u(x, t), from t = 1 to t = 0.

Karras et al. 2022, Algorithm 1 (lines 5-8), in the flow's time: from t to t_next,

    d = u(x, t);   x' = x + (t_next - t) d;   d' = u(x', t_next)
    x_next = x + (t_next - t) (d + d') / 2

two network evaluations a step. Karras et al. take an Euler step instead when t_next = 0,
because their slope (x - D(x; sigma)) / sigma divides by sigma = 0 there; a flow's velocity is
finite at t = 0 (u = eps_hat - x0_hat), so the correction is kept on every step, as
torchdiffeq's ``heun2`` (facebookresearch/flow_matching's ODESolver) does, against which
tests/data/make_flow_ref.py checks it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ddpmlab.diffusion import Denoiser
from ddpmlab.flow import VelocityField
from ddpmlab.samplers.flow_fields import flow_chain
from ddpmlab.samplers.spec import SamplerSpec
from ddpmlab.schedules import NoiseSchedule


def heun_step(field: VelocityField, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """x (B, *D) at t -> x at t_next."""
    h = t_next - t
    d = field(x, t)  # Karras Alg. 1, line 5 (the slope at t)
    x_euler = x + h * d  # line 5: the Euler step
    d_next = field(x_euler, t_next)  # line 7: the slope at its end
    return x + h * 0.5 * (d + d_next)  # line 8: the trapezoidal rule


def from_spec(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...],
              spec: SamplerSpec, *, prediction: str, variance: str,
              generator: torch.Generator | None, clip: bool,
              objective: str = "flow") -> Iterator[tuple[int, torch.Tensor]]:
    """The Heun chain as the registry calls it (``flow_fields.flow_chain``)."""
    return flow_chain(heun_step, denoiser, schedule, shape, spec, objective=objective,
                      prediction=prediction, variance=variance, generator=generator, clip=clip)
