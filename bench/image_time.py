"""Time to quality on images: `ddpmlab train digits` and `ddpmlab train mnist` with today's
defaults beside the previous ones, in one run of the benchmark.

    python bench/image_time.py mnist --seeds 0 1 2 --old 0     # the old defaults at seed 0
    python bench/image_time.py digits --seeds 0 1 2 --old 0 1 2
    python bench/image_time.py --report

Each row is the real command, `ddpmlab train DATA --seed S --out RUN` (the previous defaults
through `--config` a file of them), timed from start to exit: training, the evaluation of
1,000 samples against the held-out images and every figure and the GIF. Quality is read from
the run's metrics.json: FD / floor (1 is as close as two sets of real images) and the share
of samples the shipped classifier names with confidence, beside real images' share. Run it on
an idle machine; rows merge into bench/results/image_time.json by (data, defaults, seed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ddpmlab.runs.evaluation import read_evaluation

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "image_time.json"
#: the defaults before bfloat16 autocast and the class, as a --config file of each data set
PREVIOUS = {"digits": '[model]\nconditional = false\n[train]\nprecision = "fp32"\nsteps = 1500\n',
            "mnist": '[diffusion]\nmin_snr_gamma = 0.0\n[model]\nconditional = false\n'
                     '[model.unet]\nmiddle_attention = false\n'
                     '[train]\nprecision = "fp32"\nsteps = 4000\nema_decay = 0.995\n'}


def load() -> str:
    return "load average {:.2f}, {:.2f}, {:.2f} on {} cores".format(*os.getloadavg(),
                                                                    os.cpu_count())


def measure(data: str, seed: int, old: bool, tmp: Path) -> dict:
    out = tmp / f"{data}_{seed}_{'old' if old else 'new'}"
    flags = []
    if old:
        config = tmp / f"{data}_previous.toml"
        config.write_text(PREVIOUS[data])
        flags = ["--config", str(config)]
    row = {"data": data, "defaults": "previous" if old else "today's", "seed": seed,
           "load_before": load()}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", "train", data, "--seed",
                           str(seed), "--out", str(out), "--quiet", *flags],
                          capture_output=True, text=True)
    row["wall_s"] = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"train {data} failed:\n{proc.stderr}")
    row["load_after"] = load()
    m = read_evaluation(out).metrics
    row |= {"fd_ratio": m["fd"]["ratio"], "confident": m["confident"]["value"],
            "confident_real": m["confident"]["floor"], "class_tv": m["class_tv"]["value"],
            "memorised": m["memorised"]["value"]}
    return row


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


def tables(rows: list[dict]) -> list[dict]:
    out = []
    for data in dict.fromkeys(r["data"] for r in rows):
        body = []
        for defaults in dict.fromkeys(["previous", *(r["defaults"] for r in rows), "today's"]):
            mine = [r for r in rows if r["data"] == data and r["defaults"] == defaults]
            for r in sorted(mine, key=lambda r: r["seed"]):
                body.append([defaults, r["seed"], minutes(r["wall_s"]), round(r["fd_ratio"], 2),
                             f"{r['confident']:.3f} ({r['confident_real']:.3f})",
                             round(r["class_tv"], 3)])
            if len(mine) > 1:
                body.append([defaults, "mean", minutes(np.mean([r["wall_s"] for r in mine])),
                             round(float(np.mean([r["fd_ratio"] for r in mine])), 2),
                             f"{np.mean([r['confident'] for r in mine]):.3f}", ""])
        out.append({
            "title": f"`ddpmlab train {data}`: today's defaults beside the previous ones",
            "command": f"python bench/image_time.py {data} ...",
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU; torch "
                       f"{torch.__version__}",
            "date": datetime.date.today().isoformat(),
            "load": "; ".join(sorted({r["load_before"] for r in rows if r["data"] == data})),
            "columns": ["defaults", "seed", "wall time", "FD / floor",
                        "confident (real images)", "class TV"],
            "rows": body,
            "note": " ".join([
                "Wall time of the whole command: training, the evaluation of 1,000 samples "
                "and every figure and the GIF. Previous defaults: unconditional, float32 "
                "(`--no-conditional --precision fp32`; digits at 1,500 steps; MNIST at 4,000 "
                "without the Min-SNR weight, middle attention or the EMA decay of 0.999), "
                "the same settings otherwise. The bf16 rows are the previous defaults under "
                "bfloat16 autocast (digits at 1,500 and 2,000 steps).",
                *(r["note"] for r in rows if r["data"] == data and r.get("note"))]),
        })
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", choices=sorted(PREVIOUS))
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--old", type=int, nargs="*", default=[0],
                   help="seeds of the previous defaults' rows")
    p.add_argument("--report", action="store_true")
    args = p.parse_args()
    rows = json.loads(OUT.read_text())["rows"] if OUT.exists() else []
    if not args.report:
        with tempfile.TemporaryDirectory() as tmp:
            jobs = [(s, True) for s in args.old] + [(s, False) for s in args.seeds]
            for seed, old in jobs:
                row = measure(args.data, seed, old, Path(tmp))
                rows = [r for r in rows if (r["data"], r["defaults"], r["seed"])
                        != (row["data"], row["defaults"], row["seed"])] + [row]
                OUT.write_text(json.dumps({"rows": rows, "tables": tables(rows)}, indent=1))
                print(f"{row['data']} {row['defaults']} seed {seed}: {minutes(row['wall_s'])}, "
                      f"FD/floor {row['fd_ratio']:.2f}, confident {row['confident']:.3f} "
                      f"({row['confident_real']:.3f})", flush=True)
    for t in tables(rows):
        print(f"\n{t['title']}\n" + " | ".join(t["columns"]))
        for r in t["rows"]:
            print(" | ".join(str(v) for v in r))


if __name__ == "__main__":
    main()
