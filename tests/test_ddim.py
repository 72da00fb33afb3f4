"""DDIM (Song et al. 2021) against diffusers 0.42.1 (tests/data) and DDPM; every sampler at every
step count; DDIM driven by the exact noise predictor of a 2-D Gaussian (see test_samplers)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from helpers import MU, N_STAT, STD, assert_gaussian_moments, dummy, err, final, gaussian_eps

from ddpmlab.diffusion import PREDICTIONS, mean_from_eps, reverse_mean, reverse_variance
from ddpmlab.errors import UserError
from ddpmlab.samplers import SPACINGS, ddim_chain, ddim_sample, ddim_step, ddpm_chain, timesteps
from ddpmlab.samplers.spacing import most_steps
from ddpmlab.schedules import NoiseSchedule, cosine_betas, make_schedule, sigmoid_betas

torch.set_num_threads(1)

STEP_SCHEDULES = {
    "linear": lambda: make_schedule("linear", 1000),
    "squaredcos_cap_v2": lambda: make_schedule("cosine", 1000),
    "sigmoid": lambda: NoiseSchedule.from_betas(sigmoid_betas(1000, 1e-4, 0.02)),
}


# ------------------------------------------------------------------ against diffusers


@pytest.mark.parametrize("case", list(STEP_SCHEDULES))
def test_ddim_steps_match_diffusers(ref, case):
    s = STEP_SCHEDULES[case]()
    key = f"ddim_step__T1000_{case}_N50_leading__"
    rows = zip(ref[key + "timesteps"].tolist(), ref[key + "prev_timesteps"].tolist(), strict=True)
    for i, (t, prev) in enumerate(rows):
        x_t = torch.from_numpy(ref[key + "x_t"][i])
        eps = torch.from_numpy(ref[key + "eps"][i])
        z = torch.from_numpy(ref[key + "variance_noise"][i])
        prev = max(prev, -1)  # diffusers' t - T//K < 0 is the data, alpha_bar_prev = 1
        x0, x0_hat = ddim_step(s, x_t, t, prev, eps, eta=0.0)
        x1, _ = ddim_step(s, x_t, t, prev, eps, eta=1.0, noise=z)
        assert x0.shape == x_t.shape and x0.dtype == torch.float32
        # README: 2e-5 for DDIM steps
        assert err(x0, ref[key + "prev_sample_eta0"][i]) <= 2e-5, t
        assert err(x1, ref[key + "prev_sample_eta1"][i]) <= 2e-5, t
        assert err(x0_hat, ref[key + "pred_x0"][i]) <= 2e-5, t


@pytest.mark.parametrize(("name", "case"), [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_ddim50_trajectory_matches_diffusers(ref, name, case):
    key = f"toy__ddim50_eta0_{case}__"
    s = make_schedule(name, 1000)
    want = ref[key + "trajectory"]
    got = list(ddim_chain(gaussian_eps(s.alpha_bar), s, (256, 2), steps=50, spacing="leading",
                          x_T=torch.from_numpy(ref["toy__gaussian__x_T"])))
    assert [n for n, _ in got] == [981, *range(961, 0, -20), 0]
    assert len(got) == len(want) == 51
    for k, (_, x) in enumerate(got):
        assert err(x, want[k]) <= 1e-3, k  # README: replayed loops


# ------------------------------------------------------------------ eta = 1 is DDPM


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_ddim_eta1_single_step_is_the_ddpm_step(name):
    # Song Sec. 4.1: sigma_t(eta = 1)^2 = beta~_t and the Eq. 12 mean is Ho Eq. 11's.
    T, n = 1000, 64
    s = make_schedule(name, T)
    g = torch.Generator().manual_seed(0)
    small = reverse_variance(s, "fixed_small").sqrt()
    for t in [0, 1, 2, 5, 10, 100, 500, 900, 998, 999]:
        x_t = torch.randn(n, 3, generator=g)
        eps = torch.randn(n, 3, generator=g)
        z = torch.randn(n, 3, generator=g)
        tt = torch.full((n,), t, dtype=torch.long)
        got, _ = ddim_step(s, x_t, t, t - 1, eps, eta=1.0, noise=z)
        want = mean_from_eps(s, x_t, tt, eps) + (small[t] * z if t > 0 else 0)
        assert err(got, want) <= 2e-5, t


@pytest.mark.parametrize(("name", "T"), [("cosine", 50), ("linear", 1000)])
def test_ddim_eta1_chain_over_all_steps_is_the_ddpm_chain(name, T):
    s = make_schedule(name, T)
    eps = gaussian_eps(s.alpha_bar)
    a = list(ddim_chain(eps, s, (64, 2), eta=1.0, generator=torch.Generator().manual_seed(1)))
    b = list(ddpm_chain(eps, s, (64, 2), generator=torch.Generator().manual_seed(1)))
    assert [n for n, _ in a] == [n for n, _ in b] == list(range(T, -1, -1))
    for (n, x), (_, y) in zip(a, b, strict=True):
        assert err(x, y) <= 1e-4, n


# ------------------------------------------------------------------ every step count


SAMPLERS = {
    "ddpm_small": lambda *a, **k: ddpm_chain(*a, variance="fixed_small", **k),
    "ddpm_large": lambda *a, **k: ddpm_chain(*a, variance="fixed_large", **k),
    "ddim_eta0": lambda *a, **k: ddim_chain(*a, eta=0.0, **k),
    "ddim_eta1": lambda *a, **k: ddim_chain(*a, eta=1.0, **k),
}


def check_chain(chain, K: int, t0: int, n: int) -> None:
    labels = []
    for label, x in chain:
        labels.append(label)
        assert x.shape == (n, 2) and x.dtype == torch.float32
        assert torch.isfinite(x).all(), (K, label)
    assert len(labels) == K + 1 and labels[0] == t0 + 1 and labels[-1] == 0
    assert all(a > b for a, b in itertools.pairwise(labels))


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_is_finite_at_every_step_count(name, sampler):
    T, n = 50, 8
    s = make_schedule(name, T)
    for spacing in SPACINGS:
        for K in range(1, most_steps(T, spacing, s.alpha_bar64) + 1):
            chain = SAMPLERS[sampler](dummy, s, (n, 2), steps=K, spacing=spacing,
                                      generator=torch.Generator().manual_seed(K))
            check_chain(chain, K, int(timesteps(T, K, spacing, s.alpha_bar64)[0][0]), n)


@pytest.mark.parametrize("prediction", ["x0", "v"])
@pytest.mark.parametrize("sampler", ["ddpm_small", "ddim_eta0", "ddim_eta1"])
def test_every_step_count_is_finite_for_x0_and_v_networks(prediction, sampler):
    T, n = 50, 8
    s = make_schedule("cosine", T)
    for K in range(1, T + 1):
        chain = SAMPLERS[sampler](dummy, s, (n, 2), steps=K, prediction=prediction,
                                  generator=torch.Generator().manual_seed(K))
        check_chain(chain, K, int(timesteps(T, K)[0][0]), n)  # the default spacing


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_every_sampler_is_finite_at_T_1000_for_a_few_step_counts(name):
    s = make_schedule(name, 1000)
    for K in [1, 2, 3, 61, 995]:  # 995: the most that logsnr_official visits on cosine
        for spacing in SPACINGS:
            for sampler in ("ddpm_small", "ddim_eta0", "ddim_eta1"):
                chain = SAMPLERS[sampler](dummy, s, (4, 2), steps=K, spacing=spacing,
                                          generator=torch.Generator().manual_seed(K))
                check_chain(chain, K, int(timesteps(1000, K, spacing, s.alpha_bar64)[0][0]),
                            4)


# ------------------------------------------------------------------ the chain's contract


def ddim_moments(alpha_bar: np.ndarray, t_seq, t_prev, mu=MU, std=STD):
    """Exact mean and std of DDIM's (eta = 0) output with the exact eps, from x_T ~ N(0, I).

    eps* = c (x - sqrt(ab) mu) is linear in x, so each Eq. 12 step is x <- A x + B.
    """
    mu, var = np.asarray(mu, np.float64), np.asarray(std, np.float64) ** 2
    m, v = np.zeros(2), np.ones(2)
    for t, p in zip(t_seq, t_prev, strict=True):
        ab, ab_prev = alpha_bar[t], (alpha_bar[p] if p >= 0 else 1.0)
        c = math.sqrt(1 - ab) / (ab * var + 1 - ab)
        # x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab); x_prev = sqrt(ab_prev) x0_hat + d eps
        d = math.sqrt(1 - ab_prev)
        A = math.sqrt(ab_prev / ab) * (1 - math.sqrt(1 - ab) * c) + d * c
        B = (math.sqrt(ab_prev / ab) * math.sqrt(1 - ab) - d) * c * math.sqrt(ab) * mu
        m, v = A * m + B, A * A * v
    return m, np.sqrt(v)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_deterministic_ddim_with_exact_eps_approaches_the_gaussian_as_K_grows(name):
    # DDIM's output law, propagated exactly, is narrower than the data at few steps (its
    # discretisation error) and tends to it as K -> T, for every spacing.
    s = make_schedule(name, 1000)
    ab = s.alpha_bar.double().numpy()
    mean_gap = {}
    for spacing in SPACINGS:
        std_gaps = []
        for K in (10, 20, 50, 100, 250, min(1000, most_steps(1000, spacing, ab))):
            m, sd = ddim_moments(ab, *timesteps(1000, K, spacing, s.alpha_bar64))
            mean_gap[spacing, K] = np.abs(m - MU).max()
            std_gaps.append(np.abs(sd / np.asarray(STD) - 1).max())
        assert all(a > b for a, b in itertools.pairwise(std_gaps)), (spacing, std_gaps)
        assert std_gaps[-1] < 0.005
    assert max(mean_gap.values()) < 0.025
    # trailing starts at t = T-1: no mean error beyond the schedule's own terminal signal
    # (linear: sqrt(alpha_bar_{T-1}) ~ 6e-3 of the mean is left in x_T) at every K ...
    assert max(v for (sp, _), v in mean_gap.items() if sp == "trailing") < 1.5e-3
    if name == "cosine":  # ... where leading, starting at t = T - T/K, loses 2 % at K = 10
        assert mean_gap["leading", 10] > 100 * mean_gap["trailing", 10]


@pytest.mark.parametrize(("name", "K", "spacing"), [("cosine", 20, "trailing"),
                                                     ("linear", 50, "leading")])
def test_deterministic_ddim_samples_follow_their_exact_law(name, K, spacing):
    s = make_schedule(name, 1000)
    x = ddim_sample(gaussian_eps(s.alpha_bar), s, (N_STAT, 2), steps=K, spacing=spacing,
                    generator=torch.Generator().manual_seed(2), chunk=7000)
    assert x.shape == (N_STAT, 2) and torch.isfinite(x).all()
    m, sd = ddim_moments(s.alpha_bar.double().numpy(), *timesteps(1000, K, spacing))
    assert_gaussian_moments(x, m, sd)


def test_eta0_draws_only_x_T_and_eta1_no_noise_after_the_last_step():
    T, K, n = 50, 10, 16
    s = make_schedule("cosine", T)
    eps = gaussian_eps(s.alpha_bar)
    g = torch.Generator().manual_seed(3)
    list(ddim_chain(eps, s, (n, 2), steps=K, eta=0.0, generator=g))
    g_ref = torch.Generator().manual_seed(3)
    torch.randn((n, 2), generator=g_ref)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=g_ref))

    g = torch.Generator().manual_seed(4)
    states = list(ddim_chain(eps, s, (n, 2), steps=K, eta=1.0, generator=g))
    g_ref = torch.Generator().manual_seed(4)
    for _ in range(K):  # x_T and one z per step but the last
        torch.randn((n, 2), generator=g_ref)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=g_ref))
    (n1, x1), (n0, x0) = states[-2], states[-1]
    t_last = n1 - 1
    tt = torch.full((n,), t_last, dtype=torch.long)
    assert n0 == 0
    assert torch.equal(x0, ddim_step(s, x1, t_last, -1, eps(x1, tt), eta=1.0)[0])


def test_yielded_states_are_new_and_never_modified():
    s = make_schedule("cosine", 30)
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(5))
    kept, copies = [], []
    for _, x in ddim_chain(gaussian_eps(s.alpha_bar), s, (8, 2), steps=7, eta=0.5, x_T=x_T,
                           generator=torch.Generator().manual_seed(6)):
        kept.append(x)
        copies.append(x.clone())
    assert torch.equal(copies[0], x_T) and kept[0] is not x_T
    assert len({id(x) for x in kept}) == len(kept) == 8
    for a, b in zip(kept, copies, strict=True):
        assert torch.equal(a, b)


def test_ddim_sample_in_chunks_is_the_chain_on_the_same_x_T():
    s = make_schedule("linear", 100)
    eps = gaussian_eps(s.alpha_bar)
    got = ddim_sample(eps, s, (50, 2), steps=10, generator=torch.Generator().manual_seed(7),
                      chunk=20)
    g = torch.Generator().manual_seed(7)  # eta = 0: each chunk draws only its x_T
    x_T = torch.cat([torch.randn((r, 2), generator=g) for r in (20, 20, 10)])
    want = final(ddim_chain(eps, s, (50, 2), steps=10, x_T=x_T))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_same_seed_same_samples_other_seed_other_samples():
    s = make_schedule("cosine", 100)
    eps = gaussian_eps(s.alpha_bar)

    def sample(seed):
        return ddim_sample(eps, s, (256, 2), steps=20, eta=0.5,
                           generator=torch.Generator().manual_seed(seed))

    a, b, c = sample(8), sample(8), sample(9)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.1


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_the_three_parameterisations_of_one_network_give_one_chain(prediction):
    # The exact network written as eps, x0 or v (Ho Eq. 4, Salimans & Ho Sec. 4) samples alike.
    s = make_schedule("cosine", 200)
    eps_net = gaussian_eps(s.alpha_bar)
    ab = s.alpha_bar.double()

    def net(x, t):
        e = eps_net(x, t).double()
        a = ab[t][:, None]
        x0 = (x.double() - (1 - a).sqrt() * e) / a.sqrt()
        out = {"eps": e, "x0": x0, "v": a.sqrt() * e - (1 - a).sqrt() * x0}[prediction]
        return out.float()

    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(10))
    for chain in (ddim_chain, ddpm_chain):
        # one spacing for both: by default it follows the prediction (samplers.spacing)
        got = final(chain(net, s, (64, 2), steps=25, spacing="leading", prediction=prediction,
                          x_T=x_T, generator=torch.Generator().manual_seed(11)))
        want = final(chain(eps_net, s, (64, 2), steps=25, spacing="leading", x_T=x_T,
                           generator=torch.Generator().manual_seed(11)))
        assert err(got, want) <= 1e-4


def test_bad_options_are_user_errors_listing_the_valid_ones():
    s = make_schedule("cosine", 10)
    # a bad name is the config's to refuse (UserError, tests/test_config.py); the maths
    # raises a plain ValueError naming the choices
    for chain in (ddim_chain, ddpm_chain):
        with pytest.raises(ValueError, match="eps, x0, v") as e:
            next(chain(dummy, s, (4, 2), prediction="score"))
        assert not isinstance(e.value, UserError)
    with pytest.raises(UserError, match="linspace, leading, trailing"):
        next(ddim_chain(dummy, s, (4, 2), steps=3, spacing="uniform"))
    with pytest.raises(UserError, match=r"1\.\.10"):
        next(ddim_chain(dummy, s, (4, 2), steps=11))
    for eta in (-0.1, float("nan"), float("inf")):
        with pytest.raises(UserError, match="eta"):
            next(ddim_chain(dummy, s, (4, 2), eta=eta))
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(s, x, 5, 5, x)
    with pytest.raises(ValueError, match="noise"):
        ddim_step(s, x, 5, 3, x, eta=1.0)


# ------------------------------------------------------------------ float64 at small t


def test_steps_at_small_t_match_float64_references():
    # At T = 999 (cosine) 1 - alpha_bar_0 formed from the float32 alpha_bar is 4.1306e-5 where
    # beta_0 is 4.1328e-5; the samplers take alpha_bar in float64 (alpha_bar64), so a DDIM step
    # and a respaced DDPM step at t <= 3 agree with float64 references to float32 rounding.
    T = 999
    beta = cosine_betas(T)
    ab = np.cumprod(1 - beta)  # float64 throughout
    s = make_schedule("cosine", T)
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn(64, 2, generator=g) for _ in range(3))
    xd, ed, zd = (v.double().numpy() for v in (x, eps, z))
    for t, prev in ((3, 2), (2, 1), (1, 0), (0, -1)):
        a, a_prev = ab[t], (ab[prev] if prev >= 0 else 1.0)
        x0 = (xd - np.sqrt(1 - a) * ed) / np.sqrt(a)  # Ho Eq. 4
        for eta in (0.0, 1.0):
            var = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)  # Song Eq. 16
            want = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - var) * ed + np.sqrt(var) * zd
            got, _ = ddim_step(s, x, t, prev, eps, eta=eta, noise=z)
            assert err(got, want) <= 1e-6, (t, eta)
    # respaced DDPM on the leading grid 0, 3, 6, ...: its steps 0 and 1 are t = 0 and t = 3
    r = s.respaced(timesteps(T, 333, "leading")[0])
    for j, (t, prev) in enumerate(((0, None), (3, 0))):
        a, a_prev = ab[t], (ab[prev] if prev is not None else 1.0)
        b = 1 - a / a_prev  # Nichol & Dhariwal 2021, Sec. 4
        x0 = (xd - np.sqrt(1 - a) * ed) / np.sqrt(a)
        # Ho Eq. 7: the posterior mean at x0_hat
        want = (np.sqrt(a_prev) * b / (1 - a)) * x0 + ((1 - a_prev) * np.sqrt(1 - b) / (1 - a)) * xd
        got = reverse_mean(r, x, torch.full((64,), j), eps, "eps")
        assert err(got, want) <= 1e-6, t
        assert abs(float(r.beta[j]) - b) <= 1e-7 * b
