"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2).

The chain is a generator: it yields every state so that a figure or a GIF streams it
instead of holding T copies of the samples.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import torch

from ddpmlab.diffusion import Denoiser, mean_from_eps, reverse_variance
from ddpmlab.schedules import NoiseSchedule


def ddpm_chain(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
               variance: str = "fixed_small", generator: torch.Generator | None = None,
               x_T: torch.Tensor | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Run the reverse chain from x_T ~ N(0, I) and yield ``(n, x_n)`` for n = T, ..., 0.

    shape: (B, *D) of the samples. ``n`` is the number of noising steps left (the paper's
    subscript; the network sees the timestep index t = n - 1, see ``ddpmlab.diffusion``).
    variance: ``fixed_small`` or ``fixed_large`` (Ho Sec. 3.2). No noise is added at the last
    step (Algorithm 2, line 3: z = 0 when t = 1). Each step runs under inference mode; the
    yielded tensors are new (B, *D) float32 tensors, never modified afterwards.
    """
    T = schedule.T
    sigma = reverse_variance(schedule, variance).sqrt()
    x = torch.randn(shape, generator=generator) if x_T is None else x_T.clone()
    yield T, x
    for t in reversed(range(T)):
        with torch.inference_mode():
            tt = torch.full((shape[0],), t, dtype=torch.long)
            mean = mean_from_eps(schedule, x, tt, denoiser(x, tt))  # Ho Alg. 2, line 4
            if t > 0:
                z = torch.randn(shape, generator=generator)
                x = mean + sigma[t] * z  # Ho Alg. 2, line 4: + sigma_t z
            else:
                x = mean
        yield t, x


def ddpm_sample(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                variance: str = "fixed_small", generator: torch.Generator | None = None,
                chunk: int = 65_536) -> torch.Tensor:
    """Final samples x_0, (B, *D): the chain run in chunks of ``chunk`` rows, keeping only the
    last state of each, so memory does not grow with the number of steps."""
    out = []
    for start in range(0, shape[0], chunk):
        rows = min(chunk, shape[0] - start)
        chain = ddpm_chain(denoiser, schedule, (rows, *shape[1:]), variance=variance,
                           generator=generator)
        out.append(collections.deque(chain, maxlen=1)[0][1])  # the last state, x_0
    return torch.cat(out)
