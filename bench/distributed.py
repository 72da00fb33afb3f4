"""Many processes under torchrun, measured: the same model from 1 or 2 processes, and steps/s.

    python bench/distributed.py                  # every part (about 10 min on 2 cores)
    python bench/distributed.py --parts speed    # throughput only
    python bench/distributed.py --report         # the tables again, from the JSON

- ``equal``: ``ddpmlab train DATA`` (its defaults, ``--no-eval --no-figures``) in one process
  and with ``torchrun --standalone --nproc-per-node 2 -m ddpmlab train DATA``, twice, for the
  default point set (swiss_roll, 4,000 steps) and digits (the default U-Net; ``--steps``
  300 unless ``--full``, which trains its 1,500): the largest difference between the final
  weights (model and EMA) of the 2-process and the 1-process run, and whether the two
  2-process runs are bit-identical.
- ``growth``: the default point model trained by ``Trainer`` in 1 and in 2 processes, the
  largest weight difference at steps 10 ... 4,000 (zero throughout when the leaves' tree
  sum holds; an all-reduce's other order of float additions grew to 3.6e-3 by step 4,000).
- ``leaves``: one process's ``Trainer.train_step`` of the default point model at
  ``train.leaves`` 1, 2, 4 and 8 (the most processes that train it bit for bit), taking
  turns in windows of 200 steps, best of 7 windows each, in ms per step.
- ``speed``: ``Trainer.train_step`` of the default point model and the default digits U-Net,
  timed inside the processes after a warm-up (start-up excluded): 1 process with 1 and with
  2 threads against 2 processes of 1 thread (torchrun, gloo), in steps per second of the
  global batch, and where torch sees a GPU one process on it.

Run it on a quiet machine: two processes on two cores measure nothing when a third competes.
Writes bench/results/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "distributed.json"
STEPS = {"points": 1500, "digits": 40}  # timed steps per measurement
WARMUP = {"points": 200, "digits": 5}
SOURCE = {"points": "swiss_roll", "digits": "digits"}


def torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
            str(nproc), *args]


def worker(kind: str, threads: int, device: str) -> None:
    """Time train_step of the default configuration of ``kind``; rank 0 prints steps/s."""
    from ddpmlab import distributed
    from ddpmlab.modalities import default_config, modality_for
    from ddpmlab.train import Trainer
    from ddpmlab.train.gradients import HandDerived

    device = distributed.setup(device)
    torch.set_num_threads(threads)
    config = default_config(SOURCE[kind], {"model": {"conditional": False}})
    data = modality_for(config.data.source).prepare(config)
    trainer = Trainer(config, torch.from_numpy(data.model_input()), device=device)
    for _ in range(WARMUP[kind]):
        trainer.train_step()
    distributed.together(lambda: None)  # every rank warm
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(STEPS[kind]):
        loss = trainer.train_step()
    float(loss)
    took = time.perf_counter() - start
    result = {"steps_per_s": STEPS[kind] / took}
    if distributed.current().many:  # the step's two additions: the collective, the rewind
        loss = trainer.reduced[-2].clone()
        result["collective_ms"] = 1e3 * per_call(lambda: trainer.gradients.reduce(loss, False))
        result["get_state_us"] = 1e6 * per_call(trainer.generator.get_state)
        result["floats"] = trainer.reduced.numel()
        result["collective"] = ("leaf tree, all-gather"
                                if isinstance(trainer.gradients, HandDerived) else "all-reduce")
    if distributed.current().main:
        print(json.dumps(result))
    distributed.teardown()


GROWTH = (10, 30, 100, 300, 1000, 2000, 4000)


def growth_worker(out: str) -> None:
    """Train the default point configuration; rank 0 saves the weights at GROWTH steps."""
    from ddpmlab import distributed
    from ddpmlab.modalities import default_config, modality_for
    from ddpmlab.train import Trainer

    distributed.setup("cpu")
    torch.set_num_threads(1)
    config = default_config(SOURCE["points"], {})
    data = modality_for(config.data.source).prepare(config)
    trainer = Trainer(config, torch.from_numpy(data.model_input()))
    saved = {}
    while trainer.step < GROWTH[-1]:
        trainer.train_step()
        if trainer.step in GROWTH:
            saved[f"step{trainer.step}"] = trainer.flat.clone()
    if distributed.current().main:
        torch.save(saved, out)
    distributed.teardown()


def growth() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        files = {n: Path(tmp) / f"{n}.pt" for n in (1, 2)}
        for n, path in files.items():
            me = [str(Path(__file__).resolve()), "--growth-worker", str(path)]
            subprocess.run(torchrun(n, *me) if n > 1 else [sys.executable, *me], check=True,
                           capture_output=True)
        one, two = (torch.load(files[n]) for n in (1, 2))
    rows = {int(k[4:]): float((one[k] - two[k]).abs().max()) for k in one}
    print("largest weight difference by step:", rows, flush=True)
    return rows


def leaves(windows: int = 7, steps: int = 200) -> dict:
    from ddpmlab.config import replace
    from ddpmlab.modalities import default_config, modality_for
    from ddpmlab.train import Trainer

    torch.set_num_threads(1)
    config = default_config(SOURCE["points"], {})
    data = torch.from_numpy(modality_for(config.data.source).prepare(config).model_input())
    trainers = {n: Trainer(replace(config, {"train": {"leaves": n}}), data)
                for n in (1, 2, 4, 8)}
    best = dict.fromkeys(trainers, float("inf"))
    for _ in range(windows):
        for n, trainer in trainers.items():
            best[n] = min(best[n], per_call(trainer.train_step, steps) * 1e3)
    print("ms per step by leaves:", {n: round(v, 3) for n, v in best.items()}, flush=True)
    return best


def per_call(work: Callable[[], object], calls: int = 300) -> float:
    """Seconds per call of ``work``, after a warm-up."""
    for _ in range(calls // 10):
        work()
    start = time.perf_counter()
    for _ in range(calls):
        work()
    return (time.perf_counter() - start) / calls


def measure(kind: str, nproc: int, threads: int, device: str = "cpu") -> dict:
    me = [str(Path(__file__).resolve()), "--worker", kind, str(threads), device]
    command = torchrun(nproc, *me) if nproc > 1 else [sys.executable, *me]
    done = subprocess.run(command, capture_output=True, text=True, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(done.stdout.strip().splitlines()[-1])


def speed() -> dict:
    rows = {}
    for kind in ("points", "digits"):
        cells = {"1 process x 1 thread": measure(kind, 1, 1),
                 "1 process x 2 threads": measure(kind, 1, 2),
                 "2 processes x 1 thread": measure(kind, 2, 1)}
        if torch.cuda.is_available():
            cells["1 GPU"] = measure(kind, 1, 1, "cuda")
        one = cells["1 process x 1 thread"]["steps_per_s"]
        rows[kind] = {name: {**v, "ratio": v["steps_per_s"] / one} for name, v in cells.items()}
        print(kind, {k: f"{v['steps_per_s']:.1f}/s ({v['ratio']:.2f}x)"
                     for k, v in rows[kind].items()}, flush=True)
    return rows


def weights(run: Path) -> dict[str, torch.Tensor]:
    from ddpmlab import checkpoint

    ckpt = checkpoint.load(run / "checkpoint.safetensors")
    return {**{f"model.{k}": v for k, v in ckpt.model.items()},
            **{f"ema.{k}": v for k, v in ckpt.ema.items()}}


def equal(full: bool, kinds: list[str]) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            steps = [] if full or kind == "points" else ["--steps", "300"]
            # one thread each: the maths is the same at any count, and two threads beside
            # another process collapse (bench/README.md, "threads")
            args = ["train", SOURCE[kind], *steps, "--threads", "1", "--no-eval",
                    "--no-figures", "--quiet"]
            out = {name: Path(tmp) / f"{kind}-{name}" for name in ("one", "two", "two_again")}
            took = {}
            for name, path in out.items():
                start = time.perf_counter()
                command = ([sys.executable, "-m", "ddpmlab"] if name == "one"
                           else torchrun(2, "-m", "ddpmlab"))
                subprocess.run([*command, *args, "--out", str(path)], check=True)
                took[name] = time.perf_counter() - start
            w = {name: weights(path) for name, path in out.items()}
            rows[kind] = {
                "steps": int(steps[1]) if steps else None,
                "largest_difference": max(float((w["two"][k] - w["one"][k]).abs().max())
                                          for k in w["one"]),
                "two_runs_bit_identical": all(torch.equal(w["two"][k], w["two_again"][k])
                                              for k in w["two"]),
                "seconds": took}
            print(kind, rows[kind], flush=True)
    return rows


def report(results: dict) -> None:
    if "equal" in results:
        print("| data | steps | largest weight difference, 2 processes vs 1 | two 2-process "
              "runs |")
        print("|---|---|---|---|")
        for kind, r in results["equal"].items():
            print(f"| {SOURCE[kind]} | {r['steps'] or 'default'} | {r['largest_difference']:.2e}"
                  f" | {'bit-identical' if r['two_runs_bit_identical'] else 'differ'} |")
    if "growth" in results:
        print("\n| training step | " + " | ".join(map(str, results["growth"])) + " |")
        print("|---|" + "---|" * len(results["growth"]))
        print("| largest weight difference, 2 processes vs 1 | " + " | ".join(
            f"{v:.1e}" for v in results["growth"].values()) + " |")
    if "leaves" in results:
        print("\n| leaves | " + " | ".join(map(str, results["leaves"])) + " |")
        print("|---|" + "---|" * len(results["leaves"]))
        print("| ms per step, one process | " + " | ".join(
            f"{v:.2f}" for v in results["leaves"].values()) + " |")
    if "speed" in results:
        names = list(next(iter(results["speed"].values())))
        print("\n| model | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for kind, cells in results["speed"].items():
            print(f"| {kind} | " + " | ".join(
                f"{cells[n]['steps_per_s']:.1f} steps/s ({cells[n]['ratio']:.2f}x)"
                for n in names) + " |")
        for kind, cells in results["speed"].items():
            two = cells["2 processes x 1 thread"]
            if "collective_ms" in two:
                print(f"{kind}: {two['collective']} of {two['floats']:,} floats "
                      f"{two['collective_ms']:.2f} ms, generator state saved in "
                      f"{two['get_state_us']:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=["equal", "growth", "leaves", "speed"],
                        default=["equal", "growth", "leaves", "speed"])
    parser.add_argument("--full", action="store_true", help="digits at its default steps")
    parser.add_argument("--kinds", nargs="+", choices=list(SOURCE), default=list(SOURCE),
                        help="the models of the equal part")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "THREADS", "DEVICE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--growth-worker", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.growth_worker:
        growth_worker(args.growth_worker)
        return
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), args.worker[2])
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if not args.report:
        if "equal" in args.parts:
            results["equal"] = {**results.get("equal", {}), **equal(args.full, args.kinds)}
        if "growth" in args.parts:
            results["growth"] = growth()
        if "leaves" in args.parts:
            results["leaves"] = leaves()
        if "speed" in args.parts:
            results["speed"] = speed()
        results["machine"] = {"cores": os.cpu_count(), "torch": torch.__version__}
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    report(results)


if __name__ == "__main__":
    main()
