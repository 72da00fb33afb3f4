"""Few-step sampling against DDPM with all steps, on trained point runs (the few-step table).

    python bench/few_steps.py                       # 4 data sets x 3 seeds, default training
    python bench/few_steps.py --train-args "--steps 8000"

Each run is `ddpmlab train DATA --seed S` with default settings (the real command, in a fresh
process, no figures); each cell is `ddpmlab.score` with 3 draws of 2,000 samples against
the held-out sets and floors `evaluate` uses. Rows are merged into the results file by
(data, seed), so a table can be made in parts (`--data moons --seeds 1`). The bounds
checked: DDIM (eta 0) and DPM-Solver++ at 20 steps within 0.02 1-NNA and 1.15 x the W1 of
DDPM with all steps, and DDIM with all steps within 0.02 1-NNA of DDPM. Writes
bench/results/few_steps.json. The sweep over K = 1..T is the CLI's (`ddpmlab sweep RUN
--steps $(seq 1 200)`, bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import ddpmlab
from ddpmlab import feedback

sys.path.insert(0, str(Path(__file__).parent))
from quality import far_away_csv

ROOT = Path(__file__).resolve().parents[1]
CELLS = [("ddpm", None), ("ddim", None), ("ddim", 20), ("dpm_solver", 20), ("ddim", 10),
         ("dpm_solver", 10)]
NNA_GAP, W1_RATIO = 0.02, 1.15


def train(data: str, out: Path, seed: int, extra: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", "train", data, "--out",
                           str(out), "--seed", str(seed), "--quiet", "--no-eval",
                           "--no-figures", *extra], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"train {data} failed:\n{proc.stderr}")


def trained_runs(tmp: Path, datas: list[str], seeds: list[int], extra: list[str]):
    """Train each (data, seed) of the table in tmp (heart.csv written there); yield
    (data, seed, run directory)."""
    csv = str(far_away_csv(tmp / "heart.csv"))
    for data in datas:
        for seed in seeds:
            run = tmp / f"{Path(data).stem}_{seed}"
            train(csv if data == "heart.csv" else data, run, seed, extra)
            yield data, seed, run


def save(out: Path, train_args: str, rows: list[dict]) -> list[dict]:
    """Write rows to out, keeping rows of other (data, seed) pairs already there if they were
    made at the same train_args; return all rows written."""
    old = json.loads(out.read_text()) if out.exists() else {}
    if old.get("train_args") == train_args:
        done = {(r["data"], r["seed"]) for r in rows}
        rows = [r for r in old["rows"] if (r["data"], r["seed"]) not in done] + rows
    out.write_text(json.dumps({"train_args": train_args, "rows": rows}, indent=1))
    return rows


def cells(path: Path) -> dict[str, dict[str, float]]:
    run = ddpmlab.open_run(path)
    out = {}
    for sampler, k in CELLS:
        m = ddpmlab.score(run, sampler=ddpmlab.SamplerSpec(sampler, k)).metrics
        out[f"{sampler}@{k or 'all'}"] = {"1nna": m["1nna"]["value"], "w1": m["w1"]["value"],
                                          "w1_ratio": m["w1"]["ratio"]}
    return out


def verdict(row: dict[str, dict[str, float]]) -> dict[str, bool]:
    base = row["ddpm@all"]
    close = {f"{s}@20": row[f"{s}@20"]["1nna"] - base["1nna"] <= NNA_GAP
             and row[f"{s}@20"]["w1"] <= W1_RATIO * base["w1"] for s in ("ddim", "dpm_solver")}
    return close | {"ddim@all": row["ddim@all"]["1nna"] - base["1nna"] <= NNA_GAP}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", nargs="*", default=["swiss_roll", "moons", "circles", "heart.csv"])
    p.add_argument("--train-args", default="", help="extra flags for every training run")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "few_steps.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    extra = shlex.split(args.train_args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, feedback.shown(False):
        for data, seed, run in trained_runs(Path(tmp), args.data, args.seeds, extra):
            row = {"data": data, "seed": seed, "cells": cells(run)}
            row["pass"] = verdict(row["cells"])
            rows.append(row)
            print(f"{data:<11}{seed:>2}  " + "  ".join(
                f"{k} {v['1nna']:.3f}/{v['w1_ratio']:.2f}" for k, v in row["cells"].items())
                + f"  pass {row['pass']}", flush=True)
    rows = save(args.out, args.train_args, rows)
    n = len(rows)
    for key in ("ddim@20", "dpm_solver@20", "ddim@all"):
        print(f"{key}: {sum(r['pass'][key] for r in rows)}/{n} within the bound")


if __name__ == "__main__":
    main()
