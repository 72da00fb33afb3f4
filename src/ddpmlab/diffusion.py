"""The diffusion maths: forward process, posterior, parameterisations and the training loss.

Everything here is shape-agnostic (``x: (B, *D)``) and free of networks: a denoiser is any
callable ``(x_t, t) -> output`` with ``x_t, output: (B, *D) float32`` and ``t: (B,) int64``;
``prediction`` (one of :data:`PREDICTIONS`) says whether the output is eps_hat, x0_hat or v_hat.

Glossary (code name: paper symbol, Ho et al. 2020 unless said)
----------------------------------------------------------------
``x0``: x_0, a data sample.               ``x_t``: x_t, the sample after noising.
``eps``: epsilon ~ N(0, I), the noise.     ``eps_hat``: eps_theta(x_t, t), the predicted noise.
``x0_hat``: x^_0, the data predicted from x_t (from eps_hat, or by the network itself).
``v``: v_t = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0, the velocity (Salimans & Ho
2022, Sec. 4: their alpha_t, sigma_t are our sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)).
``v_hat``: its prediction.   ``output``: what the network returns, read as ``prediction`` says.
``beta``: beta_t.   ``alpha``: alpha_t = 1 - beta_t.   ``alpha_bar``: alpha-bar_t = prod alpha_s.
``posterior_variance``: beta~_t, the variance of q(x_{t-1} | x_t, x_0) (Eq. 7).
``sigma2``: sigma_t^2, the variance of a reverse step p(x_{t-1} | x_t).

Timestep convention (the one place it is written)
--------------------------------------------------
Timesteps are integers ``t`` in ``0..T-1``; index ``t`` is the paper's step ``t + 1``, so
``t = 0`` means one noising step has been applied and ``t = T-1`` is x_T, close to N(0, I).
Chains and figures label states by the number of noising steps applied, ``n = t + 1``
(``n = 0`` is the data), which is the paper's subscript: frame ``n`` shows x_n.

Devices
-------
Every function works on the device of its tensors (x, t and the network on one device): the
schedule's constants are taken there with ``NoiseSchedule.to`` (a copy made once per device;
on the CPU the schedule itself), and what a function draws or creates is made on the device
of its generator or, with none, of its input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpmlab.schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_timesteps(t: torch.Tensor, T: int) -> None:
    """Raise if any timestep lies outside 0..T-1 (the convention above)."""
    if t.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"timesteps must be integers, got {t.dtype}")
    if t.numel():
        lo, hi = (int(v) for v in torch.aminmax(t))  # one pass: this runs every step
        if lo < 0 or hi >= T:
            raise ValueError(f"timesteps must lie in 0..{T - 1}, got {lo}..{hi}")


def extract(coef: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """coef[t] shaped to broadcast against x: (T,) and (B,) -> (B, 1, ..., 1).

    coef and t on one device (the functions below take the schedule to x's device first).
    """
    # index_select: the same values as coef[t], at half the cost for a 1-D t
    return coef.index_select(0, t).reshape(t.shape[0], *([1] * (x.ndim - 1))).to(x.dtype)


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
             eps: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) given the noise: x0, eps (B, *D), t (B,) -> x_t (B, *D)."""
    check_timesteps(t, schedule.T)
    schedule = schedule.to(x0.device)
    # Ho Eq. 4: x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
    return (extract(schedule.sqrt_alpha_bar, t, x0) * x0
            + extract(schedule.sqrt_one_minus_alpha_bar, t, x0) * eps)


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor,
                t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0): (B, *D) and (B, 1, ...) broadcastable."""
    schedule = schedule.to(x_t.device)
    # Ho Eq. 7: mu~_t = sqrt(ab_{t-1}) beta_t/(1-ab_t) x_0 + sqrt(a_t)(1-ab_{t-1})/(1-ab_t) x_t
    mean = (extract(schedule.posterior_mean_coef_x0, t, x_t) * x0
            + extract(schedule.posterior_mean_coef_xt, t, x_t) * x_t)
    return mean, extract(schedule.posterior_variance, t, x_t)  # Ho Eq. 7: beta~_t


def x0_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                eps: torch.Tensor) -> torch.Tensor:
    """x^_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t) (Ho Eq. 4 solved for x_0)."""
    schedule = schedule.to(x_t.device)
    return ((x_t - extract(schedule.sqrt_one_minus_alpha_bar, t, x_t) * eps)
            / extract(schedule.sqrt_alpha_bar, t, x_t))


def eps_from_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                x0: torch.Tensor) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t) (Ho Eq. 4 solved for eps)."""
    schedule = schedule.to(x_t.device)
    return ((x_t - extract(schedule.sqrt_alpha_bar, t, x_t) * x0)
            / extract(schedule.sqrt_one_minus_alpha_bar, t, x_t))


def mean_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                  eps: torch.Tensor) -> torch.Tensor:
    """Reverse mean mu_theta(x_t, t) from a noise prediction: (B, *D) -> (B, *D).

    Ho Eq. 11: mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t); equal to the
    posterior mean (Eq. 7) evaluated at x^_0 = x0_from_eps(...).
    """
    schedule = schedule.to(x_t.device)
    coef = extract(schedule.beta / schedule.sqrt_one_minus_alpha_bar, t, x_t)
    return (x_t - coef * eps) / extract(schedule.alpha.sqrt(), t, x_t)


# ------------------------------------------------------------------ parameterisations

#: What a network may predict: the noise, the data, or the velocity v (Salimans & Ho 2022).
PREDICTIONS = ("eps", "x0", "v")


def check_prediction(prediction: str) -> None:
    """Raise if ``prediction`` is not one of :data:`PREDICTIONS`."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction '{prediction}'; choose one of: "
                         f"{', '.join(PREDICTIONS)}")


def v_from(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor,
           t: torch.Tensor) -> torch.Tensor:
    """The velocity v_t of x0 and eps (B, *D) at t (B,): the v-prediction target."""
    schedule = schedule.to(x0.device)
    # Salimans & Ho 2022, Sec. 4: v = alpha_t eps - sigma_t x = sqrt(ab) eps - sqrt(1 - ab) x_0
    return (extract(schedule.sqrt_alpha_bar, t, x0) * eps
            - extract(schedule.sqrt_one_minus_alpha_bar, t, x0) * x0)


def x0_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
              v: torch.Tensor) -> torch.Tensor:
    """x^_0 from x_t and a velocity: (B, *D) -> (B, *D)."""
    schedule = schedule.to(x_t.device)
    # Salimans & Ho 2022, Sec. 4 / App. D: x^ = alpha_t z_t - sigma_t v^
    return (extract(schedule.sqrt_alpha_bar, t, x_t) * x_t
            - extract(schedule.sqrt_one_minus_alpha_bar, t, x_t) * v)


def eps_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
               v: torch.Tensor) -> torch.Tensor:
    """eps^ from x_t and a velocity: (B, *D) -> (B, *D)."""
    schedule = schedule.to(x_t.device)
    # Salimans & Ho 2022, App. D: eps^ = sigma_t z_t + alpha_t v^ (alpha_t^2 + sigma_t^2 = 1)
    return (extract(schedule.sqrt_one_minus_alpha_bar, t, x_t) * x_t
            + extract(schedule.sqrt_alpha_bar, t, x_t) * v)


def predict_eps_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                   output: torch.Tensor, prediction: str, *,
                   clip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps_hat, x0_hat), each (B, *D), from a network output of kind ``prediction``.

    The output itself is returned unchanged in its own slot (eps_hat for ``eps``, x0_hat for
    ``x0``); the other is Ho Eq. 4 solved for it, or Salimans & Ho's conversions for ``v``.
    ``clip`` (for images, whose data lie in [-1, 1]; never for points): x0_hat is clamped to
    [-1, 1] and, where the clamp moved it, eps_hat is recomputed from the clamped x0_hat and
    x_t, as improved-diffusion's ``clip_denoised`` with ``_predict_eps_from_xstart`` does
    (diffusers' ``clip_sample``). Elements the clamp leaves alone keep their eps_hat bit for
    bit (the recomputation would give it back only up to rounding), so with data inside the
    box clip on and off agree exactly.
    """
    if prediction == "eps":
        eps_hat, x0_hat = output, x0_from_eps(schedule, x_t, t, output)
    elif prediction == "x0":
        eps_hat, x0_hat = eps_from_x0(schedule, x_t, t, output), output
    elif prediction == "v":
        eps_hat, x0_hat = eps_from_v(schedule, x_t, t, output), x0_from_v(schedule, x_t, t, output)
    else:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of: "
                         f"{', '.join(PREDICTIONS)}")
    if not clip:
        return eps_hat, x0_hat
    clipped = x0_hat.clamp(-1.0, 1.0)  # improved-diffusion's clip_denoised: x^_0 in [-1, 1]
    # Ho Eq. 4 solved for eps at the clamped x^_0 (improved-diffusion's _predict_eps_from_xstart)
    eps_hat = torch.where(clipped == x0_hat, eps_hat, eps_from_x0(schedule, x_t, t, clipped))
    return eps_hat, clipped


def reverse_mean(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                 output: torch.Tensor, prediction: str = "eps", *,
                 clip: bool = False) -> torch.Tensor:
    """mu_theta(x_t, t) of the reverse step from a network output: (B, *D) -> (B, *D).

    ``eps``: Ho Eq. 11 (:func:`mean_from_eps`); ``x0`` and ``v``: the posterior mean (Ho Eq. 7)
    at x0_hat, as diffusers' DDPMScheduler does. The two agree (see :func:`mean_from_eps`).
    ``clip`` (images only): the posterior mean (Ho Eq. 7) at x0_hat clamped to [-1, 1], as
    improved-diffusion's ``p_mean_variance`` with ``clip_denoised=True`` does; where the clamp
    leaves x0_hat alone the mean is bit for bit the one without ``clip``.
    """
    if not clip:
        if prediction == "eps":
            return mean_from_eps(schedule, x_t, t, output)
        _, x0_hat = predict_eps_x0(schedule, x_t, t, output, prediction)
        return q_posterior(schedule, x0_hat, x_t, t)[0]  # Ho Eq. 7 at x0_hat
    _, x0_hat = predict_eps_x0(schedule, x_t, t, output, prediction)
    clipped = x0_hat.clamp(-1.0, 1.0)  # improved-diffusion's clip_denoised: x^_0 in [-1, 1]
    mean = q_posterior(schedule, clipped, x_t, t)[0]  # Ho Eq. 7 at the clamped x^_0
    if prediction == "eps":  # unclamped elements: Ho Eq. 11, as without clip (equal to Eq. 7)
        mean = torch.where(clipped == x0_hat, mean_from_eps(schedule, x_t, t, output), mean)
    return mean


def target_for(schedule: NoiseSchedule, prediction: str, x0: torch.Tensor, eps: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
    """What a network of kind ``prediction`` is trained to output at x_t = q_sample(x0, t, eps).

    x0, eps: (B, *D); t: (B,) -> (B, *D): eps (Ho Eq. 14), x0, or v_t (Salimans & Ho Sec. 4).
    """
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from(schedule, x0, eps, t)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of: {', '.join(PREDICTIONS)}")


def min_snr_weight(schedule: NoiseSchedule, prediction: str, t: torch.Tensor,
                   gamma: float) -> torch.Tensor:
    """The Min-SNR-gamma loss weight of timesteps t (B,) for a network of kind ``prediction``
    (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", Eq. 7
    and Sec. 3.4): the x0-space weight min(SNR_t, gamma), SNR_t = ab_t / (1 - ab_t),
    carried to the target's own space.

    ||eps - eps_hat||^2 = SNR_t ||x0 - x0_hat||^2 and ||v - v_hat||^2 = (SNR_t + 1)
    ||x0 - x0_hat||^2 (each prediction's x0_hat read from x_t), so the weights are
    min(SNR, gamma) / SNR (eps), min(SNR, gamma) (x0) and min(SNR, gamma) / (SNR + 1) (v):
    every kind then minimises the same weighted x0 error, which caps the weight of the
    nearly-noiseless timesteps that otherwise dominate the gradient. Returns (B,) float32.
    """
    ab = torch.from_numpy(schedule.alpha_bar64).to(t.device)[t]  # float64: 1 - ab keeps digits
    snr = ab / (1 - ab)
    capped = torch.clamp(snr, max=gamma)
    # min(SNR, gamma) / SNR as min(1, gamma / SNR): 1, not 0/0, where SNR = 0
    per_kind = {"eps": torch.clamp(gamma / snr, max=1.0), "x0": capped,
                "v": capped / (snr + 1)}
    if prediction not in per_kind:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of: "
                         f"{', '.join(PREDICTIONS)}")
    return per_kind[prediction].float()


def stable_target(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor,
                  x_t: torch.Tensor, t: torch.Tensor, reference: torch.Tensor,
                  allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0~, eps~) to train on in place of (x0, eps): the stable target field (Xu, Tong &
    Jaakkola 2023, arXiv:2302.00670, the STF objective), a lower-variance target at high noise.

    Row i's x0 becomes the posterior mean of x_0 given its x_t when x_0 is uniform on
    {x0_i} and the M reference examples r_j (``reference``, (M, *D), drawn from the training
    data): weights softmax_j(-||x_t - sqrt(ab_t) r_j||^2 / (2 (1 - ab_t))), the own x0_i's
    exponent being -||eps_i||^2 / 2. eps~ = (x_t - sqrt(ab_t) x0~) / sqrt(1 - ab_t), so that
    x_t = q_sample(x0~, t, eps~) and every target of :func:`target_for` follows. At low noise
    the weight falls on x0_i (the usual target); at high noise, where one x0 says little of
    E[x_0 | x_t], the M + 1 examples average the target's variance down by about M + 1, at a
    bias that vanishes as M grows (the paper proves it asymptotically unbiased).
    ``allowed`` (B, M) bool: which reference examples row i may come from (a conditional
    example: those of its class).
    """
    schedule = schedule.to(x0.device)
    s = extract(schedule.sqrt_alpha_bar, t, x0)
    sig = extract(schedule.sqrt_one_minus_alpha_bar, t, x0)
    snr = (s / sig).square().view(-1, 1)  # ab / (1 - ab), (B, 1)
    ref = reference.flatten(1)
    # ||x_t - s r||^2 / (2 (1 - ab)) = (SNR / 2) ||x_t / s - r||^2
    logits = torch.cdist((x_t / s).flatten(1), ref).square_().mul_(-snr / 2)
    if allowed is not None:
        logits.masked_fill_(~allowed, -torch.inf)
    own = eps.flatten(1).square().sum(1, keepdim=True).mul_(-0.5)
    w = torch.softmax(torch.cat([own, logits], 1), 1)
    x0_hat = (w[:, :1] * x0.flatten(1) + w[:, 1:] @ ref).view_as(x0)
    return x0_hat, (x_t - s * x0_hat) / sig


VARIANCES = ("fixed_small", "fixed_large", "learned_range")


def check_variance(variance: str) -> None:
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance '{variance}'; choose one of: {', '.join(VARIANCES)}")


def reverse_variance(schedule: NoiseSchedule, kind: str) -> torch.Tensor:
    """sigma_t^2 of the reverse step, (T,): Ho et al. 2020, Sec. 3.2 gives two choices.

    ``fixed_small``: beta~_t, optimal for x_0 a point mass; ``fixed_large``: beta_t, optimal for
    x_0 ~ N(0, I). Both give the same samples up to the last few steps on most data.
    ``learned_range`` depends on the network output: see :func:`reverse_log_variance`.
    """
    check_variance(kind)
    if kind == "fixed_small":
        return schedule.posterior_variance
    if kind == "fixed_large":
        return schedule.beta
    raise ValueError("learned_range variances depend on the network output; "
                     "use reverse_log_variance")


def split_output(output: torch.Tensor, variance: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mean part, variance part v in [-1, 1] or None): a ``learned_range`` network returns
    twice the channels, the mean's first (Nichol & Dhariwal 2021, Sec. 3.1)."""
    if variance == "learned_range":
        mean_part, v = output.chunk(2, dim=1)
        return mean_part, v
    return output, None


def mean_part(denoiser: Denoiser, variance: str) -> Denoiser:
    """``denoiser`` with a ``learned_range`` output's variance half dropped: what the
    deterministic samplers (DDIM, DPM-Solver++, the ODE) use, having no variance."""
    if variance != "learned_range":
        return denoiser

    def mean_only(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return split_output(denoiser(x_t, t), variance)[0]

    return mean_only


def reverse_log_variance(schedule: NoiseSchedule, t: torch.Tensor, x: torch.Tensor,
                         variance: str, v: torch.Tensor | None = None) -> torch.Tensor:
    """log sigma_t^2 of p(x_{t-1} | x_t), broadcastable to x (B, *D).

    At t = 0 beta~_0 = 0, so, as improved-diffusion does, both fixed choices use beta~_1 there
    (the decoder p(x_0 | x_1) needs a positive variance; sampling adds no noise at t = 0).
    ``learned_range``: Nichol & Dhariwal 2021, Eq. 15,
    Sigma = exp(u log beta_t + (1 - u) log beta~_t), u = (v + 1) / 2.
    """
    schedule = schedule.to(x.device)
    log_small = schedule.posterior_log_variance  # log beta~_t, t = 0 clipped to t = 1
    if variance == "fixed_small":
        return extract(log_small, t, x)
    log_large = torch.cat([log_small[:1], schedule.beta[1:].log()])  # improved-diffusion
    if variance == "fixed_large":
        return extract(log_large, t, x)
    if variance != "learned_range":
        raise ValueError(f"unknown variance '{variance}'; choose one of: {', '.join(VARIANCES)}")
    if v is None:
        raise ValueError("learned_range needs the network's variance output v")
    u = (v + 1) / 2  # N&D Eq. 15: v in [-1, 1] -> u in [0, 1]
    return u * extract(schedule.beta.log(), t, x) + (1 - u) * extract(log_small, t, x)


def sample_timesteps(batch: int, T: int, generator: torch.Generator | None = None,
                     antithetic: bool = False, *,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """t ~ Uniform{0..T-1}, (batch,) int64 (Ho Algorithm 1, line 3).

    Drawn on ``generator``'s device; with no generator on ``device`` (None: the CPU).

    ``antithetic`` draws half the batch and pairs each t with T-1-t, as the source text's
    ``diffusion_loss`` does: the pair's losses are negatively correlated in t, so the batch
    mean has lower variance. An odd batch gets one extra uniform draw.
    """
    if generator is not None:
        device = generator.device
    if not antithetic:
        return torch.randint(0, T, (batch,), generator=generator, device=device)
    half = torch.randint(0, T, ((batch + 1) // 2,), generator=generator, device=device)
    return torch.cat([half, T - 1 - half])[:batch]


def diffusion_loss(schedule: NoiseSchedule, denoiser: Denoiser, x0: torch.Tensor,
                   generator: torch.Generator | None = None, antithetic: bool = False,
                   prediction: str = "eps", *,
                   drawn: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
                   ) -> torch.Tensor:
    """The mean squared error of the network against its target, a scalar (x0: (B, *D)).

    Draws t (Ho Algorithm 1, line 3), then eps ~ N(0, I), then x_t (Ho Eq. 4), in that order
    from ``generator``, whatever ``prediction``. ``eps`` gives L_simple (Ho Eq. 14). Per
    sample, the ``x0`` loss is the eps loss weighted by 1/SNR_t and the ``v`` loss the x0 loss
    weighted by 1 + SNR_t, SNR_t = alpha_bar_t / (1 - alpha_bar_t) (Salimans & Ho 2022, Sec. 4).
    ``drawn``: (t, eps, x_t) drawn already (:func:`draw_training_inputs`), instead of drawing.
    """
    t, eps, x_t = drawn or draw_training_inputs(schedule, x0, generator, antithetic)
    target = target_for(schedule, prediction, x0, eps, t)
    return (target - denoiser(x_t, t)).square().mean()  # Ho Eq. 14 for eps


def draw_training_inputs(schedule: NoiseSchedule, x0: torch.Tensor,
                         generator: torch.Generator | None = None, antithetic: bool = False
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, eps, x_t) for a batch x0 (B, *D): t (Ho Alg. 1, line 3), then eps, then x_t (Eq. 4).

    Drawn on ``generator``'s device (None: x0's), which must be x0's.
    """
    device = x0.device if generator is None else generator.device
    t = sample_timesteps(x0.shape[0], schedule.T, generator, antithetic, device=device)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=device)
    return t, eps, q_sample(schedule, x0, t, eps)


def eps_loss(schedule: NoiseSchedule, denoiser: Denoiser, x0: torch.Tensor,
             generator: torch.Generator | None = None, antithetic: bool = False) -> torch.Tensor:
    """L_simple, the epsilon-prediction loss (Ho Eq. 14 / Algorithm 1), a scalar.

    E_{t, eps} || eps - eps_theta(sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, t) ||^2, averaged over
    the batch and the dimensions (x0: (B, *D)). ``diffusion_loss`` with ``prediction='eps'``.
    """
    return diffusion_loss(schedule, denoiser, x0, generator, antithetic, prediction="eps")
