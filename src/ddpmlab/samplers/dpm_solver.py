"""DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): the multistep
second-order solver of the probability-flow ODE in its data-prediction form.

With alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 - alpha_bar_t) and the half log-SNR
lambda_t = log(alpha_t / sigma_t), the exact solution of the diffusion ODE from s to t is
x_t = (sigma_t / sigma_s) x_s + sigma_t int_{lambda_s}^{lambda_t} e^lambda x0_hat d lambda
(Lu et al. 2022, Eq. 9). With h = lambda_t - lambda_s and D the data prediction:

- first order (= DDIM, their Eq. 10): x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D_s;
- second order, multistep (Algorithm 2): with the previous step's h' and r = h' / h,
  D = (1 + 1/(2r)) D_s - 1/(2r) D_{s'} in the same formula.

The first step has no previous prediction and is first order; so is the last, to the data
(sigma = 0, so x_0 = D_s), as diffusers' ``DPMSolverMultistepScheduler`` does with
``final_sigmas_type="zero"``. With fewer than :data:`LOWER_ORDER_FINAL` steps, the step into
the last visited timestep is first order too (DPM-Solver's ``lower_order_final``; diffusers
switches at 15): on the cosine schedule its h is the largest of the grid, and the
second-order extrapolation D = (1 + 1/(2r)) D_s - ... with a small r overshoots. The
threshold is where first and second order cross on the default swiss-roll run, so that the
quality does not drop from K to K + 1 steps (bench/README.md, "Few-step sampling"). On the
``logsnr_official`` spacing the step follows the official code instead: first order when its
``steps = K - 1`` is below 10 (:data:`OFFICIAL_LOWER_ORDER_FINAL`), so that K steps there are
``dpm_solver_pytorch``'s DPM-Solver++(2M) with ``steps = K - 1``, ``skip_type='logSNR'``,
``lower_order_final=True`` and ``denoise_to_zero=True``.

K steps call the network K times. Every scalar is formed in float64 from
``NoiseSchedule.alpha_bar64``; with ``clip`` (images) D is clamped to [-1, 1], as DDIM's
x0_hat is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ddpmlab.diffusion import Denoiser, check_prediction, mean_part, predict_eps_x0
from ddpmlab.samplers.ddpm import chain_device, final_state
from ddpmlab.samplers.spacing import default_spacing, timesteps
from ddpmlab.samplers.spec import SamplerSpec
from ddpmlab.schedules import NoiseSchedule

#: Below this many steps the step into the last visited timestep is first order.
LOWER_ORDER_FINAL = 18

#: The same on ``logsnr_official``: the official ``steps < 10`` with its steps = K - 1.
OFFICIAL_LOWER_ORDER_FINAL = 11


def _alpha_sigma_lambda(schedule: NoiseSchedule, t: int) -> tuple[float, float, float]:
    """alpha_t, sigma_t and lambda_t = log(alpha_t / sigma_t) at timestep t (-1: the data)."""
    if t < 0:
        return 1.0, 0.0, math.inf
    ab = float(schedule.alpha_bar64[t])
    alpha, sigma = math.sqrt(ab), math.sqrt(1.0 - ab)
    return alpha, sigma, math.log(alpha) - math.log(sigma)


def dpm_solver_chain(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                     steps: int | None = None, spacing: str | None = None,
                     prediction: str = "eps", generator: torch.Generator | None = None,
                     x_T: torch.Tensor | None = None,
                     clip: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """Run DPM-Solver++(2M) from x_T ~ N(0, I) and yield ``(n, x)``: n = t + 1 of each visited
    t, then 0 (as :func:`ddpmlab.samplers.ddim.ddim_chain`, which is its first-order case).

    steps: K in 1..T timesteps chosen by ``spacing`` (None: ``default_spacing(prediction,
    "dpm_solver")``, ``logsnr`` for v and x0 runs). The generator draws x_T only; the chain
    is deterministic after it. Yielded tensors are new (B, *D) float32 tensors.
    """
    check_prediction(prediction)
    device = chain_device(generator, x_T)
    spacing = spacing or default_spacing(prediction, "dpm_solver")
    t_seq, t_prev = timesteps(schedule.T, schedule.T if steps is None else steps, spacing,
                              schedule.alpha_bar64)
    lower_below = (OFFICIAL_LOWER_ORDER_FINAL if spacing == "logsnr_official"
                   else LOWER_ORDER_FINAL)
    schedule = schedule.to(device)
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T.clone()
    yield int(t_seq[0]) + 1, x
    previous: tuple[torch.Tensor, float] | None = None  # (D, h) of the step before
    last = int(t_seq[-1])
    for t, t_next in zip(t_seq.tolist(), t_prev.tolist(), strict=True):
        with torch.inference_mode():
            tt = torch.full((shape[0],), t, dtype=torch.long, device=device)
            _, d = predict_eps_x0(schedule, x, tt, denoiser(x, tt), prediction, clip=clip)
            _, sigma_s, lambda_s = _alpha_sigma_lambda(schedule, t)
            alpha_t, sigma_t, lambda_t = _alpha_sigma_lambda(schedule, t_next)
            if t_next < 0:  # the last step, first order to sigma = 0: x_0 = D (Lu Eq. 10)
                x = d.clone()
            else:
                h = lambda_t - lambda_s
                mix = d
                lower = len(t_seq) < lower_below and t_next == last
                if previous is not None and not lower:  # Lu Alg. 2: r = h_{i-1} / h_i
                    d_prev, h_prev = previous
                    r = h_prev / h
                    mix = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_prev
                # Lu Eq. 10 / Alg. 2: x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) D
                x = (sigma_t / sigma_s) * x - alpha_t * math.expm1(-h) * mix
                previous = (d, h)
        yield t_next + 1, x


def dpm_solver_sample(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                      steps: int | None = None, spacing: str | None = None,
                      prediction: str = "eps", generator: torch.Generator | None = None,
                      chunk: int = 65_536, clip: bool = False) -> torch.Tensor:
    """Final samples x_0, (B, *D): :func:`dpm_solver_chain` run in chunks of ``chunk`` rows."""
    return final_state(
        lambda rows: dpm_solver_chain(denoiser, schedule, rows, steps=steps, spacing=spacing,
                                      prediction=prediction, generator=generator, clip=clip),
        shape, chunk)


def from_spec(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...],
              spec: SamplerSpec, *, prediction: str, variance: str,
              generator: torch.Generator | None, clip: bool) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`dpm_solver_chain` as the registry calls it; a learned variance's v is dropped."""
    return dpm_solver_chain(mean_part(denoiser, variance), schedule, shape, steps=spec.steps,
                            spacing=spec.spacing, prediction=prediction, generator=generator,
                            clip=clip)
