"""Noise schedules against diffusers 0.42.1 (tests/data) and closed forms recomputed in float64.

Name map (diffusers -> ddpmlab): ``squaredcos_cap_v2`` -> ``cosine``; ``linear`` (never
rescaled) -> ``linear_unscaled`` (and ``linear`` at T = 1000, where the 1000/T rescaling is 1);
``T150_linear_rescaled`` -> ``linear`` at T = 150; ``sigmoid`` -> ``sigmoid_betas`` with
diffusers' default ends (1e-4, 0.02). ddpmlab's registered ``sigmoid`` keeps the source text's
ends (1e-5, 5e-3), checked here against the source text's own formula.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from helpers import err

from ddpmlab.errors import UserError
from ddpmlab.schedules import (
    NoiseSchedule,
    ScheduleWarning,
    make_schedule,
    sigmoid_betas,
)

torch.set_num_threads(1)

# Tolerance of the reference README for schedules: |a - b| / (1 + |b|) <= 2e-5.
SCHEDULE_TOL = 2e-5
NAMES = ("linear", "linear_unscaled", "cosine", "sigmoid")


# ------------------------------------------------------------------ against diffusers

REGISTERED_CASES = [
    ("cosine", 1000, "T1000_squaredcos_cap_v2"),
    ("cosine", 150, "T150_squaredcos_cap_v2"),
    ("linear_unscaled", 1000, "T1000_linear"),
    ("linear_unscaled", 150, "T150_linear"),
    ("linear", 1000, "T1000_linear"),
    ("linear", 150, "T150_linear_rescaled"),
]


@pytest.mark.parametrize(("name", "T", "case"), REGISTERED_CASES)
def test_registered_schedule_matches_diffusers(ref, name, T, case):
    s = make_schedule(name, T, warn=False)
    assert s.T == T
    assert err(s.beta, ref[f"schedule__{case}__betas"]) <= SCHEDULE_TOL
    assert err(s.alpha_bar, ref[f"schedule__{case}__alphas_cumprod"]) <= SCHEDULE_TOL


@pytest.mark.parametrize("T", [1000, 150])
def test_sigmoid_on_beta_matches_diffusers_sigmoid_with_its_default_ends(ref, T):
    # diffusers' "sigmoid" is the same sigmoid on beta, with DDPMScheduler's default ends.
    s = NoiseSchedule.from_betas(sigmoid_betas(T, beta_start=1e-4, beta_end=0.02))
    assert err(s.beta, ref[f"schedule__T{T}_sigmoid__betas"]) <= SCHEDULE_TOL
    assert err(s.alpha_bar, ref[f"schedule__T{T}_sigmoid__alphas_cumprod"]) <= SCHEDULE_TOL


@pytest.mark.parametrize("T", [1000, 150])
def test_registered_sigmoid_is_the_source_texts_betas(T):
    # The source text, verbatim: betas = torch.sigmoid(torch.linspace(-6,6,T))*(0.5e-2-1e-5)+1e-5
    betas = torch.linspace(-6, 6, T)
    betas = torch.sigmoid(betas) * (0.5e-2 - 1e-5) + 1e-5
    s = make_schedule("sigmoid", T, warn=False)
    torch.testing.assert_close(s.beta, betas, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ structure


# The 1000/T-rescaled linear betas reach 0.02 * 1000 / T >= 1 for T <= 20: it starts at 21.
STRUCTURE_CASES = [(n, T) for n in NAMES for T in (2, 21, 150, 1000) if (n, T) != ("linear", 2)]


@pytest.mark.parametrize(("name", "T"), STRUCTURE_CASES)
def test_fields_are_float32_vectors_and_alpha_bar_decreases_in_unit_interval(name, T):
    s = make_schedule(name, T, warn=False)
    for field in NoiseSchedule.__dataclass_fields__:
        v = getattr(s, field)
        assert v.dtype == torch.float32, field
        assert v.shape == (T,), field
        assert torch.isfinite(v).all(), field
    ab = s.alpha_bar.double()
    assert ((ab > 0) & (ab < 1)).all()
    assert (ab[1:] < ab[:-1]).all()  # strictly decreasing
    assert ((s.beta > 0) & (s.beta < 1)).all()
    assert s.alpha_bar_prev[0] == 1.0
    assert s.terminal_alpha_bar == pytest.approx(float(ab[-1]))


@pytest.mark.parametrize("T", [150, 1000])
def test_cosine_beta_is_capped_at_0_999(T):
    # Nichol & Dhariwal 2021, Eq. 17: f(T) = cos^2(pi/2) = 0, so the uncapped last beta is 1.
    f = [math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(T + 1)]
    uncapped = [1 - f[t + 1] / f[t] for t in range(T)]
    assert uncapped[-1] > 0.999
    s = make_schedule("cosine", T, warn=False)
    cap = torch.tensor(0.999, dtype=torch.float32)
    assert s.beta.max() == cap
    assert s.beta[-1] == cap
    want = np.minimum(uncapped, 0.999)
    np.testing.assert_allclose(s.beta.double().numpy(), want, rtol=1e-6, atol=0)


# ------------------------------------------------------------------ terminal-noise warning


@pytest.mark.parametrize(("name", "T"), [("sigmoid", 150), ("linear_unscaled", 150)])
def test_warns_when_x_T_is_not_noise(name, T):
    with pytest.warns(ScheduleWarning, match="alpha_bar"):
        make_schedule(name, T)


@pytest.mark.parametrize(("name", "T"), [("cosine", 1000), ("linear", 1000), ("linear", 150)])
def test_no_warning_when_x_T_is_noise(name, T):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_schedule(name, T)


def test_warn_false_silences_the_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_schedule("linear_unscaled", 150, warn=False)


# ------------------------------------------------------------------ derived constants


def _betas64(name: str, T: int) -> np.ndarray:
    """The betas written out in float64 from the papers, independently of ddpmlab."""
    if name == "linear":
        return np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T)
    if name == "linear_unscaled":
        return np.linspace(1e-4, 0.02, T)
    if name == "sigmoid":
        x = np.linspace(-6.0, 6.0, T)
        return (5e-3 - 1e-5) / (1 + np.exp(-x)) + 1e-5
    f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], 0.999)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("T", [150, 1000])
def test_posterior_variance_is_ho_eq7_in_float64(name, T):
    beta = _betas64(name, T)
    alpha_bar = np.empty(T)
    prod = 1.0
    for t in range(T):  # alpha_bar_t = prod_{s <= t} (1 - beta_s), a plain loop
        prod *= 1.0 - beta[t]
        alpha_bar[t] = prod
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    want = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta  # Ho et al. 2020, Eq. 7
    s = make_schedule(name, T, warn=False)
    got = s.posterior_variance.double().numpy()
    assert got[0] == 0.0  # q(x_{t-1} | x_t, x_0) at t = 0 is the point mass at x_0
    # float32 storage: relative error a few ulps (2^-24 ~ 6e-8) plus the float64 cumprod drift
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0)
    np.testing.assert_allclose(s.alpha_bar.double().numpy(), alpha_bar, rtol=2e-6, atol=0)
    # The log is clipped at t = 0 to the t = 1 value (improved-diffusion), elsewhere exact.
    log_var = s.posterior_log_variance.double().numpy()
    np.testing.assert_allclose(log_var[1:], np.log(want[1:]), rtol=0, atol=2e-6)
    assert log_var[0] == log_var[1]


# ------------------------------------------------------------------ user errors


def test_rescaled_linear_with_too_few_steps_is_a_user_error():
    # beta_end = 0.02 * 1000 / T = 1 at T = 20: alpha_bar would be 0.
    with pytest.raises(UserError, match="larger T"):
        make_schedule("linear", 20)


def test_unknown_schedule_name_lists_the_valid_names():
    with pytest.raises(UserError) as info:
        make_schedule("quadratic", 100)
    message = str(info.value)
    assert "quadratic" in message
    for name in NAMES:
        assert name in message
    assert "\n" not in message


@pytest.mark.parametrize("T", [1, 0, -5])
def test_fewer_than_two_steps_is_a_user_error(T):
    with pytest.raises(UserError, match="at least 2"):
        make_schedule("cosine", T)


@pytest.mark.parametrize(
    "betas", [[0.1], [0.1, 1.0], [0.0, 0.1], [[0.1, 0.2]], [0.1, float("nan")]]
)
def test_from_betas_rejects_invalid_betas(betas):
    with pytest.raises(UserError):
        NoiseSchedule.from_betas(np.array(betas))
