# Pinned to commit 2a762a1, the last commit before the package's top layer was restructured,
# where it ran as bench/thin_probe.py (this file is that one, with this header): it imports
# ddpmlab.run and ddpmlab.modalities.points' CLASS_SETS and calls run.kind.per_class, which
# no longer exist. To run it there:
#
#     git worktree add /tmp/ddpmlab-2a762a1 2a762a1
#     cd /tmp/ddpmlab-2a762a1
#     PYTHONPATH=/tmp/ddpmlab-2a762a1/src python bench/guidance.py --parts points --threads 1
#     PYTHONPATH=/tmp/ddpmlab-2a762a1/src python bench/thin_probe.py
#
# (the commit's own copy, run from the worktree: its runs and results go under the worktree's
# bench/results/, beside the moons runs of that commit's guidance.py that `arc` and
# `unconditional` read.)

"""Why a conditional moons run's lower moon scores about 1.3 x its per-class floor.

    python bench/thin_probe.py                     # every variant, then the report
    python bench/thin_probe.py --variants eps f8   # some (two processes may split them)
    python bench/thin_probe.py --report            # the summary again

- ``arc``: 40,000 samples of each moon of ``ddpmlab train moons --conditional --seed S``
  (bench/guidance.py's run) against the class's training and held-out points: the spread
  across the arc (std of the distance to the moon's centre) and the share of points in
  each of 14 bins of the angle along the arc.
- ``unconditional``: ``ddpmlab train moons --seed 0`` (unconditional), 36,000 samples of
  each moon taken by the 15-NN region of the training points, scored per class as
  ``score_classes`` scores a conditional run (``Points.per_class``, CLASS_SETS sets).
- variants: the conditional defaults with one change each (``VARIANTS``), trained by
  ``train_run`` and scored by ``score_classes`` at w = 0, per class W1 / floor.

Runs are kept under bench/results/thin_runs (ignored by git), each variant's score beside
it, so processes given different ``--variants`` do not collide; the report gathers them
into bench/results/thin_probe.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "results" / "thin_runs"
GUIDANCE_RUNS = ROOT / "bench" / "results" / "guidance_runs"
RESULTS = ROOT / "bench" / "results" / "thin_probe.json"
#: name -> (config overrides over the conditional moons defaults, seeds)
VARIANTS: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    "default": ({}, (0, 1, 2)),
    "steps_8000": ({"train": {"steps": 8000}}, (0, 1)),
    "width_128": ({"model": {"resmlp": {"hidden": 128}}}, (0,)),
    "fixed_small": ({"diffusion": {"variance": "fixed_small"}}, (0, 1)),
    "batch_1024": ({"train": {"batch_size": 1024}}, (0, 1)),
    "eps": ({"diffusion": {"prediction": "eps"}}, (0, 1)),
    "fourier_8": ({"model": {"resmlp": {"fourier_scale": 8.0}}}, (0, 1)),
    "T_1000": ({"diffusion": {"timesteps": 1000}}, (0, 1, 2)),
}
#: the moons' centres in data coordinates (sklearn's make_moons): upper, lower
CENTRES = (np.array([0.0, 0.0]), np.array([1.0, 0.5]))


def variant(name: str) -> dict:
    from ddpmlab.config import replace
    from ddpmlab.modalities import default_config
    from ddpmlab.run import score_classes, train_run

    over, seeds = VARIANTS[name]
    out = {}
    for seed in seeds:
        path = RUNS / f"{name}_seed{seed}"
        saved = path / "probe.json"
        if saved.is_file():
            out[str(seed)] = json.loads(saved.read_text())
            continue
        config = replace(default_config("moons", {"model": {"conditional": True},
                                                  "train": {"seed": seed}}), over)
        run = train_run(config, path, figures=False, evaluate=False, force=True)
        r = score_classes(run, 0.0, seed=0)
        out[str(seed)] = {k: v["w1_ratio"] for k, v in r["classes"].items()}
        saved.write_text(json.dumps(out[str(seed)]))
        print(name, seed, {k: round(v, 3) for k, v in out[str(seed)].items()}, flush=True)
    return out


def arc(seed: int = 0) -> dict:
    from ddpmlab.run import open_run

    run = open_run(GUIDANCE_RUNS / f"moons_seed{seed}")
    d = run.kind.data
    assert d.train_labels is not None and d.heldout_labels is not None
    bins = np.linspace(-0.4, np.pi + 0.4, 15)
    out = {}
    for k, name in enumerate(("upper", "lower")):
        sets = {"samples": run.sample(40_000, 3, cls=k, guidance=0.0),
                "train": d.train[d.train_labels == k], "held": d.heldout[d.heldout_labels == k]}
        row = {}
        for what, x in sets.items():
            v = x - CENTRES[k]
            angle = np.arctan2(v[:, 1], v[:, 0]) * (1 if k == 0 else -1)
            row[what] = {"radius_std": float(np.linalg.norm(v, axis=1).std()),
                         "bins_percent": (np.histogram(angle, bins)[0] / len(x) * 100).tolist()}
        out[name] = row
    return out


def unconditional(seed: int = 0) -> dict:
    from sklearn.neighbors import KNeighborsClassifier

    from ddpmlab.modalities import default_config
    from ddpmlab.modalities.points import CLASS_SETS, REGION_K
    from ddpmlab.run import open_run, train_run

    path = RUNS / f"unconditional_seed{seed}"
    run = (open_run(path) if (path / "checkpoint.safetensors").is_file() else
           train_run(default_config("moons", {"train": {"seed": seed}}), path, figures=False,
                     evaluate=False))
    labelled = open_run(GUIDANCE_RUNS / f"moons_seed{seed}").kind  # the same data, labelled
    d = labelled.data
    assert np.array_equal(d.train, run.kind.data.train) and d.train_labels is not None
    x = run.sample(90_000, 0)
    region = KNeighborsClassifier(REGION_K).fit(d.train, d.train_labels).predict(x)
    per = 6000 // 2 * CLASS_SETS
    parts = [x[region == k][:per] for k in (0, 1)]
    r = labelled.per_class(np.concatenate(parts), np.repeat([0, 1], [len(p) for p in parts]),
                           0, CLASS_SETS)
    return {k: v["w1_ratio"] for k, v in r["classes"].items()}


def report() -> None:
    results = json.loads(RESULTS.read_text())
    for name, seeds in results["variants"].items():
        values = [v for row in seeds.values() for v in row.values()]
        print(f"{name:12s} " + " / ".join(f"{s}: " + " ".join(f"{v:.2f}" for v in row.values())
                                          for s, row in seeds.items())
              + f"  (mean {np.mean(values):.3f})")
    for name, rows in results.get("arc", {}).items():
        print(f"{name} moon, seed 0: " + ", ".join(
            f"{what} radius std {r['radius_std']:.4f}, end bins "
            f"{r['bins_percent'][1]:.2f} / {r['bins_percent'][-2]:.2f} %"
            for what, r in rows.items()))
    if "unconditional" in results:
        print("unconditional seed 0, split by region: " + " ".join(
            f"{k} {v:.2f}" for k, v in results["unconditional"].items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=None,
                   help="train and score only these (default: all, and arc, unconditional)")
    p.add_argument("--report", action="store_true", help="print the saved summary only")
    args = p.parse_args()
    if not args.report:
        torch.set_num_threads(1)
        RUNS.mkdir(parents=True, exist_ok=True)
        names = list(VARIANTS) if args.variants is None else args.variants
        variants = {name: variant(name) for name in names}
        if args.variants is None:  # everything: the summary
            RESULTS.write_text(json.dumps({"variants": variants, "arc": arc(),
                                           "unconditional": unconditional()}, indent=1) + "\n")
    if RESULTS.is_file():
        report()
    elif args.report:
        sys.exit("no bench/results/thin_probe.json yet: run bench/thin_probe.py")


if __name__ == "__main__":
    main()
