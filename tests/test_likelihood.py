"""The variational bound (ddpmlab.likelihood) against independent references.

- the Gaussian pieces (normal_kl, gaussian_nll, the discretised decoder, the prior term)
  against closed forms in float64 and torch.distributions / torch.special.ndtr;
- the learned-range log variance against diffusers 0.42.1 (tests/data), and the fixed ones
  against a float64 recomputation, with the t = 0 convention (improved-diffusion's) spelled out;
- the whole bound on 2-D Gaussian data driven by the *exact* model: the exact eps-prediction
  (reference README) and the exact reverse variance, read as a ``learned_range`` output. Then
  p's joint equals q's (up to p(x_T) = N(0, I), which the cosine schedule makes exact to 1e-9
  nats), so the bound's expectation is the true NLL of the data.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import MU, STD, err, gaussian_eps

from ddpmlab.diffusion import q_sample, reverse_log_variance
from ddpmlab.likelihood import (
    Bound,
    discretized_gaussian_nll,
    gaussian_nll,
    nll_bound,
    normal_kl,
    prior_kl,
    vlb_term,
)
from ddpmlab.schedules import SCHEDULES, NoiseSchedule, make_schedule

torch.set_num_threads(1)

DIFFUSERS_NAMES = {"linear_unscaled": "linear", "cosine": "squaredcos_cap_v2"}
N_BOUND = 30_000  # points for the exact-model bound: its MC standard error is ~0.004 nats/dim
GRID = (2.0 * np.arange(256) / 255 - 1.0)  # the 8-bit levels scaled to [-1, 1], float64


def float64_constants(name: str, T: int) -> dict[str, np.ndarray]:
    """beta, alpha_bar, beta~ and the clipped log beta~ of a schedule, all in float64."""
    beta = SCHEDULES[name](T).astype(np.float64)
    ab = np.cumprod(1.0 - beta)
    ab_prev = np.append(1.0, ab[:-1])
    post_var = (1.0 - ab_prev) / (1.0 - ab) * beta  # Ho Eq. 7: beta~_t, 0 at t = 0
    return {"beta": beta, "alpha_bar": ab, "alpha_bar_prev": ab_prev, "post_var": post_var,
            "log_small": np.log(np.append(post_var[1], post_var[1:]))}


def kl_by_hand(m1, s1, m2, s2):
    """KL(N(m1, s1^2) || N(m2, s2^2)) from the standard deviations, float64 numpy."""
    m1, s1, m2, s2 = (np.asarray(a, dtype=np.float64) for a in (m1, s1, m2, s2))
    return np.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5


# ------------------------------------------------------------------ the Gaussian pieces


def test_normal_kl_matches_the_closed_form_by_hand():
    # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, 4) || N(0, 1)) = (4 - 1 - log 4) / 2 = 3/2 - log 2
    lv = torch.tensor([0.0, math.log(4.0)], dtype=torch.float64)
    got = normal_kl(torch.tensor([1.0, 0.0], dtype=torch.float64), lv,
                    torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    np.testing.assert_allclose(got.numpy(), [0.5, 1.5 - math.log(2.0)], rtol=1e-14)

    m1 = np.array([0.3, -1.2, 2.0, 0.0, 5.0])
    s1 = np.array([0.5, 1.7, 0.01, 3.0, 1.0])
    m2 = np.array([-0.5, -1.0, 1.9, 0.0, -5.0])
    s2 = np.array([2.0, 0.2, 0.02, 1.0, 10.0])
    want = kl_by_hand(m1, s1, m2, s2)
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 2e-5)):
        def t(a, dtype=dtype):
            return torch.tensor(a, dtype=dtype)
        got = normal_kl(t(m1), t(2 * np.log(s1)), t(m2), t(2 * np.log(s2)))
        assert got.dtype == dtype
        np.testing.assert_allclose(got.double().numpy(), want, rtol=rtol, atol=rtol)


def test_normal_kl_of_a_gaussian_with_itself_is_zero():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(1000, generator=g, dtype=torch.float64) * 3
    lv = torch.randn(1000, generator=g, dtype=torch.float64) * 4
    assert torch.allclose(normal_kl(m, lv, m, lv), torch.zeros(1000, dtype=torch.float64),
                          rtol=0, atol=1e-14)
    kl32 = normal_kl(m.float(), lv.float(), m.float(), lv.float())
    assert kl32.abs().max() <= 1e-6
    # and positive otherwise (Gibbs' inequality)
    assert (normal_kl(m, lv, m.flip(0), lv.flip(0)) > 0).all()


def test_normal_kl_matches_torch_distributions_with_broadcasting():
    g = torch.Generator().manual_seed(1)
    m1 = torch.randn(4, 1, 3, generator=g, dtype=torch.float64)
    lv1 = torch.randn(4, 1, 3, generator=g, dtype=torch.float64)
    m2 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    lv2 = torch.randn(1, 3, generator=g, dtype=torch.float64)
    want = torch.distributions.kl_divergence(torch.distributions.Normal(m1, (0.5 * lv1).exp()),
                                             torch.distributions.Normal(m2, (0.5 * lv2).exp()))
    got = normal_kl(m1, lv1, m2, lv2)
    assert got.shape == (4, 5, 3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_gaussian_nll_is_minus_normal_log_prob():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, 3, generator=g, dtype=torch.float64) * 2
    mean = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    log_var = torch.randn(6, 1, 1, generator=g, dtype=torch.float64) * 3
    want = -torch.distributions.Normal(mean, (0.5 * log_var).exp()).log_prob(x)
    torch.testing.assert_close(gaussian_nll(x, mean, log_var), want, rtol=1e-12, atol=1e-12)
    got32 = gaussian_nll(x.float(), mean.float(), log_var.float())
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32.double(), want, rtol=1e-5, atol=1e-5)
    # by hand: -log N(1; 0, 1) = (log 2 pi + 1) / 2
    one = torch.ones(1, dtype=torch.float64)
    assert float(gaussian_nll(one, 0 * one, 0 * one)) == pytest.approx(
        0.5 * (math.log(2 * math.pi) + 1), rel=1e-15)


# (mean, std) cases: narrow inside, wide with mass on both edge bins, at an edge, outside
DISCRETE_CASES = [(0.1, 0.05), (-0.7, 0.3), (0.0, 2.0), (0.97, 0.02), (-1.0, 0.001),
                  (3.0, 0.1), (-2.0, 0.5), (GRID[100], 1e-3)]


def exact_bin_probs(mean: float, std: float) -> np.ndarray:
    """The Gaussian's mass on each of the 256 bins with the exact CDF (torch.special.ndtr)."""
    edges = np.concatenate([[-np.inf], GRID[:-1] + 1 / 255, [np.inf]])  # bin k: edges k, k+1
    cdf = torch.special.ndtr(torch.tensor((edges - mean) / std, dtype=torch.float64)).numpy()
    return np.diff(cdf)


@pytest.mark.parametrize(("mean", "std"), DISCRETE_CASES)
def test_discretized_gaussian_probabilities_sum_to_one_and_match_the_exact_cdf(mean, std):
    x = torch.tensor(GRID, dtype=torch.float32)
    nll = discretized_gaussian_nll(x, torch.full_like(x, mean),
                                   torch.full_like(x, 2 * math.log(std)))
    assert nll.shape == (256,) and nll.dtype == torch.float32
    assert torch.isfinite(nll).all() and (nll >= -1e-6).all()  # probabilities <= 1
    probs = (-nll.double()).exp().numpy()
    # the bins tile the line (edge bins open to -inf and +inf), so the masses sum to one
    assert abs(probs.sum() - 1.0) <= 1e-4, probs.sum()
    want = exact_bin_probs(mean, std)
    assert abs(want.sum() - 1.0) <= 1e-12
    # the tanh approximation of Phi is off by < 2e-4, so a bin's mass by < 4e-4
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-3)


def test_discretized_gaussian_edge_bins_extend_to_infinity():
    x = torch.tensor([-1.0, 1.0, GRID[1], GRID[254]], dtype=torch.float32)
    # far outside [-1, 1] all mass lies on the nearer edge bin: probability 1 there
    far = discretized_gaussian_nll(x, torch.tensor([-5.0, 5.0, -5.0, 5.0]),
                                   torch.full((4,), 2 * math.log(0.1)))
    np.testing.assert_allclose(far[:2].numpy(), [0.0, 0.0], atol=1e-6)
    assert (far[2:] > 20).all()  # their neighbours get (clamped) nothing
    # centred on an edge level: half the mass plus the tail, not the half a closed bin would get
    edge = discretized_gaussian_nll(x[:2], torch.tensor([-1.0, 1.0]),
                                    torch.full((2,), 2 * math.log(0.5)))
    want = torch.special.ndtr(torch.tensor(1 / 255 / 0.5, dtype=torch.float64))
    np.testing.assert_allclose((-edge.double()).exp().numpy(), [float(want)] * 2, atol=1e-3)


def test_prior_kl_matches_the_closed_form():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, 3, 2, generator=g) * 1.5
    xd = x0.double().numpy().reshape(5, -1)
    for name, T in (("linear_unscaled", 150), ("linear", 100), ("cosine", 1000)):
        s = make_schedule(name, T, warn=False)
        ab = float(float64_constants(name, T)["alpha_bar"][-1])
        # KL(N(sqrt(ab) x0, 1 - ab) || N(0, 1)) per dim, summed
        want = kl_by_hand(math.sqrt(ab) * xd, math.sqrt(1 - ab), 0.0, 1.0).sum(axis=1)
        got = prior_kl(s, x0)
        assert got.shape == (5,)
        np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=1e-6)


def test_prior_kl_is_large_when_the_schedule_leaves_signal():
    x0 = torch.ones(2, 4)
    s = make_schedule("linear_unscaled", 150, warn=False)
    ab = float(float64_constants("linear_unscaled", 150)["alpha_bar"][-1])
    assert 0.2 < ab < 0.25
    want = 4 * kl_by_hand(math.sqrt(ab), math.sqrt(1 - ab), 0.0, 1.0)
    np.testing.assert_allclose(prior_kl(s, x0).double().numpy(), [want, want], rtol=1e-5)
    assert want > 0.4  # ~0.12 nats per dimension left unexplained by N(0, I)


# ------------------------------------------------------------------ reverse log variances


@pytest.mark.parametrize("name", ["linear_unscaled", "cosine"])
def test_learned_range_log_variance_matches_diffusers_for_t_positive(ref, name):
    case = f"ddpm_step__T1000_{DIFFUSERS_NAMES[name]}_learned_range__log_variance"
    ts, v_all, want_all = (ref["ddpm_step__timesteps"], ref["ddpm_step__inputs__var_values"],
                           ref[case])
    s = make_schedule(name, 1000)
    c = float64_constants(name, 1000)
    assert 0 in ts and (ts > 0).sum() >= 5
    for i, t_int in enumerate(ts):
        v = torch.from_numpy(v_all[i])
        t = torch.full((v.shape[0],), int(t_int), dtype=torch.long)
        got = reverse_log_variance(s, t, v, "learned_range", v)
        assert got.shape == v.shape and got.dtype == torch.float32
        u = (v_all[i].astype(np.float64) + 1) / 2  # Nichol & Dhariwal Eq. 15
        if t_int > 0:
            assert err(got.numpy(), want_all[i]) <= 5e-4, (name, int(t_int))
            continue
        # t = 0: beta~_0 = 0. ddpmlab clips the minimum to log beta~_1 (improved-diffusion) ...
        ours = u * np.log(c["beta"][0]) + (1 - u) * np.log(c["post_var"][1])
        assert err(got.numpy(), ours) <= 1e-5
        # ... while diffusers takes log(max(beta~_0, 1e-20)): a documented difference
        theirs = u * np.log(c["beta"][0]) + (1 - u) * np.log(1e-20)
        assert err(want_all[i], theirs) <= 5e-4
        assert err(got.numpy(), want_all[i]) > 0.5  # tens of nats where u is small


@pytest.mark.parametrize(("name", "T"), [("cosine", 1000), ("linear", 1000), ("linear", 50),
                                         ("sigmoid", 200)])
def test_fixed_log_variances_are_log_beta_tilde_and_log_beta(name, T):
    s = make_schedule(name, T, warn=False)
    c = float64_constants(name, T)
    t = torch.arange(T)
    x = torch.zeros(T, 3)
    small = reverse_log_variance(s, t, x, "fixed_small")
    large = reverse_log_variance(s, t, x, "fixed_large")
    assert small.shape == large.shape == (T, 1)
    small, large = small[:, 0].double().numpy(), large[:, 0].double().numpy()
    np.testing.assert_allclose(small[1:], np.log(c["post_var"][1:]), rtol=0, atol=2e-6)
    np.testing.assert_allclose(large[1:], np.log(c["beta"][1:]), rtol=0, atol=2e-6)
    # t = 0: beta~_0 = 0, both use log beta~_1 (the decoder's variance, improved-diffusion)
    assert small[0] == pytest.approx(math.log(c["post_var"][1]), abs=2e-6)
    assert large[0] == pytest.approx(math.log(c["post_var"][1]), abs=2e-6)
    # learned_range spans them: v = -1 is fixed_small; v = +1 is log beta_t (log beta_0 at t = 0)
    lo = reverse_log_variance(s, t, x, "learned_range", -torch.ones(T, 3))
    hi = reverse_log_variance(s, t, x, "learned_range", torch.ones(T, 3))
    np.testing.assert_allclose(lo[:, 0].double().numpy(), small, rtol=0, atol=2e-6)
    np.testing.assert_allclose(hi[:, 0].double().numpy(), np.log(c["beta"]), rtol=0, atol=2e-6)


def test_fixed_large_log_variance_of_a_one_step_schedule():
    s = make_schedule("cosine", 50).respaced(np.array([49]))
    assert s.T == 1
    t = torch.zeros(2, dtype=torch.long)
    x = torch.zeros(2, 3)
    want = float(s.posterior_log_variance[0])  # log beta_0: the clip when there is no beta~_1
    assert want == pytest.approx(float(s.beta[0].log()), abs=1e-6)
    assert torch.allclose(reverse_log_variance(s, t, x, "fixed_small"), torch.tensor(want))
    large = reverse_log_variance(s, t, x, "fixed_large")  # IndexError today
    assert torch.allclose(large, torch.tensor(want))
    assert torch.isfinite(vlb_term(s, x, x, t, x, variance="fixed_large")).all()


@pytest.mark.parametrize("name", ["linear_unscaled", "cosine"])
def test_fixed_log_variances_match_diffusers_for_t_positive(ref, name):
    dname = DIFFUSERS_NAMES[name]
    ts = ref["ddpm_step__timesteps"]
    s = make_schedule(name, 1000)
    t = torch.as_tensor(ts)
    x = torch.zeros(len(ts), 1)
    for kind in ("fixed_small", "fixed_large"):
        want = np.log(ref[f"ddpm_step__T1000_{dname}_epsilon_clip0__var_{kind}"][ts > 0])
        got = reverse_log_variance(s, t, x, kind)[:, 0].numpy()[ts > 0]
        assert err(got, want) <= 5e-4, kind


# ------------------------------------------------------------------ vlb_term and Bound


def by_hand_terms(name, T, x0, x_t, t, output, variance, decoder):
    """vlb_term recomputed in float64 numpy from Ho Eqs. 7 and 11 and N&D Eq. 15."""
    c = float64_constants(name, T)
    x0, x_t, output = (a.double().numpy() for a in (x0, x_t, output))
    t = t.numpy()
    eps, v = (output, None) if variance != "learned_range" else np.split(output, 2, axis=1)
    beta, ab, ab_prev = c["beta"][t, None], c["alpha_bar"][t, None], c["alpha_bar_prev"][t, None]
    model_mean = (x_t - beta / np.sqrt(1 - ab) * eps) / np.sqrt(1 - beta)  # Ho Eq. 11
    log_small = c["log_small"][t, None]
    log_large = np.where(t[:, None] == 0, log_small, np.log(beta))
    if variance == "fixed_small":
        model_lv = log_small + 0 * x0
    elif variance == "fixed_large":
        model_lv = log_large + 0 * x0
    else:
        u = (v + 1) / 2
        model_lv = u * np.log(beta) + (1 - u) * log_small
    true_mean = (beta * np.sqrt(ab_prev) / (1 - ab) * x0  # Ho Eq. 7
                 + (1 - ab_prev) * np.sqrt(1 - beta) / (1 - ab) * x_t)
    true_var = c["post_var"][t, None] + 0 * x0
    kl = np.zeros(len(t))
    pos = t > 0
    kl[pos] = kl_by_hand(true_mean[pos], np.sqrt(true_var[pos]), model_mean[pos],
                         np.exp(0.5 * model_lv[pos])).sum(axis=1)
    std = np.exp(0.5 * model_lv)
    if decoder == "gaussian":
        nll = 0.5 * np.log(2 * np.pi * std**2) + (x0 - model_mean) ** 2 / (2 * std**2)
    else:  # Ho Eq. 13 with the tanh approximation of Phi (Ho et al.'s code)
        def cdf(z):
            return 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
        hi = np.where(x0 > 0.999, 1.0, cdf((x0 - model_mean + 1 / 255) / std))
        lo = np.where(x0 < -0.999, 0.0, cdf((x0 - model_mean - 1 / 255) / std))
        nll = -np.log(np.maximum(hi - lo, 1e-12))  # the clamp only bites at t > 0 here
    return np.where(t == 0, nll.sum(axis=1), kl), nll.sum(axis=1), kl


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large", "learned_range"])
@pytest.mark.parametrize("decoder", ["gaussian", "discretized"])
def test_vlb_term_is_the_decoder_nll_at_t0_and_the_kl_after(variance, decoder):
    name, T, B, D = "cosine", 10, 6, 3
    s = make_schedule(name, T)
    g = torch.Generator().manual_seed(4)
    x0 = torch.tensor(GRID, dtype=torch.float32)[torch.randint(0, 256, (B, D), generator=g)]
    x0[0, 0], x0[2, 1] = -1.0, 1.0  # edge bins at t = 0
    t = torch.tensor([0, 3, 0, 9, 1, 0])
    eps = torch.randn(B, D, generator=g)
    x_t = q_sample(s, x0, t, eps)
    # a near-miss eps, so the t = 0 decoder puts real mass near x0 (not only clamped tails)
    eps_hat = eps + 0.3 * torch.randn(B, D, generator=g)
    output = eps_hat
    if variance == "learned_range":
        output = torch.cat([eps_hat, 2 * torch.rand(B, D, generator=g) - 1], dim=1)
    got = vlb_term(s, x0, x_t, t, output, variance=variance, decoder=decoder)
    assert got.shape == (B,) and got.dtype == torch.float32
    want, nll, kl = by_hand_terms(name, T, x0, x_t, t, output, variance, decoder)
    assert (nll[t.numpy() == 0] < 20).all()  # a meaningful decoder case
    assert (kl[t.numpy() > 0] > 1e-3).all()
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-4, atol=1e-4)


def test_vlb_term_rejects_bad_arguments():
    s = make_schedule("cosine", 10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="decoder"):
        vlb_term(s, x, x, torch.zeros(2, dtype=torch.long), x, decoder="laplace")
    with pytest.raises(ValueError):
        vlb_term(s, x, x, torch.tensor([0, 10]), x)


def test_bound_properties():
    b = Bound(terms=np.array([1.5, 0.25, 0.125]), prior=0.0625, dims=4)
    assert b.nats == 1.9375
    assert b.nats_per_dim == 1.9375 / 4
    assert b.bits_per_dim == pytest.approx(1.9375 / 4 / math.log(2), rel=1e-15)


def test_nll_bound_replays_vlb_term_one_draw_per_step():
    # Each t draws one eps of x0's shape from the generator, t ascending; terms are batch means.
    s = make_schedule("cosine", 8)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
    model = gaussian_eps(s.alpha_bar)
    b = nll_bound(s, model, x0, generator=torch.Generator().manual_seed(6))
    assert b.terms.shape == (8,) and b.dims == 2
    assert b.nats == pytest.approx(b.terms.sum() + b.prior, rel=1e-15)
    g = torch.Generator().manual_seed(6)
    for t_int in range(8):
        t = torch.full((64,), t_int, dtype=torch.long)
        x_t = q_sample(s, x0, t, torch.randn(x0.shape, generator=g))
        want = float(vlb_term(s, x0, x_t, t, model(x_t, t)).double().mean())
        assert b.terms[t_int] == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert b.prior == pytest.approx(float(prior_kl(s, x0).double().mean()), rel=1e-12)


# ------------------------------------------------------------------ the bound with the exact model


def exact_model(s: NoiseSchedule, mu=MU, std=STD):
    """The exact reverse process of N(mu, diag(std^2)) data as a ``learned_range`` output.

    Mean part: eps*(x_t, t) (reference README), so the reverse mean is E[x_{t-1} | x_t].
    Variance part: Var[x_{t-1} | x_t] = beta~_t + c_t^2 Var[x0 | x_t], c_t the x0 coefficient
    of the posterior mean (Ho Eq. 7), Var[x0 | x_t] = std^2 (1 - ab) / (ab std^2 + 1 - ab);
    at t = 0 that is the decoder's variance (beta~_0 = 0, c_0 = 1). It is written as v = 2u - 1
    with u = (log sigma^2 - log beta~clip_t) / (log beta_t - log beta~clip_t) (N&D Eq. 15).
    """
    ab, beta = s.alpha_bar.double(), s.beta.double()
    post_var, log_small = s.posterior_variance.double(), s.posterior_log_variance.double()
    coef_x0 = s.posterior_mean_coef_x0.double()
    mu_t = torch.tensor(mu, dtype=torch.float64)
    var = torch.tensor(std, dtype=torch.float64) ** 2
    assert float(coef_x0[0]) == pytest.approx(1.0, abs=1e-6) and float(post_var[0]) == 0.0

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ab[t][:, None]
        denom = a * var + 1 - a
        eps = (1 - a).sqrt() * (x_t.double() - a.sqrt() * mu_t) / denom
        sigma2 = post_var[t][:, None] + coef_x0[t][:, None] ** 2 * var * (1 - a) / denom
        lo, hi = log_small[t][:, None], beta[t].log()[:, None]
        u = (sigma2.log() - lo) / (hi - lo)
        return torch.cat([eps, 2 * u - 1], dim=1).to(x_t.dtype)

    return denoiser


@pytest.fixture(scope="module")
def gaussian_data() -> tuple[torch.Tensor, float]:
    """N_BOUND points of N(MU, diag(STD^2)) (float64, cast to float32) and their mean true
    NLL in nats per dimension, computed in float64 on the float32 values."""
    rng = np.random.default_rng(7)
    x0 = torch.from_numpy(np.asarray(MU) + np.asarray(STD) * rng.standard_normal((N_BOUND, 2)))
    x0 = x0.to(torch.float32)
    xd, mu, std = x0.double().numpy(), np.asarray(MU), np.asarray(STD)
    nll = 0.5 * np.log(2 * np.pi * std**2) + 0.5 * ((xd - mu) / std) ** 2
    return x0, float(nll.sum(axis=1).mean() / 2)


def exact_bound(T: int, x0: torch.Tensor, seed: int = 8) -> Bound:
    s = make_schedule("cosine", T)
    return nll_bound(s, exact_model(s), x0, variance="learned_range",
                     generator=torch.Generator().manual_seed(seed))


def test_exact_model_bound_equals_the_true_nll(gaussian_data):
    x0, true_nll = gaussian_data
    gaps = {}
    for T in (50, 200, 1000):
        b = exact_bound(T, x0)
        assert np.isfinite(b.terms).all() and b.dims == 2
        assert b.prior < 1e-6  # cosine: x_T is N(0, I) to within 1e-6 nats
        gaps[T] = (b.nats_per_dim, b.nats_per_dim - true_nll)
    print(f"\nexact-model bound, cosine, {N_BOUND} points, true NLL {true_nll:.4f} nats/dim")
    print("     T   bound (nats/dim)   gap (nats/dim)")
    for T, (bound, gap) in gaps.items():
        print(f"{T:6d}   {bound:16.4f}   {gap:+14.4f}")
    # per-sample std of the gap ~0.69 nats/dim: standard error ~0.004 at N_BOUND points
    assert abs(gaps[1000][1]) < 0.02


def test_fixed_small_variance_loosens_the_bound(gaussian_data):
    # same x0 and the same x_t draws (common random numbers): only the variance differs
    x0 = gaussian_data[0][:2000]
    s = make_schedule("cosine", 1000)
    model = exact_model(s)
    exact = exact_bound(1000, x0, seed=9)
    small = nll_bound(s, lambda x, t: model(x, t)[:, :2], x0, variance="fixed_small",
                      generator=torch.Generator().manual_seed(9))
    assert small.prior == exact.prior
    # the decoder and the summed KLs both get worse; by ~0.5 nats/dim in all
    assert small.terms[0] > exact.terms[0]
    assert small.terms[1:].sum() > exact.terms[1:].sum()
    assert small.nats_per_dim > exact.nats_per_dim + 0.1
