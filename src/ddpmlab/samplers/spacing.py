"""Strided sampling: which K of the T timesteps a sampler visits, and in which order.

The first three spacings are diffusers' (``DDPMScheduler`` / ``DDIMScheduler.set_timesteps``
with ``steps_offset = 0``), named as in Lin et al. 2023, Table 2; for T = 1000, K = 10:

- ``linspace``: round(linspace(0, T-1, K)), reversed: 999, 888, ..., 111, 0; for K = 1,
  t = T-1 (diffusers visits t = 0 alone, a denoising step applied to pure noise).
- ``leading``: (T // K) * (K-1, ..., 1, 0): 900, 800, ..., 100, 0. Never visits t = T-1 unless
  K = T; diffusers' DDIM default, the grid of its reference loops.
- ``trailing``: round(arange(T, 0, -T/K)) - 1: 999, 899, ..., 199, 99. Always starts at
  t = T-1, where x_T ~ N(0, I) is the noise level the network was trained on.
- ``logsnr``: t = T-1, then K-1 timesteps uniform in the half log-SNR lambda_t =
  log(sqrt(alpha_bar_t / (1 - alpha_bar_t))) from :data:`LOGSNR_START` (or lambda_{T-2}, if
  that is higher) down to lambda_0 (DPM-Solver's "logSNR" grid, Lu et al. 2022, Sec. 3.3, on
  the discrete timesteps), each the nearest t, moved by the fewest steps needed to make the
  K distinct. It depends on the schedule (``alpha_bar``): on the cosine schedule it visits t
  near 0 far more often than ``linspace`` (T = 200, K = 20: ..., 13, 9, 6, 3, 2, 1, 0 against
  ..., 42, 31, 21, 10, 0). DPM-Solver++'s default (:func:`default_spacing`).
- ``logsnr_official``: the official DPM-Solver's ``logSNR`` grid (Lu et al. 2022, Sec. 3.3;
  ``dpm_solver_pytorch.py``'s ``get_time_steps``) on the discrete timesteps: K points uniform in
  lambda from lambda_{N-1} to lambda_0, where N = T unless the schedule's lambda falls below
  :data:`OFFICIAL_LAMBDA_MIN` (the official ``numerical_clip_alpha`` then drops those last
  timesteps, and the grid and x_T start at t = N-1), each lambda taken to the official
  continuous time (log alpha interpolated linearly between timesteps) and rounded to the
  nearest timestep, since ddpmlab's networks embed integer timesteps. T = 1000 linear, K = 20:
  999, 947, 893, 834, ... where ``logsnr`` visits 999, 628, 569, 505, ... ddpmlab's K visited
  timesteps are the official ``steps = K - 1`` with ``denoise_to_zero=True`` (K network
  calls); with it, DPM-Solver++ also takes the official rule for its last step
  (``samplers.dpm_solver``).

With K = T all three visit every step T-1, ..., 0. Each visited t is followed by its
previous timestep ``t_prev``: the next visited one, and -1 after the last, meaning the data
(alpha_bar_prev = 1, diffusers' ``set_alpha_to_one``). diffusers' DDIM and DDPM steps take
t_prev = t - T // K instead: the same for ``leading``, but off the grid for the other two
when K does not divide T.
"""

from __future__ import annotations

import numpy as np

from ddpmlab.errors import UserError

SPACINGS = ("linspace", "leading", "trailing", "logsnr", "logsnr_official")

#: The samplers' default for runs that predict v or x0 (every default run): it starts at
#: t = T-1, where x_T ~ N(0, I) is the noise the network saw, and ends at t = 0, so no K
#: starts from a state that is not noise (``leading`` with K > T/2 starts at t = K-1) and no
#: K ends with a long first-order jump from t = T/K - 1 to the data (``trailing``), which
#: thins the data's own spread (bench/README.md, "Few-step sampling").
DEFAULT_SPACING = "linspace"

#: The default for eps-prediction runs: never visits t = T-1 unless K = T. There the cosine
#: schedule's capped last beta leaves alpha_bar ~ 6e-8 (T = 200), x0_hat multiplies the
#: network's error by 1/sqrt(alpha_bar) ~ 4,000, and a deterministic sampler carries it into
#: the sample (bench/README.md, "Few-step sampling"). Predicting v removes that cliff
#: (x0_hat = sqrt(ab) x_t - sqrt(1 - ab) v_hat divides by nothing).
EPS_SPACING = "leading"


#: DPM-Solver++'s default for v and x0 runs: its second-order steps stay accurate over the
#: wide steps at high noise, so the grid can spend its steps where the data's fine structure
#: forms, which at few steps gives better samples than ``linspace`` (Lu et al. 2022, Sec.
#: 3.3). DDIM keeps ``linspace``: a first-order method needs its steps at high noise too
#: (bench/README.md, "Few-step sampling").
SOLVER_SPACING = "logsnr"

#: Where ``logsnr``'s uniform part starts: lambda = -2 (SNR = alpha_bar / (1 - alpha_bar) =
#: e^-4 = 0.018), t = 183 of the cosine schedule at T = 200. Above it, for standardised
#: data, x0_hat hardly depends on x_t, and steps spent there are lost where the fine
#: structure forms; DPM-Solver++'s few-step samples are better from -2 than from -3, from
#: DPM-Solver's own end point lambda_{T-2}, or on ``linspace`` (bench/README.md, "Few-step
#: sampling").
LOGSNR_START = -2.0

#: The official DPM-Solver's floor on lambda (``NoiseScheduleVP.numerical_clip_alpha``): the
#: timesteps past the first one below it are dropped, for the stability of the cosine
#: schedule, whose last alpha_bar are ~1e-8 (lambda ~ -9).
OFFICIAL_LAMBDA_MIN = -5.1


def default_spacing(prediction: str, sampler: str = "ddim") -> str:
    """The spacing ``sampler`` uses unless told: :data:`EPS_SPACING` for ``eps`` runs;
    for ``v`` and ``x0``, :data:`SOLVER_SPACING` for ``dpm_solver`` and
    :data:`DEFAULT_SPACING` for the others (``ddpm``, ``ddim``)."""
    if prediction == "eps":
        return EPS_SPACING
    return SOLVER_SPACING if sampler == "dpm_solver" else DEFAULT_SPACING


def timesteps(T: int, K: int, spacing: str = DEFAULT_SPACING,
              alpha_bar: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The K visited timesteps and the previous timestep of each, both (K,) int64.

    ``t`` is strictly decreasing in 0..T-1; ``t_prev[k] = t[k + 1]`` and ``t_prev[-1] = -1``.
    K must lie in 1..T; ``spacing`` is one of :data:`SPACINGS`. ``alpha_bar``: the
    schedule's (T,) alpha_bar (``NoiseSchedule.alpha_bar64``), needed by ``logsnr`` only.
    """
    if spacing not in SPACINGS:
        raise UserError(f"unknown timestep spacing '{spacing}'; choose one of: "
                        f"{', '.join(SPACINGS)}")
    if isinstance(K, bool) or not isinstance(K, int | np.integer) or not 1 <= K <= T:
        raise UserError(f"the number of sampling steps must be an integer in 1..{T}, got {K!r}")
    if spacing in ("logsnr", "logsnr_official"):
        if alpha_bar is None or len(alpha_bar) != T:
            raise ValueError(f"the {spacing} spacing needs the schedule's alpha_bar, ({T},)")
        grid = _logsnr_grid if spacing == "logsnr" else _official_logsnr_grid
        t = grid(np.asarray(alpha_bar, dtype=np.float64), int(K))
    elif spacing == "linspace":  # K = 1: t = T-1 (diffusers' grid is t = 0, from noise)
        t = np.linspace(0, T - 1, K).round()[::-1].astype(np.int64) if K > 1 else np.array([T - 1])
    elif spacing == "leading":
        t = (np.arange(K) * (T // K))[::-1].astype(np.int64)
    else:
        # np.arange with a fractional step sometimes yields K + 1 values, the last being -1
        # (e.g. T = 1000, K = 61): diffusers then visits t = -1; the first K are the grid.
        t = (np.round(np.arange(T, 0, -T / K)).astype(np.int64) - 1)[:K]
    t_prev = np.append(t[1:], -1).astype(np.int64)
    return t.copy(), t_prev


def _logsnr_grid(alpha_bar: np.ndarray, K: int) -> np.ndarray:
    """``logsnr``'s K timesteps, decreasing from T-1 (see the module's docstring)."""
    T = len(alpha_bar)
    if K == 1:
        return np.array([T - 1], dtype=np.int64)
    lam = 0.5 * (np.log(alpha_bar) - np.log1p(-alpha_bar))  # decreasing in t
    start = min(max(LOGSNR_START, lam[-2]), lam[0])
    # high noise to low; K = 2: T-1, then t = 0 (linspace's one point would be the start)
    target = np.linspace(start, lam[0], K - 1) if K > 2 else lam[:1]
    # the nearest timestep of each (np.interp wants increasing x: lambda reversed)
    t = np.concatenate([[T - 1], np.round(np.interp(target, lam[::-1],
                                                    np.arange(T - 1, -1, -1.0)))]).astype(np.int64)
    return _distinct(t, T - 1)


def _official_logsnr_grid(alpha_bar: np.ndarray, K: int) -> np.ndarray:
    """``logsnr_official``'s K timesteps, decreasing from N-1 to 0 (the module's docstring)."""
    log_alpha = 0.5 * np.log(alpha_bar)
    lam = log_alpha - 0.5 * np.log1p(-alpha_bar)  # decreasing in t
    N = _official_length(lam)
    if K > N:
        raise UserError(f"the logsnr_official spacing visits at most {N} timesteps on this "
                        f"schedule (lambda >= {OFFICIAL_LAMBDA_MIN} there), not {K}; give "
                        f"--steps {N} or fewer, or another --spacing")
    if K == 1:
        return np.array([N - 1], dtype=np.int64)
    target = np.linspace(lam[N - 1], lam[0], K)  # get_time_steps('logSNR'), N + 1 points
    # inverse_lambda: log alpha of each lambda, then the time interpolated linearly in log
    # alpha between timesteps (continuous t = (k + 1) / N at timestep k), rounded to k
    target_log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * target)
    k = np.interp(target_log_alpha, log_alpha[:N][::-1], np.arange(N - 1, -1, -1.0))
    return _distinct(np.round(k).astype(np.int64), N - 1)


def _official_length(lam: np.ndarray) -> int:
    """N: the timesteps the official ``numerical_clip_alpha`` keeps of the decreasing half
    log-SNR ``lam``, dropping the trailing ones below :data:`OFFICIAL_LAMBDA_MIN`."""
    return len(lam) - int(np.searchsorted(lam[::-1], OFFICIAL_LAMBDA_MIN))


def most_steps(T: int, spacing: str, alpha_bar: np.ndarray | None = None) -> int:
    """The most timesteps ``spacing`` visits: T, except ``logsnr_official``, which keeps only
    those whose lambda is at least :data:`OFFICIAL_LAMBDA_MIN` (``alpha_bar`` needed)."""
    if spacing != "logsnr_official":
        return T
    if alpha_bar is None or len(alpha_bar) != T:
        raise ValueError(f"the logsnr_official spacing needs the schedule's alpha_bar, ({T},)")
    ab = np.asarray(alpha_bar, dtype=np.float64)
    return _official_length(0.5 * (np.log(ab) - np.log1p(-ab)))


def _distinct(t: np.ndarray, first: int) -> np.ndarray:
    """Rounded timesteps t (K,), made strictly decreasing from ``first`` by the fewest moves."""
    K = len(t)
    for k in range(K - 2, -1, -1):  # from the data up: at least one above the next
        t[k] = max(t[k], t[k + 1] + 1)
    t[0] = first
    for k in range(1, K):  # from the noise down: at least one below the previous
        t[k] = min(t[k], t[k - 1] - 1)
    return t
