"""The training objectives, by name (``diffusion.objective``): what a training step draws and
what the network is trained towards, and how its output reads as (eps_hat, x0_hat).

``ddpm``: Ho et al. 2020's noising chain and the target of ``diffusion.prediction``
(``ddpmlab.diffusion``); ``flow``: flow matching on the conditional OT path, the velocity
eps - x_0 (``ddpmlab.flow``). Both draw in the same order from the same generator (t, then
eps), take the same (B,) int64 timesteps into the same networks, and are trained by the same
Trainer, gradient backends, EMA, checkpoints and processes; only these functions differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ddpmlab import diffusion, flow
from ddpmlab.errors import UserError
from ddpmlab.schedules import NoiseSchedule

Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """One objective: each function takes the run's schedule (a flow reads only its T).

    draw(schedule, x0, generator, antithetic) -> (t, eps, x_t): a batch's draws.
    noise(schedule, x0, t, eps) -> x_t: the forward path at timesteps t (B,) int64.
    target(schedule, prediction, x0, eps, t) -> what the network is trained to output.
    stable(schedule, x0, eps, x_t, t, reference, allowed) -> (x0~, eps~): the stable target
        field on the objective's path.
    eps_x0(schedule, x_t, t, output, prediction, clip) -> (eps_hat, x0_hat) of an output.
    coefficients(schedule, t) -> (a_t, s_t): x_t = a_t x_0 + s_t eps at timestep t.
    default_sampler: what a run samples with unless told.
    """

    summary: str
    draw: Callable[[NoiseSchedule, torch.Tensor, torch.Generator | None, bool],
                   tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    noise: Callable[[NoiseSchedule, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    target: Callable[[NoiseSchedule, str, torch.Tensor, torch.Tensor, torch.Tensor],
                     torch.Tensor]
    stable: Callable[..., Tensors]
    eps_x0: Callable[..., Tensors]
    coefficients: Callable[[NoiseSchedule, int], tuple[float, float]]
    default_sampler: str


def _ddpm_eps_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                 output: torch.Tensor, prediction: str, clip: bool = False) -> Tensors:
    return diffusion.predict_eps_x0(schedule.to(x_t.device), x_t, t, output, prediction,
                                    clip=clip)


def _flow_eps_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                 output: torch.Tensor, prediction: str, clip: bool = False) -> Tensors:
    return flow.eps_x0_from_velocity(x_t, flow.flow_time(t, schedule.T).to(x_t.device),
                                     output, clip=clip)


def _ddpm_coefficients(schedule: NoiseSchedule, t: int) -> tuple[float, float]:
    ab = float(schedule.alpha_bar64[t])
    return ab**0.5, (1 - ab) ** 0.5  # Ho Eq. 4


def _flow_coefficients(schedule: NoiseSchedule, t: int) -> tuple[float, float]:
    tt = (t + 1) / schedule.T
    return 1 - tt, tt  # Lipman Eq. 22 (sigma_min = 0)


OBJECTIVES: dict[str, Objective] = {
    "ddpm": Objective(
        "denoising diffusion, Ho et al. 2020",
        draw=diffusion.draw_training_inputs,
        noise=diffusion.q_sample,
        target=diffusion.target_for,
        stable=diffusion.stable_target,
        eps_x0=_ddpm_eps_x0,
        coefficients=_ddpm_coefficients,
        default_sampler="ddpm"),
    "flow": Objective(
        "flow matching, Lipman et al. 2023 (the conditional OT path)",
        draw=lambda schedule, x0, g, antithetic: flow.draw_flow_inputs(
            schedule.T, x0, g, antithetic),
        noise=lambda schedule, x0, t, eps: flow.path_sample(x0, eps, flow.flow_time(t, schedule.T)),
        target=lambda schedule, prediction, x0, eps, t: flow.velocity_target(x0, eps),
        stable=lambda schedule, *args: flow.flow_stable_target(schedule.T, *args),
        eps_x0=_flow_eps_x0,
        coefficients=_flow_coefficients,
        default_sampler="euler"),
}


def objective_named(name: str) -> Objective:
    """The objective called ``name``; refused with one line naming the valid ones."""
    if name not in OBJECTIVES:
        raise UserError(f"unknown objective '{name}'; choose one of: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
