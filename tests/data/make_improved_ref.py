"""Reference numbers from improved-diffusion's and the official DPM-Solver's own code.

Writes tests/data/improved_ref.npz, which tests/test_reference_likelihood.py compares ddpmlab
with; neither library is a dependency of ddpmlab, and none of their code is kept here: the
script imports it from checkouts given on the command line.

- ``hybrid__<schedule>__*``: improved-diffusion's ``GaussianDiffusion.training_losses``
  (``LossType.RESCALED_MSE``, ``ModelVarType.LEARNED_RANGE``, eps prediction) on 8-bit images
  at t = 0 and a few t >= 1 with given noise: its ``vb`` (the t = 0 term by
  ``_vb_terms_bpd``'s discretised decoder), ``mse`` and ``loss``, per sample.
- ``bound__<schedule>__*``: its ``calc_bpd_loop`` on the same model and images, with
  ``clip_denoised`` True and False; its q_sample is given the noise ddpmlab's ``nll_bound``
  draws (``noise``: step t's noise is the (t + 1)-th draw of a generator seeded
  ``BOUND_SEED``), so both codes see the same x_t.
- ``dpm__<schedule>__K<k>__*``: ``dpm_solver_pytorch.DPM_Solver.sample`` (DPM-Solver++,
  multistep order 2, ``skip_type='logSNR'``, ``lower_order_final=True``,
  ``denoise_to_zero=True``, ``steps = K - 1``) from a given x_T, on the official logSNR grid
  rounded to the nearest discrete timestep (``grid_continuous``: the official grid before
  rounding, as timestep indices t N - 1; ``grid``: after), the network called at the
  timestep index, as ddpmlab's networks are.

The networks are closed-form functions of (x_t, t) defined below, which the tests import, so
both codes see the same outputs. Everything runs on the CPU; the schedules are
improved-diffusion's ``get_named_beta_schedule``.

Usage: python tests/data/make_improved_ref.py IMPROVED_DIFFUSION_DIR DPM_SOLVER_DIR \
           --improved-commit SHA --dpm-solver-commit SHA
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

TARGET = Path(__file__).with_name("improved_ref.npz")
SCHEDULES = ("linear", "cosine")
T_SMALL = 40  # the hybrid loss and the bound
T_SOLVER = 1000  # the solver: the grid of the published DPM-Solver++ runs
IMAGE_SHAPE = (6, 1, 4, 4)
HYBRID_T = (0, 0, 0, 1, 17, T_SMALL - 1)  # one timestep per image; t = 0 is the point
BOUND_SEED = 7
SOLVER_K = (6, 10, 11, 25)  # ddpmlab's K; the official steps = K - 1 (first order last < 10)
SOLVER_SHAPE = (8, 2)
MU, STD = 0.3, 0.5  # the solver network: the exact eps of N(MU, STD^2) data, perturbed


def images() -> torch.Tensor:
    """(6, 1, 4, 4) float32 8-bit images in [-1, 1], both edge levels included."""
    g = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, IMAGE_SHAPE, generator=g)
    levels[0, 0, 0, :2] = torch.tensor([0, 255])
    levels[1, 0, 1, :2] = torch.tensor([255, 0])
    return (levels.float() * (2.0 / 255) - 1.0).float()


def bound_network(x_t: torch.Tensor, t: torch.Tensor, T: int) -> torch.Tensor:
    """A learned-range network in closed form: (B, C, H, W) -> (B, 2C, H, W), eps then v.

    eps_hat follows x_t too closely at high noise for x0_hat to stay in [-1, 1], so the
    clipped and unclipped bounds differ; v in (-1, 1) moves with x_t and t.
    """
    s = (t.to(x_t.dtype) / T).reshape(-1, *([1] * (x_t.dim() - 1)))
    eps = torch.tanh(1.3 * x_t) * (0.8 + 0.2 * torch.cos(math.pi * s))
    v = torch.tanh(0.7 * x_t - 0.5 + s)
    return torch.cat([eps, v], dim=1)


def solver_eps(x: torch.Tensor, t: torch.Tensor, alpha_bar: np.ndarray) -> torch.Tensor:
    """The exact eps of N(MU, STD^2) data at timestep t (integer index, (B,) or a scalar),
    plus a term that the exact solution does not have, so the solver's order matters."""
    k = t.reshape(-1)[0].round().long().item()
    ab = float(alpha_bar[k])
    exact = math.sqrt(1 - ab) * (x - math.sqrt(ab) * MU) / (ab * STD**2 + 1 - ab)
    return exact + 0.05 * torch.tanh(x) * math.cos(math.pi * k / len(alpha_bar))


def _hybrid_and_bound(gd, name: str, out: dict[str, np.ndarray]) -> None:
    betas = gd.get_named_beta_schedule(name, T_SMALL)
    kw = {"model_mean_type": gd.ModelMeanType.EPSILON,
          "model_var_type": gd.ModelVarType.LEARNED_RANGE,
          "loss_type": gd.LossType.RESCALED_MSE, "rescale_timesteps": False}
    x0 = images()

    def network(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return bound_network(x, t, T_SMALL)

    diffusion = gd.GaussianDiffusion(betas=betas, **kw)
    t = torch.tensor(HYBRID_T)
    noise = torch.randn(IMAGE_SHAPE, generator=torch.Generator().manual_seed(1))
    terms = diffusion.training_losses(network, x0, t, noise=noise)
    key = f"hybrid__{name}__"
    out |= {key + "x0": x0.numpy(), key + "t": t.numpy(), key + "noise": noise.numpy(),
            key + "x_t": diffusion.q_sample(x0, t, noise=noise).numpy(),
            key + "vb": terms["vb"].detach().numpy(), key + "mse": terms["mse"].detach().numpy(),
            key + "loss": terms["loss"].detach().numpy(),
            key + "alpha_bar": diffusion.alphas_cumprod}

    g = torch.Generator().manual_seed(BOUND_SEED)  # ddpmlab's nll_bound: t = 0 first
    noises = [torch.randn(IMAGE_SHAPE, generator=g, dtype=torch.float32) for _ in range(T_SMALL)]

    class RecordedNoise(gd.GaussianDiffusion):
        """calc_bpd_loop with step t's noise given (it draws its own with randn_like)."""

        def q_sample(self, x_start, t, noise=None):
            return super().q_sample(x_start, t, noise=noises[int(t[0])])

    recorded = RecordedNoise(betas=betas, **kw)
    key = f"bound__{name}__"
    out[key + "noise"] = torch.stack(noises).numpy()
    for clip in (True, False):
        with torch.no_grad():
            bpd = recorded.calc_bpd_loop(network, x0, clip_denoised=clip)
        tag = "clip" if clip else "noclip"
        out[f"{key}{tag}__total_bpd"] = bpd["total_bpd"].numpy()
        out[f"{key}{tag}__vb"] = bpd["vb"].numpy()
        out[f"{key}{tag}__prior_bpd"] = bpd["prior_bpd"].numpy()


def _solver(gd, dpm, name: str, out: dict[str, np.ndarray]) -> None:
    betas = torch.tensor(gd.get_named_beta_schedule(name, T_SOLVER), dtype=torch.float64)
    ns = dpm.NoiseScheduleVP("discrete", betas=betas, dtype=torch.float64)
    N = ns.total_N  # T, less the timesteps numerical_clip_alpha drops (cosine)
    alpha_bar = np.cumprod(1.0 - betas.numpy())
    grids: list[torch.Tensor] = []

    class RoundedGrid(dpm.DPM_Solver):
        """The official grid, each time moved to the nearest discrete timestep (k + 1) / N."""

        def get_time_steps(self, skip_type, t_T, t_0, N, device):
            t = super().get_time_steps(skip_type, t_T, t_0, N, device)
            grids.append(t * ns.total_N - 1)
            return (torch.round(t * ns.total_N - 1) + 1) / ns.total_N

    def model_fn(x: torch.Tensor, t_continuous: torch.Tensor) -> torch.Tensor:
        return solver_eps(x, t_continuous * N - 1, alpha_bar)  # the timestep index

    x_T = torch.randn(SOLVER_SHAPE, generator=torch.Generator().manual_seed(2),
                      dtype=torch.float64)
    for K in SOLVER_K:
        grids.clear()
        solver = RoundedGrid(model_fn, ns, algorithm_type="dpmsolver++")
        x0 = solver.sample(x_T.clone(), steps=K - 1, order=2, skip_type="logSNR",
                           method="multistep", lower_order_final=True, denoise_to_zero=True)
        grid = grids[0].numpy()
        rounded = np.round(grid).astype(np.int64)
        # a tie would make the rounding ambiguous, a repeat would need moving
        assert np.abs(np.abs(grid - np.floor(grid)) - 0.5).min() > 1e-6
        assert (np.diff(rounded) < 0).all(), rounded
        key = f"dpm__{name}__K{K}__"
        out |= {key + "x_T": x_T.numpy(), key + "x0": x0.numpy(),
                key + "grid_continuous": grid, key + "grid": rounded}
    out[f"dpm__{name}__N"] = np.array(N)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("improved", type=Path, help="a checkout of openai/improved-diffusion")
    p.add_argument("dpm_solver", type=Path, help="a checkout of LuChengTHU/dpm-solver")
    p.add_argument("--improved-commit", required=True)
    p.add_argument("--dpm-solver-commit", required=True)
    p.add_argument("--out", type=Path, default=TARGET)
    args = p.parse_args(argv)
    sys.path[:0] = [str(args.improved), str(args.dpm_solver)]
    import dpm_solver_pytorch as dpm  # from the checkouts just put first on sys.path
    from improved_diffusion import gaussian_diffusion as gd

    torch.set_default_dtype(torch.float64)  # the official solver's own tensors in float64
    out: dict[str, np.ndarray] = {}
    for name in SCHEDULES:
        _solver(gd, dpm, name, out)
    torch.set_default_dtype(torch.float32)  # improved-diffusion as it trains: float32
    for name in SCHEDULES:
        _hybrid_and_bound(gd, name, out)
    meta = {"improved-diffusion": f"openai/improved-diffusion@{args.improved_commit}",
            "dpm-solver": f"LuChengTHU/dpm-solver@{args.dpm_solver_commit}",
            "torch": torch.__version__, "T_small": T_SMALL, "T_solver": T_SOLVER,
            "hybrid_t": list(HYBRID_T), "bound_seed": BOUND_SEED, "solver_K": list(SOLVER_K),
            "tolerances": {"hybrid": 1e-5, "bound_bits_per_dim": 1e-4, "dpm_solver": 1e-4}}
    np.savez_compressed(args.out, __meta_json__=np.array(json.dumps(meta)), **out)
    print(f"wrote {len(out)} arrays to {args.out}")


if __name__ == "__main__":
    main()
