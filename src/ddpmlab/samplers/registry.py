"""The samplers a run offers, by name: adding one means its own file and one line here.

Every stepped sampler's file has a ``from_spec`` that runs its chain from a
:class:`~ddpmlab.samplers.spec.SamplerSpec` and the run's diffusion settings; the adaptive
probability-flow ODE gives final samples only (``ddpmlab.samplers.ode``). Each sampler
names the training objectives it applies to (``ddpmlab.objectives``): a flow run has no
reverse variance, so the DDPM's samplers (ancestral, DDIM, DPM-Solver++) are refused on it;
Euler, Heun and the ODE sample both kinds, a DDPM in the flow's time
(``samplers/flow_fields.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ddpmlab.diffusion import Denoiser
from ddpmlab.errors import UserError
from ddpmlab.samplers.ddim import from_spec as ddim_chain
from ddpmlab.samplers.ddpm import from_spec as ddpm_chain
from ddpmlab.samplers.dpm_solver import from_spec as dpm_solver_chain
from ddpmlab.samplers.euler import from_spec as euler_chain
from ddpmlab.samplers.flow_fields import FLOW_SPACING, flow_grid
from ddpmlab.samplers.heun import from_spec as heun_chain
from ddpmlab.samplers.ode import check_tolerances
from ddpmlab.samplers.spacing import timesteps
from ddpmlab.samplers.spec import SamplerSpec
from ddpmlab.schedules import NoiseSchedule

Chain = Iterator[tuple[int, torch.Tensor]]
ChainFrom = Callable[..., Chain]  # from_spec(denoiser, schedule, shape, spec, *, prediction,
#                                   variance, generator, clip)


@dataclass(frozen=True)
class Sampler:
    """One sampler: what ``--sampler``'s help says of it, and how it runs.

    chain: a stepped sampler's ``from_spec`` (the chain x_T .. x_0 in model space); None for
        the adaptive ODE, which solves all samples at once and chooses its own steps.
    eta: whether it takes DDIM's eta.
    objectives: the training objectives it samples.
    flow: it steps along the flow's time grid (``flow_fields.FLOW_SPACINGS``) rather than
        the DDPM's timesteps, and takes the run's objective.
    nfe: network evaluations a step.
    """

    summary: str
    chain: ChainFrom | None = None
    eta: bool = False
    objectives: tuple[str, ...] = ("ddpm",)
    flow: bool = False
    nfe: int = 1

    @property
    def stepped(self) -> bool:
        return self.chain is not None


SAMPLERS: dict[str, Sampler] = {
    "ddpm": Sampler("ancestral, Ho et al. 2020", ddpm_chain),
    "ddim": Sampler("Song et al. 2021", ddim_chain, eta=True),
    "dpm_solver": Sampler("DPM-Solver++(2M), Lu et al. 2022", dpm_solver_chain),
    "euler": Sampler("Euler's method in the flow's time t", euler_chain,
                     objectives=("flow", "ddpm"), flow=True),
    "heun": Sampler("Heun's second-order method, Karras et al. 2022, in the flow's time t",
                    heun_chain, objectives=("flow", "ddpm"), flow=True, nfe=2),
    "ode": Sampler("the probability-flow ODE, Song et al. 2021, adaptive RK45",
                   objectives=("ddpm", "flow")),
}
STEPPED = tuple(name for name, s in SAMPLERS.items() if s.stepped)


def stepped_for(objective: str) -> tuple[str, ...]:
    """The stepped samplers of a run trained with ``objective``, in registry order: a DDPM
    run's own (ddpm, ddim, dpm_solver), a flow run's euler and heun."""
    if objective == "flow":
        return tuple(n for n, s in SAMPLERS.items() if s.stepped and "flow" in s.objectives)
    return tuple(n for n, s in SAMPLERS.items() if s.stepped and not s.flow)


def check_objective(name: str, objective: str) -> Sampler:
    """The sampler called ``name`` if it samples a run of ``objective``, else one line."""
    sampler = sampler_named(name)
    if objective not in sampler.objectives:
        takers = [n for n, s in SAMPLERS.items() if objective in s.objectives]
        what = "ancestral sampling (--sampler ddpm)" if name == "ddpm" else f"--sampler {name}"
        raise UserError(f"{what} needs the DDPM's noising chain, which a {objective} run "
                        f"does not have; sample it with --sampler {', '.join(takers[:-1])} "
                        f"or {takers[-1]}")
    return sampler


def sampler_named(name: str) -> Sampler:
    """The sampler called ``name``; refused with one line naming the valid ones."""
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler '{name}'; choose one of: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def check(spec: SamplerSpec, T: int, alpha_bar64: np.ndarray, spacing: str,
          objective: str = "ddpm") -> int:
    """Refuse a bad request before any work (one line each): an unknown sampler, one that
    does not sample a run of ``objective``, a step count outside 1..T, an unknown spacing, an
    eta that is not a finite number >= 0 or given to a sampler without one, steps or spacing
    for the ODE, bad tolerances. ``spacing``: the one used when the spec names none. Returns
    the step count K (1 for the ODE)."""
    sampler = check_objective(spec.name, objective)
    if not sampler.stepped:
        if spec.steps is not None or spec.spacing is not None:
            raise UserError(f"--{'steps' if spec.steps is not None else 'spacing'} does not "
                            f"apply to --sampler {spec.name}: its adaptive solver chooses the "
                            "steps (set --rtol and --atol instead)")
        check_tolerances(spec.rtol, spec.atol)
        return 1
    K = T if spec.steps is None else spec.steps
    if sampler.flow:
        if not (isinstance(K, int) and 1 <= K <= T):
            raise UserError(f"--steps must lie in 1..{T} (T, this run's timesteps), got {K}")
        flow_grid(K, spec.spacing or FLOW_SPACING)
    else:
        timesteps(T, K, spec.spacing or spacing, alpha_bar64)
    if not (isinstance(spec.eta, int | float) and math.isfinite(spec.eta) and spec.eta >= 0):
        raise UserError(f"eta must be a finite number >= 0, got {spec.eta!r}")
    if spec.eta and not sampler.eta:
        takers = ", ".join(n for n, s in SAMPLERS.items() if s.eta)
        raise UserError(f"--eta applies to --sampler {takers} only, not {spec.name}")
    return K


def describe(spec: SamplerSpec, T: int, spacing: str) -> str:
    """The request in words, for tables and messages: "ddim, 20 steps (linspace)";
    ``spacing``: the one used when the spec names none."""
    if not sampler_named(spec.name).stepped:
        return f"{spec.name}, rtol {spec.rtol:g}, atol {spec.atol:g}"
    if spec.steps is None and spec.spacing is None and not spec.eta:
        return f"{spec.name}, {T} steps"
    eta = f", eta {spec.eta:g}" if spec.eta else ""
    return f"{spec.name}, {spec.steps or T} steps ({spec.spacing or spacing}{eta})"


def reverse_chain(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...],
                  spec: SamplerSpec, *, prediction: str, variance: str,
                  generator: torch.Generator | None, clip: bool = False,
                  objective: str = "ddpm") -> Chain:
    """The chain ``(n, x_n)`` from x_T to x_0 of a stepped sampler, in model space, for a
    run trained with ``objective``."""
    sampler = check_objective(spec.name, objective)
    if sampler.chain is None:
        raise UserError(f"--sampler {spec.name} gives final samples only, not a chain of "
                        f"states; use {', '.join(stepped_for(objective))}")
    more = {"objective": objective} if sampler.flow else {}
    return sampler.chain(denoiser, schedule, shape, spec, prediction=prediction,
                         variance=variance, generator=generator, clip=clip, **more)
