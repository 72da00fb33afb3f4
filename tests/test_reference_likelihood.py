"""ddpmlab against improved-diffusion's and the official DPM-Solver's own code.

The numbers in tests/data/improved_ref.npz were made by tests/data/make_improved_ref.py with
openai/improved-diffusion and LuChengTHU/dpm-solver at the commits its ``__meta_json__``
records, on closed-form networks that the script defines and these tests import.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpmlab.diffusion import q_sample
from ddpmlab.likelihood import hybrid_loss, nll_bound, vlb_term
from ddpmlab.samplers.dpm_solver import dpm_solver_chain
from ddpmlab.samplers.spacing import timesteps
from ddpmlab.schedules import make_schedule

DATA = Path(__file__).parent / "data"
_spec = importlib.util.spec_from_file_location("make_improved_ref", DATA / "make_improved_ref.py")
assert _spec is not None and _spec.loader is not None
ref_script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref_script)
REF = np.load(DATA / "improved_ref.npz")
META = json.loads(str(REF["__meta_json__"]))
SCHEDULES = ("linear", "cosine")


def test_the_reference_records_its_commits_and_tolerances() -> None:
    assert META["improved-diffusion"].startswith("openai/improved-diffusion@1bc7bbb")
    assert META["dpm-solver"].startswith("LuChengTHU/dpm-solver@52bc3fb")
    assert META["tolerances"] == {"hybrid": 1e-5, "bound_bits_per_dim": 1e-4,
                                  "dpm_solver": 1e-4}


def _network(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return ref_script.bound_network(x_t, t, META["T_small"])


@pytest.mark.parametrize("name", SCHEDULES)
def test_hybrid_loss_on_images_matches_improved_diffusion_at_t_0(name: str) -> None:
    key = f"hybrid__{name}__"
    s = make_schedule(name, META["T_small"])
    np.testing.assert_allclose(s.alpha_bar64, REF[key + "alpha_bar"], rtol=1e-12)
    x0, t, noise = (torch.from_numpy(REF[key + q]) for q in ("x0", "t", "noise"))
    x_t = q_sample(s, x0, t, noise)
    np.testing.assert_allclose(x_t.numpy(), REF[key + "x_t"], atol=1e-6)
    # improved-diffusion's vb is the sampled term in bits per dimension times T / 1000
    their_vb = REF[key + "vb"] / (s.T / 1000)
    dims = x0[0].numel() * math.log(2)
    with torch.no_grad():
        ours = vlb_term(s, x0, x_t, t, _network(x_t, t), variance="learned_range",
                        decoder="discretized", levels=256) / dims
        density = vlb_term(s, x0, x_t, t, _network(x_t, t), variance="learned_range") / dims
    assert (t == 0).sum() == 3
    np.testing.assert_allclose(ours.numpy(), their_vb, atol=1e-5, rtol=0)
    # the Gaussian density at t = 0 is another quantity: about log2(127.5) = 7 bits/dim off
    gap = (their_vb - density.numpy())[t.numpy() == 0]
    assert np.all(np.abs(gap) > 3), gap
    np.testing.assert_allclose(density.numpy()[t.numpy() > 0], their_vb[t.numpy() > 0],
                               atol=1e-5, rtol=0)
    # the whole loss: their mean of mse + vb, ours with the images' decoder
    loss = hybrid_loss(s, _network, x0, drawn=(t, noise, x_t), decoder="discretized",
                       levels=256)
    assert loss.item() == pytest.approx(float(REF[key + "loss"].mean()), abs=1e-5)


@pytest.mark.parametrize("name", SCHEDULES)
def test_image_bound_matches_calc_bpd_loop_with_and_without_clipping(name: str) -> None:
    key = f"bound__{name}__"
    s = make_schedule(name, META["T_small"])
    x0 = torch.from_numpy(REF[f"hybrid__{name}__x0"])
    # the noise calc_bpd_loop was given is what nll_bound draws from its generator
    g = torch.Generator().manual_seed(META["bound_seed"])
    drawn = torch.stack([torch.randn(x0.shape, generator=g) for _ in range(s.T)])
    np.testing.assert_array_equal(drawn.numpy(), REF[key + "noise"])
    bounds = {}
    for clip, tag in ((True, "clip"), (False, "noclip")):
        bound = nll_bound(s, _network, x0, variance="learned_range", decoder="discretized",
                          levels=256, clip=clip,
                          generator=torch.Generator().manual_seed(META["bound_seed"]))
        theirs = REF[f"{key}{tag}__total_bpd"].astype(np.float64).mean()
        bounds[tag] = bound.bits_per_dim
        # per term: their (B, T) bits per dimension (t ascending after reversal) in nats
        their_terms = REF[f"{key}{tag}__vb"].astype(np.float64)[:, ::-1].mean(0)
        np.testing.assert_allclose(bound.terms / (bound.dims * math.log(2)), their_terms,
                                   rtol=2e-6, atol=1e-5)
        # unclipped, this network's cosine bound is 384 bits/dim: float32's 1e-6 relative
        assert bound.bits_per_dim == pytest.approx(theirs, abs=1e-4, rel=0 if clip else 1e-6)
    assert bounds["noclip"] - bounds["clip"] > 1.0  # clipping matters for this network


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("K", [6, 10, 11, 25])
def test_official_logsnr_dpm_solver_matches_dpm_solver_pytorch(name: str, K: int) -> None:
    key = f"dpm__{name}__K{K}__"
    s = make_schedule(name, META["T_solver"])
    t, _ = timesteps(s.T, K, "logsnr_official", s.alpha_bar64)
    np.testing.assert_array_equal(t, REF[key + "grid"])
    assert np.abs(t - REF[key + "grid_continuous"]).max() <= 0.5  # the nearest timestep
    assert t[0] == int(REF[f"dpm__{name}__N"]) - 1

    def eps(x: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        return ref_script.solver_eps(x, tt, s.alpha_bar64)

    x_T = torch.from_numpy(REF[key + "x_T"]).float()
    *_, (n, x0) = dpm_solver_chain(eps, s, tuple(x_T.shape), steps=K, spacing="logsnr_official",
                                   x_T=x_T)
    assert n == 0
    np.testing.assert_allclose(x0.double().numpy(), REF[key + "x0"], atol=1e-4, rtol=0)
    # ddpmlab's own logsnr grid is another solver run: it would not match
    *_, (_, own) = dpm_solver_chain(eps, s, tuple(x_T.shape), steps=K, spacing="logsnr",
                                    x_T=x_T)
    assert np.abs(own.double().numpy() - REF[key + "x0"]).max() > 1e-3
