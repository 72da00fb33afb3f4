"""Euler's method on the flow's ODE dx/dt = u(x, t), from t = 1 (the noise) to t = 0.

One step from t to t_next < t (Euler 1768; the sampler of Lipman et al. 2023, Sec. 6, and of
Liu et al. 2023, Sec. 2.3, for rectified flows)::

    x_next = x + (t_next - t) u(x, t)

One network evaluation a step. On a flow run u is the network's velocity; on a DDPM run the
probability-flow ODE written in the flow's time (``samplers/flow_fields.py``), which is then
DDIM at eta = 0 on another grid (Song, Meng & Ermon 2021, Eq. 14: DDIM is Euler's method in
sigma). tests/data/make_flow_ref.py checks it against facebookresearch/flow_matching's
``ODESolver`` (torchdiffeq's ``euler``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ddpmlab.diffusion import Denoiser
from ddpmlab.flow import VelocityField
from ddpmlab.samplers.flow_fields import flow_chain
from ddpmlab.samplers.spec import SamplerSpec
from ddpmlab.schedules import NoiseSchedule


def euler_step(field: VelocityField, x: torch.Tensor, t: float, t_next: float) -> torch.Tensor:
    """x (B, *D) at t -> x at t_next."""
    return x + (t_next - t) * field(x, t)  # Euler: x + h u(x, t), h = t_next - t < 0


def from_spec(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...],
              spec: SamplerSpec, *, prediction: str, variance: str,
              generator: torch.Generator | None, clip: bool,
              objective: str = "flow") -> Iterator[tuple[int, torch.Tensor]]:
    """The Euler chain as the registry calls it (``flow_fields.flow_chain``)."""
    return flow_chain(euler_step, denoiser, schedule, shape, spec, objective=objective,
                      prediction=prediction, variance=variance, generator=generator, clip=clip)
