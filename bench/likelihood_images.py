"""The image bound with and without clipping, and the sample quality, of trained digits runs.

    python bench/likelihood_images.py LABEL=RUN [LABEL=RUN ...]

For each run: the variational bound in bits/dim on the evaluation's held-out digits (250
of them; discretised decoder on the 17 levels) with x0_hat clipped to [-1, 1] (``ddpmlab
evaluate RUN --nll``) and without (``--unclipped-bound``), and the sample quality that
``ddpmlab evaluate RUN`` (or the training's own evaluation) wrote to RUN/metrics.json: FD /
floor, the confident share beside its floor. The runs are not changed: the bound is computed
on a copy. Prints the table; writes bench/results/likelihood_images.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

import ddpmlab
from ddpmlab.runs.likelihood import run_bound

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["run", "bound, clipped (bits/dim)", "bound, unclipped (bits/dim)", "FD / floor",
           "confident share (floor)"]


def measure(label: str, path: Path) -> list:
    metrics = json.loads((path / "metrics.json").read_text())["metrics"]
    with tempfile.TemporaryDirectory() as tmp:  # run_bound writes nll.json and a figure
        run = ddpmlab.open_run(shutil.copytree(path, Path(tmp) / "run"))
        bounds = [run_bound(run, clip=clip)["bits_per_dim"] for clip in (True, False)]
    confident = metrics["confident"]
    return [label, *[round(b, 4) for b in bounds], round(metrics["fd"]["ratio"], 3),
            f"{confident['value']:.3f} ({confident['floor']:.3f})"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="LABEL=RUN")
    p.add_argument("--out", type=Path, default=ROOT / "bench/results/likelihood_images.json")
    args = p.parse_args()
    rows = []
    for item in args.runs:
        label, _, path = item.partition("=")
        rows.append(measure(label, Path(path)))
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    table = {"title": "digits: the bound with and without clipping, and the samples",
             "command": "python bench/likelihood_images.py " + " ".join(args.runs),
             "machine": f"{platform.machine()}, {os.cpu_count()} cores (CPU)",
             "date": datetime.date.today().isoformat(),
             "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
             "columns": COLUMNS, "rows": rows, "note": ""}
    print(" | ".join(COLUMNS))
    args.out.write_text(json.dumps({"tables": [table]}, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
