"""The few-step table's W1 bound against fresh exact data instead of two held-out sets.

    python bench/exact_reference.py                          # 4 data sets x 3 seeds, 12 draws
    python bench/exact_reference.py --data heart.csv --seeds 1 --draws 24
    python bench/exact_reference.py --sweep          # swiss roll seed 0, K = 20..200

`ddpmlab evaluate` (and bench/few_steps.py) scores 3 draws of 2,000 samples against the
run's held-out sets: two of 2,000 (the built-ins hold out 4,000 points, heart.csv a fifth of
its 24,000 rows), so the floor is one pair of sets, shared by every draw. One draw's W1 has an
sd of 14-20 % of its value (heart.csv 38 %: on a long, thin curve W1 pays for the chance
imbalance of mass along it).
Every data set of the table comes from a known law: the built-ins from their generators
(`ddpmlab.data.toy2d`), heart.csv from its formula (`quality.heart`). This script uses
that. Draw i of every sampler is scored against its own fresh exact set E_i of 2,000 points,
and the floor is a second fresh set F_i against E_i. Each sampler's mean W1 and 1-NNA over D
draws come beside the floor's, and the W1 ratio to DDPM with all steps gets a 90 % paired
bootstrap interval over the draws. The runs are trained as bench/few_steps.py trains them
(the same command and seeds, so the same models). Writes bench/results/exact_reference.json;
``--sweep`` scores DDIM and DPM-Solver++ at K = 20..200 on the default swiss-roll run (the
sweep's bound there: W1 at most 1.3 x DDPM's for K >= 20), into exact_reference_sweep.json.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import ddpmlab
from ddpmlab import feedback
from ddpmlab.data import toy2d
from ddpmlab.metrics.points import one_nn_accuracy, wasserstein

sys.path.insert(0, str(Path(__file__).parent))
from few_steps import save, trained_runs
from quality import heart

ROOT = Path(__file__).resolve().parents[1]
CELLS = [("ddpm", None), ("ddim", None), ("ddim", 20), ("dpm_solver", 20)]
SWEEP = [("ddpm", None)] + [(s, k) for s in ("ddim", "dpm_solver")
                            for k in (20, 25, 30, 40, 50, 70, 100, 150, 199, 200)]
N = 2000
W1_RATIO = 1.15


def law(data: str):
    """n i.i.d. points of DATA's law. scikit-learn's moons and circles are not i.i.d.: they
    space the points evenly along the curve (then add noise), and two such sets match far
    better than two independent samples (a floor far too low). n of 64 n of them, drawn without
    replacement, are i.i.d. from the curve's law up to a finite-population factor of 63/64."""
    if data == "heart.csv":
        return heart
    gen = getattr(toy2d, data)

    def draw(n: int, rng: np.random.Generator) -> np.ndarray:
        return gen(64 * n, rng)[rng.choice(64 * n, n, replace=False)]
    return draw


def measure(path: Path, data: str, draws: int, cells: list) -> dict:
    run, draw = ddpmlab.open_run(path), law(data)
    # E_i and F_i from their own streams, the same for every run of a data set
    E = [draw(N, np.random.default_rng([1, i])) for i in range(draws)]
    F = [draw(N, np.random.default_rng([2, i])) for i in range(draws)]
    w1 = {"floor": [wasserstein(f, e) for f, e in zip(F, E, strict=True)]}
    nna = {"floor": [one_nn_accuracy(f, e) for f, e in zip(F, E, strict=True)]}
    for sampler, k in cells:
        key = f"{sampler}@{k or 'all'}"
        xs = [run.sample(N, i, ddpmlab.SamplerSpec(sampler, k)) for i in range(draws)]
        w1[key] = [wasserstein(x, e) for x, e in zip(xs, E, strict=True)]
        nna[key] = [one_nn_accuracy(x, e) for x, e in zip(xs, E, strict=True)]
    rng = np.random.default_rng(0)
    boot = rng.integers(0, draws, (10_000, draws))  # the same resampled draws for every cell
    base = np.array(w1["ddpm@all"])
    out = {}
    for key, values in w1.items():
        v = np.array(values)
        ratio = v[boot].mean(1) / base[boot].mean(1)
        out[key] = {"w1": v.mean(), "w1_sd": v.std(ddof=1), "w1_floor_ratio": v.mean() /
                    np.mean(w1["floor"]), "1nna": float(np.mean(nna[key])),
                    "w1_ratio_ddpm": v.mean() / base.mean(),
                    "w1_ratio_ddpm_90": [float(np.quantile(ratio, 0.05)),
                                         float(np.quantile(ratio, 0.95))]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", nargs="*", default=["swiss_roll", "moons", "circles", "heart.csv"])
    p.add_argument("--draws", type=int, default=12)
    p.add_argument("--train-args", default="", help="extra flags for every training run")
    p.add_argument("--sweep", action="store_true", help="K = 20..200 on swiss roll, seed 0")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.sweep:
        args.data, args.seeds = ["swiss_roll"], [0]
    args.out = args.out or ROOT / "bench" / "results" / (
        "exact_reference_sweep.json" if args.sweep else "exact_reference.json")
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, feedback.shown(False):
        for data, seed, run in trained_runs(Path(tmp), args.data, args.seeds,
                                            shlex.split(args.train_args)):
            cells = measure(run, data, args.draws, SWEEP if args.sweep else CELLS)
            rows.append({"data": data, "seed": seed, "draws": args.draws, "cells": cells})
            print(f"{data:<11}{seed:>2}  " + "  ".join(
                f"{k} {c['1nna']:.3f}/{c['w1_floor_ratio']:.2f}"
                + ("" if k in ("floor", "ddpm@all") else
                   " [{:.2f}, {:.2f}]".format(*c["w1_ratio_ddpm_90"]))
                for k, c in cells.items()), flush=True)
    rows = save(args.out, args.train_args, rows)
    for key in () if args.sweep else ("ddim@all", "ddim@20", "dpm_solver@20"):
        inside = sum(r["cells"][key]["w1_ratio_ddpm"] <= W1_RATIO for r in rows)
        print(f"{key}: W1 within {W1_RATIO} x DDPM's on {inside}/{len(rows)} runs")


if __name__ == "__main__":
    main()
