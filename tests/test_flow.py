"""Flow matching's maths and samplers against independent references: facebookresearch's
flow_matching library (tests/data/make_flow_ref.py: its CondOTProbPath, its ODE solver's
Euler and Heun steps, its likelihood), closed forms of Gaussian data, and the exact velocity
of a Gaussian mixture, which every flow sampler must carry N(0, I) to."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
from ddpmlab.flow import (
    draw_flow_inputs,
    eps_x0_from_velocity,
    flow_stable_target,
    flow_time,
    mixture_velocity,
    network_velocity,
    path_sample,
    velocity_target,
)
from ddpmlab.metrics.points import wasserstein
from ddpmlab.mixture import GaussianMixture
from ddpmlab.samplers import SAMPLERS, SamplerSpec, reverse_chain
from ddpmlab.samplers.euler import euler_step
from ddpmlab.samplers.flow_fields import diffusion_velocity, flow_grid, step_along
from ddpmlab.samplers.heun import heun_step
from ddpmlab.samplers.ode import FLOW_SPAN, mixture_field, ode_nll, ode_sample
from ddpmlab.schedules import make_schedule

REF = Path(__file__).parent / "data" / "flow_ref.npz"
STEPS = {"euler": euler_step, "heun": heun_step}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REF) as f:
        return {k: f[k] for k in f.files}


def _gaussian(ref: dict[str, np.ndarray]) -> GaussianMixture:
    meta = json.loads(str(ref["__meta_json__"]))
    return GaussianMixture.isotropic(meta["mean"], meta["std"])


def test_the_path_and_its_velocity_are_flow_matchings_cond_ot_path(ref) -> None:
    x0, eps, t = (torch.from_numpy(ref[f"path__{k}"]) for k in ("x0", "eps", "t"))
    np.testing.assert_allclose(path_sample(x0, eps, t).numpy(), ref["path__x_t"], atol=1e-12)
    # their time runs the other way: our velocity is minus theirs
    np.testing.assert_allclose(velocity_target(x0, eps).numpy(), -ref["path__dx_t"],
                               atol=1e-12)


@pytest.mark.parametrize("method", ["euler", "heun2"])
@pytest.mark.parametrize("spacing", ["uniform", "shifted"])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_every_state_of_euler_and_heun_is_flow_matchings_ode_solver(ref, method: str,
                                                                    spacing: str,
                                                                    k: int) -> None:
    """The same noise, the same grid, the exact velocity of Gaussian data (ours from
    mixture.py; theirs written in closed form in make_flow_ref.py): every state agrees."""
    step = STEPS["euler" if method == "euler" else "heun"]
    x_T = torch.from_numpy(ref["solver__noise"])
    chain = step_along(step, mixture_velocity(_gaussian(ref)), flow_grid(k, spacing), x_T, k)
    ours = np.stack([x.numpy() for _, x in chain])
    np.testing.assert_allclose(ours, ref[f"solver__{method}_{spacing}_{k}"], atol=1e-9)


def test_the_adaptive_ode_of_a_flow_reaches_flow_matchings_dopri5_solution(ref) -> None:
    x_T = torch.from_numpy(ref["solver__noise"]).float()
    out = ode_sample(mixture_velocity(_gaussian(ref)), make_schedule("cosine", 10), x_T.shape,
                     x_T=x_T, span=FLOW_SPAN, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(out.x0.numpy(), ref["solver__dopri5"], atol=2e-5)


def test_the_exact_likelihood_of_a_flow_is_flow_matchings_and_the_closed_form(ref) -> None:
    """-log p by the instantaneous change of variables in the flow's time (the code of
    evaluate --exact-nll) against flow_matching's compute_likelihood and the Gaussian's own
    log density."""
    points = torch.from_numpy(ref["nll__points"]).float()
    result = ode_nll(mixture_velocity(_gaussian(ref)), make_schedule("cosine", 10), points,
                     span=FLOW_SPAN, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(-result.nats, ref["nll__log_p"], atol=2e-4)
    exact = _gaussian(ref).log_prob(points.double()).numpy()
    np.testing.assert_allclose(-result.nats, exact, atol=2e-4)


def test_training_draws_t_then_eps_then_the_path_on_the_grid() -> None:
    T, x0 = 8, torch.randn(64, 2)
    k, eps, x_t = draw_flow_inputs(T, x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(k, torch.randint(0, T, (64,), generator=g))
    assert torch.equal(eps, torch.randn(64, 2, generator=g))
    t = (k.double() + 1) / T  # t_k = (k + 1) / T: k = T - 1 is pure noise
    torch.testing.assert_close(x_t.double(), (1 - t[:, None]) * x0 + t[:, None] * eps)
    assert flow_time(torch.tensor([T - 1]), T).item() == 1.0


def test_eps_and_x0_from_the_true_velocity_give_back_eps_and_x0() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(32, 2, generator=g, dtype=torch.float64), \
        torch.randn(32, 2, generator=g, dtype=torch.float64)
    t = torch.rand(32, generator=g, dtype=torch.float64)
    x_t = path_sample(x0, eps, t)
    eps_hat, x0_hat = eps_x0_from_velocity(x_t, t, eps - x0)
    torch.testing.assert_close(eps_hat, eps)
    torch.testing.assert_close(x0_hat, x0)


def test_the_flows_stable_target_is_the_posterior_mean_over_its_examples() -> None:
    """With M references, row i's x0~ is the average of {x0_i, r_j} weighted by
    N(x_t; (1 - t) r, t^2 I), written here directly; at t = 1 (pure noise) the weights are
    equal."""
    g = torch.Generator().manual_seed(1)
    T, B, M = 5, 6, 9
    x0, eps = torch.randn(B, 2, generator=g), torch.randn(B, 2, generator=g)
    k = torch.tensor([0, 1, 2, 3, 4, 4])
    ref = torch.randn(M, 2, generator=g)
    x_t = path_sample(x0, eps, flow_time(k, T))
    x0_bar, eps_bar = flow_stable_target(T, x0, eps, x_t, k, ref)
    for i in range(B):
        t = (k[i].item() + 1) / T
        cands = torch.cat([x0[i:i + 1], ref]).double()
        logw = -((x_t[i].double() - (1 - t) * cands) ** 2).sum(1) / (2 * t**2)
        want = (torch.softmax(logw, 0)[:, None] * cands).sum(0)
        torch.testing.assert_close(x0_bar[i].double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x0_bar[-1], torch.cat([x0[-1:], ref]).mean(0), atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(x_t, path_sample(x0_bar, eps_bar, flow_time(k, T)), atol=1e-5,
                               rtol=1e-5)


def test_a_ddpms_ode_in_the_flows_time_has_the_flows_velocity_for_the_exact_model() -> None:
    """The bridge: the exact DDPM eps field of mixture data, written as a velocity in the
    flow's time (flow_fields.diffusion_velocity), is the flow's exact marginal velocity."""
    mix = GaussianMixture.isotropic([[1.0, 0.5], [-1.0, -0.5]], [0.3, 0.2])
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for t in (0.0, 0.05, 0.3, 0.7, 0.95):
        bridge = diffusion_velocity(mixture_field(mix))(x, t)
        torch.testing.assert_close(bridge, mixture_velocity(mix)(x, t), atol=1e-9, rtol=1e-9)


def test_the_network_velocity_interpolates_between_grid_times() -> None:
    T = 4

    def denoiser(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return x * 0 + k[:, None].float()  # u = k

    field = network_velocity(denoiser, T)
    x = torch.zeros(3, 2)
    assert field(x, 1.0)[0, 0].item() == 3.0  # t_3 = 1
    assert field(x, 0.5)[0, 0].item() == 1.0  # t_1 = 2 / 4
    assert field(x, 0.625)[0, 0].item() == pytest.approx(1.5)  # halfway to t_2
    assert field(x, 0.0)[0, 0].item() == 0.0  # below t_0 = 1 / 4: timestep 0's, held


# --- every flow sampler reaches the mixture ------------------------------------------------

SCALE = math.sqrt(2 + GAUSSIANS8_STD**2)  # gaussians8 standardised, as a run sees it
MIXTURE = GaussianMixture.isotropic(GAUSSIANS8_CENTRES / SCALE, GAUSSIANS8_STD / SCALE)
#: The tolerance each sampler must meet with the exact velocity: its W1 to three draws of
#: the mixture (2,000 points each), averaged, over the real floor, the three draws' W1 to each
#: other, averaged. The exact velocity with these steps gives 1.0-1.3 by the noise's draw.
W1_RATIO = 1.3
REACH = {"euler": 100, "heun": 20}


def _w1(x: np.ndarray, reals: list[np.ndarray]) -> float:
    return float(np.mean([wasserstein(x, r) for r in reals]))


@pytest.fixture(scope="module")
def real() -> tuple[list[np.ndarray], float]:
    g = torch.Generator().manual_seed(0)
    reals = [MIXTURE.sample(2000, g).numpy() for _ in range(3)]
    floor = np.mean([wasserstein(reals[i], reals[j]) for i, j in ((0, 1), (0, 2), (1, 2))])
    return reals, float(floor)


@pytest.mark.parametrize("sampler", ["euler", "heun"])
def test_each_flow_sampler_carries_noise_to_the_mixture(sampler: str, real) -> None:
    data, floor = real
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    K = REACH[sampler]
    *_, (n, x) = step_along(STEPS[sampler], mixture_velocity(MIXTURE), flow_grid(K, "uniform"),
                            x_T, K)
    assert n == 0
    assert _w1(x.numpy(), data) <= W1_RATIO * floor


def test_the_adaptive_ode_carries_noise_to_the_mixture(real) -> None:
    data, floor = real
    x_T = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    out = ode_sample(mixture_velocity(MIXTURE), make_schedule("cosine", 10), x_T.shape,
                     x_T=x_T, span=FLOW_SPAN)
    assert _w1(out.x0.double().numpy(), data) <= W1_RATIO * floor


# --- finite at every step count ---------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("objective", ["flow", "ddpm"])
def test_every_flow_sampler_is_finite_at_every_step_count(sampler: str, objective: str) -> None:
    """Through the registry, K = 1..T on both grids, on a flow and on a DDPM (whose
    probability-flow ODE the flow samplers step in the flow's time), with a network whose
    output is large and varies with t."""
    T = 12
    schedule = make_schedule("cosine", T)

    def denoiser(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return 3 * torch.sin(x + k[:, None].float())

    assert objective in SAMPLERS[sampler].objectives
    for spacing in ("uniform", "shifted"):
        for K in range(1, T + 1):
            chain = list(reverse_chain(denoiser, schedule, (16, 2), SamplerSpec(sampler, K,
                                                                                spacing),
                                       prediction="v", variance="fixed_small",
                                       generator=torch.Generator().manual_seed(K),
                                       objective=objective))
            assert len(chain) == K + 1 and chain[0][0] == T and chain[-1][0] == 0
            assert all(torch.isfinite(x).all() for _, x in chain), (spacing, K)


def test_the_grids_run_from_the_noise_to_the_data() -> None:
    u = flow_grid(4, "uniform")
    np.testing.assert_allclose(u, [1, 0.75, 0.5, 0.25, 0])
    s = flow_grid(4, "shifted")
    assert s[0] == 1 and s[-1] == 0 and np.all(np.diff(s) < 0)
    # Esser et al. 2024, Eq. 23 with shift 3: t = 0.5 -> 1.5 / 2 = 0.75
    assert s[2] == pytest.approx(0.75)
