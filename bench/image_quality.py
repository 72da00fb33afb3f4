"""Quality and wall time of `ddpmlab train digits` (and mnist) with default settings.

    python bench/image_quality.py                    # digits: unet, and seed_unet at equal time
    python bench/image_quality.py --data mnist --no-seed-unet
    python bench/image_quality.py --seeds 0 1 2

Each run is the real command in a fresh process (`ddpmlab train DATA --out ...`: training,
evaluation on 1,000 samples, every figure and the GIF), timed from start to exit. The
source text's U-Net (`--model seed_unet`) is given as many steps as fit in the time the
default U-Net's training took (from a probe of both networks' step time on this machine).
The image bounds are checked: confident share within 0.05 of real images'
(0.1 for MNIST), class histogram of the 1,000 samples within 0.05 total variation of the
real one, feature Fréchet distance at most 1.5 x its floor (3 x for MNIST), at most 1 %
memorised, at most 3 minutes for digits (30 for MNIST). Writes
bench/results/image_quality.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ddpmlab.config import merge
from ddpmlab.modalities import default_config
from ddpmlab.runs.evaluation import read_evaluation
from ddpmlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
BOUNDS = {  # data -> (confident gap, class TV, FD / floor, memorised, seconds)
    "digits": (0.05, 0.05, 1.5, 0.01, 180.0),
    "mnist": (0.10, 0.05, 3.0, 0.01, 1800.0),
}
SEED_UNET = {"model": {"name": "seed_unet"}}


def step_seconds(data: str, over: dict, probe: int = 30) -> float:
    """Seconds per training step of ``default_config(data, over)`` (median of a probe)."""
    from ddpmlab.modalities import modality_for
    # the networks' step without a class (a class adds one embedding row a block)
    config = default_config(data, merge(over, {"model": {"conditional": False}}))
    torch.set_num_threads(config.train.threads)
    x = torch.from_numpy(modality_for(data).prepare(config).model_input())
    trainer = Trainer(config, x)
    times = []
    for _ in range(probe):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    return sorted(times[5:])[len(times[5:]) // 2]


def train(data: str, out: Path, extra: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", "train", data, "--out",
                           str(out), "--quiet", *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"train {data} failed:\n{proc.stderr}")
    m = read_evaluation(out).metrics
    row = {"seconds": seconds, "steps": json.loads((out / "config.json").read_text())
           ["train"]["steps"]}
    for name in ("fd", "confident", "class_tv", "class_tv_all", "memorised", "1nna",
                 "precision", "recall"):
        row[name], row[f"{name}_floor"] = m[name]["value"], m[name]["floor"]
    row["fd_ratio"] = m["fd"]["ratio"]
    return row


def passes(data: str, r: dict) -> bool:
    gap, tv, fd, memo, seconds = BOUNDS[data]
    return bool(abs(r["confident"] - r["confident_floor"]) <= gap and r["class_tv_all"] <= tv
                and r["fd_ratio"] <= fd and r["memorised"] <= memo and r["seconds"] <= seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits", choices=list(BOUNDS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--no-seed-unet", action="store_true", help="the default U-Net only")
    p.add_argument("--out", default="image_quality.json", help="file name under bench/results")
    args = p.parse_args()
    jobs = [("unet", [])]
    if not args.no_seed_unet:
        unet_s, seed_s = step_seconds(args.data, {}), step_seconds(args.data, SEED_UNET)
        steps = round(default_config(args.data).train.steps * unet_s / seed_s)
        print(f"step time: unet {unet_s * 1e3:.1f} ms, seed_unet {seed_s * 1e3:.1f} ms -> "
              f"seed_unet gets {steps} steps", flush=True)
        jobs.append(("seed_unet", ["--model", "seed_unet", "--steps", str(steps)]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, extra in jobs:
            for seed in args.seeds:
                r = train(args.data, Path(tmp) / f"{model}-{seed}", [*extra, "--seed", str(seed)])
                r |= {"data": args.data, "model": model, "seed": seed,
                      "pass": passes(args.data, r)}
                rows.append(r)
                print(f"{model:10s} seed {seed}: {r['seconds']:6.1f} s, {r['steps']} steps | fd "
                      f"{r['fd']:.2f} = {r['fd_ratio']:.2f} x floor | confident "
                      f"{r['confident']:.3f} (real {r['confident_floor']:.3f}) | class TV of "
                      f"1,000 {r['class_tv_all']:.3f} (floor {r['class_tv_all_floor']:.3f}) | "
                      f"memorised {r['memorised']:.3f} | 1-NNA {r['1nna']:.3f} (floor "
                      f"{r['1nna_floor']:.3f}) | {'pass' if r['pass'] else 'FAIL'}", flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"bounds ({args.data}): confident within {BOUNDS[args.data][0]}, class TV <= "
          f"{BOUNDS[args.data][1]}, FD <= {BOUNDS[args.data][2]} x floor, memorised <= "
          f"{BOUNDS[args.data][3]:.0%}, <= {BOUNDS[args.data][4]:.0f} s; "
          f"{sum(r['pass'] for r in rows if r['model'] == 'unet')}/"
          f"{sum(r['model'] == 'unet' for r in rows)} default runs pass")


if __name__ == "__main__":
    main()
