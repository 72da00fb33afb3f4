"""The maths images add: x0_hat clipping in the samplers and the discretised decoder with L levels.

- clipping (improved-diffusion's ``clip_denoised``, diffusers' ``clip_sample``): every x0_hat a
  sampler uses lies in [-1, 1]; DDPM steps to the posterior mean (Ho et al. 2020, Eq. 7) at the
  clamped x0_hat and DDIM recomputes eps from it (Song et al. 2021, Eq. 12), checked against
  float64 hand computations; with the exact denoiser of data inside the box, clip on and off
  give the same chains bit for bit; every sampler stays finite at every step count;
- the decoder ``discretized_gaussian_nll(..., levels)`` (Ho et al. 2020, Sec. 3.3 and Eq. 13
  on a grid of L levels): bit for bit today's at L = 256, against scipy.stats.norm.cdf at
  L = 17 (scikit-learn's digits) and others, the L bins' masses summing to one, and ``levels``
  threaded through ``vlb_term`` and ``nll_bound``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import norm

import ddpmlab.diffusion as diffusion
import ddpmlab.samplers.ddim as ddim_module
from ddpmlab.diffusion import PREDICTIONS, predict_eps_x0, q_sample, reverse_mean
from ddpmlab.errors import UserError
from ddpmlab.likelihood import discretized_gaussian_nll, nll_bound, vlb_term
from ddpmlab.samplers import ddim_chain, ddim_sample, ddim_step, ddpm_chain, ddpm_sample
from ddpmlab.schedules import make_schedule

torch.set_num_threads(1)

T = 10
SHAPE = (3, 1, 8, 8)  # image-shaped: (B, C, H, W)
# the samplers as (name, chain(denoiser, schedule, shape, **kw)); learned_range doubles C
SAMPLERS: dict[str, Callable] = {
    "ddpm": lambda *a, **kw: ddpm_chain(*a, **kw),
    "ddpm_large": lambda *a, **kw: ddpm_chain(*a, variance="fixed_large", **kw),
    "ddpm_learned": lambda *a, **kw: ddpm_chain(*a, variance="learned_range", **kw),
    "ddim_eta0": lambda *a, **kw: ddim_chain(*a, eta=0.0, **kw),
    "ddim_eta1": lambda *a, **kw: ddim_chain(*a, eta=1.0, **kw),
}


def schedule():
    # cosine at T = 10: alpha_bar_{T-1} = 2.4e-5, so x0_from_eps multiplies x_T by ~200
    return make_schedule("cosine", T)


def pattern(x: torch.Tensor) -> torch.Tensor:
    """A fixed +-1 pattern over the pixels, so clamping bites at both ends."""
    return torch.sign(torch.sin(torch.arange(x[0].numel(), dtype=x.dtype) + 0.5)).reshape(
        x.shape[1:])


def with_variance(name: str, denoiser: Callable) -> Callable:
    """A ``learned_range`` sampler's denoiser returns twice the channels: mean part, then v."""
    if name != "ddpm_learned":
        return denoiser

    def both(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.cat([denoiser(x, t), torch.tanh(x)], dim=1)  # v in [-1, 1]
    return both


def huge(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A wildly wrong network: +-1e4 whatever the prediction, so x0_hat lies far outside."""
    return 1e4 * pattern(x).expand_as(x)


def moderate(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A wrong but tame network that depends on x and t."""
    return 1.5 * x + 0.5 * torch.cos(t.to(x.dtype))[:, None, None, None]


def states(chain) -> list[torch.Tensor]:
    return [x for _, x in chain]


# ------------------------------------------------------------------ clipping: spies


def spy_x0_hats(monkeypatch, name: str) -> list[torch.Tensor]:
    """Record every x0_hat the sampler uses: the x_0 passed to the posterior mean (DDPM, Ho
    Eq. 7 in reverse_mean) or the x0_hat of each DDIM step (Song Eq. 12)."""
    seen: list[torch.Tensor] = []
    if name.startswith("ddpm"):
        q_posterior = diffusion.q_posterior

        def spy(schedule, x0, x_t, t):
            seen.append(x0.clone())
            return q_posterior(schedule, x0, x_t, t)
        monkeypatch.setattr(diffusion, "q_posterior", spy)
    else:
        step = ddim_module.ddim_step

        def spy_step(*args, **kwargs):
            x_prev, x0_hat = step(*args, **kwargs)
            seen.append(x0_hat.clone())
            return x_prev, x0_hat
        monkeypatch.setattr(ddim_module, "ddim_step", spy_step)
    return seen


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("steps", [None, 4])
def test_clip_keeps_every_x0_hat_in_the_box_and_the_chain_bounded(monkeypatch, name,
                                                                   prediction, steps):
    s, net = schedule(), with_variance(name, huge)
    seen = spy_x0_hats(monkeypatch, name)
    chain = SAMPLERS[name](net, s, SHAPE, steps=steps, prediction=prediction, clip=True,
                           generator=torch.Generator().manual_seed(0))
    xs = states(chain)
    K = T if steps is None else steps
    assert len(xs) == K + 1 and len(seen) == K  # one x0_hat per step, each seen
    for x0_hat in seen:
        assert x0_hat.shape == SHAPE and x0_hat.abs().max() <= 1.0
        assert (x0_hat.abs() == 1.0).float().mean() > 0.5  # the clamp did bite
    assert all(torch.isfinite(x).all() for x in xs)
    assert max(float(x.abs().max()) for x in xs) < 20  # x_T ~ N(0, I) plus bounded moves
    # the last step lands on the clamped x0_hat itself (Ho Eq. 7 at t = 0; Song Eq. 12 at
    # alpha_bar_prev = 1), so the samples lie in the box
    assert xs[-1].abs().max() <= 1.0 + 1e-6
    # without clip the same network throws the samples far outside
    monkeypatch.undo()
    free = states(SAMPLERS[name](net, s, SHAPE, steps=steps, prediction=prediction,
                                 generator=torch.Generator().manual_seed(0)))
    assert not torch.isfinite(free[-1]).all() or free[-1].abs().max() > 100


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_clip_is_exact_for_the_exact_denoiser_of_data_in_the_box(name, prediction):
    """A point mass at x0 inside [-1, 1]: the exact network gives x0_hat = x0 (up to rounding,
    never out of the box), so clipping changes nothing, bit for bit, at every step."""
    s = schedule()
    x0 = 0.9 * torch.sin(torch.arange(64.0)).reshape(1, 1, 8, 8)

    def exact(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sab = s.sqrt_alpha_bar[t][:, None, None, None]
        s1m = s.sqrt_one_minus_alpha_bar[t][:, None, None, None]
        eps = (x - sab * x0) / s1m  # Ho Eq. 4 solved for eps at the data's x0
        if prediction == "eps":
            return eps
        if prediction == "x0":
            return x0.expand_as(x)
        return sab * eps - s1m * x0  # Salimans & Ho 2022, Sec. 4: v

    net = with_variance(name, exact)
    for steps in (None, 3):
        runs = [states(SAMPLERS[name](net, s, SHAPE, steps=steps, prediction=prediction,
                                      clip=clip, generator=torch.Generator().manual_seed(1)))
                for clip in (False, True)]
        assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
        # and the chain does reach the point mass
        torch.testing.assert_close(runs[1][-1], x0.expand(SHAPE), rtol=0, atol=1e-3)


# ------------------------------------------------------------------ clipping: by hand


def float64_x0_hat(s, x_t, t, output, prediction):
    ab = float(s.alpha_bar.double()[t])
    x, out = x_t.double(), output.double()
    if prediction == "eps":
        return (x - math.sqrt(1 - ab) * out) / math.sqrt(ab)  # Ho Eq. 4 solved for x_0
    if prediction == "x0":
        return out
    return math.sqrt(ab) * x - math.sqrt(1 - ab) * out  # Salimans & Ho 2022, App. D


def mixed_case(prediction, t):
    """x_t and an output whose x0_hat lies partly inside, partly outside [-1, 1]."""
    g = torch.Generator().manual_seed(2)
    x_t = torch.randn(SHAPE, generator=g)
    target = 1.6 * torch.randn(SHAPE, generator=g)  # the x0_hat wanted: about half inside
    ab = float(schedule().alpha_bar.double()[t])
    output = {"eps": (x_t - math.sqrt(ab) * target) / math.sqrt(1 - ab),  # Ho Eq. 4 for eps
              "x0": target,
              "v": (math.sqrt(ab) * x_t - target) / math.sqrt(1 - ab),  # Salimans & Ho, App. D
              }[prediction].float()
    x0_raw = float64_x0_hat(schedule(), x_t, t, output, prediction)
    inside = (x0_raw.abs() < 1).double().mean()
    assert 0.1 < inside < 0.9, inside  # both kinds of element
    return x_t, output, x0_raw


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize(("t", "t_prev"), [(7, 4), (5, 4), (2, -1)])
def test_ddim_step_with_clip_recomputes_eps_from_the_clamped_x0_hat(prediction, eta, t,
                                                                      t_prev):
    s = schedule()
    x_t, output, x0_raw = mixed_case(prediction, t)
    z = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    got, got_x0 = ddim_step(s, x_t, t, t_prev, output, eta=eta, prediction=prediction,
                            noise=z, clip=True)
    ab = float(s.alpha_bar.double()[t])
    ab_prev = float(s.alpha_bar.double()[t_prev]) if t_prev >= 0 else 1.0
    x0c = x0_raw.clamp(-1, 1)  # improved-diffusion's clip_denoised
    # improved-diffusion's _predict_eps_from_xstart: Ho Eq. 4 solved for eps at the clamped x0
    eps = (x_t.double() - math.sqrt(ab) * x0c) / math.sqrt(1 - ab)
    # Song Eq. 16: sigma_t^2; Song Eq. 12: the step
    sigma2 = eta**2 * (1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)
    want = (math.sqrt(ab_prev) * x0c + math.sqrt(1 - ab_prev - sigma2) * eps
            + math.sqrt(sigma2) * z.double())
    np.testing.assert_allclose(got_x0.double().numpy(), x0c.numpy(), rtol=0, atol=2e-5)
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=0, atol=2e-5)
    # the eps of the network itself (not recomputed) would give another step
    if t_prev >= 0:
        eps_net, _ = predict_eps_x0(s, x_t, torch.full((SHAPE[0],), t), output, prediction)
        stale = (math.sqrt(ab_prev) * x0c + math.sqrt(1 - ab_prev - sigma2) * eps_net.double()
                 + math.sqrt(sigma2) * z.double())
        assert (stale - want).abs().max() > 0.1
    # without clip, the step is Song Eq. 12 at the raw x0_hat
    free, free_x0 = ddim_step(s, x_t, t, t_prev, output, eta=eta, prediction=prediction,
                              noise=z)
    np.testing.assert_allclose(free_x0.double().numpy(), x0_raw.numpy(), rtol=1e-5, atol=1e-5)
    assert (free - got).abs().max() > 0.1


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("t", [0, 3, 8, 9])
def test_reverse_mean_with_clip_is_the_posterior_mean_at_the_clamped_x0_hat(prediction, t):
    s = schedule()
    x_t, output, x0_raw = mixed_case(prediction, t)
    tt = torch.full((SHAPE[0],), t)
    got = reverse_mean(s, x_t, tt, output, prediction, clip=True)
    beta = float(s.beta.double()[t])
    ab = float(s.alpha_bar.double()[t])
    ab_prev = float(s.alpha_bar_prev.double()[t])
    # Ho Eq. 7: mu~ = sqrt(ab_prev) beta / (1 - ab) x0 + sqrt(alpha) (1 - ab_prev) / (1 - ab) x_t
    want = (math.sqrt(ab_prev) * beta / (1 - ab) * x0_raw.clamp(-1, 1)
            + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x_t.double())
    np.testing.assert_allclose(got.double().numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    free = reverse_mean(s, x_t, tt, output, prediction)
    assert (free - got).abs().max() > 1e-2  # the clamp moved the mean
    # predict_eps_x0 with clip: x0_hat clamped, eps consistent with it by Ho Eq. 4
    eps, x0_hat = predict_eps_x0(s, x_t, tt, output, prediction, clip=True)
    assert x0_hat.abs().max() <= 1
    np.testing.assert_allclose(
        x_t.double().numpy(),
        (math.sqrt(ab) * x0_hat.double() + math.sqrt(1 - ab) * eps.double()).numpy(),
        rtol=0, atol=1e-5)


def test_clip_leaves_unclamped_elements_bit_for_bit():
    s = schedule()
    x_t, output, x0_raw = mixed_case("eps", 3)
    tt = torch.full((SHAPE[0],), 3)
    inside = torch.from_numpy(x0_raw.abs().numpy() < 0.999)
    for a, b in [(reverse_mean(s, x_t, tt, output, clip=True), reverse_mean(s, x_t, tt, output)),
                 (predict_eps_x0(s, x_t, tt, output, "eps", clip=True)[0], output)]:
        assert torch.equal(a[inside], b[inside])
        assert not torch.equal(a, b)


# ------------------------------------------------------------------ clipping: every K


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_sampler_with_clip_is_finite_at_every_step_count(name, prediction):
    s = schedule()
    for denoiser in (huge, moderate):
        net = with_variance(name, denoiser)
        for K in range(1, T + 1):
            xs = states(SAMPLERS[name](net, s, SHAPE, steps=K, prediction=prediction,
                                       clip=True, generator=torch.Generator().manual_seed(K)))
            assert len(xs) == K + 1
            for x in xs:
                assert x.shape == SHAPE and x.dtype == torch.float32
                assert torch.isfinite(x).all(), (denoiser.__name__, K)
            assert xs[-1].abs().max() <= 1.0 + 1e-6, (denoiser.__name__, K)


def test_sample_functions_thread_clip():
    s = schedule()
    for sample, chain, extra in [(ddpm_sample, ddpm_chain, {}),
                                 (ddim_sample, ddim_chain, {"eta": 0.0}),
                                 (ddim_sample, ddim_chain, {"eta": 1.0})]:
        for clip in (False, True):
            got = sample(huge, s, SHAPE, steps=5, clip=clip, **extra,
                         generator=torch.Generator().manual_seed(4))
            want = states(chain(huge, s, SHAPE, steps=5, clip=clip, **extra,
                                generator=torch.Generator().manual_seed(4)))[-1]
            assert torch.equal(got, want)
            assert bool(got.abs().max() <= 1.0 + 1e-6) == clip


# ------------------------------------------------------------------ the decoder with L levels


def grid(levels: int) -> np.ndarray:
    """The L levels scaled to [-1, 1]: -1 + 2k / (L - 1), float64."""
    return -1.0 + 2.0 * np.arange(levels) / (levels - 1)


def scipy_bin_probs(levels: int, mean: float, std: float) -> np.ndarray:
    """The Gaussian's mass on each of the L bins (edges halfway between levels, the outer ones
    at -inf and +inf), by scipy.stats.norm.cdf: Ho et al. 2020, Eq. 13 with L levels."""
    g = grid(levels)
    edges = np.concatenate([[-np.inf], (g[:-1] + g[1:]) / 2, [np.inf]])
    return np.diff(norm.cdf(edges, loc=mean, scale=std))


def old_discretized_gaussian_nll(x, mean, log_var):
    """The 256-level decoder as it was before ``levels`` (copied verbatim)."""
    def cdf(z):
        return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z.pow(3))))
    inv_std = torch.exp(-0.5 * log_var)
    centred = x - mean
    cdf_plus = cdf(inv_std * (centred + 1.0 / 255))
    cdf_minus = cdf(inv_std * (centred - 1.0 / 255))
    log_cdf_plus = cdf_plus.clamp(min=1e-12).log()
    log_one_minus_cdf_minus = (1.0 - cdf_minus).clamp(min=1e-12).log()
    log_mid = (cdf_plus - cdf_minus).clamp(min=1e-12).log()
    log_probs = torch.where(x < -0.999, log_cdf_plus,
                            torch.where(x > 0.999, log_one_minus_cdf_minus, log_mid))
    return -log_probs


CASES = [(0.1, 0.05), (-0.7, 0.3), (0.0, 2.0), (0.97, 0.02), (-1.0, 0.01), (0.5, 0.13),
         (3.0, 0.4), (-2.0, 1.0), (0.0625, 1e-3)]
# the tanh approximation of Phi is off by at most 1.79e-4 (a float64 scan of [-10, 10]), so
# a bin's mass, a difference of two, by at most 3.6e-4
TANH_ATOL = 3.6e-4


def test_tanh_cdf_error_bound():
    z = np.linspace(-10, 10, 200_001)
    approx = 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3)))
    assert np.abs(approx - norm.cdf(z)).max() < TANH_ATOL / 2


@pytest.mark.parametrize("levels", [2, 5, 17])
@pytest.mark.parametrize(("mean", "std"), CASES)
def test_discretized_decoder_with_levels_matches_scipy(levels, mean, std):
    x = torch.tensor(grid(levels), dtype=torch.float32)
    nll = discretized_gaussian_nll(x, torch.full_like(x, mean),
                                   torch.full_like(x, 2 * math.log(std)), levels=levels)
    assert nll.shape == (levels,) and nll.dtype == torch.float32
    assert torch.isfinite(nll).all() and (nll >= -1e-6).all()
    probs = (-nll.double()).exp().numpy()
    want = scipy_bin_probs(levels, mean, std)
    assert abs(want.sum() - 1) < 1e-12
    np.testing.assert_allclose(probs, want, rtol=0, atol=TANH_ATOL)
    big = want > 0.3  # where a bin holds real mass the relative error is ~1e-3
    np.testing.assert_allclose(probs[big], want[big], rtol=1.2e-3)


@pytest.mark.parametrize("levels", [2, 17, 256, 1000])
@pytest.mark.parametrize(("mean", "std"), CASES)
def test_discretized_decoder_bins_sum_to_one(levels, mean, std):
    x = torch.tensor(grid(levels), dtype=torch.float64)
    nll = discretized_gaussian_nll(x, torch.full_like(x, mean),
                                   torch.full_like(x, 2 * math.log(std)), levels=levels)
    # the bins tile the line, so the masses telescope to one (clamped empty bins add 1e-12)
    assert abs(float((-nll).exp().sum()) - 1.0) < 1e-9 + levels * 1e-12


def test_discretized_decoder_at_256_levels_is_bit_for_bit_todays():
    g = torch.Generator().manual_seed(5)
    on_grid = torch.tensor(grid(256), dtype=torch.float32)[torch.randint(0, 256, (4000,),
                                                                         generator=g)]
    off_grid = torch.cat([2.2 * torch.rand(4000, generator=g) - 1.1,
                          torch.tensor([-1.0, -0.9995, -0.999, -0.998, -0.996, 0.996, 0.998,
                                        0.999, 0.9995, 1.0])])
    for x in (on_grid, off_grid):
        mean = 1.5 * torch.randn(x.shape, generator=g)
        log_var = 4 * torch.rand(x.shape, generator=g) - 9
        want = old_discretized_gaussian_nll(x, mean, log_var)
        assert torch.equal(discretized_gaussian_nll(x, mean, log_var), want)
        assert torch.equal(discretized_gaussian_nll(x, mean, log_var, levels=256), want)


def test_digits_decoder_at_its_own_levels_and_at_256_differ():
    """Digits data read as 8-bit would get 1/15 of its bin: the levels matter."""
    x = torch.tensor(grid(17), dtype=torch.float32)[1:-1]
    mean, log_var = x + 0.01, torch.full_like(x, 2 * math.log(0.02))
    assert (discretized_gaussian_nll(x, mean, log_var, levels=17)
            < discretized_gaussian_nll(x, mean, log_var) - 1).all()


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, 17.0, True, "17", None])
def test_bad_levels_are_refused_clearly(bad):
    x = torch.zeros(2, 3)
    t = torch.zeros(2, dtype=torch.long)
    with pytest.raises(UserError, match="levels must be an integer >= 2"):
        discretized_gaussian_nll(x, x, x, levels=bad)
    with pytest.raises(UserError, match="levels"):
        vlb_term(make_schedule("cosine", T), x, x, t, x, decoder="discretized", levels=bad)

    def never(x_t, t):
        raise AssertionError("nll_bound called the network before checking levels")
    with pytest.raises(UserError, match="levels"):
        nll_bound(make_schedule("cosine", T), never, x, decoder="discretized", levels=bad)
    # levels means nothing to the Gaussian decoder and is not looked at there
    vlb_term(make_schedule("cosine", T), x, x, t, x, decoder="gaussian", levels=bad)


def test_levels_thread_through_vlb_term_and_nll_bound():
    s = schedule()
    g = torch.Generator().manual_seed(6)
    x0 = torch.tensor(grid(17), dtype=torch.float32)[torch.randint(0, 17, (5, 1, 4, 4),
                                                                   generator=g)]
    eps = torch.randn(x0.shape, generator=g)
    t = torch.tensor([0, 0, 3, 0, 9])
    x_t = q_sample(s, x0, t, eps)
    output = eps + 0.2 * torch.randn(x0.shape, generator=g)
    got = vlb_term(s, x0, x_t, t, output, decoder="discretized", levels=17)
    mean = reverse_mean(s, x_t, t, output)
    log_var = diffusion.reverse_log_variance(s, t, x_t, "fixed_small").expand_as(mean)
    decoder = discretized_gaussian_nll(x0, mean, log_var, levels=17).reshape(5, -1).sum(1)
    at_256 = vlb_term(s, x0, x_t, t, output, decoder="discretized")
    zero = t == 0
    torch.testing.assert_close(got[zero], decoder[zero])
    assert torch.equal(got[~zero], at_256[~zero])  # the KL terms do not see the levels
    assert (got[zero] < at_256[zero]).all()  # 17 wide bins hold more than 256 narrow ones

    def net(x, tt):
        return (x - s.sqrt_alpha_bar[tt][:, None, None, None] * x0) \
            / s.sqrt_one_minus_alpha_bar[tt][:, None, None, None]
    b17 = nll_bound(s, net, x0, decoder="discretized", levels=17,
                    generator=torch.Generator().manual_seed(7))
    b256 = nll_bound(s, net, x0, decoder="discretized",
                     generator=torch.Generator().manual_seed(7))
    assert b17.terms[0] < b256.terms[0]
    np.testing.assert_array_equal(b17.terms[1:], b256.terms[1:])
    assert b17.prior == b256.prior
