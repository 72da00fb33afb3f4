"""What the flow samplers (``euler``, ``heun``) share: a run's velocity in the flow's time, the
time grids, and the chain that steps along a grid.

A flow run's velocity is its network's (``ddpmlab.flow.network_velocity``). A DDPM run's
probability-flow ODE is the same kind of ODE in another time: with x_bar = x / sqrt(ab) and
sigma = sqrt(1 / ab - 1) it reads d x_bar / d sigma = eps (Song, Meng & Ermon 2021, Eq. 14;
``samplers/ode.py``), and t = sigma / (1 + sigma), x = (1 - t) x_bar puts it on the flow's
path, x = (1 - t) x_0 + t eps at the DDPM's x0_hat and eps_hat, whose velocity is

    dx/dt = (1 + sigma) eps_hat - x_bar = eps_hat - x0_hat        (x0_hat = x_bar - sigma eps_hat)

(Kingma et al. 2021 and Karras et al. 2022, Sec. 4, show every Gaussian path is one ODE up to
this change of variables; Lipman et al. 2023, Sec. 4.1, the diffusion paths among them). So
Euler and Heun sample a DDPM run too, in the same t as a flow's, from the same x_T, which is
how one figure shows both sets of trajectories (:func:`velocity_for`). The DDPM's time starts
at t_max = sigma_max / (1 + sigma_max) (``ode.sigma_max``), just under 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ddpmlab.diffusion import Denoiser, mean_part
from ddpmlab.errors import UserError
from ddpmlab.flow import VelocityField, network_velocity
from ddpmlab.samplers.ddpm import chain_device
from ddpmlab.samplers.ode import FLOW_SPAN, Field, Span, network_field, sigma_max
from ddpmlab.samplers.spec import SamplerSpec
from ddpmlab.schedules import NoiseSchedule

#: The flow samplers' time grids: ``uniform`` t_i = i / K; ``shifted``: the same grid under
#: Esser et al. 2024 (Stable Diffusion 3), Eq. 23's shift t -> a t / (1 + (a - 1) t) with
#: a = :data:`SHIFT`, their default, which spends more of the K steps near the noise.
FLOW_SPACINGS = ("uniform", "shifted")
FLOW_SPACING = "uniform"
SHIFT = 3.0

#: one step along the grid: (field, x at t, t, t_next) -> x at t_next
Step = Callable[[VelocityField, torch.Tensor, float, float], torch.Tensor]


def flow_grid(K: int, spacing: str, t_max: float = 1.0) -> np.ndarray:
    """K + 1 times from t_max down to 0, (K + 1,) float64, by ``spacing`` (FLOW_SPACINGS)."""
    if spacing not in FLOW_SPACINGS:
        raise UserError(f"unknown spacing '{spacing}' for a flow sampler; choose one of: "
                        f"{', '.join(FLOW_SPACINGS)}")
    if not (isinstance(K, int) and K >= 1):
        raise UserError(f"--steps must be at least 1, got {K!r}")
    u = np.arange(K, -1, -1, dtype=np.float64) / K  # 1, ..., 1/K, 0
    if spacing == "shifted":
        u = SHIFT * u / (1.0 + (SHIFT - 1.0) * u)  # Esser et al. 2024, Eq. 23
    return t_max * u


def diffusion_velocity(field: Field) -> VelocityField:
    """A DDPM's probability-flow field (x_bar, sigma) -> eps (``ode.network_field``) as a
    velocity in the flow's time t (module docstring), for t in [0, 1)."""

    def velocity(x: torch.Tensor, t: float) -> torch.Tensor:
        sigma = t / (1.0 - t)
        x_bar = x / (1.0 - t)  # x = (1 - t) x_bar
        return (1.0 + sigma) * field(x_bar, sigma) - x_bar  # eps_hat - x0_hat
    return velocity


def velocity_for(denoiser: Denoiser, schedule: NoiseSchedule, *, objective: str,
                 prediction: str, variance: str, clip: bool) -> tuple[VelocityField, Span]:
    """A run's velocity in the flow's time and where its chain starts (t_max, and the
    variance of x there): a flow's network from t = 1, x_1 = x_T; a DDPM's probability-flow
    ODE from t_max = sigma_max / (1 + sigma_max), x = sqrt(1 + sigma_max^2) / (1 + sigma_max)
    x_T (= (1 - t_max) x_bar(sigma_max), the start of ``ode.ode_sample``)."""
    if objective == "flow":
        return network_velocity(denoiser, schedule.T, clip=clip), FLOW_SPAN
    s = sigma_max(schedule)
    field = network_field(mean_part(denoiser, variance), schedule, prediction=prediction,
                          clip=clip)
    return diffusion_velocity(field), Span(s / (1.0 + s), (1.0 + s**2) / (1.0 + s) ** 2)


def flow_chain(step: Step, denoiser: Denoiser, schedule: NoiseSchedule,
               shape: tuple[int, ...], spec: SamplerSpec, *, objective: str, prediction: str,
               variance: str, generator: torch.Generator | None, clip: bool = False,
               x_T: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Step from x_T ~ N(0, I) (B, *D) along the grid of ``spec`` (K = spec.steps, all T by
    default; ``spec.spacing``, uniform by default) and yield ``(n, x)``: n = round(T t /
    t_max), the step count a DDPM chain would show at that noise (T at x_T, 0 at the data).

    The generator draws x_T only (on its device): the rest is deterministic.
    """
    field, span = velocity_for(denoiser, schedule, objective=objective, prediction=prediction,
                               variance=variance, clip=clip)
    T = schedule.T
    grid = flow_grid(T if spec.steps is None else spec.steps, spec.spacing or FLOW_SPACING,
                     span.start)
    device = chain_device(generator, x_T)
    if x_T is None:
        x_T = torch.randn(shape, generator=generator, device=device)
    x = x_T * math.sqrt(span.variance) if span.variance != 1.0 else x_T.clone()
    return step_along(step, field, grid, x, T)


def step_along(step: Step, field: VelocityField, grid: np.ndarray, x: torch.Tensor,
               T: int) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(n, x)`` from x (B, *D) at grid[0] through every time of ``grid`` (decreasing
    to 0) by ``step``: n = round(T t / grid[0]) (T first, 0 at the end). Any field may be
    stepped: a closed form (``flow.mixture_velocity``) as well as a run's."""
    yield T, x
    for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        with torch.inference_mode():
            x = step(field, x, t, t_next)
        yield round(T * t_next / grid[0]), x


def ode_field_for(denoiser: Denoiser, schedule: NoiseSchedule, *, objective: str,
                  prediction: str, variance: str, clip: bool = False) -> tuple[Field, Span | None]:
    """What ``ode.ode_sample`` and ``ode.ode_nll`` integrate for a run: a flow's velocity in
    t over :data:`~ddpmlab.samplers.ode.FLOW_SPAN`, or a DDPM's eps in sigma (span None: the
    schedule's)."""
    if objective == "flow":
        return network_velocity(denoiser, schedule.T, clip=clip), FLOW_SPAN
    return network_field(denoiser, schedule, prediction=prediction, variance=variance,
                         clip=clip), None
