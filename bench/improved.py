"""Improved DDPM, measured: the bound against an exact likelihood, learned vs fixed variance,
DDIM with few steps against DDPM with all of them.

    python bench/improved.py                 # all three parts (about 5 minutes)
    python bench/improved.py --parts gaussian

1. gaussian: 2-D Gaussian data (mu = (0.5, -0.25), std = (0.3, 0.6)) and its exact model: the
   exact eps and the exact reverse variance (written as a learned_range output), and the same
   eps with the fixed variances. The bound (nats/dim) beside the true NLL of the same points,
   for several T (cosine schedule).
2. swiss: `ddpmlab train swiss_roll` defaults with --variance fixed_small and learned_range
   (same seed, same steps): the bound on 2,000 held-out points.
3. ddim: on those runs, 1-NNA of DDIM (eta 0) with 20 steps and of DDPM with all steps
   (mean of 3 draws, as `ddpmlab evaluate`).

Prints tables; writes bench/results/improved.json.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
import warnings
from pathlib import Path

import torch

import ddpmlab
from ddpmlab.config import RunConfig, replace
from ddpmlab.likelihood import nll_bound
from ddpmlab.schedules import make_schedule

ROOT = Path(__file__).resolve().parents[1]
MU, STD = torch.tensor([0.5, -0.25]), torch.tensor([0.3, 0.6])


def exact_model(schedule, exact_variance: bool):
    """eps*(x_t, t) of N(MU, diag STD^2) and, optionally, the exact reverse variance as v."""
    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = schedule.alpha_bar[t][:, None]
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * MU) / (ab * STD**2 + 1 - ab)
        if not exact_variance:
            return eps
        var_x0 = STD**2 * (1 - ab) / (ab * STD**2 + 1 - ab)  # Var[x_0 | x_t]
        var = (schedule.posterior_variance[t][:, None]
               + schedule.posterior_mean_coef_x0[t][:, None] ** 2 * var_x0)
        lo, hi = schedule.posterior_log_variance[t][:, None], schedule.beta[t].log()[:, None]
        return torch.cat([eps, 2 * (var.log() - lo) / (hi - lo) - 1], 1)  # N&D Eq. 15 inverted
    return model


def gaussian(n: int = 30_000) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x0 = (MU.double() + STD.double() * torch.randn(n, 2, generator=g, dtype=torch.float64))
    true = float((0.5 * math.log(2 * math.pi) + STD.double().log()
                  + 0.5 * ((x0 - MU.double()) / STD.double()) ** 2).sum(1).mean()) / 2
    x0 = x0.float()
    rows = []
    print(f"Gaussian data, {n} points, true NLL {true:.4f} nats/dim (cosine schedule)")
    print(f"{'T':>6}{'exact variance':>16}{'fixed_small':>14}{'fixed_large':>14}   (bound - true)")
    for T in (50, 100, 200, 500, 1000, 2000):
        s = make_schedule("cosine", T)
        row = {"T": T, "true": true}
        for name, variance, exact in (("exact", "learned_range", True),
                                      ("fixed_small", "fixed_small", False),
                                      ("fixed_large", "fixed_large", False)):
            b = nll_bound(s, exact_model(s, exact), x0, variance=variance,
                          generator=torch.Generator().manual_seed(1))
            row[name] = b.nats_per_dim
        rows.append(row)
        print(f"{T:>6}{row['exact'] - true:>+16.4f}{row['fixed_small'] - true:>+14.4f}"
              f"{row['fixed_large'] - true:>+14.4f}", flush=True)
    return rows


#: The training settings results/improved.json was measured with (the defaults then).
MEASURED_AT = {"steps": 6000, "batch_size": 512, "lr": 2e-3}


def swiss(seeds: list[int], tmp: Path) -> list[dict]:
    rows = []
    print("\nswiss roll, 6,000 steps at batch 512, bound on 2,000 held-out points "
          "(nats/dim, data units)")
    print(f"{'seed':>5}{'variance':>15}{'bound':>9}{'DDPM all':>10}{'DDIM 20':>9}"
          f"{'1-NNA floor':>12}{'train s':>9}")
    for seed in seeds:
        for variance in ("fixed_small", "learned_range"):
            config = replace(RunConfig(), {"diffusion": {"variance": variance},  # as measured
                                           "train": {"seed": seed, **MEASURED_AT}})
            start = time.perf_counter()
            run = ddpmlab.train_run(config, tmp / f"{variance}-{seed}", progress=False,
                                    figures=False)
            seconds = time.perf_counter() - start
            bound = ddpmlab.run_bound(run)
            ddpm = ddpmlab.score(run).metrics
            ddim = ddpmlab.score(run, sampler=ddpmlab.SamplerSpec("ddim", 20)).metrics
            row = {"seed": seed, "variance": variance, "nats_per_dim": bound["nats_per_dim"],
                   "ddpm_all_1nna": ddpm["1nna"]["value"], "ddim20_1nna": ddim["1nna"]["value"],
                   "1nna_floor": ddpm["1nna"]["floor"], "ddim20_w1_ratio": ddim["w1"]["ratio"],
                   "ddpm_all_w1_ratio": ddpm["w1"]["ratio"], "seconds": seconds}
            rows.append(row)
            print(f"{seed:>5}{variance:>15}{row['nats_per_dim']:>9.4f}{row['ddpm_all_1nna']:>10.3f}"
                  f"{row['ddim20_1nna']:>9.3f}{row['1nna_floor']:>12.3f}{seconds:>9.1f}",
                  flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", default=["gaussian", "swiss"],
                   choices=["gaussian", "swiss"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    out = {}
    if "gaussian" in args.parts:
        out["gaussian"] = gaussian()
    if "swiss" in args.parts:
        with tempfile.TemporaryDirectory() as tmp:
            out["swiss"] = swiss(args.seeds, Path(tmp))
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "improved.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
