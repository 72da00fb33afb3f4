"""Few-step sampling on digits beside DDPM's Fréchet distance (the few-step table's images part).

    python bench/image_few_steps.py                  # `ddpmlab train digits`, seeds 0 1 2
    python bench/image_few_steps.py --run RUN        # a digits run already trained
    python bench/image_few_steps.py --seeds 0 --train-args "--prediction v" --out OUT.json

The run is `ddpmlab train digits` with default settings (the real command, in a fresh
process, no evaluation, no figures). Each cell is `ddpmlab.score`: the 1,000 samples
and the held-out real sets and floors `ddpmlab evaluate` uses, at the sampler's default
spacing. Printed and written to bench/results/image_few_steps.json: the feature Fréchet
distance beside its floor, the confident share (real images' beside it), 1-NNA in the
classifier's feature space, and the seconds each cell took to sample and score.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import ddpmlab
from ddpmlab import feedback

ROOT = Path(__file__).resolve().parents[1]
CELLS = [("ddpm", None), ("ddim", None), ("ddim", 50), ("ddim", 20), ("ddim", 10),
         ("dpm_solver", 50), ("dpm_solver", 20), ("dpm_solver", 10)]
SHOWN = ("fd", "confident", "1nna")


def train(out: Path, seed: int, extra: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", "train", "digits", "--out",
                           str(out), "--seed", str(seed), "--quiet", "--no-eval",
                           "--no-figures", *extra], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"train digits failed:\n{proc.stderr}")


def cells(path: Path) -> dict[str, dict[str, Any]]:
    run = ddpmlab.open_run(path)
    out = {}
    for sampler, k in CELLS:
        start = time.perf_counter()
        m = ddpmlab.score(run, sampler=ddpmlab.SamplerSpec(sampler, k)).metrics
        row: dict[str, Any] = {"spacing": run.spacing(sampler) if k else None}
        row |= {name: m[name]["value"] for name in SHOWN}
        row |= {"fd_floor": m["fd"]["floor"], "fd_ratio": m["fd"]["ratio"],
                "confident_real": m["confident"]["floor"],
                "seconds": time.perf_counter() - start}
        key = f"{sampler}@{k or 'all'}"
        out[key] = row
        print(f"{key:<16} FD {row['fd']:.3f} ({row['fd_ratio']:.2f} x floor)  confident "
              f"{row['confident']:.3f} (real {row['confident_real']:.3f})  1-NNA "
              f"{row['1nna']:.3f}  {row['seconds']:.1f} s", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, help="a trained digits run (default: train one a seed)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--train-args", default="", help="extra flags for every training run")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" /
                   "image_few_steps.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, feedback.shown(False):
        for seed in [None] if args.run else args.seeds:
            run = args.run
            if run is None:
                run = Path(tmp) / f"digits_{seed}"
                start = time.perf_counter()
                train(run, seed, shlex.split(args.train_args))
                print(f"trained digits (seed {seed}) in {time.perf_counter() - start:.0f} s",
                      flush=True)
            rows.append({"data": "digits", "seed": seed, "cells": cells(run)})
    args.out.write_text(json.dumps({"threads": args.threads, "train_args": args.train_args,
                                    "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
