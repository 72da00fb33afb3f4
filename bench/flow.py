"""DDPM against flow matching on the same network and training steps: quality against network
evaluations, training speed, and the exact likelihood (docs/explanation/flow-matching.md).

    python bench/flow.py                          # swiss_roll, moons, heart.csv x 3 seeds
    python bench/flow.py --data moons --seeds 0   # a part; rows merge into the results file
    python bench/flow.py --data digits --seeds 0  # images: FD / floor, confident share
    python bench/flow.py --speed --stable-cost    # steps/s, and the stable target alone
    python bench/flow.py --same-time              # the flow at the DDPM's training wall time
    python bench/flow.py --report                 # the tables again, from the JSON
    python bench/flow.py --data moons --out /tmp/moons.json   # parts in parallel, then
    python bench/flow.py --report --merge /tmp/moons.json     # their rows merged in

For each (data, seed): `ddpmlab train DATA --seed S` and the same with `--objective flow`
(the real command in a fresh process, default settings otherwise: the same ResMLP, batch,
optimiser and steps), each timed. Each cell is `ddpmlab.score` (3 draws of 2,000 samples
against the held-out sets and floors `evaluate` uses): the DDPM run by ancestral sampling,
DDIM (eta 0) and DPM-Solver++(2M), the flow run by Euler and Heun, at 5, 10, 20, 50 steps and
all T = 200. On digits (`--data digits`, one torch thread: `--threads 1`): the U-Net
defaults, each cell the Frechet distance in the classifier's features and the confident
share beside real data's, 1,000 samples. --same-time trains only the flow, for the steps the
speed table gives it in the DDPM's 4,000 steps' wall time. With --nll (seed 0 of each data
set): the exact negative log-likelihood by the ODE of both runs and the DDPM's variational
bound on the same 2,000 held-out points.
heart.csv is bench/quality.py's user file (a heart far from the origin at a large scale).
Writes bench/results/flow.json: the rows and the "tables" the documentation renders.
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

import ddpmlab
from ddpmlab import feedback
from ddpmlab.config import replace
from ddpmlab.modalities import default_config, modality_for
from ddpmlab.objectives import objective_named
from ddpmlab.runs import likelihood
from ddpmlab.samplers import SAMPLERS
from ddpmlab.train.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from quality import far_away_csv

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "flow.json"
SAMPLERS_OF = {"ddpm": ("ddpm", "ddim", "dpm_solver"), "flow": ("euler", "heun")}
STEPS = (5, 10, 20, 50, 200)  # the last: all T steps (T = 200 for points and digits)
IMAGES = ("digits",)
DDPM_STEPS = 4000  # the points' default training steps
COMMAND = "nice -n 10 python bench/flow.py --nll"


def today() -> str:
    return datetime.date.today().isoformat()


def dates(found: list[dict]) -> str:
    """The days the rows were measured on, first to last."""
    days = sorted({r["date"] for r in found})
    return days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"


def load() -> str:
    return "load average {:.2f}, {:.2f}, {:.2f} on {} cores".format(*os.getloadavg(),
                                                                    os.cpu_count())


def train(data: str, out: Path, seed: int, objective: str, steps: int | None = None) -> float:
    """Train a run with the CLI; its wall seconds (start-up included, the same for both).
    Images train on one torch thread (their default is 2), like the points."""
    start = time.perf_counter()
    extra = (["--threads", "1"] if data in IMAGES else []) + (
        ["--steps", str(steps)] if steps else [])
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", "train", data, "--out",
                           str(out), "--seed", str(seed), "--objective", objective, "--quiet",
                           "--no-eval", "--no-figures", *extra], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"train {data} --objective {objective} failed:\n{proc.stderr}")
    return time.perf_counter() - start


def cells(path: Path, objective: str) -> list[dict]:
    """Every sampler of the objective at 5, 10, 20, 50 and all T steps: W1 (points) or the
    feature Frechet distance and the confident share (images), each beside its real floor."""
    run = ddpmlab.open_run(path)
    rows = []
    for sampler in SAMPLERS_OF[objective]:
        for k in (*STEPS[:-1], run.config.diffusion.timesteps):
            m = ddpmlab.score(run, sampler=ddpmlab.SamplerSpec(sampler, k)).metrics
            row = {"sampler": sampler, "steps": k, "nfe": k * SAMPLERS[sampler].nfe,
                   "1nna": m["1nna"]["value"]}
            if "fd" in m:
                row |= {"fd": m["fd"]["value"], "fd_ratio": m["fd"]["ratio"],
                        "confident": m["confident"]["value"],
                        "confident_real": m["confident"]["floor"]}
            else:
                row |= {"w1": m["w1"]["value"], "w1_ratio": m["w1"]["ratio"]}
            rows.append(row)
    return rows


def nll(path: Path, objective: str) -> dict:
    run = ddpmlab.open_run(path)
    out = {"exact": likelihood.run_exact_nll(run, 2000, 0)["nats_per_dim"]}
    if objective == "ddpm":
        out["bound"] = likelihood.run_bound(run, 2000, 0)["nats_per_dim"]
    return out


def measure(tmp: Path, data: str, seed: int, with_nll: bool,
            objectives: tuple[str, ...] = ("ddpm", "flow"), steps: int | None = None) -> dict:
    """Train and score one (data, seed): both objectives at their default steps, or (the
    same wall time) only the flow at ``steps``."""
    source = str(far_away_csv(tmp / "heart.csv")) if data == "heart.csv" else data
    row: dict = {"data": data, "seed": seed, "date": today(), "load_before": load()}
    for objective in objectives:
        run = tmp / f"{Path(data).stem}_{seed}_{objective}"
        seconds = train(source, run, seed, objective, steps)
        steps = ddpmlab.open_run(run).config.train.steps
        row[objective] = {"train_seconds": seconds, "steps": steps,
                          "cells": cells(run, objective)}
        if with_nll:
            row[objective]["nll"] = nll(run, objective)
    row["load_after"] = load()
    return row


def step_rates(data: str, blocks: int = 10, block: int = 50) -> dict:
    """Training steps per second of each objective on ``data``, measured side by side: one
    process, the two trainers' steps in alternating blocks, so both see the same load; the
    fastest block of each (the least disturbed by other processes) and the median."""
    times: dict[str, list[float]] = {"ddpm": [], "flow": []}
    config = default_config(data, {"model": {"conditional": False}})
    kind = modality_for(data).prepare(config)
    x = torch.from_numpy(kind.model_input())
    trainers = {o: Trainer(replace(config, {"diffusion": {"objective": o}}), x) for o in times}
    for _ in range(blocks):
        for objective, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(block):
                trainer.train_step()
            times[objective].append(block / (time.perf_counter() - start))
    return {o: {"best": max(v), "median": float(np.median(v))} for o, v in times.items()}


def stable_cost(data: str, blocks: int = 10, block: int = 50) -> dict:
    """Milliseconds of one call of each objective's stable target field alone, on the default
    run's batch and M references, in alternating blocks as :func:`step_rates`: the part of a
    training step where the two objectives' code differs most."""
    config = default_config(data, {"model": {"conditional": False}})
    x = torch.from_numpy(modality_for(data).prepare(config).model_input())
    g = torch.Generator().manual_seed(0)
    b, m = config.train.batch_size, config.diffusion.stable_target
    x0, ref = x[torch.randint(0, len(x), (b,), generator=g)], x[torch.randint(0, len(x), (m,),
                                                                             generator=g)]
    times: dict[str, list[float]] = {"ddpm": [], "flow": []}
    calls = {}
    for o in times:
        objective, schedule = objective_named(o), Trainer(config, x).schedule
        t, eps, x_t = objective.draw(schedule, x0, g, False)
        calls[o] = (objective.stable, (schedule, x0, eps, x_t, t, ref, None))
    for _ in range(blocks):
        for o, (stable, args) in calls.items():
            start = time.perf_counter()
            for _ in range(block):
                stable(*args)
            times[o].append((time.perf_counter() - start) / block * 1e3)
    return {o: {"best": min(v), "median": float(np.median(v))} for o, v in times.items()}


def same_time_steps(rates: dict, data: str) -> int:
    """The flow's training steps in the wall time of the DDPM's default 4,000 at the measured
    median rates; a point set whose rate was not measured (a user file: the same network,
    batch and dimension) gets the mean ratio of those measured."""
    ratios = {d: r["flow"]["median"] / r["ddpm"]["median"] for d, r in rates.items()}
    ratio = ratios.get(data, float(np.mean(list(ratios.values()))))
    return round(DDPM_STEPS * ratio)


def save(rows: list[dict], out: Path = OUT, key: str = "rows") -> list[dict]:
    """Merge rows into the results file's list ``key`` by (data, seed); return every row."""
    old = json.loads(out.read_text()).get(key, []) if out.exists() else []
    done = {(r["data"], r["seed"]) for r in rows}
    return [r for r in old if (r["data"], r["seed"]) not in done] + rows


def cells_of(rows: list[dict], objective: str, sampler: str, k: int) -> list[dict]:
    """The cells of ``sampler`` at ``k`` steps in every row given."""
    return [c for r in rows for c in r[objective]["cells"]
            if c["sampler"] == sampler and c["steps"] == k]


def point_rows(rows: list[dict], objectives: dict[str, str]) -> list[list]:
    """One table row per (data, objective, sampler, steps): 1-NNA and W1 / floor over seeds;
    ``objectives`` maps each objective to the label of its training steps."""
    out = []
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == data]
        for objective, label in objectives.items():
            for sampler in SAMPLERS_OF[objective]:
                for k in STEPS:
                    got = cells_of([r for r in mine if objective in r], objective, sampler, k)
                    ratios = [c["w1_ratio"] for c in got]
                    out.append([data, objective, label, sampler, k, got[0]["nfe"],
                                round(float(np.mean([c["1nna"] for c in got])), 3),
                                round(float(np.mean(ratios)), 2),
                                round(float(np.max(ratios)), 2), len(got)])
    return out


def image_rows(rows: list[dict]) -> list[list]:
    out = []
    for objective, samplers in SAMPLERS_OF.items():
        for sampler in samplers:
            for k in STEPS:
                got = cells_of(rows, objective, sampler, k)
                ratios = [c["fd_ratio"] for c in got]
                out.append([rows[0]["data"], objective, sampler, got[0]["steps"], got[0]["nfe"],
                            round(float(np.mean(ratios)), 2), round(float(np.max(ratios)), 2),
                            round(float(np.mean([c["confident"] for c in got])), 3),
                            round(float(np.mean([c["confident_real"] for c in got])), 3),
                            round(float(np.mean([c["1nna"] for c in got])), 3), len(got)])
    return out


def tables(rows: list[dict], rates: dict | None = None, rate_load: str = "",
           same: list[dict] | None = None, stable: dict | None = None,
           stable_load: str = "", when: dict | None = None) -> list[dict]:
    """The tables the documentation renders; ``when``: the days the speed ("rates") and the
    stable target ("stable") were timed."""
    when = when or {}
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    points = [r for r in rows if r["data"] not in IMAGES]
    images = [r for r in rows if r["data"] in IMAGES]
    loads = "; ".join(sorted({r["load_before"] for r in points}))
    quality = [r[:2] + r[3:] for r in point_rows(points, {"ddpm": "", "flow": ""})]
    speed = []
    for data, rate in (rates or {}).items():
        best, median = (({o: rate[o][k] for o in SAMPLERS_OF}) for k in ("best", "median"))
        speed.append([data, round(best["ddpm"], 1), round(best["flow"], 1),
                      round(median["flow"] / median["ddpm"], 3),
                      same_time_steps(rates or {}, data)])
    out = [{
        "title": "Quality against network evaluations: DDPM and flow matching, same network "
                 "and training steps",
        "command": COMMAND, "machine": machine, "date": dates(points), "load": loads,
        "columns": ["data", "objective", "sampler", "steps", "NFE", "1-NNA",
                    "W1 / floor (mean)", "W1 / floor (worst)", "seeds"],
        "rows": quality,
        "note": "Each run: `ddpmlab train DATA --seed S [--objective flow]` with the default "
                "settings (ResMLP, 4,000 steps, batch 512, stable target field M = 512); each "
                "cell: 3 draws of 2,000 samples against the held-out sets of `evaluate`, "
                "mean over the seeds. NFE: network evaluations per sample (Heun: 2 a step). "
                "1-NNA: 0.5 is ideal. heart.csv: a user file of points.",
    }, {
        "title": "Training speed of the two objectives, side by side",
        "command": "nice -n 10 python bench/flow.py --speed", "machine": machine,
        "date": when.get("rates", ""), "load": rate_load,
        "columns": ["data", "DDPM steps/s (best block)", "flow steps/s (best block)",
                    "flow / DDPM (median)", "flow steps in 4,000 DDPM steps' wall time"],
        "rows": speed,
        "note": "One process trains both objectives' default runs (the same ResMLP, batch "
                "512, stable target field) in alternating blocks of 50 steps, 10 blocks "
                "each, so both see the same load; the last column gives the flow the DDPM "
                "run's training wall time. Timings move with the load; quality does not.",
    }]
    if stable:
        out.append({
            "title": "One call of the stable target field, timed alone (ms)",
            "command": "nice -n 10 python bench/flow.py --stable-cost", "machine": machine,
            "date": when.get("stable", ""), "load": stable_load,
            "columns": ["data", "DDPM (best block)", "flow (best block)", "DDPM (median)",
                        "flow (median)"],
            "rows": [[d, *(round(c[o][k], 2) for k in ("best", "median") for o in SAMPLERS_OF)]
                     for d, c in stable.items()],
            "note": "The default run's batch (512) and M = 512 references, in one process, "
                    "alternating blocks of 50 calls, 10 blocks each. DDPM: "
                    "`diffusion.stable_target` (torch.cdist); flow: `flow.flow_stable_target` "
                    "(the distances expanded, finite at t = 1).",
        })
    if images:
        out.append({
            "title": "Quality against network evaluations on digits: DDPM and flow matching, "
                     "same U-Net and training steps",
            "command": "nice -n 10 python bench/flow.py --data digits --seeds "
                       + " ".join(str(r["seed"]) for r in images),
            "machine": machine, "date": dates(images),
            "load": "; ".join(sorted({r["load_before"] for r in images})),
            "columns": ["data", "objective", "sampler", "steps", "NFE", "FD / floor (mean)",
                        "FD / floor (worst)", "confident share", "real images' share",
                        "1-NNA", "seeds"],
            "rows": image_rows(images),
            "note": "Each run: `ddpmlab train digits --seed S --threads 1 [--objective flow]` "
                    "with the digits defaults otherwise (U-Net, 1,500 steps, batch 128, T = "
                    "200); each cell: `ddpmlab.score` as `evaluate` scores, 4 draws of 250 "
                    "samples (1,000 in all, at every step count: no cut) against two "
                    "halves of the 500 held-out digits. FD: the Frechet distance in the "
                    "digit classifier's features beside two real sets' (the floor); "
                    "confident share: samples "
                    "the classifier names with probability 0.9 or more, beside the real "
                    "held-out images' share. 1-NNA in the classifier's features.",
        })
    if same:
        seeds = {(r["data"], r["seed"]) for r in same}
        beside = [r for r in points if (r["data"], r["seed"]) in seeds]
        out.append({
            "title": "The same training wall time: the flow trained for the DDPM's 4,000 "
                     "steps' time",
            "command": "nice -n 10 python bench/flow.py --same-time",
            "machine": machine, "date": dates(same),
            "load": "; ".join(sorted({r["load_before"] for r in same})),
            "columns": ["data", "objective", "training steps", "sampler", "steps", "NFE",
                        "1-NNA", "W1 / floor (mean)", "W1 / floor (worst)", "seeds"],
            "rows": [row for data in dict.fromkeys(r["data"] for r in same) for row in (
                point_rows([r for r in beside if r["data"] == data], {"ddpm": str(DDPM_STEPS)})
                + point_rows([r for r in same if r["data"] == data], {"flow": str(next(
                    r["flow"]["steps"] for r in same if r["data"] == data))}))],
            "note": "The DDPM rows are the first table's runs of the same seeds; each flow "
                    "run is `ddpmlab train DATA --seed S --objective flow --steps N` with N "
                    "from the speed table's last column (heart.csv, not timed apart: the "
                    "mean ratio of the point sets timed, the same network, batch and "
                    "dimension), scored like the first table.",
        })
    nll_rows = [[r["data"], round(r["ddpm"]["nll"]["bound"], 3),
                 round(r["ddpm"]["nll"]["exact"], 3), round(r["flow"]["nll"]["exact"], 3)]
                for r in points if "nll" in r["ddpm"]]
    if nll_rows:
        out.append({
            "title": "Negative log-likelihood on 2,000 held-out points (nats per dimension)",
            "command": COMMAND, "machine": machine, "load": loads,
            "date": dates([r for r in points if "nll" in r["ddpm"]]),
            "columns": ["data", "DDPM bound", "DDPM exact (ODE)", "flow exact (ODE)"],
            "rows": nll_rows,
            "note": "Seed 0 of each data set, in the data's own units (the standardisation's "
                    "change of variables added back). Exact: the instantaneous change of "
                    "variables through `evaluate --exact-nll` (RK45, rtol = atol = 1e-5, exact "
                    "divergence); a flow run has no variational bound.",
        })
    return out


def report(out: Path, state: dict) -> list[dict]:
    """Write ``state`` (rows, same-time rows, rates) and its tables to ``out``."""
    result = tables(state.get("rows", []), state.get("rates"), state.get("rate_load", ""),
                    state.get("same_time"), state.get("stable_cost"),
                    state.get("stable_load", ""), state.get("dates"))
    out.write_text(json.dumps(state | {"tables": result}, indent=1))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--data", nargs="*", default=["swiss_roll", "moons", "heart.csv"])
    p.add_argument("--nll", action="store_true", help="the exact NLL and the bound (seed 0)")
    p.add_argument("--report", action="store_true", help="tables from the results file only")
    p.add_argument("--out", type=Path, default=OUT, help="the results file")
    p.add_argument("--speed", action="store_true",
                   help="only the training steps per second of both objectives, side by side")
    p.add_argument("--stable-cost", action="store_true",
                   help="only the stable target field of both objectives, timed alone")
    p.add_argument("--same-time", action="store_true",
                   help="only the flow, trained for the DDPM's wall time (the speed table's "
                        "steps), scored by Euler and Heun")
    p.add_argument("--merge", type=Path, nargs="*", default=[],
                   help="other results files whose rows are merged into --out")
    args = p.parse_args()
    torch.set_num_threads(1)
    state = json.loads(args.out.read_text()) if args.out.exists() else {}
    state.pop("tables", None)
    if args.same_time and not state.get("rates"):
        raise SystemExit(f"{args.out} has no training rates; run --speed first")
    if args.stable_cost:
        state["stable_load"] = load()
        state.setdefault("dates", {})["stable"] = today()
        state["stable_cost"] = {d: stable_cost(d) for d in args.data if d not in
                                ("heart.csv", *IMAGES)}
    if args.speed:
        state["rate_load"] = load()
        state.setdefault("dates", {})["rates"] = today()
        with feedback.shown(False):
            state["rates"] = {d: step_rates(d) for d in args.data if d not in
                              ("heart.csv", *IMAGES)}
    if not (args.report or args.speed or args.stable_cost):
        key = "same_time" if args.same_time else "rows"
        with tempfile.TemporaryDirectory() as tmp, feedback.shown(False):
            for data in args.data:
                for seed in args.seeds:
                    if args.same_time:
                        row = measure(Path(tmp), data, seed, False, ("flow",),
                                      same_time_steps(state["rates"], data))
                    else:
                        row = measure(Path(tmp), data, seed,
                                      args.nll and seed == args.seeds[0] and data not in IMAGES)
                    state[key] = save([row], args.out, key)
                    report(args.out, state)
                    best = {c["sampler"]: c for c in row["flow"]["cells"] if c["nfe"] == 20}
                    what = "fd" if data in IMAGES else "w1"
                    print(f"{data} seed {seed}: flow heun 20 NFE {what}/floor "
                          f"{best['heun'][what + '_ratio']:.2f}, 1-NNA "
                          f"{best['heun']['1nna']:.3f}", flush=True)
    for other in args.merge:
        theirs = json.loads(other.read_text())
        if theirs.get("rates"):  # a --speed measurement made into another file
            state["rates"], state["rate_load"] = theirs["rates"], theirs["rate_load"]
        for key in ("rows", "same_time"):
            if theirs.get(key):
                state[key] = save(theirs[key], args.out, key)
                args.out.write_text(json.dumps(state, indent=1))
    for table in report(args.out, state):
        print(f"\n{table['title']}\n" + " | ".join(table["columns"]))
        for r in table["rows"]:
            print(" | ".join(str(v) for v in r))


if __name__ == "__main__":
    main()
