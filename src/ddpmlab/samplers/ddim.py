"""DDIM sampling (Song, Meng & Ermon 2021), deterministic at eta = 0, over any K of T steps.

One step from timestep t to an earlier t_prev (-1 meaning the data, alpha_bar_prev = 1):

1. eps_hat, x0_hat from the network output (``ddpmlab.diffusion.predict_eps_x0``); with
   ``clip`` (images), x0_hat clamped to [-1, 1] and eps_hat recomputed from it (Ho Eq. 4),
   as improved-diffusion's ``ddim_sample`` does with ``clip_denoised``;
2. sigma_t = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev) (Song Eq. 16);
3. x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma_t^2) eps_hat + sigma_t z (Eq. 12).

With eta = 1 over all T steps, sigma_t^2 = beta~_t and the step is DDPM's with the posterior
variance (Song Sec. 4.1). The coefficients are formed in float64 from the float64 alpha_bar
(``NoiseSchedule.alpha_bar64``) with both variances clamped at >= 0, so eta > 1 and every K
in 1..T stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ddpmlab.diffusion import Denoiser, check_prediction, mean_part, predict_eps_x0
from ddpmlab.errors import UserError
from ddpmlab.samplers.ddpm import chain_device, final_state
from ddpmlab.samplers.spacing import default_spacing, timesteps
from ddpmlab.samplers.spec import SamplerSpec
from ddpmlab.schedules import NoiseSchedule


def check_eta(eta: float) -> None:
    """Raise unless eta is a finite number >= 0 (0: deterministic DDIM; 1: DDPM-like noise)."""
    if not (isinstance(eta, int | float) and math.isfinite(eta) and eta >= 0):
        raise UserError(f"eta must be a finite number >= 0, got {eta!r}")


def ddim_step(schedule: NoiseSchedule, x_t: torch.Tensor, t: int, t_prev: int,
              output: torch.Tensor, *, eta: float = 0.0, prediction: str = "eps",
              noise: torch.Tensor | None = None,
              clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One DDIM step from x_t (B, *D) at timestep t to t_prev in -1..t-1: (x_prev, x0_hat).

    output: the network's (B, *D) output at (x_t, t), of kind ``prediction``. noise: z
    (B, *D), needed when sigma_t > 0 (eta > 0 and t_prev >= 0), ignored otherwise. clip: clamp
    x0_hat to [-1, 1] and take eps_hat = (x_t - sqrt(ab_t) x0_hat) / sqrt(1 - ab_t) at the
    clamped x0_hat (``predict_eps_x0``), for images only; the returned x0_hat is the clamped one.
    """
    check_eta(eta)
    if not (0 <= t < schedule.T and -1 <= t_prev < t):
        raise ValueError(f"need 0 <= t < {schedule.T} and -1 <= t_prev < t, got {t}, {t_prev}")
    tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
    # with clip: x0_hat clamped, eps_hat from it by Ho Eq. 4 (improved-diffusion's ddim_sample)
    eps_hat, x0_hat = predict_eps_x0(schedule, x_t, tt, output, prediction, clip=clip)
    ab = float(schedule.alpha_bar64[t])  # float64 on the host: no device sync, no rounding
    ab_prev = float(schedule.alpha_bar64[t_prev]) if t_prev >= 0 else 1.0  # x_{-1}: the data
    # Song Eq. 16: sigma_t^2 = eta^2 (1 - ab_prev)/(1 - ab_t) (1 - ab_t/ab_prev)
    sigma2 = max(eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev), 0.0)
    # Song Eq. 12: x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z
    x_prev = math.sqrt(ab_prev) * x0_hat + math.sqrt(max(1 - ab_prev - sigma2, 0.0)) * eps_hat
    if sigma2 > 0:
        if noise is None:
            raise ValueError(f"eta = {eta} needs noise at t = {t}")
        x_prev = x_prev + math.sqrt(sigma2) * noise
    return x_prev, x0_hat


def ddim_chain(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
               steps: int | None = None, spacing: str | None = None, eta: float = 0.0,
               prediction: str = "eps", generator: torch.Generator | None = None,
               x_T: torch.Tensor | None = None,
               clip: bool = False) -> Iterator[tuple[int, torch.Tensor]]:
    """Run DDIM from x_T ~ N(0, I) and yield ``(n, x)``: n = t + 1 of each visited t, then 0.

    shape: (B, *D). steps: K in 1..T timesteps chosen by ``spacing`` (steps None: all T;
    spacing None: ``ddpmlab.samplers.spacing.default_spacing(prediction)``, measured there).
    eta: 0 deterministic,
    1 ancestral. clip: clamp x0_hat to [-1, 1] at every step (:func:`ddim_step`; images
    only). The generator draws x_T, then (eta > 0 only) one z per step but the last. The
    chain runs on the generator's device, else x_T's, else the CPU (``ddpm.chain_device``).
    Yielded tensors are new (B, *D) float32 tensors, never modified afterwards.
    """
    check_prediction(prediction)
    check_eta(eta)
    device = chain_device(generator, x_T)
    t_seq, t_prev = timesteps(schedule.T, schedule.T if steps is None else steps,
                              spacing or default_spacing(prediction), schedule.alpha_bar64)
    schedule = schedule.to(device)  # once per chain; the schedule itself on the CPU
    x = torch.randn(shape, generator=generator, device=device) if x_T is None else x_T.clone()
    yield int(t_seq[0]) + 1, x
    for t, t_next in zip(t_seq.tolist(), t_prev.tolist(), strict=True):
        with torch.inference_mode():
            output = denoiser(x, torch.full((shape[0],), t, dtype=torch.long, device=device))
            noisy = eta > 0 and t_next >= 0  # no noise after the last step (sigma = 0 there)
            z = torch.randn(shape, generator=generator, device=device) if noisy else None
            x, _ = ddim_step(schedule, x, t, t_next, output, eta=eta, prediction=prediction,
                             noise=z, clip=clip)
        yield t_next + 1, x


def ddim_sample(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...], *,
                steps: int | None = None, spacing: str | None = None, eta: float = 0.0,
                prediction: str = "eps", generator: torch.Generator | None = None,
                chunk: int = 65_536, clip: bool = False) -> torch.Tensor:
    """Final samples x_0, (B, *D): :func:`ddim_chain` run in chunks of ``chunk`` rows,
    keeping only the last state of each."""
    return final_state(
        lambda rows: ddim_chain(denoiser, schedule, rows, steps=steps, spacing=spacing, eta=eta,
                                prediction=prediction, generator=generator, clip=clip),
        shape, chunk)


def from_spec(denoiser: Denoiser, schedule: NoiseSchedule, shape: tuple[int, ...],
              spec: SamplerSpec, *, prediction: str, variance: str,
              generator: torch.Generator | None, clip: bool) -> Iterator[tuple[int, torch.Tensor]]:
    """:func:`ddim_chain` as the registry calls it; a learned variance's v is dropped."""
    return ddim_chain(mean_part(denoiser, variance), schedule, shape, steps=spec.steps,
                      spacing=spec.spacing, eta=spec.eta, prediction=prediction,
                      generator=generator, clip=clip)
