"""Classifier-free guidance (Ho & Salimans 2022) measured: points, digits, and the step cost.

    python bench/guidance.py                        # every part (about 25 min on 2 cores)
    python bench/guidance.py --parts points speed   # moons and gaussians8, and step times
    python bench/guidance.py --report               # the tables again, from the JSON

- ``points``: ``ddpmlab train DATA --conditional`` (defaults otherwise) for moons and
  gaussians8, and gaussians8 with ``--variance fixed_large``, then ``ddpmlab sweep RUN
  --guidance 0 1 3``: per class, W1 of its samples
  against the class's held-out points beside the floor (a random subset of the class's
  training points of the same size), and the share of samples in the requested class's
  region (the class a 15-NN classifier on the training points gives), at w = 0, 1, 3.
- ``digits``: ``ddpmlab train digits --conditional`` (defaults otherwise), then ``ddpmlab
  sweep RUN --guidance 0 0.5 1 2 4`` (100 samples of each digit per weight, classified by
  the shipped digits classifier; per-class and overall Fréchet distance in its feature
  space, each beside its floor), and ``evaluate``'s standard Fréchet distance (4 draws of
  250 against the held-out halves) of the conditional model at the best weight (an equal
  share of each class) and at w = 0, of its own unconditional mode (no class), and of the
  unconditional ``ddpmlab train digits`` (with ``--unconditional``: trained here; without,
  the figure bench/image_quality.py measured for the same command, seed and code path,
  from bench/results/image_quality.json: unconditional training is unchanged bit for bit).
- ``speed``: ``Trainer.train_step`` of the default point model (resmlp, batch 256, one
  thread), unconditional and conditional, on the hand-derived and on the autograd path.

``--threads K`` trains with K torch threads instead of the data's default (digits: 2); on a
shared machine one thread is several times faster (bench/README.md, "threads"), and the
thread count does not change the maths. Runs are kept under ``--runs`` (default
bench/results/guidance_runs, ignored by git) and reused when they hold a checkpoint (and
their sweep, when it holds the same weights).
Writes bench/results/guidance.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "guidance.json"
POINT_W = (0, 1, 3)
#: name -> (data, training options): defaults, and gaussians8 with sigma^2 = beta, whose
#: wider reverse steps undo the defaults' 12 % too narrow Gaussians (bench/README.md)
POINTS = {"moons": ("moons", ()), "gaussians8": ("gaussians8", ()),
          "gaussians8_fixed_large": ("gaussians8", ("--variance", "fixed_large"))}
DIGITS_W = (0, 0.5, 1, 2, 4)


def ddpmlab(*args: str) -> float:
    """Run the real command in a fresh process; its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", *args, "--quiet"],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"ddpmlab {' '.join(args)} failed:\n{proc.stderr}")
    return time.perf_counter() - start


THREADS: list[str] = []  # --threads K for every training command, from the command line


def trained(data: str, out: Path, *extra: str) -> float | None:
    """Train DATA into out unless a run is there; the training command's seconds."""
    if (out / "checkpoint.safetensors").is_file():
        return None
    return ddpmlab("train", data, "--out", str(out), "--no-figures", "--no-eval", *THREADS,
                   *extra)


def sweep_rows(run: Path, weights: tuple[float, ...]) -> list[dict]:
    """``ddpmlab sweep RUN --guidance W...``'s rows (those of a sweep already in RUN over the
    same weights are reused)."""
    saved = run / "guidance.json"
    if saved.is_file():
        rows: list[dict] = json.loads(saved.read_text())["rows"]
        if [r["guidance"] for r in rows] == list(weights):
            return rows
    ddpmlab("sweep", str(run), "--guidance", *map(str, weights))
    rows = json.loads(saved.read_text())["rows"]
    return rows


def points(runs: Path) -> dict:
    out = {}
    for name, (data, extra) in POINTS.items():
        run = runs / name
        seconds = trained(data, run, "--conditional", *extra)
        out[name] = {"options": ["--conditional", *extra], "train_seconds": seconds,
                     "rows": sweep_rows(run, POINT_W)}
    return out


def digits(runs: Path, unconditional: bool) -> dict:
    from ddpmlab.run import open_run, score

    cond, plain = runs / "digits_conditional", runs / "digits"
    seconds = {"conditional": trained("digits", cond, "--conditional"),
               "unconditional": trained("digits", plain) if unconditional else None}
    rows = sweep_rows(cond, DIGITS_W)
    passing = [r for r in rows if r["accuracy_min"] >= 0.95]
    best = min(passing or rows, key=lambda r: r["ratio_all"])  # the closest FD among those

    def fd(run: Path, **kw: object) -> dict:
        m = score(open_run(run), **kw).metrics  # type: ignore[arg-type]
        return {k: m[k] for k in ("fd", "confident", "class_tv", "1nna")}

    standard = {"conditional_best_w": fd(cond, cls="all", guidance=best["guidance"]),
                "conditional_w0": fd(cond, cls="all", guidance=0.0),
                "conditional_no_class": fd(cond)}
    if unconditional:
        standard["unconditional_run"] = fd(plain)
    else:  # ddpmlab train digits, default settings, seed 0 (bench/image_quality.py)
        quality = json.loads((RESULTS.parent / "image_quality.json").read_text())[0]
        standard["unconditional_run"] = {
            k: {"value": quality[k], "floor": quality[f"{k}_floor"],
                "ratio": quality[k] / quality[f"{k}_floor"] if k == "fd" else None}
            for k in ("fd", "confident", "class_tv", "1nna")}
    return {"train_seconds": seconds, "rows": rows, "best_w": best["guidance"],
            "standard": standard}


def speed(windows: int = 7, steps: int = 50) -> dict:
    """Microseconds per training step, the best of ``windows`` windows of ``steps`` steps
    per configuration, the configurations taking turns (the best window is the least
    disturbed by other processes on a shared machine)."""
    from ddpmlab.config import RunConfig, replace
    from ddpmlab.data import resolve
    from ddpmlab.train import Trainer

    torch.set_num_threads(1)
    points = resolve("moons", 20_000, 0, 100)
    x = torch.tensor((points.train - points.train.mean(0)) / points.train.std(0),
                     dtype=torch.float32)
    labels = torch.from_numpy(points.train_labels)
    trainers = {}
    for conditional in (False, True):
        config = replace(RunConfig(), {"model": {"conditional": conditional}})
        for autograd in (False, True):
            name = f"{'conditional' if conditional else 'unconditional'}_" \
                   f"{'autograd' if autograd else 'fast'}"
            trainers[name] = Trainer(config, x, autograd=autograd, labels=labels, classes=2)
            for _ in range(30):
                trainers[name].train_step()
    best = dict.fromkeys(trainers, float("inf"))
    for _ in range(windows):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(steps):
                float(trainer.train_step())  # read the loss every step, as Trainer.fit does
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return {name: {"us_per_step": 1e6 * b} for name, b in best.items()}


def report(results: dict) -> None:
    for data, part in results.get("points", {}).items():
        print(f"\n{data}: W1 / floor per class, and share in the requested class's region")
        for r in part["rows"]:
            ratios = [c["w1_ratio"] for c in r["classes"].values()]
            print(f"  w = {r['guidance']:g}: region {r['accuracy']:.3f} (worst class "
                  f"{r['accuracy_min']:.3f}, real {r['accuracy_real']:.3f}); W1/floor per "
                  f"class {min(ratios):.2f}..{max(ratios):.2f} (mean {np.mean(ratios):.2f})")
    if "digits" in results:
        d = results["digits"]
        print("\ndigits: w, accuracy (all, worst class, real), FD/floor per class, overall")
        for r in d["rows"]:
            o = r["overall"]
            print(f"  w = {r['guidance']:g}: {r['accuracy']:.3f} {r['accuracy_min']:.3f} "
                  f"({r['accuracy_real']:.3f})  per-class FD/floor {r['ratio']:.2f}  "
                  f"overall FD {o['fd']:.2f} (floor {o['fd_floor']:.2f}) = "
                  f"{r['ratio_all']:.2f}x")
        print(f"  best w = {d['best_w']:g}; evaluate's FD (value / floor):")
        for name, m in d["standard"].items():
            print(f"    {name}: {m['fd']['value']:.2f} / {m['fd']['floor']:.2f} = "
                  f"{m['fd']['ratio']:.2f}; confident {m['confident']['value']:.3f}")
    for name, s in results.get("speed", {}).items():
        print(f"speed {name}: {s['us_per_step']:.0f} us per step")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["points", "speed", "digits"],
                   choices=["points", "digits", "speed"])
    p.add_argument("--runs", type=Path, default=ROOT / "bench" / "results" / "guidance_runs")
    p.add_argument("--report", action="store_true", help="print the saved results only")
    p.add_argument("--unconditional", action="store_true",
                   help="digits: train the unconditional run too (else its saved figure)")
    p.add_argument("--threads", type=int, default=None, metavar="K",
                   help="torch threads of the training commands (default: the data's)")
    args = p.parse_args()
    THREADS.extend([] if args.threads is None else ["--threads", str(args.threads)])
    if not args.report:
        args.runs.mkdir(parents=True, exist_ok=True)
        for part in args.parts:
            result = (points(args.runs) if part == "points" else speed()
                      if part == "speed" else digits(args.runs, args.unconditional))
            saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            RESULTS.write_text(json.dumps({**saved, part: result}, indent=1))
    report(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
