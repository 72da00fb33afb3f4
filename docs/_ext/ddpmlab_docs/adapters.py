"""Adapters: the result files written before the "tables" convention, read into tables.

Each adapter takes the file's JSON and returns its tables; every number shown comes from
the file. The command beside each is the one that writes the file (its bench script's
own docstring says the same), the load the one recorded with it or "not recorded".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .adapters_images import IMAGE_ADAPTERS
from .format import f1, f2, f3, pct, split_cell

MACHINE = "2-core x86_64 CPU, no GPU; torch 2.13.0 (CPU build)"
Table = dict[str, Any]


def quality(command: str, note: str = "", load: str = "not recorded") -> Callable:
    def adapt(rows: list[dict[str, Any]]) -> list[Table]:
        return [{"title": "ddpmlab train DATA with default settings: quality and wall time",
                 "command": command, "load": load, "note": note,
                 "columns": ["data", "seed", "wall time", "1-NNA (floor)", "W1 / floor",
                             "bounds"],
                 "rows": [[r["data"], r["seed"], f"{f1(r['seconds'])} s",
                           f"{f3(r['1nna'])} ({f3(r['1nna_floor'])})", f2(r["w1_ratio"]),
                           "pass" if r["pass"] else "FAIL"] for r in rows]}]
    return adapt


_CELLS = {"ddpm@all": "DDPM, 200 steps", "ddim@all": "DDIM, 200", "ddim@20": "DDIM, 20",
          "dpm_solver@20": "DPM-Solver++, 20", "ddim@10": "DDIM, 10",
          "dpm_solver@10": "DPM-Solver++, 10"}


def few_steps(data: dict[str, Any]) -> list[Table]:
    args = data.get("train_args", "")
    return [{"title": f"Few-step samplers on points: 1-NNA / W1 over floor (train {args})",
             "command": f'python bench/few_steps.py --train-args "{args}"',
             "columns": ["data", "seed", *_CELLS.values()],
             "rows": [[r["data"], r["seed"], *(split_cell(r["cells"][c]) for c in _CELLS)]
                      for r in data["rows"]],
             "note": "3 draws of 2,000 samples against the held-out sets of `evaluate`."}]


def exact_reference(data: dict[str, Any]) -> list[Table]:
    cells = [c for c in data["rows"][0]["cells"] if c not in ("floor", "ddpm@all")]
    rows = []
    for r in data["rows"]:
        d = r["cells"]["ddpm@all"]
        row = [r["data"], r["seed"], f"{f3(d['1nna'])} / {f2(d['w1_floor_ratio'])} "
               f"(sd {pct(d['w1_sd'] / d['w1'])})"]
        for c in cells:
            x = r["cells"][c]
            lo, hi = x["w1_ratio_ddpm_90"]
            row.append(f"{f3(x['1nna'])} / {f2(x['w1_ratio_ddpm'])} [{f2(lo)}, {f2(hi)}]")
        rows.append(row)
    sweep = len(cells) > 4
    return [{"title": "Against fresh data from the true law: 1-NNA / W1 over DDPM's W1 "
             "[90 % interval]" + (", every K" if sweep else ""),
             "command": "python bench/exact_reference.py" + (" --sweep" if sweep else ""),
             "columns": ["data", "seed", "DDPM, 200 steps (W1 / floor)",
                         *(c.replace("dpm_solver", "DPM-Solver++").replace("ddim", "DDIM")
                           .replace("@all", ", 200").replace("@", ", ") for c in cells)],
             "rows": rows,
             "note": f"{data['rows'][0]['draws']} draws per cell, each against its own fresh "
             "set of 2,000 points; the floor a second fresh set; intervals by paired "
             "bootstrap over the draws."}]


def sweep(data: dict[str, Any]) -> list[Table]:
    rows = sorted(data["rows"], key=lambda r: (r["sampler"], r["steps"]))
    if "ddpm_all_steps" in data:
        rows = [data["ddpm_all_steps"], *rows]
    spacing = ", ".join(f"{k}: {v}" for k, v in data["spacing"].items())
    repeats = rows[0]["repeats"]
    return [{"title": f"ddpmlab sweep of the default swiss-roll run ({repeats} draw"
             f"{'s' if repeats > 1 else ''} of 2,000)",
             "command": data.get("command", "ddpmlab train swiss_roll --out RUN && ddpmlab "
                                 f"sweep RUN --samplers ... --steps ... --repeats {repeats}"),
             "columns": ["sampler", "steps", "1-NNA (floor)", "W1 / floor", "seconds"],
             "rows": [[r["sampler"], r["steps"], f"{f3(r['1nna'])} ({f3(r['1nna_floor'])})",
                       f2(r["ratio"]), f1(r["seconds"])] for r in rows],
             "note": f"eta {data['eta']}, seed {data['seed']}; spacing {spacing}."
             + (f" Training: {data['train']}." if "train" in data else "")}]


def improved(data: dict[str, Any]) -> list[Table]:
    g = data["gaussian"]
    return [{"title": "The bound minus the true NLL on 2-D Gaussian data (nats/dim)",
             "command": "python bench/improved.py",
             "columns": ["T", "exact variance", "fixed_small", "fixed_large"],
             "rows": [[r["T"], *(f"{r[k] - r['true']:+.4f}" for k in
                                 ("exact", "fixed_small", "fixed_large"))] for r in g],
             "note": f"True NLL {g[0]['true']:.4f} nats/dim; cosine schedule; exact eps."},
            {"title": "Swiss roll, fixed against learned variance",
             "command": "python bench/improved.py",
             "columns": ["seed", "variance", "bound (nats/dim)", "1-NNA, DDPM 200 steps",
                         "1-NNA, DDIM 20 steps", "floor"],
             "rows": [[r["seed"], r["variance"], f"{r['nats_per_dim']:.4f}",
                       f3(r["ddpm_all_1nna"]), f3(r["ddim20_1nna"]), f3(r["1nna_floor"])]
                      for r in data["swiss"]],
             "note": "6,000 steps at batch 512 and lr 2e-3 (bench/improved.py keeps them); "
             "bound on 2,000 held-out points; 1-NNA over 3 draws."}]


def shapes(data: dict[str, Any]) -> list[Table]:
    score = data["score"]
    return [{"title": "Shapes from a word and a picture, default settings",
             "command": "python bench/shapes.py", "load": "idle",
             "columns": ["data", "wall time", "1-NNA (floor)", "W1 / floor"],
             "rows": [[k, f"{f1(v['seconds'])} s", f"{f3(v['1nna'])} ({f3(v['1nna_floor'])})",
                       f2(v["w1_ratio"])] for k, v in data.items() if k != "score"]},
            {"title": "The score field of gaussians8: 1 - cos(learned, exact)",
             "command": "python bench/shapes.py", "load": "idle",
             "columns": ["t (of 200)", "mean cosine error"],
             "rows": [[t, f"{e:.4f}"] for t, e in score["cos_error"].items()],
             "note": f"The fields take {score['seconds_fields']:.2f} s and the figure "
             f"{score['seconds_drawing']:.2f} s to draw, of a {f1(score['run_seconds'])} s run."}]


def ode(data: dict[str, Any]) -> list[Table]:
    sw = data["swiss"]
    ex, dg = sw["exact"], data["digits"]
    return [{"title": "The ODE on 2-D Gaussian data with its exact eps",
             "command": "python bench/ode.py", "load": "shared machine, under load",
             "columns": ["rtol = atol", "ODE NLL (nats/dim)", "true NLL", "ODE - true",
                         "evaluations (NLL)", "W1 / floor (2,000 samples)",
                         "evaluations (sampling)"],
             "rows": [[f"{r['tol']:g}", f"{r['ode_nll']:.4f}", f"{r['true_nll']:.4f}",
                       f"{r['diff']:+.4f}", int(r["nfe_nll"]), f2(r["ratio"]),
                       int(r["nfe_sample"])] for r in data["gaussian"]]},
            {"title": "scipy's RK45 beside torchdiffeq's dopri5",
             "command": "python bench/ode.py", "load": "shared machine, under load",
             "columns": ["rtol = atol", "scipy evaluations", "scipy seconds",
                         "torchdiffeq evaluations", "torchdiffeq seconds",
                         "largest sample difference"],
             "rows": [[f"{r['tol']:g}", r["scipy_nfe"], f2(r["scipy_seconds"]),
                       r["torchdiffeq_nfe"], f2(r["torchdiffeq_seconds"]),
                       f"{r['max_difference']:.2g}"] for r in data["solvers"]]},
            {"title": "The default swiss-roll run: bound, exact NLL and ODE samples",
             "command": "python bench/ode.py --parts swiss", "load": "idle",
             "columns": ["sampler", "1-NNA (floor)", "W1 / floor", "seconds, 3 draws"],
             "rows": [[r["sampler"] + (f", rtol = atol = {r['tol']:g}" if "tol" in r else ""),
                       f"{f3(r['1nna'])} ({f3(r['1nna_floor'])})", f2(r["w1_ratio"]),
                       f1(r["seconds"])] for r in sw["quality"]],
             "note": f"Bound {sw['bound']:.4f} nats/dim; the ODE's exact NLL "
             f"{ex['nats_per_dim']:.4f} nats/dim (standard error "
             f"{ex['stderr_nats_per_dim']:.4f}, {ex['divergence']} divergence, "
             f"{ex['nfe']} evaluations) on {ex['n']} held-out points."},
            {"title": "Digits: the bound and the exact NLL",
             "command": "ddpmlab train digits && ddpmlab evaluate RUN --nll --exact-nll",
             "load": "shared machine, under load",
             "columns": ["bound (bits/dim)", "ODE (bits/dim)", "standard error",
                         "evaluations", "held-out digits"],
             "rows": [[f"{dg['bound_bits_per_dim']:.3f}", f"{dg['exact']['bits_per_dim']:.3f}",
                       f"{dg['exact']['stderr_bits_per_dim']:.3f}", dg["exact"]["nfe"],
                       dg["exact"]["n"]]],
             "note": "Hutchinson's estimator, one Rademacher probe per image; images "
             f"dequantised within their {dg['exact']['dequantised_levels']} levels' bins."}]


def distributed(data: dict[str, Any]) -> list[Table]:
    eq = data["equal"]
    speed = data["speed"]
    configs = list(next(iter(speed.values())))
    return [{"title": "The same run from one and from two processes",
             "command": "python bench/distributed.py --parts equal",
             "columns": ["data", "largest weight difference, 2 processes vs 1",
                         "the two 2-process runs"],
             "rows": [[k, "0 (bit-identical)" if v["largest_difference"] == 0 else
                       f"{v['largest_difference']:.2g}",
                       "bit-identical" if v["two_runs_bit_identical"] else "differ"]
                      for k, v in eq.items()]},
            {"title": "Throughput, steps per second of the global batch",
             "command": "python bench/distributed.py --parts speed", "load": "idle",
             "columns": ["model", *configs],
             "rows": [[k, *(f"{v[c]['steps_per_s']:.1f} ({v[c]['ratio']:.2f}x)"
                            for c in configs)] for k, v in speed.items()]},
            {"title": "Weight difference of 1 and 2 processes through training",
             "command": "python bench/distributed.py --parts growth",
             "columns": ["step", "largest difference"],
             "rows": [[k, f"{v:g}"] for k, v in data["growth"].items()]},
            {"title": "The leaves' cost on one process (ms a step, default point model)",
             "command": "python bench/distributed.py --parts leaves",
             "columns": ["leaves", "ms a step"],
             "rows": [[k, f2(v)] for k, v in data["leaves"].items()]}]


def perf(data: dict[str, Any]) -> list[Table]:
    tr, tq, sq, sa = (data[k] for k in ("training", "time_to_quality", "source_quality",
                                        "sampling"))
    busy = data["machine"]["cpu_busy_at_start"]
    load = f"idle (CPU {pct(busy)} busy at the start)"
    rows = [["training steps/s, source text's configuration", f1(tr["source_steps_per_s"]),
             f"{f1(tr['ddpmlab_seed_steps_per_s'])} ({tr['ratio']:.1f}x; autograd path "
             f"{f1(tr['ddpmlab_seed_autograd_steps_per_s'])})"],
            ["training steps/s, default point model", "-",
             f"{f1(tr['ddpmlab_default_steps_per_s'])} (autograd path "
             f"{f1(tr['ddpmlab_default_autograd_steps_per_s'])})"],
            ["time to quality on swiss_roll",
             f"{f1(sq['train_seconds'])} s, {sq['steps']} steps, 1-NNA {f3(sq['1nna'])}, "
             f"W1 {f2(sq['w1_ratio'])} x floor",
             f"{f1(tq['ddpmlab_seconds'])} s, {tq['ddpmlab_steps']} steps; the default "
             f"command {f1(tq['default_command_seconds'])} s, 1-NNA {f3(tq['default_1nna'])}, "
             f"W1 {f2(tq['default_w1_ratio'])} x floor"]]
    for name, s in sa.items():
        if not isinstance(s, dict):
            continue
        rows.append([f"sampling {s['points']:,} points, {name}", "-",
                     f"{s['points_per_s']:,.0f} points/s, {pct(s['fraction_of_peak_1_thread'])}"
                     f" of the 1-thread peak, peak memory {s['maxrss_kb'] / 1024:.0f} MiB"])
    threads = [[t["threads"], "yes" if t["competing"] else "no", f1(t["seed_steps_per_s"]),
                f1(t["default_steps_per_s"]), f"{t['ddim20_points_per_s']:,.0f}"]
               for t in data["threads"]]
    return [{"title": "Speed beside the source text's loop", "command": "python bench/perf.py",
             "load": load, "columns": ["measure", "source text's loop", "ddpmlab"],
             "rows": rows, "note": "The default command's time was measured at an older "
             "point default (eps at batch 256); the quality tables give today's."},
            {"title": "Threads, alone and beside a competing process",
             "command": "python bench/perf.py", "load": load,
             "columns": ["threads", "competing process", "seed_mlp steps/s",
                         "default steps/s", "DDIM-20 points/s"], "rows": threads}]


def startup(data: dict[str, Any]) -> list[Table]:
    return [{"title": "Start-up: seconds from launch to exit",
             "command": "python bench/startup.py",
             "columns": ["what", "seconds"], "rows": [[k, f2(v)] for k, v in data.items()]}]


def optimizer(data: dict[str, Any]) -> list[Table]:
    models = [k for k in data if k != "startup_s"]
    names = list(data[models[0]])
    return [{"title": "Optimizer step, microseconds", "command": "python bench/optimizer.py",
             "load": "idle", "columns": ["optimizer", *models],
             "rows": [[n, *(f1(data[m][n]) for m in models)] for n in names]},
            {"title": "Start-up with each optimizer, seconds",
             "command": "python bench/optimizer.py", "load": "idle",
             "columns": ["what", "seconds"],
             "rows": [[k, f2(v)] for k, v in data["startup_s"].items()]}]


def thin_probe(data: dict[str, Any]) -> list[Table]:
    rows = [[name, seed, f2(v["upper"]), f2(v["lower"])]
            for name, seeds in data["variants"].items() for seed, v in seeds.items()]
    return [{"title": "Conditional moons: W1 / floor per moon, by training variant",
             "command": "python experiments/thin_probe.py",
             "columns": ["variant", "seed", "upper moon", "lower moon"], "rows": rows}]


ADAPTERS: dict[str, Callable[[Any], list[Table]]] = {
    "quality": quality("python bench/quality.py --seeds 0 1 2 --seed-config", load="idle"),
    "quality_stf": quality("python bench/quality.py --seeds 0 1 2",
                           "The stable target field's first measurement."),
    "quality_leaves": quality("python bench/quality.py --seeds 0 1 2 --stable-target 0",
                              "Before the stable target field: batch 512, v target, "
                              "2 leaves."),
    "quality_after_modalities": quality("python bench/quality.py --seeds 0 1 2",
                                        "The eps target at batch 256 (an older default)."),
    "few_steps": few_steps, "few_steps_b512": few_steps, "few_steps_stf": few_steps,
    "few_steps_b1024_lambda_t2": few_steps,
    "exact_reference": exact_reference, "exact_reference_sweep": exact_reference,
    "few_steps_sweep": sweep, "few_steps_sweep_3draws": sweep, "few_steps_sweep_b1024": sweep,
    "few_steps_sweep_b1024_3draws": sweep,
    "improved": improved, "shapes": shapes, "ode": ode, "distributed": distributed,
    "perf": perf, "startup": startup, "optimizer": optimizer, "thin_probe": thin_probe,
    **IMAGE_ADAPTERS,
}
