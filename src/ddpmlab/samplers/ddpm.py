"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), over all T steps or K of them.

The chain is a generator: it yields every state so that a figure or a GIF streams it
instead of holding T copies of the samples. With K < T steps it is the same algorithm on the
respaced schedule (Nichol & Dhariwal 2021, Sec. 4; ``NoiseSchedule.respaced``), the network
still seeing the original timesteps.

Devices: a chain runs on the device of its generator, else of the x_T given, else the CPU
(:func:`chain_device`); the denoiser must accept and return tensors there, and the schedule
is taken there once per chain (``NoiseSchedule.to``).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator

import torch

from ddpmlab.diffusion import (
    Denoiser,
    check_prediction,
    check_variance,
    reverse_log_variance,
    reverse_mean,
    reverse_variance,
    split_output,
)
from ddpmlab.samplers.spacing import default_spacing, timesteps
from ddpmlab.samplers.spec import SamplerSpec
from ddpmlab.schedules import NoiseSchedule

Chain = Iterator[tuple[int, torch.Tensor]]


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether a and b name one device ("cuda" without an index matching any "cuda:N")."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def chain_device(generator: torch.Generator | None, x_T: torch.Tensor | None) -> torch.device:
    """Where a chain runs: the generator's device, else x_T's, else the CPU.

    ValueError when both are given on different devices (its noise could not meet x_T).
    """
    if generator is None:
        return torch.device("cpu") if x_T is None else x_T.device
    if x_T is not None and not _same_device(generator.device, x_T.device):
        raise ValueError(f"the generator is on {generator.device} but x_T on {x_T.device}; "
                         "give both on one device")
    return generator.device if x_T is None else x_T.device


def ddpm_chain(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
               steps: int | None = None, spacing: str | None = None,
               variance: str = "fixed_small", prediction: str = "eps",
               generator: torch.Generator | None = None,
               x_T: torch.Tensor | None = None, clip: bool = False) -> Chain:
    """Run the reverse chain from x_T ~ N(0, I) and yield ``(n, x_n)`` from n = T down to 0.

    shape: (B, *D) of the samples. ``n`` is the number of noising steps left (the paper's
    subscript; the network sees the timestep index t = n - 1, see ``ddpmlab.diffusion``).
    steps: K in 1..T visited timesteps chosen by ``spacing`` (``ddpmlab.samplers.spacing``);
    None visits all T, and then every spacing is the same. With K < T the labels are those of
    the visited steps (t + 1 of each, then 0), and the first is below T unless the spacing
    starts at t = T-1. variance: ``fixed_small`` or ``fixed_large`` (Ho Sec. 3.2), of the
    respaced schedule, or ``learned_range`` (the denoiser returns (B, 2D): mean part and v,
    interpolated on the respaced schedule as improved-diffusion does). prediction: what the
    denoiser outputs (``ddpmlab.diffusion``). clip: clamp x0_hat to [-1, 1] and step to the
    posterior mean at it (Ho Eq. 7; improved-diffusion's ``clip_denoised``), for images only;
    with ``learned_range`` it clips the mean, the variance being the network's.
    No noise is added at the last step (Algorithm 2, line 3: z = 0 when t = 1). Each step runs
    under inference mode; the yielded tensors are new (B, *D) float32 tensors, never modified
    afterwards. The generator draws x_T, then one z per step but the last.
    """
    check_prediction(prediction)
    check_variance(variance)
    device = chain_device(generator, x_T)
    t_seq, t_prev = timesteps(schedule.T, schedule.T if steps is None else steps,
                              spacing or default_spacing(prediction), schedule.alpha_bar64)
    # the schedule itself when every t is visited (and, on the CPU, not copied)
    respaced = schedule.respaced(t_seq).to(device)
    K = len(t_seq)
    learned = variance == "learned_range"
    sigma = None if learned else reverse_variance(respaced, variance).sqrt()
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T.clone()
    yield int(t_seq[0]) + 1, x
    for k, (t, t_next) in enumerate(zip(t_seq.tolist(), t_prev.tolist(), strict=True)):
        j = K - 1 - k  # the step's index in the respaced schedule (j = t when K = T)
        with torch.inference_mode():
            output, v = split_output(
                denoiser(x, torch.full((shape[0],), t, dtype=torch.long, device=device)),
                variance)
            jj = torch.full((shape[0],), j, dtype=torch.long, device=device)
            # Ho Alg. 2, line 4 (with clip: Ho Eq. 7 at the clamped x0_hat)
            mean = reverse_mean(respaced, x, jj, output, prediction, clip=clip)
            if j > 0:
                z = torch.randn(shape, generator=generator, device=device)
                std = (torch.exp(0.5 * reverse_log_variance(respaced, jj, x, variance, v))
                       if sigma is None else sigma[j])  # N&D Eq. 15 for learned_range
                x = mean + std * z  # Ho Alg. 2, line 4: + sigma_t z
            else:
                x = mean
        yield t_next + 1, x


def final_state(chain: Callable[[tuple[int, ...]], Chain], shape: tuple[int, ...],
                chunk: int) -> torch.Tensor:
    """Run ``chain(rows_shape)`` on chunks of at most ``chunk`` rows of ``shape`` (B, *D) and
    concatenate the last state of each, so memory does not grow with the number of steps."""
    out = []
    for start in range(0, shape[0], chunk):
        rows = min(chunk, shape[0] - start)
        out.append(collections.deque(chain((rows, *shape[1:])), maxlen=1)[0][1])
    return torch.cat(out)


def ddpm_sample(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                steps: int | None = None, spacing: str | None = None,
                variance: str = "fixed_small", prediction: str = "eps",
                generator: torch.Generator | None = None, chunk: int = 65_536,
                clip: bool = False) -> torch.Tensor:
    """Final samples x_0, (B, *D): :func:`ddpm_chain` run in chunks of ``chunk`` rows."""
    return final_state(
        lambda rows: ddpm_chain(denoiser, schedule, rows, steps=steps, spacing=spacing,
                                variance=variance, prediction=prediction, generator=generator,
                                clip=clip),
        shape, chunk)


def from_spec(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...],
              spec: SamplerSpec, *, prediction: str, variance: str,
              generator: torch.Generator | None, clip: bool) -> Chain:
    """:func:`ddpm_chain` as the registry calls it (``ddpmlab.samplers.registry``)."""
    return ddpm_chain(denoiser, schedule, shape, steps=spec.steps, spacing=spec.spacing,
                      variance=variance, prediction=prediction, generator=generator, clip=clip)
