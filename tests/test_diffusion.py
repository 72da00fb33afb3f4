"""The forward process, posterior and parameterisations against diffusers 0.42.1 (tests/data),
float64 Gaussian conditioning and closed forms; the training loss recomputed by hand."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from helpers import err

from ddpmlab.diffusion import (
    check_timesteps,
    eps_from_x0,
    eps_loss,
    mean_from_eps,
    q_posterior,
    q_sample,
    reverse_variance,
    sample_timesteps,
    x0_from_eps,
)
from ddpmlab.schedules import NoiseSchedule, make_schedule, sigmoid_betas

torch.set_num_threads(1)

ULP1 = 2.0**-23  # float32 spacing just above 1: the rounding unit of 1 - abar_t / abar_{t-1}


def alpha_bar64(name: str, T: int) -> np.ndarray:
    """alpha_bar in float64 from the papers' betas, independently of ddpmlab."""
    if name == "linear":  # Ho et al. 2020 at T = 1000 (the 1000/T rescaling is 1)
        assert T == 1000
        beta = np.linspace(1e-4, 0.02, T)
    else:  # Nichol & Dhariwal 2021, Eq. 17
        f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
        beta = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return np.cumprod(1 - beta)


def full_t(t: int, n: int) -> torch.Tensor:
    return torch.full((n,), t, dtype=torch.long)


# ------------------------------------------------------------------ forward process


def test_q_sample_matches_diffusers_add_noise(ref):
    key = "add_noise__T1000_squaredcos_cap_v2__"
    s = make_schedule("cosine", 1000)
    x0 = torch.from_numpy(ref[key + "x0"])
    eps = torch.from_numpy(ref[key + "noise"])
    t = torch.from_numpy(ref[key + "timesteps"])
    x_t = q_sample(s, x0, t, eps)
    assert x_t.shape == x0.shape and x_t.dtype == torch.float32
    assert err(x_t, ref[key + "x_t"]) <= 2e-5


@pytest.mark.parametrize("t", [0, 10, 250, 500, 999])
def test_q_sample_moments(t):
    # x_t | x_0 ~ N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho Eq. 4). With n draws the sample mean
    # has standard error sqrt((1 - abar)/n) and the sample variance (1 - abar) sqrt(2/(n-1)).
    n = 100_000
    ab = alpha_bar64("linear", 1000)[t]
    s = make_schedule("linear", 1000)
    x0_row = torch.tensor([1.0, -0.5, 2.0])
    x0 = x0_row.expand(n, 3)
    eps = torch.randn(n, 3, generator=torch.Generator().manual_seed(t))
    x_t = q_sample(s, x0, full_t(t, n), eps).double()
    mean_se = math.sqrt((1 - ab) / n)
    var_se = (1 - ab) * math.sqrt(2 / (n - 1))
    want_mean = math.sqrt(ab) * x0_row.double()
    assert (x_t.mean(0) - want_mean).abs().max() <= 5 * mean_se
    assert (x_t.var(0) - (1 - ab)).abs().max() <= 5 * var_se


# ------------------------------------------------------------------ posterior


def gaussian_posterior(ab_prev: float, ab: float, x0: np.ndarray, x_t: np.ndarray):
    """Mean and variance of x_{t-1} | x_t, x_0 by conditioning the joint Gaussian, float64.

    Given x_0: x_{t-1} = sqrt(ab_prev) x_0 + sqrt(1 - ab_prev) e1 and
    x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) e2, alpha_t = ab / ab_prev. The joint of
    (x_{t-1}, x_t) (D coordinates each) is built as a 2D x 2D covariance and conditioned
    with the Schur complement, solved by numpy.
    """
    d = x0.shape[-1]
    alpha = ab / ab_prev
    beta = 1 - alpha
    eye = np.eye(d)
    c11 = (1 - ab_prev) * eye
    c12 = math.sqrt(alpha) * (1 - ab_prev) * eye
    c22 = (alpha * (1 - ab_prev) + beta) * eye
    m1, m2 = math.sqrt(ab_prev) * x0, math.sqrt(ab) * x0
    gain = np.linalg.solve(c22, c12.T).T  # C12 C22^-1
    mean = m1 + (x_t - m2) @ gain.T
    cov = c11 - gain @ c12.T
    return mean, cov


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_posterior_is_gaussian_conditioning(name):
    T = 1000
    ab = alpha_bar64(name, T)
    s = make_schedule(name, T)
    g = np.random.default_rng(0)
    for t in [0, 1, 2, 10, 100, 500, 998, 999]:
        x0 = g.normal(size=(4, 3))
        x_t = g.normal(size=(4, 3))
        ab_prev = 1.0 if t == 0 else ab[t - 1]
        want_mean, want_cov = gaussian_posterior(ab_prev, ab[t], x0, x_t)
        mean, var = q_posterior(s, torch.from_numpy(x0).float(), torch.from_numpy(x_t).float(),
                                full_t(t, 4))
        assert var.shape == (4, 1)
        np.testing.assert_allclose(mean.double().numpy(), want_mean, rtol=1e-5, atol=2e-6)
        # isotropic: the covariance is var * I; float32 storage gives ~1e-7 relative error
        np.testing.assert_allclose(np.diag(want_cov), want_cov[0, 0])
        np.testing.assert_allclose(var.double().numpy(), want_cov[0, 0], rtol=2e-6, atol=0)
        if t == 0:  # the posterior at t = 0 is the point mass at x_0
            assert (var == 0).all()
            np.testing.assert_allclose(mean.numpy(), x0, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ parameterisations


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_x0_from_eps_and_eps_from_x0_are_inverse(name):
    T = 1000
    s = make_schedule(name, T)
    ab = alpha_bar64(name, T)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(16, 2, 3, generator=g)
    eps = torch.randn(16, 2, 3, generator=g)
    for t in [0, 1, 10, 100, 500, 900, 999]:
        tt = full_t(t, 16)
        x_t = q_sample(s, x0, tt, eps)
        # float32 rounding of x_t (|x_t| < 8) amplified by 1/sqrt(abar) or 1/sqrt(1 - abar)
        tol_x0 = 8 * 8 * 2**-24 / math.sqrt(ab[t])
        tol_eps = 8 * 8 * 2**-24 / math.sqrt(1 - ab[t])
        assert (x0_from_eps(s, x_t, tt, eps) - x0).abs().max() <= tol_x0 + 1e-6
        assert (eps_from_x0(s, x_t, tt, x0) - eps).abs().max() <= tol_eps + 1e-6
        x0_hat = x0_from_eps(s, x_t, tt, eps)
        assert (eps_from_x0(s, x_t, tt, x0_hat) - eps).abs().max() <= tol_eps + 1e-6


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mean_from_eps_is_posterior_mean_at_x0_hat(name, dtype):
    # Ho Eq. 11 is Eq. 7 evaluated at x0_hat = (x_t - sqrt(1 - abar) eps) / sqrt(abar).
    s = make_schedule(name, 1000)
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(32, 5, generator=g, dtype=dtype)
    eps = torch.randn(32, 5, generator=g, dtype=dtype)
    for t in [0, 1, 2, 10, 100, 500, 900, 998, 999]:
        tt = full_t(t, 32)
        mean = mean_from_eps(s, x_t, tt, eps)
        post_mean, _ = q_posterior(s, x0_from_eps(s, x_t, tt, eps), x_t, tt)
        assert mean.dtype == dtype
        assert err(mean, post_mean) <= 1e-6


# ------------------------------------------------------------------ DDPM step vs diffusers

STEP_SCHEDULES = {
    "linear": lambda: make_schedule("linear", 1000),
    "squaredcos_cap_v2": lambda: make_schedule("cosine", 1000),
    # diffusers' "sigmoid" is the sigmoid on beta with DDPMScheduler's default ends
    "sigmoid": lambda: NoiseSchedule.from_betas(sigmoid_betas(1000, 1e-4, 0.02)),
}


@pytest.mark.parametrize("case", list(STEP_SCHEDULES))
def test_ddpm_step_matches_diffusers(ref, case):
    s = STEP_SCHEDULES[case]()
    key = f"ddpm_step__T1000_{case}_epsilon_clip0__"
    ts = ref["ddpm_step__timesteps"]
    x_t = torch.from_numpy(ref["ddpm_step__inputs__x_t"])
    eps = torch.from_numpy(ref["ddpm_step__inputs__model_output"])
    small = reverse_variance(s, "fixed_small").double().numpy()
    large = reverse_variance(s, "fixed_large").double().numpy()
    for i, t in enumerate(ts.tolist()):
        tt = full_t(t, x_t.shape[1])
        # README: 5e-4 for DDPM means at small t (diffusers forms beta_t = 1 - abar_t/abar_{t-1}
        # in float32); away from t = 0 that cancellation is harmless and 2e-5 holds.
        mean_tol = 5e-4 if t < 100 else 2e-5
        assert err(mean_from_eps(s, x_t[i], tt, eps[i]), ref[key + "mean"][i]) <= mean_tol, t
        # pred_x0 at the cosine t = 999 is ill-conditioned (1/sqrt(abar) ~ 2e4): the measure is
        # then relative; 5e-5 covers diffusers' float32 cumprod of abar over 1000 factors.
        assert err(x0_from_eps(s, x_t[i], tt, eps[i]), ref[key + "pred_x0"][i]) <= 5e-5, t
        # diffusers clamps beta~ at 1e-20 (so 1e-20 at t = 0, where beta~_0 = 0 exactly)
        want_small, want_large = ref[key + "var_fixed_small"][i], ref[key + "var_fixed_large"][i]
        if t == 0:
            assert small[0] == 0.0 and want_small == np.float32(1e-20)
        assert abs(max(small[t], 1e-20) - want_small) <= ULP1
        assert abs(large[t] - want_large) <= ULP1
        assert err(max(small[t], 1e-20), want_small) <= 2e-5
        assert err(large[t], want_large) <= 2e-5


def test_reverse_variance_rejects_unknown_kind():
    with pytest.raises(ValueError, match="fixed_small"):
        reverse_variance(make_schedule("cosine", 10), "learned")


# ------------------------------------------------------------------ timesteps


def test_check_timesteps_accepts_the_range_and_rejects_outside():
    T = 50
    check_timesteps(torch.tensor([0, 1, T - 1]), T)
    check_timesteps(torch.tensor([0, T - 1], dtype=torch.int32), T)
    check_timesteps(torch.zeros(0, dtype=torch.long), T)
    for bad in ([-1], [T], [0, T + 3]):
        with pytest.raises(ValueError, match=re.escape(f"0..{T - 1}")):
            check_timesteps(torch.tensor(bad), T)
    with pytest.raises(TypeError):
        check_timesteps(torch.tensor([1.0, 2.0]), T)
    with pytest.raises(TypeError):
        check_timesteps(torch.tensor([True]), T)


def test_q_sample_checks_its_timesteps_and_the_posterior_refuses_them():
    s = make_schedule("cosine", 20)
    x = torch.zeros(2, 2)
    for bad in (torch.tensor([0, -1]), torch.tensor([0, 20])):
        with pytest.raises(ValueError, match=re.escape("0..19")):
            q_sample(s, x, bad, x)
        with pytest.raises(IndexError):  # index_select refuses it: never a wrong value
            q_posterior(s, x, x, bad)
    with pytest.raises(TypeError):
        q_sample(s, x, torch.tensor([0.0, 1.0]), x)


T_TAKERS = {
    "x0_from_eps": x0_from_eps,
    "eps_from_x0": eps_from_x0,
    "mean_from_eps": mean_from_eps,
}


@pytest.mark.parametrize("fn", list(T_TAKERS))
@pytest.mark.parametrize("bad", [-1, 20])
def test_every_function_taking_t_refuses_one_out_of_range(fn, bad):
    # t is checked where it enters (q_sample, the samplers' grids, the bound); inside a loop
    # the coefficient lookup (index_select) still refuses it rather than read another value
    s = make_schedule("cosine", 20)
    x = torch.zeros(2, 2)
    with pytest.raises(IndexError):
        T_TAKERS[fn](s, x, torch.tensor([0, bad]), x)


def test_sample_timesteps_uniform_covers_every_step():
    T, n = 10, 20_000
    t = sample_timesteps(n, T, torch.Generator().manual_seed(3))
    assert t.dtype == torch.int64 and t.shape == (n,)
    # Ho Algorithm 1, line 3: t ~ Uniform; the draw is torch.randint on the given generator
    assert torch.equal(t, torch.randint(0, T, (n,), generator=torch.Generator().manual_seed(3)))
    counts = torch.bincount(t, minlength=T).double()
    assert counts.shape == (T,) and (counts > 0).all()
    sd = math.sqrt(n * (1 / T) * (1 - 1 / T))  # binomial standard deviation of each count
    assert (counts - n / T).abs().max() <= 5 * sd


@pytest.mark.parametrize("batch", [8, 7, 1])
def test_sample_timesteps_antithetic_pairs_t_with_T_minus_1_minus_t(batch):
    T = 100
    t = sample_timesteps(batch, T, torch.Generator().manual_seed(4), antithetic=True)
    assert t.dtype == torch.int64 and t.shape == (batch,)
    assert ((t >= 0) & (t < T)).all()
    half = (batch + 1) // 2
    want_half = torch.randint(0, T, (half,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(t[:half], want_half)
    # every later entry is the partner T-1-t of an earlier one
    assert torch.equal(t[half:], T - 1 - t[: batch - half])


# ------------------------------------------------------------------ L_simple


@pytest.mark.parametrize("antithetic", [False, True])
def test_eps_loss_with_a_constant_denoiser(antithetic):
    T, seed, c = 1000, 11, 0.3
    s = make_schedule("linear", T)
    x0 = torch.randn(9, 2, 3, generator=torch.Generator().manual_seed(0))
    loss = eps_loss(s, lambda x_t, t: torch.full_like(x_t, c), x0,
                    generator=torch.Generator().manual_seed(seed), antithetic=antithetic)
    # the same draws, in the same order (timesteps, then noise), from a fresh generator
    g = torch.Generator().manual_seed(seed)
    torch.randint(0, T, ((9 + 1) // 2 if antithetic else 9,), generator=g)
    eps = torch.randn(x0.shape, generator=g).double()
    want = ((eps - c) ** 2).mean()  # Ho Eq. 14
    assert loss.shape == ()
    assert float(loss) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("antithetic", [False, True])
def test_eps_loss_feeds_the_denoiser_x_t_and_t(antithetic):
    # A denoiser that returns x_t: L = mean (eps - sqrt(abar_t) x0 - sqrt(1 - abar_t) eps)^2.
    T, seed, B = 1000, 12, 9
    s = make_schedule("linear", T)
    ab = torch.from_numpy(alpha_bar64("linear", T))
    x0 = torch.randn(B, 2, 3, generator=torch.Generator().manual_seed(0))
    seen = []

    def denoiser(x_t, t):
        seen.append(t.clone())
        return x_t

    loss = eps_loss(s, denoiser, x0, generator=torch.Generator().manual_seed(seed),
                    antithetic=antithetic)
    g = torch.Generator().manual_seed(seed)
    if antithetic:
        half = torch.randint(0, T, ((B + 1) // 2,), generator=g)
        t = torch.cat([half, T - 1 - half])[:B]
    else:
        t = torch.randint(0, T, (B,), generator=g)
    eps = torch.randn(x0.shape, generator=g).double()
    a = ab[t].reshape(B, 1, 1)
    x_t = a.sqrt() * x0.double() + (1 - a).sqrt() * eps  # Ho Eq. 4
    want = ((eps - x_t) ** 2).mean()
    assert len(seen) == 1 and torch.equal(seen[0], t)
    assert float(loss) == pytest.approx(float(want), rel=1e-5)
