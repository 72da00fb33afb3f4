"""DPM-Solver++(2M) (Lu et al. 2022) against diffusers' DPMSolverMultistepScheduler, step by
step and over whole recorded loops, and against the exact probability-flow map of a Gaussian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DPMSolverMultistepScheduler
from helpers import MU, STD, dummy, err, final, gaussian_eps

from ddpmlab.samplers import (
    ddim_chain,
    ddim_sample,
    ddim_step,
    dpm_solver_chain,
    dpm_solver_sample,
    timesteps,
)
from ddpmlab.samplers import dpm_solver as dpm
from ddpmlab.schedules import SCHEDULES, make_schedule

torch.set_num_threads(1)

DIFFUSERS_PREDICTION = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def on_grid(monkeypatch: pytest.MonkeyPatch, grid: np.ndarray) -> None:
    """Make the solver visit ``grid`` (diffusers' own timesteps) instead of a spacing's."""
    monkeypatch.setattr(dpm, "timesteps", lambda T, K, spacing, alpha_bar=None: (
        grid.copy(), np.append(grid[1:], -1)))


@pytest.mark.parametrize(("name", "case"), [("linear_unscaled", "linear"),
                                            ("cosine", "squaredcos_cap_v2")])
def test_replays_diffusers_dpmpp2m20_loop(ref, monkeypatch, name, case):
    # diffusers' linspace grid 999, 949, ..., 50 then sigma = 0, the exact eps of the toy
    # Gaussian; each step's error compounds, so this checks all 20 together.
    key = f"toy__dpmpp2m20_{case}__"
    s = make_schedule(name, 1000)
    on_grid(monkeypatch, ref[key + "timesteps"])
    x = final(dpm_solver_chain(gaussian_eps(s.alpha_bar), s, (256, 2), steps=20,
                               x_T=torch.from_numpy(ref["toy__gaussian__x_T"])))
    assert err(x, ref[key + "final"]) <= 1e-3  # README: replayed loops (cosine: 1.0e-4 here)


@pytest.mark.parametrize(("name", "T", "K", "spacing", "prediction"), [
    ("cosine", 200, 20, "linspace", "eps"), ("cosine", 200, 20, "linspace", "v"),
    ("cosine", 200, 16, "trailing", "x0"), ("linear", 1000, 25, "leading", "eps"),
    ("cosine", 200, 7, "linspace", "v"),
])
def test_every_step_matches_diffusers(name, T, K, spacing, prediction):
    # Each step from ddpmlab's own state, diffusers fed the same state and network output
    # on the same grid (set_timesteps(timesteps=...)); its history is the same D's, so every
    # step is compared on its own. Below dpm.LOWER_ORDER_FINAL steps ddpmlab's step into the
    # last visited t is first order, DDIM's step (Lu Eq. 10), where diffusers' is second.
    s = make_schedule(name, T)
    grid, t_prev = timesteps(T, K, spacing)
    ours = list(dpm_solver_chain(dummy, s, (6, 2), steps=K, spacing=spacing,
                                 prediction=prediction,
                                 generator=torch.Generator().manual_seed(1)))
    sched = DPMSolverMultistepScheduler(num_train_timesteps=T, trained_betas=SCHEDULES[name](T),
                                        prediction_type=DIFFUSERS_PREDICTION[prediction])
    sched.set_timesteps(timesteps=grid.tolist())
    assert sched.timesteps.tolist() == grid.tolist()
    lower = K < dpm.LOWER_ORDER_FINAL
    for k, t in enumerate(grid.tolist()):
        x = ours[k][1]
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        want = sched.step(dummy(x, tt), t, x).prev_sample
        if lower and k == K - 2:  # into the last visited t: first order, = DDIM
            want = ddim_step(s, x, t, int(t_prev[k]), dummy(x, tt), prediction=prediction)[0]
        assert ours[k + 1][0] == t_prev[k] + 1
        # diffusers keeps alpha_bar in float32: 2e-5 as the DDIM steps (reference README)
        assert err(ours[k + 1][1], want) <= 2e-5, (k, t)


def exact_flow(s, x_T: torch.Tensor, t0: int) -> torch.Tensor:
    """The probability-flow ODE of N(MU, diag(STD^2)) data from t0 to the data, in closed form:
    each coordinate keeps its standardised value, x_t = sqrt(ab) mu + sqrt(ab std^2 + 1 - ab) z."""
    mu, sd = torch.tensor(MU, dtype=torch.float64), torch.tensor(STD, dtype=torch.float64)
    ab = float(s.alpha_bar64[t0])
    return mu + sd * (x_T.double() - math.sqrt(ab) * mu) / torch.sqrt(ab * sd**2 + 1 - ab)


def test_second_order_converges_faster_than_ddim_to_the_exact_flow():
    s = make_schedule("cosine", 200)
    x_T = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0))
    exact = exact_flow(s, x_T, 199)  # linspace starts at t = T-1 for every K
    gaps = {}
    for K in (40, 80, 200):
        for name, sample in (("ddim", ddim_sample), ("dpm", dpm_solver_sample)):
            x = sample(gaussian_eps(s.alpha_bar), s, (4096, 2), steps=K, spacing="linspace",
                       generator=torch.Generator().manual_seed(0))  # draws x_T, as above
            gaps[name, K] = float((x.double() - exact).abs().mean())
    for K in (40, 80, 200):
        assert gaps["dpm", K] < gaps["ddim", K] / 2, gaps
    # doubling K divides the error by ~4 (second order) against ~2 for DDIM (first order)
    assert gaps["dpm", 40] / gaps["dpm", 80] > 3 and gaps["ddim", 40] / gaps["ddim", 80] < 2.5
    assert gaps["dpm", 200] < 2e-4, gaps


def test_one_step_and_first_steps_are_ddim():
    s = make_schedule("cosine", 50)
    g = dict(generator=torch.Generator().manual_seed(3))
    one = dpm_solver_sample(dummy, s, (8, 2), steps=1, prediction="v", **g)
    g = dict(generator=torch.Generator().manual_seed(3))
    assert torch.equal(one, ddim_sample(dummy, s, (8, 2), steps=1, prediction="v", **g))
    # the first step has no history: Lu Eq. 10, DDIM's step
    a = list(dpm_solver_chain(dummy, s, (8, 2), steps=10,
                              generator=torch.Generator().manual_seed(4)))
    b = list(ddim_chain(dummy, s, (8, 2), steps=10, generator=torch.Generator().manual_seed(4)))
    assert torch.allclose(a[1][1], b[1][1], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(a[2][1], b[2][1])  # then the second-order correction
    assert [n for n, _ in a] == [n for n, _ in b]


def test_clip_keeps_images_in_range():
    s = make_schedule("cosine", 50)

    def wild(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return 40 * torch.ones_like(x)  # an x0 far outside [-1, 1]

    g = torch.Generator().manual_seed(0)
    x = dpm_solver_sample(wild, s, (4, 1, 3, 3), steps=12, prediction="x0", generator=g,
                          clip=True)
    assert x.abs().max() <= 1.0
    g = torch.Generator().manual_seed(0)
    assert dpm_solver_sample(wild, s, (4, 1, 3, 3), steps=12, prediction="x0",
                             generator=g).abs().max() > 30
