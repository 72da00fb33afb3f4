"""Speed and memory of ddpmlab beside the source text's loop, measured side by side in one run.

    python bench/perf.py                 # everything (about 15 minutes on 2 cores)
    python bench/perf.py --quick         # fewer points and steps (a few minutes), for a check

Waits until the machine is quiet (under 10 % of the CPU busy) before it starts, then measures:

1. training throughput at the source text's configuration (`--config seed`): the text's
   loop as written (bench/source_loop.py: DataLoader, its loss, Adam, clip_grad_norm_,
   zero_grad; its periodic sampling costed apart) against ``Trainer.train_step`` as
   ``ddpmlab train`` runs it (hand-derived gradients, and autograd for comparison), and
   the default configuration;
2. time to quality: ``ddpmlab train swiss_roll --steps N --no-figures`` for growing N until
   1-NNA <= 0.55, wall time from launch to exit, against the source loop's 4,000 epochs
   and its final quality (ddpmlab's metrics, 2,000 samples from its own sampler);
3. sampling 10^6 points with the default model, DDPM over all steps and DDIM with 20, in
   points per second and as a fraction of this machine's float32 matrix-multiply peak
   (a 2048 x 2048 torch.mm, 1 and 2 threads);
4. peak resident memory of a process sampling 10^6 points and of one writing the GIF;
5. 1 and 2 threads, idle and with a CPU-bound process competing for a core.

Prints a table; writes bench/results/perf.json and bench/results/perf.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import source_loop  # noqa: E402  (bench/source_loop.py)

NNA_MAX = 0.55
HOG = "while True: pass"


def cpu_busy(seconds: float = 3.0) -> float:
    """Fraction of all cores' time spent outside idle and iowait over ``seconds`` (/proc/stat).

    Not the load average: a kernel thread that stays runnable without using the CPU (DAMON's
    kdamond on this machine) holds it at 1.0 on an idle machine.
    """
    def ticks() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # total, idle + iowait

    if not Path("/proc/stat").exists():
        return 0.0
    total0, idle0 = ticks()
    time.sleep(seconds)
    total1, idle1 = ticks()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(limit: float, timeout: float) -> None:
    """Sleep until other processes use less than ``limit`` of the CPU (or ``timeout`` passed)."""
    start = time.time()
    while (busy := cpu_busy()) >= limit and time.time() - start < timeout:
        print(f"CPU {busy:.0%} busy >= {limit:.0%}: waiting 30 s", flush=True)
        time.sleep(30)


@contextlib.contextmanager
def hog(on: bool):
    """A CPU-bound process competing for a core while the block runs (when ``on``)."""
    proc = subprocess.Popen([sys.executable, "-c", HOG]) if on else None
    try:
        time.sleep(0.5 if on else 0)
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def peak_flops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Best float32 FLOP/s of a size x size torch.mm with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# ------------------------------------------------------------------ training throughput


def seed_config():
    from ddpmlab.config import RunConfig, from_dict, load_toml

    return from_dict(RunConfig, load_toml("seed"))


def trainer_for(config, autograd: bool = False):
    from ddpmlab.data import Standardizer, resolve
    from ddpmlab.train import Trainer

    points = resolve(config.data.source, config.data.n_train, 0, config.data.heldout)
    x = torch.from_numpy(Standardizer.fit(points.train).transform(points.train))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the seed config's sigmoid schedule warns
        return Trainer(config, x.to(torch.float32), autograd=autograd)


def ddpmlab_steps_per_s(config, steps: int, autograd: bool = False) -> float:
    """Updates per second of Trainer.train_step, with the loss read as Trainer.fit does."""
    trainer = trainer_for(config, autograd)
    for _ in range(min(200, steps)):
        float(trainer.train_step())
    start = time.perf_counter()
    for _ in range(steps):
        float(trainer.train_step())
    return steps / (time.perf_counter() - start)


def source_steps_per_s(epochs: int) -> float:
    source_loop.train(5)  # warm-up
    start = time.perf_counter()
    _, steps = source_loop.train(epochs)
    return steps / (time.perf_counter() - start)


def source_sampling_seconds() -> float:
    """One p_sample_loop over the dataset, with the graph, as the text runs it every 100th
    epoch (8 times: ``if t%100==0`` sits inside the batch loop)."""
    model = source_loop.DDPM(source_loop.T)
    data = source_loop.make_dataset()
    start = time.perf_counter()
    source_loop.p_sample_loop(model, data.shape, source_loop.T, source_loop.betas,
                              source_loop.one_minus_alphas_bar_sqrt)
    return time.perf_counter() - start


def training(args, threads: int = 1) -> dict:
    from ddpmlab.config import RunConfig

    torch.set_num_threads(threads)
    seed, default = seed_config(), RunConfig()
    src = source_steps_per_s(args.source_epochs)
    fast = ddpmlab_steps_per_s(seed, args.train_steps)
    auto = ddpmlab_steps_per_s(seed, args.train_steps, autograd=True)
    sampling = source_sampling_seconds()
    # every 100 epochs (800 steps) the text samples 8 chains: seconds added per step
    per_step = 8 * sampling / 800
    return {
        "source_steps_per_s": src,
        "source_with_sampling_steps_per_s": 1 / (1 / src + per_step),
        "source_p_sample_loop_s": sampling,
        "ddpmlab_seed_steps_per_s": fast,
        "ddpmlab_seed_autograd_steps_per_s": auto,
        "ratio": fast / src,
        "ddpmlab_default_steps_per_s": ddpmlab_steps_per_s(default, args.train_steps // 4),
        "ddpmlab_default_autograd_steps_per_s": ddpmlab_steps_per_s(
            default, args.train_steps // 4, autograd=True),
    }


# ------------------------------------------------------------------ time to quality


def run_cli(args_: list[str]) -> float:
    """Wall seconds of ``ddpmlab ARGS`` in a fresh process, launch to exit."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", *args_], capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"ddpmlab {' '.join(args_)} failed:\n{proc.stderr}")
    return seconds


def metrics_of(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["metrics"]


def time_to_quality(args, tmp: Path) -> dict:
    rows = []
    for steps in args.steps:
        out = tmp / f"ttq-{steps}"
        seconds = run_cli(["train", "swiss_roll", "--out", str(out), "--steps", str(steps),
                           "--no-figures", "--quiet"])
        m = metrics_of(out)
        rows.append({"steps": steps, "seconds": seconds, "1nna": m["1nna"]["value"],
                     "w1_ratio": m["w1"]["ratio"]})
        print(f"  ddpmlab --steps {steps}: {seconds:.1f} s, 1-NNA {m['1nna']['value']:.3f}",
              flush=True)
        if m["1nna"]["value"] <= NNA_MAX:
            break
    reached = next((r for r in rows if r["1nna"] <= NNA_MAX), None)
    full = run_cli(["train", "swiss_roll", "--out", str(tmp / "default"), "--quiet"])
    m = metrics_of(tmp / "default")
    return {"ddpmlab_runs": rows, "ddpmlab_seconds": reached and reached["seconds"],
            "ddpmlab_steps": reached and reached["steps"],
            "default_command_seconds": full, "default_1nna": m["1nna"]["value"],
            "default_w1_ratio": m["w1"]["ratio"], "default_run": str(tmp / "default")}


def source_quality(epochs: int, repeats: int = 3) -> dict:
    """The source loop trained for ``epochs`` (wall time), then scored as ddpmlab scores a
    run: 2,000 samples from its sampler against held-out swiss-roll points (3 draws)."""
    from ddpmlab import metrics
    from ddpmlab.data import resolve

    torch.set_num_threads(1)
    start = time.perf_counter()
    model, steps = source_loop.train(epochs)
    seconds = time.perf_counter() - start
    held = resolve("swiss_roll", 2, 0, 8000).heldout  # the same distribution, fresh points
    sets = [held[i * 2000:(i + 1) * 2000] for i in range(4)]
    start = time.perf_counter()
    samples = [source_loop.sample(model, 2000, seed=i) for i in range(repeats)]
    sampling = time.perf_counter() - start
    result = metrics.average([metrics.evaluate(s, sets[i], sets[i + 1])
                              for i, s in enumerate(samples)])
    return {"epochs": epochs, "steps": steps, "train_seconds": seconds,
            "sample_seconds_per_2000": sampling / repeats,
            "1nna": result["1nna"]["value"], "1nna_floor": result["1nna"]["floor"],
            "w1_ratio": result["w1"]["ratio"]}


# ------------------------------------------------------------------ sampling and memory

# Peak resident memory is read from /proc/self/status (VmHWM, this program's own peak):
# ru_maxrss would also count the parent's memory, inherited through fork and exec.
HWM = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])"
CHILD = """
import json, sys, time, torch
import ddpmlab
run_dir, n, sampler, steps, threads = sys.argv[1:]
run = ddpmlab.open_run(run_dir)
torch.set_num_threads(int(threads))  # after open_run, which sets the run's own
base = HWM
start = time.perf_counter()
x = run.sample(int(n), 0, ddpmlab.SamplerSpec(sampler, None if steps == 'all' else int(steps)))
seconds = time.perf_counter() - start
assert x.shape == (int(n), 2) and (x == x).all()
print(json.dumps({"seconds": seconds, "maxrss_kb": HWM, "rss_before_kb": base}))
""".replace("HWM", HWM)

ANIMATE = """
import json, sys, time
from ddpmlab.cli import main
start = time.perf_counter()
assert main(["animate", sys.argv[1], "--n", sys.argv[2], "--out", sys.argv[3]]) == 0
print(json.dumps({"seconds": time.perf_counter() - start, "maxrss_kb": HWM}))
""".replace("HWM", HWM)


def child(code: str, *argv: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True,
                          text=True)
    if proc.returncode:
        raise SystemExit(f"child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def flops_per_point_step(run_dir: str) -> float:
    """FLOPs of the network's matrix products per point and step (2 x multiply-adds)."""
    import ddpmlab

    model = ddpmlab.open_run(run_dir).model
    macs = model.fourier.shape[0] * model.fourier.shape[1]  # x @ B
    macs += sum(m.in_features * m.out_features for name, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and not name.startswith("t_mlp"))
    return 2.0 * macs  # the timestep MLP runs once per step, not per point: left out


def sampling(args, run_dir: str, peak: dict) -> dict:
    flops = flops_per_point_step(run_dir)
    T = json.loads((Path(run_dir) / "config.json").read_text())["diffusion"]["timesteps"]
    out = {"flops_per_point_step": flops}
    for name, sampler, steps, k in [("ddpm", "ddpm", "all", T), ("ddim20", "ddim", "20", 20)]:
        r = child(CHILD, run_dir, args.points, sampler, steps, 1)
        rate = args.points / r["seconds"]
        out[name] = {**r, "points": args.points, "steps": k, "points_per_s": rate,
                     "flop_per_s": rate * k * flops,
                     "fraction_of_peak_1_thread": rate * k * flops / peak["1"]}
        print(f"  {name}: {args.points} points in {r['seconds']:.1f} s = {rate:.0f}/s, "
              f"{100 * out[name]['fraction_of_peak_1_thread']:.0f} % of peak, "
              f"max RSS {r['maxrss_kb'] / 1024:.0f} MiB", flush=True)
    return out


def gif_memory(run_dir: str, tmp: Path, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        r = child(ANIMATE, run_dir, n, tmp / f"anim-{n}.gif")
        rows.append({"points": n, **r})
        print(f"  GIF of {n} points: {r['seconds']:.1f} s, max RSS {r['maxrss_kb'] / 1024:.0f} "
              "MiB", flush=True)
    return rows


# ------------------------------------------------------------------ threads


def threads(args, run_dir: str) -> list[dict]:
    from ddpmlab.config import RunConfig

    rows = []
    for competing in (False, True):
        for k in (1, 2):
            with hog(competing):
                torch.set_num_threads(k)
                seed_rate = ddpmlab_steps_per_s(seed_config(), args.train_steps // 2)
                default_rate = ddpmlab_steps_per_s(RunConfig(), args.train_steps // 8)
                r = child(CHILD, run_dir, args.thread_points, "ddim", "20", k)
            rows.append({"threads": k, "competing": competing, "seed_steps_per_s": seed_rate,
                         "default_steps_per_s": default_rate,
                         "ddim20_points_per_s": args.thread_points / r["seconds"]})
            print(f"  threads {k}{' + competing process' if competing else ''}: seed "
                  f"{seed_rate:.0f} steps/s, default {default_rate:.0f} steps/s, DDIM-20 "
                  f"{rows[-1]['ddim20_points_per_s']:.0f} points/s", flush=True)
    torch.set_num_threads(1)
    return rows


# ------------------------------------------------------------------ report


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr, ttq, sm, th = (results[k] for k in ("training", "time_to_quality", "sampling",
                                            "threads"))
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    ax = axes[0]
    names = ["source loop", "ddpmlab\n(autograd)", "ddpmlab"]
    vals = [tr["source_steps_per_s"], tr["ddpmlab_seed_autograd_steps_per_s"],
            tr["ddpmlab_seed_steps_per_s"]]
    ax.bar(names, vals, color=["#999", "#8ab", "#27a"])
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:.0f}", ha="center", va="bottom")
    ax.set_title(f"training steps/s, source config ({tr['ratio']:.1f}x)")
    ax = axes[1]
    sq = results["source_quality"]
    names = ["source loop\n(4,000 epochs)", "ddpmlab train\n(--no-figures)"]
    vals = [sq["train_seconds"], ttq["ddpmlab_seconds"] or float("nan")]
    ax.bar(names, vals, color=["#999", "#27a"])
    labels = [f"{sq['train_seconds']:.0f} s\n1-NNA {sq['1nna']:.2f}",
              f"{vals[1]:.1f} s\n1-NNA <= {NNA_MAX}"]
    for i, (v, s) in enumerate(zip(vals, labels, strict=True)):
        ax.text(i, v, s, ha="center", va="bottom")
    ax.set_ylim(0, max(vals) * 1.3)
    ax.set_title("wall seconds to final / target quality")
    ax = axes[2]
    names = ["DDPM (all steps)", "DDIM (20 steps)"]
    vals = [100 * sm[k]["fraction_of_peak_1_thread"] for k in ("ddpm", "ddim20")]
    ax.bar(names, vals, color="#27a")
    for i, k in enumerate(("ddpm", "ddim20")):
        ax.text(i, vals[i], f"{vals[i]:.0f} %\n{sm[k]['points_per_s']:.0f} pts/s", ha="center",
                va="bottom")
    ax.axhline(50, color="k", lw=0.8, ls="--")
    ax.set_ylim(0, 100)
    ax.set_title("sampling 10^6 points: % of matmul peak")
    ax = axes[3]
    labels = [f"{r['threads']} thr{' +busy' if r['competing'] else ''}" for r in th]
    x = np.arange(len(th))
    base = th[0]
    for j, (key, name) in enumerate([("seed_steps_per_s", "train, source config"),
                                     ("default_steps_per_s", "train, default"),
                                     ("ddim20_points_per_s", "DDIM-20 sampling")]):
        ax.bar(x + 0.27 * (j - 1), [r[key] / base[key] for r in th], 0.27, label=name)
    ax.set_xticks(x, labels)
    ax.axhline(1, color="k", lw=0.8)
    ax.set_title("speed relative to 1 thread, idle")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results: dict) -> str:
    from ddpmlab.config import RunConfig

    tr, ttq, sq = results["training"], results["time_to_quality"], results["source_quality"]
    sm, mem = results["sampling"], results["gif"]
    peak = results["peak_flops"]
    lines = [
        f"matmul peak (2048^2 float32 torch.mm): {peak['1'] / 1e9:.1f} GFLOP/s (1 thread), "
        f"{peak['2'] / 1e9:.1f} GFLOP/s (2 threads)",
        "",
        "| measure | source text's loop | ddpmlab |",
        "|---|---|---|",
        f"| training steps/s, source config (1 thread) | {tr['source_steps_per_s']:.0f} "
        f"({1e3 / tr['source_steps_per_s']:.2f} ms/step; "
        f"{tr['source_with_sampling_steps_per_s']:.0f} with its periodic sampling) | "
        f"{tr['ddpmlab_seed_steps_per_s']:.0f} ({1e3 / tr['ddpmlab_seed_steps_per_s']:.2f} ms/"
        f"step) = **{tr['ratio']:.1f}x**; autograd path "
        f"{tr['ddpmlab_seed_autograd_steps_per_s']:.0f} |",
        f"| training steps/s, default config (resmlp, batch {RunConfig().train.batch_size}) | - | "
        f"{tr['ddpmlab_default_steps_per_s']:.0f}; autograd path "
        f"{tr['ddpmlab_default_autograd_steps_per_s']:.0f} |",
        f"| time to quality on swiss_roll (wall, start-up included) | "
        f"{sq['train_seconds']:.0f} s training ({sq['epochs']} epochs) + "
        f"{sq['sample_seconds_per_2000']:.1f} s per 2,000 samples; final 1-NNA "
        f"{sq['1nna']:.3f}, W1 {sq['w1_ratio']:.2f} x floor | "
        + (f"{ttq['ddpmlab_seconds']:.1f} s (`--steps {ttq['ddpmlab_steps']} --no-figures`, "
           "evaluation included)" if ttq["ddpmlab_seconds"] else
           f"not reached by --steps {ttq['ddpmlab_runs'][-1]['steps']}")
        + f"; the full default command {ttq['default_command_seconds']:.1f} "
        f"s (1-NNA {ttq['default_1nna']:.3f}, W1 {ttq['default_w1_ratio']:.2f} x floor) |",
    ]
    for key, name in (("ddpm", "DDPM, all steps"), ("ddim20", "DDIM, 20 steps")):
        r = sm[key]
        lines.append(f"| sampling 10^6 points, {name} (1 thread) | - | {r['points_per_s']:.0f} "
                     f"points/s, {r['flop_per_s'] / 1e9:.1f} GFLOP/s = "
                     f"**{100 * r['fraction_of_peak_1_thread']:.0f} % of peak**; max RSS "
                     f"{r['maxrss_kb'] / 1024:.0f} MiB ({r['rss_before_kb'] / 1024:.0f} MiB "
                     "before sampling) |")
    for r in mem:
        lines.append(f"| writing the GIF, {r['points']} points | - | max RSS "
                     f"{r['maxrss_kb'] / 1024:.0f} MiB ({r['seconds']:.1f} s) |")
    lines += ["", "| threads | competing process | source-config steps/s | default steps/s |"
              " DDIM-20 points/s |", "|---|---|---|---|---|"]
    for r in results["threads"]:
        lines.append(f"| {r['threads']} | {'yes' if r['competing'] else 'no'} | "
                     f"{r['seed_steps_per_s']:.0f} | {r['default_steps_per_s']:.0f} | "
                     f"{r['ddim20_points_per_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer points and steps")
    p.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 3000, 4000, 6000])
    p.add_argument("--no-wait", action="store_true", help="start even if the machine is busy")
    p.add_argument("--report", action="store_true",
                   help="only print the table and redraw the plot from the saved JSON")
    args = p.parse_args()
    out = ROOT / "bench" / "results"
    name = "perf-quick" if args.quick else "perf"
    if args.report:
        results = json.loads((out / f"{name}.json").read_text())
        plot(results, out / f"{name}.png")
        print(table(results))
        return
    args.points = 100_000 if args.quick else 1_000_000
    args.thread_points = 20_000 if args.quick else 100_000
    args.train_steps = 1000 if args.quick else 4000
    args.source_epochs = 50 if args.quick else 250
    source_full = 400 if args.quick else 4000
    if not args.no_wait:
        wait_quiet(0.1, 1800)
    results: dict = {"machine": {"cpu": platform.processor() or platform.machine(),
                                 "cores": os.cpu_count(), "torch": torch.__version__,
                                 "cpu_busy_at_start": cpu_busy()}}
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        print("peak", flush=True)
        results["peak_flops"] = {"1": peak_flops(1), "2": peak_flops(2)}
        torch.set_num_threads(1)
        print("training throughput", flush=True)
        results["training"] = training(args)
        print("time to quality", flush=True)
        results["time_to_quality"] = time_to_quality(args, tmp)
        results["source_quality"] = source_quality(source_full)
        run_dir = results["time_to_quality"].pop("default_run")
        print("sampling", flush=True)
        results["sampling"] = sampling(args, run_dir, results["peak_flops"])
        results["gif"] = gif_memory(run_dir, tmp, [2000, 20_000 if args.quick else 100_000])
        print("threads", flush=True)
        results["threads"] = threads(args, run_dir)
    results["machine"]["cpu_busy_at_end"] = cpu_busy()
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, out / f"{name}.png")
    print(table(results))
    print(f"written to {out / (name + '.json')} and {out / (name + '.png')}")


if __name__ == "__main__":
    main()
