"""The probability-flow ODE (samplers/ode.py) and the Gaussian mixtures it is tested with."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ddpmlab.cli import main
from ddpmlab.metrics import wasserstein
from ddpmlab.mixture import GaussianMixture
from ddpmlab.samplers.ode import (
    divergence,
    mixture_field,
    network_field,
    ode_nll,
    ode_sample,
    sigmas,
)
from ddpmlab.schedules import make_schedule

GAUSS = GaussianMixture.isotropic([0.5, -0.25], [0.3, 0.6])


# --- the mixture: closed forms against independent computations ---------------------------

def test_mixture_log_prob_and_score_match_scipy_and_autograd():
    from scipy.stats import multivariate_normal

    mix = GaussianMixture.isotropic([[0.0, 1.0], [2.0, -1.0]], [0.5, 0.2], weights=[0.3, 0.7])
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = np.log(0.3 * multivariate_normal([0, 1], np.diag([0.25, 0.04])).pdf(x.numpy())
                  + 0.7 * multivariate_normal([2, -1], np.diag([0.25, 0.04])).pdf(x.numpy()))
    np.testing.assert_allclose(mix.log_prob(x).numpy(), want, rtol=1e-10)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mix.log_prob(xg).sum(), xg)
    np.testing.assert_allclose(mix.score(x).numpy(), grad.numpy(), rtol=1e-9, atol=1e-12)


def test_noised_mixture_is_the_law_of_x_t():
    mix = GaussianMixture.isotropic([[0.0, 1.0], [2.0, -1.0]], 0.3)
    g = torch.Generator().manual_seed(1)
    ab = 0.4
    x_t = math.sqrt(ab) * mix.sample(200_000, g) + math.sqrt(1 - ab) * torch.randn(
        200_000, 2, generator=g, dtype=torch.float64)
    noised = mix.noised(ab)
    draws = noised.sample(200_000, g)
    np.testing.assert_allclose(x_t.mean(0), draws.mean(0), atol=0.01)
    np.testing.assert_allclose(torch.cov(x_t.T), torch.cov(draws.T), atol=0.01)


# --- the divergence ------------------------------------------------------------------------

def _mlp(dims: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(dims, 32), nn.Tanh(), nn.Linear(32, dims))


def _jacobian_trace(f: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.trace(torch.autograd.functional.jacobian(f, row)) for row in x])


def test_exact_divergence_equals_the_jacobians_trace():
    f, x = _mlp(2), torch.randn(16, 2)
    xg = x.clone().requires_grad_(True)
    torch.testing.assert_close(divergence(f(xg), xg), _jacobian_trace(f, x), rtol=1e-5,
                               atol=1e-6)


def test_hutchinson_is_unbiased_within_its_standard_error():
    f, x = _mlp(6), torch.randn(4, 6)
    exact = _jacobian_trace(f, x)
    g = torch.Generator().manual_seed(3)
    probes = 2000
    estimates = []
    for _ in range(probes):
        v = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1  # Rademacher
        xg = x.clone().requires_grad_(True)
        estimates.append(divergence(f(xg), xg, v))
    est = torch.stack(estimates)  # (probes, B)
    stderr = est.std(0) / math.sqrt(probes)
    assert (stderr > 0).all()
    assert ((est.mean(0) - exact).abs() < 4 * stderr).all(), (est.mean(0), exact, stderr)


# --- the ODE on a Gaussian with its exact eps ----------------------------------------------

@pytest.fixture(scope="module")
def gaussian_points() -> tuple[torch.Tensor, float]:
    x0 = GAUSS.sample(2000, torch.Generator().manual_seed(5)).float()
    return x0, float(-GAUSS.log_prob(x0).mean()) / 2


@pytest.mark.parametrize("kind", ["network", "continuous"])
def test_ode_nll_of_a_gaussian_with_its_exact_eps_is_its_true_nll(kind, gaussian_points):
    x0, true = gaussian_points
    s = make_schedule("cosine", 200)
    # network: the exact eps called on integer timesteps, as a perfect network would be
    field = (network_field(GAUSS.denoiser(s.alpha_bar), s) if kind == "network"
             else mixture_field(GAUSS))
    result = ode_nll(field, s, x0)
    assert result.divergence == "exact" and result.nfe > 10
    assert abs(result.nats_per_dim - true) < 0.01, (result.nats_per_dim, true)
    # per point too, not only on average: every point within 0.02 nats per dimension
    per_point = -GAUSS.log_prob(x0).numpy()
    assert (np.abs(result.nats - per_point) / 2).max() < 0.02


def test_hutchinson_nll_agrees_with_the_exact_one():
    # two components: the field's Jacobian is not diagonal, so the probes add noise
    mix = GaussianMixture.isotropic([[-0.5, 0.5], [0.5, -0.5]], 0.3)
    x0 = mix.sample(500, torch.Generator().manual_seed(6)).float()
    s = make_schedule("cosine", 50)
    field = network_field(mix.denoiser(s.alpha_bar), s)
    exact = ode_nll(field, s, x0, rtol=1e-4, atol=1e-4)
    hutch = ode_nll(field, s, x0, rtol=1e-4, atol=1e-4, divergence_kind="hutchinson",
                    generator=torch.Generator().manual_seed(0))
    assert hutch.divergence == "hutchinson"
    gap = hutch.nats - exact.nats
    assert gap.std() > 0.01  # the probes did add noise
    assert abs(gap.mean()) < 4 * gap.std(ddof=1) / math.sqrt(len(gap))
    true = float(-mix.log_prob(x0).mean())
    assert abs(hutch.nats.mean() - true) < 4 * hutch.stderr_per_dim * hutch.dims + 0.01


def test_ode_samples_of_a_gaussian_are_at_the_floor():
    s = make_schedule("cosine", 200)
    field = network_field(GAUSS.denoiser(s.alpha_bar), s)
    ratios = []  # two draws: one W1 ratio of 2,000 points moves by about 0.1
    for i in range(2):
        g = torch.Generator().manual_seed(10 + i)
        ref, ref2 = GAUSS.sample(2000, g).numpy(), GAUSS.sample(2000, g).numpy()
        x = ode_sample(field, s, (2000, 2), generator=g, rtol=1e-4, atol=1e-4).x0.double()
        x = x.numpy()
        ratios.append(wasserstein(x, ref) / wasserstein(ref2, ref))
    assert np.mean(ratios) < 1.15, ratios


def test_the_ode_is_deterministic_given_x_T_and_inverts_its_own_encoding():
    s = make_schedule("cosine", 100)
    field = network_field(GAUSS.denoiser(s.alpha_bar), s)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    a = ode_sample(field, s, (64, 2), x_T=x_T, rtol=1e-7, atol=1e-7).x0
    b = ode_sample(field, s, (64, 2), x_T=x_T, rtol=1e-7, atol=1e-7).x0
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert np.all(np.diff(sigmas(s)) > 0)


def test_the_network_field_equals_the_network_at_every_timestep():
    s = make_schedule("cosine", 30)
    sig = sigmas(s)
    field = network_field(GAUSS.denoiser(s.alpha_bar), s)
    x_bar = torch.randn(8, 2, dtype=torch.float64)
    for t in (0, 7, 29):
        ab = float(s.alpha_bar.double()[t])
        want = GAUSS.eps(x_bar * math.sqrt(ab), ab)
        torch.testing.assert_close(field(x_bar, float(sig[t])), want, rtol=1e-5, atol=1e-6)


# --- the command line ----------------------------------------------------------------------

def test_evaluate_exact_nll_and_the_ode_sampler(tiny_copy: Path, capsys):
    assert main(["evaluate", str(tiny_copy), "--exact-nll", "--n", "100", "--repeats", "1",
                 "--rtol", "1e-4", "--atol", "1e-4", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "probability-flow ODE" in out and "beside the variational bound" in out
    saved = json.loads((tiny_copy / "exact_nll.json").read_text())
    assert saved["divergence"] == "exact" and saved["nfe"] > 0 and saved["n"] == 100
    assert math.isfinite(saved["nats_per_dim"]) and saved["stderr_nats_per_dim"] > 0
    assert main(["sample", str(tiny_copy), "--sampler", "ode", "--n", "50", "--out",
                 str(tiny_copy / "ode.npy"), "--quiet"]) == 0
    assert np.isfinite(np.load(tiny_copy / "ode.npy")).all()


@pytest.mark.parametrize("argv, expect", [
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--rtol", "1e-3"],
     "--rtol applies to --sampler ode and --exact-nll only"),
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--sampler", "ode", "--atol", "0"],
     "--atol must be a finite number > 0"),
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--sampler", "ode", "--steps", "5"],
     "--steps does not apply to --sampler ode"),
    (["evaluate", "{run}", "--exact-nll", "--rtol", "nan"], "--rtol must be a finite number"),
    (["sweep", "{run}", "--samplers", "ode"], "the ode sampler's solver chooses its own"),
])
def test_bad_ode_options_get_one_line(argv, expect, tiny_run: Path, tmp_path: Path, capsys):
    argv = [a.format(run=tiny_run, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddpmlab: error:") and expect in err and "\n" not in err, err
    assert not (tmp_path / "x.npy").exists()
