"""Strided sampling: which K of the T timesteps a sampler visits, and in which order.

The three spacings are diffusers' (``DDPMScheduler`` / ``DDIMScheduler.set_timesteps`` with
``steps_offset = 0``), named as in Lin et al. 2023, Table 2; for T = 1000, K = 10:

- ``linspace``: round(linspace(0, T-1, K)), reversed: 999, 888, ..., 111, 0; for K = 1,
  t = T-1 (diffusers visits t = 0 alone, a denoising step applied to pure noise).
- ``leading``: (T // K) * (K-1, ..., 1, 0): 900, 800, ..., 100, 0. Never visits t = T-1 unless
  K = T; diffusers' DDIM default, the grid of its reference loops.
- ``trailing``: round(arange(T, 0, -T/K)) - 1: 999, 899, ..., 199, 99. Always starts at
  t = T-1, where x_T ~ N(0, I) is the noise level the network was trained on.

With K = T all three visit every step T-1, ..., 0. Each visited t is followed by its
previous timestep ``t_prev``: the next visited one, and -1 after the last, meaning the data
(alpha_bar_prev = 1, diffusers' ``set_alpha_to_one``). diffusers' DDIM and DDPM steps take
t_prev = t - T // K instead: the same for ``leading``, but off the grid for the other two
when K does not divide T.
"""

from __future__ import annotations

import numpy as np

from ddpmlab.errors import UserError

SPACINGS = ("linspace", "leading", "trailing")

#: The samplers' default for runs that predict v or x0 (every default run): it starts at
#: t = T-1, where x_T ~ N(0, I) is the noise the network saw, and ends at t = 0, so no K
#: starts from a state that is not noise (``leading`` with K > T/2 starts at t = K-1) and no
#: K ends with a long denoising jump from t = T/K - 1 (``trailing``), which thins the data's
#: own spread (swiss roll, v prediction, DPM-Solver++ at K = 20: 1-NNA 0.565 linspace, 0.582
#: trailing; bench/README.md, "Few-step sampling").
DEFAULT_SPACING = "linspace"

#: The default for eps-prediction runs: never visits t = T-1 unless K = T. There the cosine
#: schedule's capped last beta leaves alpha_bar ~ 6e-8 (T = 200), x0_hat multiplies the
#: network's error by 1/sqrt(alpha_bar) ~ 4,000, and a deterministic sampler carries it into
#: the sample (DDIM at K = 20 on swiss roll: 1-NNA 0.63 leading, 0.94 linspace). Predicting v
#: removes that cliff (x0_hat = sqrt(ab) x_t - sqrt(1 - ab) v_hat divides by nothing).
EPS_SPACING = "leading"


def default_spacing(prediction: str) -> str:
    """The spacing a sampler uses unless told: :data:`EPS_SPACING` for ``eps`` runs,
    :data:`DEFAULT_SPACING` for ``v`` and ``x0``."""
    return EPS_SPACING if prediction == "eps" else DEFAULT_SPACING


def timesteps(T: int, K: int, spacing: str = DEFAULT_SPACING) -> tuple[np.ndarray, np.ndarray]:
    """The K visited timesteps and the previous timestep of each, both (K,) int64.

    ``t`` is strictly decreasing in 0..T-1; ``t_prev[k] = t[k + 1]`` and ``t_prev[-1] = -1``.
    K must lie in 1..T; ``spacing`` is one of :data:`SPACINGS`.
    """
    if spacing not in SPACINGS:
        raise UserError(f"unknown timestep spacing '{spacing}'; choose one of: "
                        f"{', '.join(SPACINGS)}")
    if isinstance(K, bool) or not isinstance(K, int | np.integer) or not 1 <= K <= T:
        raise UserError(f"the number of sampling steps must be an integer in 1..{T}, got {K!r}")
    if spacing == "linspace":  # K = 1: t = T-1 (diffusers' grid is t = 0, from noise)
        t = np.linspace(0, T - 1, K).round()[::-1].astype(np.int64) if K > 1 else np.array([T - 1])
    elif spacing == "leading":
        t = (np.arange(K) * (T // K))[::-1].astype(np.int64)
    else:
        # np.arange with a fractional step sometimes yields K + 1 values, the last being -1
        # (e.g. T = 1000, K = 61): diffusers then visits t = -1; the first K are the grid.
        t = (np.round(np.arange(T, 0, -T / K)).astype(np.int64) - 1)[:K]
    t_prev = np.append(t[1:], -1).astype(np.int64)
    return t.copy(), t_prev

