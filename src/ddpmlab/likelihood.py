"""The variational bound on the negative log-likelihood, term by term.

Ho et al. 2020, Eq. 5 (Nichol & Dhariwal 2021, Eqs. 4-6), with 0-based timesteps t = 0..T-1::

    -log p(x_0) <= L_T + sum_{t=1}^{T-1} L_t + L_0
    L_T = KL(q(x_T | x_0) || N(0, I))                      the prior term, no parameters
    L_t = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))    Gaussian KLs, t >= 1
    L_0 = -log p(x_0 | x_1)                                 the decoder, at t = 0

All terms are in nats, summed over the data dimensions; :class:`Bound` also reports nats and
bits per dimension. The decoder is a Gaussian density for continuous data (points) or the
discretised Gaussian of Ho et al. 2020, Eq. 13, for images of ``levels`` grey levels (256 for
8-bit) scaled to [-1, 1].

Everything runs on the device of x0 (the network there too); the bound's noise is drawn on
the generator's device, which must be x0's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ddpmlab.diffusion import (
    Denoiser,
    check_timesteps,
    draw_training_inputs,
    extract,
    q_posterior,
    q_sample,
    reverse_log_variance,
    reverse_mean,
    split_output,
    target_for,
)
from ddpmlab.errors import UserError
from ddpmlab.schedules import NoiseSchedule

DECODERS = ("gaussian", "discretized")


def _sum_dims(x: torch.Tensor) -> torch.Tensor:
    """(B, *D) -> (B,): sum over every dimension but the batch."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor,
              logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats (broadcasting)."""
    # closed form for two Gaussians (Nichol & Dhariwal 2021, Sec. 2; Kingma & Welling 2014, B)
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2).square() * torch.exp(-logvar2))


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """-log N(x; mean, e^log_var) elementwise, in nats: the decoder for continuous data."""
    return 0.5 * (math.log(2 * math.pi) + log_var + (x - mean).square() * torch.exp(-log_var))


def _approx_std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    # the tanh approximation of Phi used by Ho et al. 2020's code (diffusion_utils_2.py)
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def check_levels(levels: int) -> None:
    """Raise unless ``levels`` (the grey levels of the discretised decoder) is an integer >= 2."""
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 2:
        raise UserError(f"levels must be an integer >= 2 (256 for 8-bit images), got {levels!r}")


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_var: torch.Tensor,
                             levels: int = 256) -> torch.Tensor:
    """-log of the Gaussian's mass on x's bin, elementwise (Ho et al. 2020, Eq. 13).

    x in [-1, 1] on the grid of ``levels`` values -1 + 2k / (levels - 1), k = 0..levels-1
    (256: 8-bit images; 17: scikit-learn's digits); each bin is x +- 1 / (levels - 1) and the
    edge bins extend to -inf and +inf. Phi is the tanh approximation of Ho et al.'s code at
    every ``levels`` (off by < 1.8e-4, so a bin's mass by < 3.6e-4). x is recognised as an
    edge level within 1e-3 of -1 or 1 (improved-diffusion's 0.999), or within a quarter of the
    grid step when that is smaller (levels > 501).
    """
    check_levels(levels)
    half_width = 1.0 / (levels - 1)  # Ho Eq. 13 with 2 / (levels - 1) between levels
    edge = 1.0 - min(1e-3, 0.5 * half_width)  # 0.999 for every levels <= 501
    inv_std = torch.exp(-0.5 * log_var)
    centred = x - mean
    cdf_plus = _approx_std_normal_cdf(inv_std * (centred + half_width))  # Ho Eq. 13: delta_+
    cdf_minus = _approx_std_normal_cdf(inv_std * (centred - half_width))  # Ho Eq. 13: delta_-
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_minus = (1.0 - cdf_minus).clamp(min=1e-12).log()
    log_mid = (cdf_plus - cdf_minus).clamp(min=1e-12).log()
    # Ho Eq. 13: delta_- = -inf at x = -1, delta_+ = +inf at x = 1
    log_probs = torch.where(x < -edge, log_cdf_plus,
                            torch.where(x > edge, log_one_minus_cdf_minus, log_mid))
    return -log_probs


def prior_kl(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)), (B,) nats: what the schedule leaves of the data."""
    schedule = schedule.to(x0.device)
    t = torch.full((x0.shape[0],), schedule.T - 1, dtype=torch.long, device=x0.device)
    mean = extract(schedule.sqrt_alpha_bar, t, x0) * x0  # Ho Eq. 4
    log_var = extract((1.0 - schedule.alpha_bar).log(), t, x0)
    return _sum_dims(normal_kl(mean, log_var.expand_as(mean), torch.zeros_like(mean),
                               torch.zeros_like(mean)))


def vlb_term(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
             output: torch.Tensor, *, prediction: str = "eps", variance: str = "fixed_small",
             decoder: str = "gaussian", levels: int = 256, clip: bool = False) -> torch.Tensor:
    """L_t for each sample, (B,) nats: the KL at t >= 1, the decoder NLL at t = 0.

    x0, x_t: (B, *D); t: (B,); output: the network's output at (x_t, t) (twice the channels
    for ``learned_range``). levels: the grey levels of x0 for the ``discretized`` decoder
    (:func:`discretized_gaussian_nll`), unused by ``gaussian``. Used for the bound and, with
    the mean part detached, as the VLB half of the hybrid loss (Nichol & Dhariwal 2021,
    Sec. 3.1). ``clip``: the model's mean from x0_hat clamped to [-1, 1]
    (:func:`ddpmlab.diffusion.reverse_mean`), the reverse step that the image samplers take.
    """
    check_timesteps(t, schedule.T)
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder '{decoder}'; choose one of: {', '.join(DECODERS)}")
    if decoder == "discretized":
        check_levels(levels)
    schedule = schedule.to(x_t.device)
    mean_out, v = split_output(output, variance)
    model_mean = reverse_mean(schedule, x_t, t, mean_out, prediction, clip=clip)
    model_log_var = reverse_log_variance(schedule, t, x_t, variance, v).expand_as(model_mean)
    true_mean, _ = q_posterior(schedule, x0, x_t, t)
    true_log_var = extract(schedule.posterior_log_variance, t, x_t).expand_as(true_mean)
    kl = _sum_dims(normal_kl(true_mean, true_log_var, model_mean, model_log_var))  # L_t, t >= 1
    if decoder == "gaussian":
        nll = gaussian_nll(x0, model_mean, model_log_var)
    else:
        nll = discretized_gaussian_nll(x0, model_mean, model_log_var, levels)
    decoder_nll = _sum_dims(nll)  # L_0 = -log p(x_0 | x_1)
    return torch.where(t == 0, decoder_nll, kl)


@dataclass(frozen=True)
class Bound:
    """The bound averaged over a batch of data: every term, the total, per dimension."""

    terms: np.ndarray  # (T,) mean L_t in nats, t = 0..T-1 (L_0 is the decoder)
    prior: float  # mean L_T in nats
    dims: int  # data dimensions D

    @property
    def nats(self) -> float:
        """-log p(x_0) bound in nats per sample."""
        return float(self.terms.sum() + self.prior)

    @property
    def nats_per_dim(self) -> float:
        return self.nats / self.dims

    @property
    def bits_per_dim(self) -> float:
        return self.nats_per_dim / math.log(2)


def nll_bound(schedule: NoiseSchedule, denoiser: Denoiser, x0: torch.Tensor, *,
              prediction: str = "eps", variance: str = "fixed_small",
              decoder: str = "gaussian", generator: torch.Generator | None = None,
              levels: int = 256, clip: bool = False) -> Bound:
    """The full bound on x0 (B, *D): every t evaluated once per sample (one x_t draw each).

    levels: the grey levels of x0 for the ``discretized`` decoder (see :func:`vlb_term`).
    clip: the reverse steps' x0_hat clamped to [-1, 1] (images), as improved-diffusion's
    ``calc_bpd_loop`` computes the bits per dimension it reports (``clip_denoised=True``).
    The noise of step t is the generator's (t + 1)-th draw of x0's shape.
    """
    if decoder == "discretized":
        check_levels(levels)  # before T network calls
    schedule = schedule.to(x0.device)  # once, not per term
    device = x0.device if generator is None else generator.device
    terms = np.empty(schedule.T)
    with torch.inference_mode():
        for t_int in range(schedule.T):
            t = torch.full((x0.shape[0],), t_int, dtype=torch.long, device=device)
            eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=device)
            x_t = q_sample(schedule, x0, t, eps)
            terms[t_int] = float(vlb_term(schedule, x0, x_t, t, denoiser(x_t, t),
                                          prediction=prediction, variance=variance,
                                          decoder=decoder, levels=levels,
                                          clip=clip).double().mean())
        prior = float(prior_kl(schedule, x0).double().mean())
    return Bound(terms=terms, prior=prior, dims=int(np.prod(x0.shape[1:])))


def hybrid_loss(schedule: NoiseSchedule, denoiser: Denoiser, x0: torch.Tensor,
                generator: torch.Generator | None = None, antithetic: bool = False,
                prediction: str = "eps", vlb_weight: float = 0.001, *,
                drawn: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                target: torch.Tensor | None = None, decoder: str = "gaussian",
                levels: int = 256) -> torch.Tensor:
    """L_hybrid = L_simple + lambda L_vlb for a ``learned_range`` network, a scalar.

    Nichol & Dhariwal 2021, Sec. 3.1. The denoiser returns (B, 2D): the mean part (trained by
    the MSE against its target, as :func:`ddpmlab.diffusion.diffusion_loss`) and v. The VLB
    term sees the mean part detached ("stop-gradient"), so it trains the variance only.

    Weighting, as improved-diffusion's *code* does (``LossType.RESCALED_MSE``): both halves are
    means over the dimensions, the VLB term is the sampled L_t in bits per dimension, and it is
    multiplied by lambda T (their ``num_timesteps / 1000`` at lambda = 0.001): T L_t is an
    unbiased estimate of sum_t L_t for uniform t. The paper writes lambda L_vlb with L_vlb the
    sum of the terms and L_simple a squared norm (a sum over dimensions), which differs from
    the code by the dimension count and ln 2; we follow the code, whose numbers it reports.
    The draws (t, eps, x_t) are those of the MSE-only loss, so runs differ only in the model;
    ``drawn`` gives them instead (:func:`ddpmlab.diffusion.draw_training_inputs`).
    ``target``: the MSE's target in place of the example's own (a stable target,
    :func:`ddpmlab.diffusion.stable_target`); the VLB term keeps the example's x0, whose
    spread about E[x_0 | x_t] is what teaches the variance to be wider than beta~_t.
    ``decoder``, ``levels``: the t = 0 term's decoder, as :func:`vlb_term` (images: the
    discretised decoder on the data's levels, as improved-diffusion's ``_vb_terms_bpd``
    trains it, so that L_0 is trained on the bin's probability mass that the bound reports,
    not on a density; points: ``gaussian``).
    """
    schedule = schedule.to(x0.device)
    t, eps, x_t = drawn or draw_training_inputs(schedule, x0, generator, antithetic)
    mean_out, v = split_output(denoiser(x_t, t), "learned_range")
    assert v is not None  # a learned_range output always has its v half
    if target is None:
        target = target_for(schedule, prediction, x0, eps, t)
    mse = (target - mean_out).square().mean()
    frozen = torch.cat([mean_out.detach(), v], dim=1)  # N&D Sec. 3.1: stop-gradient on the mean
    vb = vlb_term(schedule, x0, x_t, t, frozen, prediction=prediction, variance="learned_range",
                  decoder=decoder, levels=levels) / (x0[0].numel() * math.log(2))  # bits/dim
    return mse + vlb_weight * schedule.T * vb.mean()
