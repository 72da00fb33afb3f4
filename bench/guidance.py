"""Classifier-free guidance (Ho & Salimans 2022) measured: points, digits, and the step cost.

    python bench/guidance.py                        # every part (about 25 min on 2 cores)
    python bench/guidance.py --parts points exact speed  # points only, and step times
    python bench/guidance.py --report               # the tables again, from the JSON

- ``points``: ``ddpmlab train DATA --conditional --seed S`` (defaults otherwise: a
  learned variance, the conditional points' default) for moons and gaussians8, and
  gaussians8 with ``--variance fixed_small`` (the unconditional default's sigma^2 = beta~),
  for each seed of ``--seeds`` (0 1 2), then ``ddpmlab sweep RUN --guidance 0 1 3``: per
  class, W1 of its samples against the class's held-out points beside the floor (random
  subsets of the class's training points of the same size; ``CLASS_SETS`` (12) independent
  sample sets and as many reference sets), and the share of samples in the requested
  class's region (the class a 15-NN classifier on the training points gives), at w = 0, 1,
  3.
- ``perfect``: fresh real data of moons and gaussians8 (their generators, two pools)
  scored per class exactly as the samples are, against each ``points`` run's held-out and
  training points: what a perfect sampler scores, the measurement's own scatter.
- ``exact``: the same per-class measurement of gaussians8 sampled with the exact
  class-conditional denoiser (each class one Gaussian, ``ddpmlab.mixture``) through the
  DDPM sampler at T = 200 with sigma^2 = beta~ and = beta: what the sampler alone costs.
- ``digits``: ``ddpmlab train digits --conditional`` (defaults otherwise), then ``ddpmlab
  sweep RUN --guidance 0 0.5 1 2 4`` (100 samples of each digit per weight, classified by
  the shipped digits classifier; per-class and overall Fréchet distance in its feature
  space, each beside its floor), and ``evaluate``'s standard Fréchet distance (4 draws of
  250 against the held-out halves) of the conditional model at the best weight (an equal
  share of each class) and at w = 0, of its own unconditional mode (no class), and of the
  unconditional ``ddpmlab train digits`` (with ``--unconditional``: trained here; without,
  the figure bench/image_quality.py measured for the same command, seed and code path,
  from bench/results/image_quality.json: unconditional training is unchanged bit for bit).
- ``speed``: the training step and the sampling step of the default point model,
  unconditional and conditional, as ratios measured interleaved in one process on one
  thread (``speed``'s docstring).

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
#: name -> (data, training options): the conditional defaults (a learned variance), and
#: gaussians8 with the unconditional default's sigma^2 = beta~, whose reverse steps make its
#: Gaussians 11 % too narrow even with the exact denoiser (``exact``; bench/README.md)
POINTS = {"moons": ("moons", ()), "gaussians8": ("gaussians8", ()),
          "gaussians8_fixed_small": ("gaussians8", ("--variance", "fixed_small"))}
SEEDS: list[int] = []  # --seeds
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
        part: dict = {"options": ["--conditional", *extra], "seeds": {}}
        for seed in SEEDS:
            run = runs / f"{name}_seed{seed}"
            seconds = trained(data, run, "--conditional", "--seed", str(seed), *extra)
            part["seeds"][str(seed)] = {"train_seconds": seconds,
                                        "rows": sweep_rows(run, POINT_W)}
        out[name] = part
    return out


def perfect(runs: Path, pools: int = 2) -> dict:
    """Fresh real data in place of samples (a perfect sampler), scored per class as the
    samples are (CLASS_SETS sets of each class) against each ``points`` run's own held-out
    and training points: the measurement's own scatter, the bound's reference."""
    import ddpmlab
    from ddpmlab.data.toy2d import LABELLED
    from ddpmlab.metrics.point_evaluator import CLASS_SETS, EVAL_N
    from ddpmlab.runs.evaluation import evaluator_for

    out: dict = {}
    for name in ("moons", "gaussians8"):
        out[name] = {}
        for seed in SEEDS:
            run = ddpmlab.open_run(runs / f"{name}_seed{seed}")
            classes = len(run.classes or ())
            per = EVAL_N * 3 // classes  # score_classes' n: 6,000 shared by the classes
            rows = []
            for pool in range(pools):
                x, y = LABELLED[name](2 * per * CLASS_SETS * classes,
                                      np.random.default_rng(1000 + pool))
                fresh = np.concatenate([x[y == k][:per * CLASS_SETS] for k in range(classes)])
                r = evaluator_for(run.kind).per_class(
                    fresh, np.repeat(np.arange(classes), per * CLASS_SETS), 0, CLASS_SETS)
                rows.append([c["w1_ratio"] for c in r["classes"].values()])
            out[name][str(seed)] = rows
            print(name, seed, [[round(q, 2) for q in r] for r in rows], flush=True)
    return out


def exact(seeds: int = 3) -> dict:
    """gaussians8's per-class W1 / floor at w = 0 (``PointEvaluator.per_class``, 3 sets of 750
    samples of each class) of the exact class-conditional denoiser sampled by DDPM (T = 200,
    cosine: the point defaults) with each fixed variance, and the samples' std about their
    centre (the data's: 0.1)."""
    from ddpmlab.config import RunConfig, replace
    from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
    from ddpmlab.mixture import GaussianMixture
    from ddpmlab.modalities.points import Points
    from ddpmlab.runs.evaluation import evaluator_for
    from ddpmlab.samplers.ddpm import ddpm_sample
    from ddpmlab.schedules import make_schedule

    torch.set_num_threads(1)
    config = replace(RunConfig(), {"data": {"source": "gaussians8"}})
    kind = Points.prepare(config)
    evaluator = evaluator_for(kind)
    mean, std = np.asarray(kind.scaler.mean), np.asarray(kind.scaler.std)
    schedule = make_schedule(config.diffusion.schedule, config.diffusion.timesteps)
    per, draws = 750, evaluator.class_draws
    labels = np.repeat(np.arange(8), per * draws)
    out: dict = {}
    for variance in ("fixed_small", "fixed_large"):
        rows = []
        for seed in range(seeds):
            g = torch.Generator().manual_seed(seed)
            xs = []
            for k in range(8):  # class k's exact denoiser: one Gaussian, in model space
                mix = GaussianMixture.isotropic(((GAUSSIANS8_CENTRES[k] - mean) / std)[None],
                                                GAUSSIANS8_STD / std)
                xs.append(ddpm_sample(mix.denoiser(schedule.alpha_bar), schedule,
                                      (per * draws, 2), variance=variance,
                                      generator=g).double().numpy())
            x = kind.scaler.inverse(np.concatenate(xs))
            r = evaluator.per_class(x, labels, seed, draws)
            rows.append({"w1_ratio": [c["w1_ratio"] for c in r["classes"].values()],
                         "std": float(np.mean([(x[labels == k] - GAUSSIANS8_CENTRES[k])
                                               .std(0).mean() for k in range(8)]))})
        out[variance] = rows
    return out


def digits(runs: Path, unconditional: bool) -> dict:
    import ddpmlab

    cond, plain = runs / "digits_conditional", runs / "digits"
    seconds = {"conditional": trained("digits", cond, "--conditional"),
               "unconditional": trained("digits", plain) if unconditional else None}
    rows = sweep_rows(cond, DIGITS_W)
    passing = [r for r in rows if r["accuracy_min"] >= 0.95]
    best = min(passing or rows, key=lambda r: r["ratio_all"])  # the closest FD among those

    def fd(run: Path, **kw: object) -> dict:
        m = ddpmlab.score(ddpmlab.open_run(run), **kw).metrics  # type: ignore[arg-type]
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


def speed(windows: int = 7, steps: int = 50, sample_steps: int = 20,
          sample_n: int = 2000) -> dict:
    """Microseconds per training step and per sampling step, the best of ``windows`` windows
    per configuration, the configurations taking turns in this one process on one thread (the
    best window is the least disturbed by other processes on a shared machine; only ratios
    between rows mean anything there).

    Training: ``Trainer.train_step`` of the default point model (``ddpmlab train moons``,
    and with ``--conditional``, ``--conditional --variance fixed_small``), ``steps`` steps a
    window; the unconditional one on the autograd path too. Sampling: a DDPM step of
    ``sample_n`` points (``sample_steps`` steps a window) of each of these networks, the
    conditional ones at w = 0 (one call on B rows) and w = 1 (one call on 2B rows)."""
    from ddpmlab.data import resolve
    from ddpmlab.diffusion import Denoiser
    from ddpmlab.modalities import default_config
    from ddpmlab.samplers.ddpm import ddpm_sample
    from ddpmlab.samplers.guidance import class_labels, guided
    from ddpmlab.train import Trainer
    from ddpmlab.train.gradients import HandDerived

    torch.set_num_threads(1)
    points = resolve("moons", 20_000, 0, 100)
    x = torch.tensor((points.train - points.train.mean(0)) / points.train.std(0),
                     dtype=torch.float32)
    labels = torch.from_numpy(points.train_labels)
    configs = {"unconditional": default_config("moons"),
               "conditional": default_config("moons", {"model": {"conditional": True}}),
               "conditional_fixed_small": default_config(
                   "moons", {"model": {"conditional": True},
                             "diffusion": {"variance": "fixed_small"}})}
    trainers = {name: Trainer(c, x, labels=labels, classes=2) for name, c in configs.items()}
    trainers["unconditional_autograd"] = Trainer(configs["unconditional"], x, autograd=True)
    jobs: dict = {}
    for name, trainer in trainers.items():
        for _ in range(30):
            trainer.train_step()

        def train(trainer: Trainer = trainer) -> None:
            for _ in range(steps):
                float(trainer.train_step())  # read the loss every step, as Trainer.fit does

        jobs[f"train_{name}"] = (train, steps, trainer)
    y = class_labels(sample_n, None, 2)
    for name, trainer in trainers.items():
        if name.endswith("autograd"):
            continue
        net, variance = trainer.ema, trainer.config.diffusion.variance
        denoisers: dict[str, Denoiser] = (
            {"": net} if name == "unconditional" else
            {"_w0": guided(net, y, 0.0, 2, variance), "_w1": guided(net, y, 1.0, 2, variance)})
        for suffix, den in denoisers.items():
            def sample(den: Denoiser = den, trainer: Trainer = trainer) -> None:
                d = trainer.config.diffusion
                ddpm_sample(den, trainer.schedule, (sample_n, 2), steps=sample_steps,
                            variance=d.variance, prediction=d.prediction,
                            generator=torch.Generator().manual_seed(0))

            jobs[f"sample_{name}{suffix}"] = (sample, sample_steps, trainer)
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(windows):
        for name, (job, n, _) in jobs.items():
            start = time.perf_counter()
            job()
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    out = {name: {"us_per_step": 1e6 * b,
                  "ratio": b / best["train_unconditional" if name.startswith("train")
                                    else "sample_unconditional"],
                  "path": ("fast" if isinstance(jobs[name][2].gradients, HandDerived)
                           else "autograd")
                  if name.startswith("train") else None,
                  "variance": jobs[name][2].config.diffusion.variance}
           for name, b in best.items()}
    return {"batch_size": configs["unconditional"].train.batch_size, "sample_n": sample_n,
            "rows": out}


def report(results: dict) -> None:
    for data, part in results.get("points", {}).items():
        print(f"\n{data} ({' '.join(part['options'])}): per seed, share in the requested "
              "class's region (worst class), W1 / floor per class")
        for seed, one in part["seeds"].items():
            for r in one["rows"]:
                ratios = [c["w1_ratio"] for c in r["classes"].values()]
                print(f"  seed {seed} w = {r['guidance']:g}: region {r['accuracy']:.3f} "
                      f"({r['accuracy_min']:.3f}, real {r['accuracy_real']:.3f}); W1/floor "
                      f"{min(ratios):.2f}..{max(ratios):.2f} (mean {np.mean(ratios):.2f})"
                      + (": " + " ".join(f"{q:.2f}" for q in ratios)
                         if r["guidance"] == 0 else ""))
    for data, seeds in results.get("perfect", {}).items():
        print(f"\n{data}, fresh real data as samples: W1 / floor per class, per pool")
        for seed, rows in seeds.items():
            print(f"  seed {seed}: " + " / ".join(" ".join(f"{q:.2f}" for q in r)
                                                 for r in rows))
    for variance, rows in results.get("exact", {}).items():
        print(f"\ngaussians8, exact denoiser, DDPM {variance}: W1 / floor per class at w = 0")
        for seed, r in enumerate(rows):
            print(f"  seed {seed}: " + " ".join(f"{q:.2f}" for q in r["w1_ratio"])
                  + f" (max {max(r['w1_ratio']):.2f}); sample std {r['std']:.4f} (data 0.1)")
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
    if "speed" in results:
        sp = results["speed"]
        print(f"\nstep cost, one thread (training batch {sp['batch_size']}, sampling "
              f"{sp['sample_n']} points), ratio to the unconditional default's:")
        for name, r in sp["rows"].items():
            print(f"  {name}: {r['us_per_step']:.0f} us per step = {r['ratio']:.2f}x "
                  f"({r['variance']}{', ' + r['path'] + ' path' if r['path'] else ''})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+",
                   default=["points", "perfect", "exact", "speed", "digits"],
                   choices=["points", "perfect", "exact", "digits", "speed"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S",
                   help="points: training seeds (default: 0 1 2)")
    p.add_argument("--runs", type=Path, default=ROOT / "bench" / "results" / "guidance_runs")
    p.add_argument("--report", action="store_true", help="print the saved results only")
    p.add_argument("--unconditional", action="store_true",
                   help="digits: train the unconditional run too (else its saved figure)")
    p.add_argument("--threads", type=int, default=None, metavar="K",
                   help="torch threads of the training commands (default: the data's)")
    args = p.parse_args()
    THREADS.extend([] if args.threads is None else ["--threads", str(args.threads)])
    SEEDS.extend(args.seeds)
    if not args.report:
        args.runs.mkdir(parents=True, exist_ok=True)
        for part in args.parts:
            result = (points(args.runs) if part == "points" else exact() if part == "exact"
                      else perfect(args.runs) if part == "perfect"
                      else speed() if part == "speed" else digits(args.runs, args.unconditional))
            saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
            RESULTS.write_text(json.dumps({**saved, part: result}, indent=1))
    report(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
