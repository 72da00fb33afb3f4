"""Ancestral DDPM sampling driven by the exact noise predictor of a 2-D Gaussian.

For data N(mu, diag(std^2)) the exact eps-prediction is linear in x_t (reference README):
eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / (abar_t std^2 + 1 - abar_t).
With it the chain must carry N(0, I) to that Gaussian (checked against the chain's own
output distribution, propagated exactly in float64, and the target, with tolerances from the
standard errors), and it must replay diffusers' recorded 1000- and 100-step loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import MU, N_STAT, STD, assert_gaussian_moments, err, final, gaussian_eps, replay

from ddpmlab.diffusion import mean_from_eps
from ddpmlab.samplers import ddpm_chain, ddpm_sample
from ddpmlab.schedules import NoiseSchedule, make_schedule

torch.set_num_threads(1)


def chain_moments(alpha_bar: np.ndarray, variance: str, mu=MU, std=STD):
    """Exact mean and std of the chain's x_0 when x_T ~ N(0, I), propagated in float64.

    With eps* linear in x_t each step is x <- A x + B + sigma z (Ho Eq. 11 and Alg. 2), so the
    mean and variance of every coordinate follow m <- A m + B, v <- A^2 v + sigma^2.
    """
    mu, var = np.asarray(mu, np.float64), np.asarray(std, np.float64) ** 2
    ab = np.asarray(alpha_bar, np.float64)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    beta = 1 - ab / ab_prev
    sigma2 = (1 - ab_prev) / (1 - ab) * beta if variance == "fixed_small" else beta
    m, v = np.zeros(2), np.ones(2)
    for t in reversed(range(len(ab))):
        c = math.sqrt(1 - ab[t]) / (ab[t] * var + 1 - ab[t])  # eps* = c (x - sqrt(ab) mu)
        k = beta[t] / math.sqrt(1 - ab[t])  # Ho Eq. 11: mean = (x - k eps) / sqrt(alpha)
        A = (1 - k * c) / math.sqrt(1 - beta[t])
        B = k * c * math.sqrt(ab[t]) * mu / math.sqrt(1 - beta[t])
        m, v = A * m + B, A * A * v + (sigma2[t] if t > 0 else 0.0)
    return m, np.sqrt(v)


def run_chain(schedule, variance, n, seed):
    """The final state x_0 of one chain (the others are dropped as they come)."""
    return final(ddpm_chain(gaussian_eps(schedule.alpha_bar), schedule, (n, 2),
                            variance=variance, generator=torch.Generator().manual_seed(seed)))


# ------------------------------------------------------------------ reaching the Gaussian


@pytest.mark.parametrize(("name", "variance"), [("cosine", "fixed_small"),
                                                ("linear", "fixed_small"),
                                                ("cosine", "fixed_large")])
def test_chain_with_exact_eps_reaches_the_gaussian(name, variance):
    s = make_schedule(name, 1000)
    x = run_chain(s, variance, N_STAT, seed=0)
    assert x.shape == (N_STAT, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    # The chain's exact output law: its discretisation error is < 1.5 % of std at T = 1000 ...
    m, sd = chain_moments(s.alpha_bar.double().numpy(), variance)
    np.testing.assert_allclose(m, MU, atol=1e-4)
    np.testing.assert_allclose(sd, STD, rtol=0.015)
    # ... and the samples follow it within 5 standard errors.
    assert_gaussian_moments(x, m, sd)
    # Against the target itself, allow the discretisation error on top of 5 standard errors.
    xd = x.double().numpy()
    tol_std = 5 * np.asarray(STD) / math.sqrt(2 * (N_STAT - 1)) + np.abs(sd - np.asarray(STD))
    assert np.all(np.abs(xd.std(0, ddof=1) - STD) <= tol_std)
    assert np.all(np.abs(xd.mean(0) - MU) <= 5 * np.asarray(STD) / math.sqrt(N_STAT) + 1e-4)


def test_ddpm_sample_in_chunks_reaches_the_gaussian():
    # linear + fixed_large, in 3 chunks of unequal size (7000, 7000, 6000)
    s = make_schedule("linear", 1000)
    x = ddpm_sample(gaussian_eps(s.alpha_bar), s, (N_STAT, 2), variance="fixed_large",
                    generator=torch.Generator().manual_seed(1), chunk=7000)
    assert x.shape == (N_STAT, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    m, sd = chain_moments(s.alpha_bar.double().numpy(), "fixed_large")
    assert_gaussian_moments(x, m, sd)


# ------------------------------------------------------------------ the chain's contract


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_chain_yields_T_plus_1_finite_states_labelled_T_to_0(name):
    T, n = 1000, 64
    s = make_schedule(name, T)
    labels, states = [], []
    for label, x in ddpm_chain(gaussian_eps(s.alpha_bar), s, (n, 2),
                               generator=torch.Generator().manual_seed(2)):
        labels.append(label)
        states.append(x)
        assert x.shape == (n, 2) and x.dtype == torch.float32
        assert torch.isfinite(x).all(), label
    assert labels == list(range(T, -1, -1))
    assert len({id(x) for x in states}) == T + 1  # every state is a new tensor


def test_yielded_states_are_never_modified_afterwards():
    s = make_schedule("cosine", 30)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(3))
    kept, copies = [], []
    for _, x in ddpm_chain(gaussian_eps(s.alpha_bar), s, (8, 2), x_T=x_T,
                           generator=torch.Generator().manual_seed(4)):
        kept.append(x)
        copies.append(x.clone())
    assert torch.equal(copies[0], x_T)
    assert kept[0] is not x_T
    for a, b in zip(kept, copies, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_no_noise_at_the_last_step(variance):
    T, n = 50, 16
    s = make_schedule("cosine", T)
    eps = gaussian_eps(s.alpha_bar)
    g = torch.Generator().manual_seed(5)
    states = [x for _, x in ddpm_chain(eps, s, (n, 2), variance=variance, generator=g)]
    # the last state is the mean of the last step exactly (Ho Alg. 2: z = 0 when t = 1)
    t0 = torch.zeros(n, dtype=torch.long)
    x1 = states[-2]
    assert torch.equal(states[-1], mean_from_eps(s, x1, t0, eps(x1, t0)))
    # the generator gave x_T and one z per step t = T-1..1: T draws, none at t = 0
    g_ref = torch.Generator().manual_seed(5)
    for _ in range(T):
        torch.randn((n, 2), generator=g_ref)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=g_ref))


def test_each_step_adds_sigma_t_times_the_generators_noise():
    # Replays Ho Alg. 2 by hand from the same generator: x_{t-1} = mu(x_t) + sigma_t z.
    T, n = 20, 8
    s = make_schedule("cosine", T)
    eps = gaussian_eps(s.alpha_bar)
    got = [x for _, x in ddpm_chain(eps, s, (n, 2), variance="fixed_large",
                                    generator=torch.Generator().manual_seed(6))]
    g = torch.Generator().manual_seed(6)
    x = torch.randn((n, 2), generator=g)
    beta = s.beta.double()
    for t in reversed(range(T)):
        tt = torch.full((n,), t, dtype=torch.long)
        mean = mean_from_eps(s, x, tt, eps(x, tt))
        x = mean + math.sqrt(beta[t]) * torch.randn((n, 2), generator=g) if t > 0 else mean
        torch.testing.assert_close(got[T - t], x, rtol=1e-6, atol=1e-6)


def test_same_seed_same_samples_other_seed_other_samples():
    s = make_schedule("cosine", 100)
    eps = gaussian_eps(s.alpha_bar)

    def sample(seed):
        return ddpm_sample(eps, s, (256, 2), generator=torch.Generator().manual_seed(seed))

    a, b, c = sample(7), sample(7), sample(8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a - c).abs().max() > 0.1


def test_unknown_variance_is_rejected():
    s = make_schedule("cosine", 10)
    with pytest.raises(ValueError, match="fixed_small"):
        next(ddpm_chain(gaussian_eps(s.alpha_bar), s, (4, 2), variance="learned"))


# ------------------------------------------------------------------ diffusers' recorded loops


@pytest.mark.parametrize(("name", "case"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_replays_diffusers_ddpm1000_loop(ref, name, case):
    key = f"toy__ddpm1000_{case}__"
    np.testing.assert_array_equal(ref[key + "timesteps"], np.arange(999, -1, -1))
    np.testing.assert_allclose(ref["toy__gaussian__mu"], MU)
    np.testing.assert_allclose(ref["toy__gaussian__std"], STD)
    s = make_schedule(name, 1000)
    x = replay(s, ref["toy__gaussian__x_T"], ref[key + "noises"])
    assert err(x, ref[key + "final"]) <= 1e-3  # README: replayed 1000-step loops


@pytest.mark.parametrize(("name", "case"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_replays_diffusers_ddpm100_loop_by_respacing(ref, name, case):
    # diffusers' 100 "leading" steps visit t = 990, 980, ..., 0 with beta = 1 - abar_t/abar_prev:
    # the DDPM of the respaced betas over the visited timesteps.
    key = f"toy__ddpm100_{case}__"
    visited = ref[key + "timesteps"][::-1].copy()
    np.testing.assert_array_equal(visited, np.arange(0, 1000, 10))
    ab = make_schedule(name, 1000).alpha_bar.double().numpy()[visited]
    respaced = NoiseSchedule.from_betas(1 - ab / np.concatenate([[1.0], ab[:-1]]))
    np.testing.assert_allclose(respaced.alpha_bar.double().numpy(), ab, rtol=1e-6)
    x = replay(respaced, ref["toy__gaussian__x_T"], ref[key + "noises"])
    assert err(x, ref[key + "final"]) <= 1e-3
