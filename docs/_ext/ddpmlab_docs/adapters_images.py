"""Adapters of the image and guidance result files (see :mod:`.adapters`)."""

from __future__ import annotations

from typing import Any

from .format import f1, f2, f3, pct

Table = dict[str, Any]


def image_quality(rows: list[dict[str, Any]]) -> list[Table]:
    return [{"title": "Digits with the U-Net: ddpmlab train digits, and the source text's "
             "U-Net for the same training time",
             "command": "python bench/image_quality.py",
             "columns": ["model", "steps", "wall time", "FD / floor", "confident (real)",
                         "class TV of 1,000 (floor)", "memorised", "1-NNA (floor)", "bounds"],
             "rows": [[r["model"], f"{r['steps']:,}", f"{r['seconds']:.0f} s",
                       f2(r["fd_ratio"]), f"{f3(r['confident'])} ({f3(r['confident_floor'])})",
                       f"{f3(r['class_tv_all'])} ({f3(r['class_tv_all_floor'])})",
                       pct(r["memorised"]) if r["memorised"] else "0 %",
                       f"{f3(r['1nna'])} ({f3(r['1nna_floor'])})",
                       "pass" if r["pass"] else "FAIL"] for r in rows],
             "note": "1,000 samples (4 draws of 250 against the held-out halves) in the "
             "feature space of the shipped digits classifier, each beside its floor."}]


def image_defaults(rows: list[dict[str, Any]]) -> list[Table]:
    keys = [k for k in ("fd", "kid", "precision", "recall", "density", "coverage", "1nna")
            if k in rows[0]]
    tables: list[Table] = []
    for data in dict.fromkeys(r["data"] for r in rows):
        mine = [r for r in rows if r["data"] == data]
        name = {"digits": "Digits", "mnist": "MNIST"}.get(data, data)
        tables.append({
            "title": f"{name} U-Net candidates for the defaults",
            "command": f"python bench/image_defaults.py {data} CANDIDATE ...",
            "columns": ["candidate", "steps", "seed", "threads", "parameters", "train s",
                        "eval s", "FD / floor", *keys, "confident (real images)"],
            "rows": [[r["name"], r["steps"], r.get("seed", 0), r.get("threads", 2),
                      f"{r['params']:,}",
                      "" if r["train_s"] is None else f"{r['train_s']:.0f}", f"{r['eval_s']:.0f}",
                      f2(r["fd"] / r["fd_floor"]), *(f3(r.get(k)) for k in keys),
                      f"{f3(r['confident'])} ({f3(r['confident_floor'])})"] for r in mine],
            "note": "Seconds were measured under varying load (rows with one thread shared "
                    "the machine with other work); quality does not depend on load; no "
                    "training seconds: a kept run evaluated again (`--keep`). The held-out "
                    "images, and so real images' confident share, depend on the seed. A "
                    "conditional candidate's samples take each class in the data's "
                    "proportions."})
    return tables


def images(data: dict[str, Any]) -> list[Table]:
    keys = ["fd", "confident", "1nna", "class_tv", "memorised"]
    rows = []
    for name in ("ddpmlab", "diffusers"):
        r = data[name]
        m = r["metrics"]
        rows.append([name, f"{r['params'] / 1e6:.2f} M", f"{r['steps']:,}",
                     f1(r["steps_per_s"]), f"{f1(r['sample_s'])} s",
                     f2(m["fd"]["ratio"]),
                     *(f"{f3(m[k]['value'])} ({f3(m[k]['floor'])})" for k in keys[1:])])
    return [{"title": f"ddpmlab beside the diffusers course loop, {data['seconds']:.0f} s of "
             f"training each on {data['data']}",
             "command": 'pip install -e ".[bench]" -c constraints.txt && '
             "python bench/images.py",
             "load": f"idle (CPU {pct(data['cpu_busy_before'])} busy before)",
             "columns": ["", "parameters", "training steps", "steps/s",
                         f"sampling {data['n']} images", "FD / floor",
                         *(f"{k} (floor)" for k in keys[1:])],
             "rows": rows,
             "note": f"T = {data['T']}, {data['schedule']} schedule, batch {data['batch']}, "
             f"{data['threads']} threads; DDPM over all steps, scored against one held-out "
             "half beside the other."}]


_IMAGE_CELLS = ["ddpm@all", "ddim@all", "ddim@50", "ddim@20", "ddim@10", "dpm_solver@50",
                "dpm_solver@20", "dpm_solver@10"]


def image_few_steps(data: dict[str, Any]) -> list[Table]:
    seeds = [r["seed"] for r in data["rows"]]
    rows = []
    for cell in _IMAGE_CELLS:
        sampler, steps = cell.split("@")
        cs = [r["cells"][cell] for r in data["rows"]]
        rows.append([sampler.replace("dpm_solver", "DPM-Solver++").upper()
                     if sampler != "dpm_solver" else "DPM-Solver++",
                     200 if steps == "all" else steps,
                     ", ".join(f2(c["fd_ratio"]) for c in cs),
                     ", ".join(f3(c["confident"]) for c in cs),
                     ", ".join(f3(c["confident_real"]) for c in cs),
                     f1(sum(c["seconds"] for c in cs) / len(cs))])
    args = data.get("train_args", "(defaults)")
    return [{"title": f"Few-step samplers on digits, train {args}",
             "command": "python bench/image_few_steps.py"
             + (f' --train-args "{data["train_args"]}"' if "train_args" in data else ""),
             "columns": ["sampler", "steps", f"FD / floor (seeds {', '.join(map(str, seeds))})",
                         "confident", "confident, real", "seconds (mean)"],
             "rows": rows,
             "note": f"Each cell `evaluate`'s 1,000 samples; {data['threads']} threads."}]


def image_sampling(data: dict[str, Any]) -> list[Table]:
    rows = []
    for size, by_threads in data.items():
        for threads, by_block in by_threads.items():
            rows.append([size, threads, *(f"{v:.0f}" for v in by_block.values())])
    blocks = list(next(iter(next(iter(data.values())).values())))
    return [{"title": "U-Net sampling cost by block size (microseconds per image and step)",
             "command": "python bench/image_sampling.py", "load": "idle",
             "columns": ["image size", "threads", *(f"block {b}" for b in blocks)],
             "rows": rows}]


def _class_range(classes: dict[str, Any], key: str) -> str:
    values = [c[key] for c in classes.values()]
    return f"{min(values):.2f}..{max(values):.2f} ({sum(values) / len(values):.2f})"


def guidance(data: dict[str, Any]) -> list[Table]:
    tables = []
    for name, part in data["points"].items():
        by_w: dict[float, list[Any]] = {}
        for seed, run in part["seeds"].items():
            for r in run["rows"]:
                by_w.setdefault(r["guidance"], []).append((seed, r))
        rows = [[w, f"{min(r['accuracy_min'] for _, r in rs):.5f}",
                 " / ".join(_class_range(r["classes"], "w1_ratio") for _, r in rs)]
                for w, rs in sorted(by_w.items())]
        tables.append({
            "title": f"Classifier-free guidance on {name}: per class, W1 / floor by weight w",
            "command": "python bench/guidance.py --parts points --threads 1",
            "columns": ["w", "in the class's region (worst class, worst seed)",
                        "W1 / floor per class, seeds " + " / ".join(part["seeds"])
                        + ": range (mean)"],
            "rows": rows, "note": "Options: " + " ".join(part["options"]) + "."})
    d = data["digits"]
    tables.append({
        "title": "Classifier-free guidance on digits: 100 samples of each digit per weight",
        "command": "python bench/guidance.py --parts digits --threads 1",
        "load": "8-12 (a shared machine; quality is unaffected, seconds are)",
        "columns": ["w", "classified as their digit (worst digit)",
                    "per-class FD / floor (mean of 10)", "FD of all / floor", "seconds"],
        "rows": [[r["guidance"], f"{f3(r['accuracy'])} ({f2(r['accuracy_min'])})",
                  f2(r["ratio"]), f2(r["ratio_all"]), f"{r['seconds']:.0f}"]
                 for r in d["rows"]],
        "note": f"Real held-out digits: {f3(d['rows'][0]['accuracy_real'])} classified "
        "correctly."})
    speed = data["speed"]["rows"]
    tables.append({
        "title": "Cost of a conditional step of the default point model",
        "command": "python bench/guidance.py --parts speed --threads 1",
        "columns": ["configuration", "microseconds a step", "ratio", "gradient path",
                    "variance"],
        "rows": [[k, f"{v['us_per_step']:.0f}", f"{v['ratio']:.2f}x", v["path"] or "-",
                  v["variance"]] for k, v in speed.items()],
        "note": "One thread, the configurations taking turns in one process, best of 7 "
        "windows: read the ratios."})
    return tables


IMAGE_ADAPTERS = {"image_quality": image_quality, "image_defaults": image_defaults,
                  "images": images, "image_few_steps": image_few_steps,
                  "image_few_steps_stf": image_few_steps,
                  "image_few_steps_v": image_few_steps, "image_sampling": image_sampling,
                  "guidance": guidance}
