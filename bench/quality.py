"""Quality and wall time of `ddpmlab train` with default settings, beside the real-data floor.

    python bench/quality.py                      # swiss_roll, moons, circles, a far-away CSV
    python bench/quality.py --seeds 0 1 2        # several seeds
    python bench/quality.py --seed-config        # also the source text's configuration

Each run is the real command in a fresh process (`ddpmlab train DATA --out ...`, figures and
GIF included), timed from start to exit. The point-cloud bounds are checked:
1-NNA <= 0.55 and W1 <= 1.3 x its floor (W1 between two independent real samples of the
same size), 2,000 samples, under 60 s. Prints a table; writes bench/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NNA_MAX, W1_RATIO_MAX, SECONDS_MAX = 0.55, 1.3, 60.0


def heart(n: int, rng: np.random.Generator) -> np.ndarray:
    """n i.i.d. points of a heart curve (parameter s uniform) with noise sd 15, centred at
    (50000, -30000) at a scale of ~1000."""
    s = rng.uniform(0, 2 * np.pi, n)
    x = 16 * np.sin(s) ** 3
    y = 13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s)
    return np.stack([x, y], 1) * 60 + rng.normal(0, 15, (n, 2)) + [50_000, -30_000]


def far_away_csv(path: Path, n: int = 24_000, seed: int = 0) -> Path:
    """:func:`heart` as a file: a user file of some other shape, far from the origin at a
    large scale."""
    pts = heart(n, np.random.default_rng(seed))
    np.savetxt(path, pts, delimiter=",", header="x,y", comments="", fmt="%.4f")
    return path


def train(data: str, out: Path, extra: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", "train", data, "--out",
                           str(out), "--quiet", *extra], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"train {data} failed:\n{proc.stderr}")
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    return {"seconds": seconds, "1nna": m["1nna"]["value"], "1nna_floor": m["1nna"]["floor"],
            "w1": m["w1"]["value"], "w1_floor": m["w1"]["floor"], "w1_ratio": m["w1"]["ratio"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--data", nargs="*", default=["swiss_roll", "moons", "circles", "heart.csv"])
    p.add_argument("--seed-config", action="store_true",
                   help="also train --config seed (the source text's setup, ~1 min)")
    p.add_argument("--train-args", default="",
                   help="extra flags for every default-settings run, e.g. '--batch-size 256'")
    p.add_argument("--out", default="quality.json", help="file name under bench/results")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        jobs = [(d, args.train_args.split()) for d in args.data]
        if args.seed_config:
            jobs.append(("swiss_roll", ["--config", "seed"]))
        for data, extra in jobs:
            source = str(far_away_csv(tmp_path / data)) if data.endswith(".csv") else data
            label = "seed.toml" if "--config" in extra else data
            for seed in args.seeds:
                r = train(source, tmp_path / f"{label}-{seed}", [*extra, "--seed", str(seed)])
                r |= {"data": label, "seed": seed,
                      "pass": bool(r["1nna"] <= NNA_MAX and r["w1_ratio"] <= W1_RATIO_MAX
                                   and r["seconds"] <= SECONDS_MAX)}
                rows.append(r)
                print(f"{label:12s} seed {seed}: {r['seconds']:5.1f} s  1-NNA {r['1nna']:.3f} "
                      f"(floor {r['1nna_floor']:.3f})  W1 {r['w1']:.4g} = {r['w1_ratio']:.2f} x "
                      f"floor {r['w1_floor']:.4g}  {'pass' if r['pass'] else 'FAIL'}",
                      flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / args.out).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"bounds: 1-NNA <= {NNA_MAX}, W1 <= {W1_RATIO_MAX} x floor, <= {SECONDS_MAX:.0f} s; "
          f"{sum(r['pass'] for r in rows)}/{len(rows)} pass")


if __name__ == "__main__":
    main()
