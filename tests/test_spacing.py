"""Strided timesteps against diffusers 0.42.1 (tests/data), its set_timesteps formulas and Lin
et al. 2023 (Table 2); the respaced schedule; strided DDPM as DDPM on the respaced schedule."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers import err, gaussian_eps, replay

from ddpmlab.errors import UserError
from ddpmlab.samplers import DEFAULT_SPACING, SPACINGS, ddpm_chain, default_spacing, timesteps
from ddpmlab.samplers.spacing import LOGSNR_START, OFFICIAL_LAMBDA_MIN, most_steps
from ddpmlab.schedules import SCHEDULES, NoiseSchedule, make_schedule

torch.set_num_threads(1)



DIFFUSERS_SPACINGS = ("linspace", "leading", "trailing")  # logsnr is DPM-Solver's (below)


def diffusers_timesteps(T: int, K: int, spacing: str) -> np.ndarray:
    """diffusers' DDIMScheduler/DDPMScheduler.set_timesteps (steps_offset = 0), transcribed."""
    if spacing == "linspace":
        return np.linspace(0, T - 1, K).round()[::-1].copy().astype(np.int64)
    if spacing == "leading":
        step_ratio = T // K
        return (np.arange(0, K) * step_ratio).round()[::-1].copy().astype(np.int64)
    step_ratio = T / K
    return np.round(np.arange(T, 0, -step_ratio)).astype(np.int64) - 1


# ------------------------------------------------------------------ the grids


@pytest.mark.parametrize("case", ["linear", "squaredcos_cap_v2", "sigmoid"])
def test_leading_is_diffusers_ddim_grid_and_prev(ref, case):
    key = f"ddim_step__T1000_{case}_N50_leading__"
    t, t_prev = timesteps(1000, 50, "leading")
    np.testing.assert_array_equal(t, ref[key + "all_timesteps"])
    assert t.dtype == np.int64 and t_prev.dtype == np.int64
    # diffusers' prev = t - T // K, negative meaning the data: ours is -1 there
    for row, want in zip(ref[key + "timesteps"], ref[key + "prev_timesteps"], strict=True):
        (k,) = np.flatnonzero(t == row)
        assert t_prev[k] == max(want, -1)


def test_leading_is_the_grid_of_diffusers_loops(ref):
    for case in ("linear", "squaredcos_cap_v2"):
        np.testing.assert_array_equal(timesteps(1000, 50, "leading")[0],
                                      ref[f"toy__ddim50_eta0_{case}__timesteps"])
        np.testing.assert_array_equal(timesteps(1000, 100, "leading")[0],
                                      ref[f"toy__ddpm100_{case}__timesteps"])
        np.testing.assert_array_equal(timesteps(1000, 1000, "leading")[0],
                                      ref[f"toy__ddpm1000_{case}__timesteps"])


def test_lin_et_al_2023_table_2_examples():
    # T = 1000, 10 steps (Lin et al. 2023, Table 2)
    np.testing.assert_array_equal(timesteps(1000, 10, "linspace")[0],
                                  [999, 888, 777, 666, 555, 444, 333, 222, 111, 0])
    np.testing.assert_array_equal(timesteps(1000, 10, "leading")[0],
                                  [900, 800, 700, 600, 500, 400, 300, 200, 100, 0])
    np.testing.assert_array_equal(timesteps(1000, 10, "trailing")[0],
                                  [999, 899, 799, 699, 599, 499, 399, 299, 199, 99])


@pytest.mark.parametrize("T", [1, 2, 3, 7, 50, 150, 1000])
@pytest.mark.parametrize("spacing", DIFFUSERS_SPACINGS)
def test_every_K_matches_diffusers_and_is_a_valid_grid(T, spacing):
    overshoots = 0
    for K in range(1, T + 1):
        t, t_prev = timesteps(T, K, spacing)
        want = diffusers_timesteps(T, K, spacing)
        if len(want) == K + 1:  # diffusers' float arange overshoots, adding t = -1
            assert spacing == "trailing" and want[-1] == -1
            overshoots += 1
        if spacing == "linspace" and K == 1:  # t = T-1, not diffusers' t = 0 (noise)
            want = np.array([T - 1])
        np.testing.assert_array_equal(t, want[:K])
        assert t.shape == t_prev.shape == (K,) and t.dtype == t_prev.dtype == np.int64
        assert t[0] <= T - 1 and t[-1] >= 0
        assert np.all(np.diff(t) < 0), (K, t)
        np.testing.assert_array_equal(t_prev, np.append(t[1:], -1))
        if spacing == "trailing":
            assert t[0] == T - 1
        if spacing == "leading":
            assert t[-1] == 0
        if spacing == "linspace":
            assert t[0] == T - 1 and (K == 1 or t[-1] == 0)
    np.testing.assert_array_equal(timesteps(T, T, spacing)[0], np.arange(T - 1, -1, -1))
    if T == 1000 and spacing == "trailing":
        assert overshoots > 0  # e.g. K = 61: the case the truncation exists for


@pytest.mark.parametrize("T", [2, 3, 7, 50, 200, 1000])
@pytest.mark.parametrize("name", ["cosine", "linear_unscaled", "sigmoid"])
def test_logsnr_is_a_valid_grid_at_every_K_and_uniform_in_lambda(T, name):
    ab = make_schedule(name, T, warn=False).alpha_bar64
    lam = 0.5 * np.log(ab / (1 - ab))
    for K in range(1, T + 1):
        t, t_prev = timesteps(T, K, "logsnr", ab)
        assert t.shape == t_prev.shape == (K,) and t.dtype == t_prev.dtype == np.int64
        assert t[0] == T - 1 and (K == 1 or t[-1] == 0)
        assert np.all(np.diff(t) < 0), (K, t)
        np.testing.assert_array_equal(t_prev, np.append(t[1:], -1))
    np.testing.assert_array_equal(timesteps(T, T, "logsnr", ab)[0], np.arange(T - 1, -1, -1))
    if T >= 200:  # few steps, no collisions: each t is the nearest to its uniform lambda
        for K in (5, 10, 20):
            t = timesteps(T, K, "logsnr", ab)[0]
            target = np.linspace(max(LOGSNR_START, lam[-2]), lam[0], K - 1)
            nearest = [int(np.argmin(np.abs(lam - x))) for x in target]
            assert np.abs(t[1:] - nearest).max() <= 1  # round of the interpolated t
            assert np.abs(lam[t[1:]] - target).max() <= np.abs(np.diff(lam)).max()


def test_logsnr_on_the_default_schedule_and_its_inputs():
    ab = make_schedule("cosine", 200).alpha_bar64
    assert timesteps(200, 20, "logsnr", ab)[0].tolist() == [
        199, 182, 175, 165, 153, 137, 117, 95, 74, 55, 40, 28, 20, 13, 9, 6, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="alpha_bar"):
        timesteps(200, 20, "logsnr")
    with pytest.raises(ValueError, match="alpha_bar"):
        timesteps(100, 20, "logsnr", ab)


def test_dpm_solver_defaults_to_logsnr_for_v_and_x0_runs():
    for prediction in ("v", "x0"):
        assert default_spacing(prediction, "dpm_solver") == "logsnr"
        assert default_spacing(prediction, "ddim") == default_spacing(prediction) == "linspace"
        assert default_spacing(prediction, "ddpm") == "linspace"
    assert default_spacing("eps", "dpm_solver") == "leading"


def test_default_spacing_follows_the_prediction():
    # v and x0 runs: linspace, from t = T-1 (noise) to t = 0 for every K; eps runs: leading,
    # which avoids t = T-1 where eps's x0_hat divides by sqrt(alpha_bar) ~ 2.5e-4.
    assert default_spacing("v") == default_spacing("x0") == DEFAULT_SPACING == "linspace"
    assert default_spacing("eps") == "leading"
    assert timesteps(50, 7)[0].tolist() == [49, 41, 33, 24, 16, 8, 0]
    for K in range(1, 51):
        t = timesteps(50, K, default_spacing("v"))[0]
        assert t[0] == 49 and (t[-1] == 0 or K == 1)
    assert timesteps(50, 7, "leading")[0].tolist() == [42, 35, 28, 21, 14, 7, 0]


@pytest.mark.parametrize("K", [0, -1, 51, 2.5, True, None])
def test_steps_outside_1_to_T_are_rejected(K):
    with pytest.raises(UserError, match=re.escape("1..50")):
        timesteps(50, K, "leading")
    assert issubclass(UserError, ValueError)


def test_unknown_spacing_lists_the_valid_ones():
    with pytest.raises(UserError) as info:
        timesteps(50, 10, "uniform")
    for name in ("uniform", *SPACINGS):
        assert name in str(info.value)
    timesteps(50, np.int64(10), "leading")  # numpy integers are fine


# ------------------------------------------------------------------ the respaced schedule


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("K", [1, 2, 7, 50])
def test_respaced_schedule_keeps_alpha_bar_at_the_visited_steps(name, K):
    s = make_schedule(name, 50)
    for spacing in SPACINGS:
        if K > most_steps(50, spacing, s.alpha_bar64):
            continue  # the official grid drops the cosine schedule's last timesteps
        t, _ = timesteps(50, K, spacing, s.alpha_bar64)
        r = s.respaced(t)
        if K == 50:  # every step visited: the schedule itself, its own betas unchanged
            assert r is s
            continue
        visited = t[::-1]
        assert r.T == K
        np.testing.assert_allclose(r.alpha_bar.double().numpy(),
                                   s.alpha_bar.double().numpy()[visited], rtol=1e-6)
        ab = np.cumprod(1 - SCHEDULES[name](50))[visited]  # float64, from the betas
        beta = 1 - ab / np.append(1.0, ab[:-1])  # Nichol & Dhariwal 2021, Sec. 4
        np.testing.assert_allclose(r.beta.double().numpy(), beta, rtol=1e-6)  # one float32 cast
        np.testing.assert_allclose(r.alpha_bar64, ab, rtol=1e-10)
        assert r.alpha_bar_prev[0] == 1 and r.posterior_variance[0] == 0
        for field in ("posterior_log_variance", "posterior_mean_coef_x0", "sqrt_alpha_bar"):
            assert torch.isfinite(getattr(r, field)).all()
    assert s.respaced(np.arange(49, -1, -1)) is s


def test_respaced_rejects_bad_timesteps():
    s = make_schedule("cosine", 20)
    for bad in ([3, 3, 1], [20, 3], [-1, 0], []):
        with pytest.raises(ValueError, match="0..19"):
            s.respaced(np.array(bad, dtype=np.int64))


@pytest.mark.parametrize(("name", "case"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_respaced_schedule_replays_diffusers_ddpm100_loop(ref, name, case):
    key = f"toy__ddpm100_{case}__"
    respaced = make_schedule(name, 1000).respaced(timesteps(1000, 100, "leading")[0])
    x = replay(respaced, ref["toy__gaussian__x_T"], ref[key + "noises"])
    assert err(x, ref[key + "final"]) <= 1e-3  # README: replayed loops


# ------------------------------------------------------------------ strided DDPM


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_strided_ddpm_is_ddpm_on_the_respaced_schedule(spacing, variance):
    T, K, n = 100, 13, 32
    s = make_schedule("cosine", T)
    eps = gaussian_eps(s.alpha_bar)
    t, t_prev = timesteps(T, K, spacing, s.alpha_bar64)
    visited = t[::-1].copy()
    ab = s.alpha_bar.double().numpy()[visited]
    respaced = NoiseSchedule.from_betas(1 - ab / np.append(1.0, ab[:-1]))  # N&D 2021, Sec. 4
    index_to_t = torch.from_numpy(visited)  # respaced index j -> the network's timestep

    def respaced_eps(x, j):
        return eps(x, index_to_t[j])

    got = list(ddpm_chain(eps, s, (n, 2), steps=K, spacing=spacing, variance=variance,
                          generator=torch.Generator().manual_seed(0)))
    want = list(ddpm_chain(respaced_eps, respaced, (n, 2), variance=variance,
                           generator=torch.Generator().manual_seed(0)))
    assert [label for label, _ in got] == [int(t[0]) + 1, *(t_prev + 1).tolist()]
    assert [label for label, _ in want] == list(range(K, -1, -1))
    for (_, a), (_, b) in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spacing", [sp for sp in SPACINGS if sp != "logsnr_official"])
def test_ddpm_with_all_T_steps_is_unchanged(spacing):
    # steps = T visits every t whatever the spacing: the same draws and values as steps=None.
    # (Not logsnr_official: it drops the last timesteps, below.)
    s = make_schedule("linear", 40)
    eps = gaussian_eps(s.alpha_bar)
    a = [x for _, x in ddpm_chain(eps, s, (16, 2), generator=torch.Generator().manual_seed(1))]
    b = [x for _, x in ddpm_chain(eps, s, (16, 2), steps=40, spacing=spacing,
                                  generator=torch.Generator().manual_seed(1))]
    assert len(a) == len(b) == 41
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_logsnr_official_drops_the_timesteps_below_its_lambda_floor_and_says_so():
    # the official numerical_clip_alpha: lambda_t < -5.1 at the end of the schedule is cut
    s = make_schedule("linear", 40)
    ab = s.alpha_bar64
    lam = 0.5 * (np.log(ab) - np.log1p(-ab))
    kept = int((lam >= OFFICIAL_LAMBDA_MIN).sum())
    assert kept == most_steps(40, "logsnr_official", ab) == 36 and lam[35] >= -5.1 > lam[36]
    t, t_prev = timesteps(40, kept, "logsnr_official", ab)
    np.testing.assert_array_equal(t, np.arange(kept - 1, -1, -1))  # K = N: every kept step
    assert t_prev[-1] == -1
    assert timesteps(40, 1, "logsnr_official", ab)[0].tolist() == [kept - 1]
    with pytest.raises(UserError, match="visits at most 36 timesteps.*not 37.*--steps 36"):
        timesteps(40, 37, "logsnr_official", ab)
    assert most_steps(40, "logsnr", ab) == 40
