"""Adam on the trainer's flat buffers against torch.optim.Adam, side by side.

    python bench/optimizer.py            # the default point MLP and the digits U-Net

The trainer keeps the weights and the gradient each in one flat buffer
(``ddpmlab.accel.adam``) and updates them with one fused kernel (``FlatAdam``). The
candidates, on the same buffers and the same gradient:

- ``FlatAdam``: ``torch._fused_adam_`` on the one flat buffer;
- ``Adam(fused=True)`` on one parameter whose data and gradient are the flat buffers;
- ``Adam(fused=True)`` on the network's parameters, one tensor each (a plain training loop);
- ``Adam(foreach=True)`` on the network's parameters.

Each is timed over ``--steps`` updates after a warm-up, interleaved in rounds so that a
change of the machine's load touches all alike; and the start-up cost of each (a fresh
process that builds the optimiser) beside a bare import. Prints a table; writes
bench/results/optimizer.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ddpmlab.accel.adam import FlatAdam, flatten_parameters
from ddpmlab.config import RunConfig
from ddpmlab.modalities import default_config
from ddpmlab.models import build_network

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"points (resmlp)": ("swiss_roll", (2,)), "digits (unet)": ("digits", (1, 8, 8))}
STARTUP = {
    "bare import": "import torch",
    "FlatAdam": "import torch; from ddpmlab.accel.adam import FlatAdam; "
                "w = torch.zeros(10); FlatAdam([w], w, torch.zeros(10), 1e-3).step(1e-3)",
    "Adam(fused=True)": "import torch; p = torch.nn.Parameter(torch.zeros(10)); "
                        "p.grad = torch.zeros(10); torch.optim.Adam([p], fused=True).step()",
}


def candidates(config: RunConfig, shape: tuple[int, ...]) -> dict[str, Callable[[], None]]:
    """Each optimiser's step on its own copy of the network, with the same gradient."""
    out: dict[str, Callable[[], None]] = {}
    lr = config.train.lr
    for name in ("FlatAdam", "Adam(fused=True), flat", "Adam(fused=True), per tensor",
                 "Adam(foreach=True), per tensor"):
        torch.manual_seed(0)
        model = build_network(config, shape)
        params = list(model.parameters())
        grad = torch.randn(sum(p.numel() for p in params)) * 1e-3
        if name == "FlatAdam":
            flat = flatten_parameters(params)
            opt = FlatAdam(params, flat, grad, lr)
            out[name] = lambda opt=opt: opt.step(lr)
        elif name.endswith("flat"):
            flat = torch.nn.Parameter(flatten_parameters(params))
            flat.grad = grad
            adam = torch.optim.Adam([flat], lr=lr, fused=True)
            out[name] = adam.step
        else:
            for p, g in zip(params, grad.split([p.numel() for p in params]), strict=True):
                p.grad = g.view(p.shape).clone()
            fused = "fused" in name
            adam = torch.optim.Adam(params, lr=lr, fused=fused, foreach=not fused)
            out[name] = adam.step
    return out


def time_steps(steps: dict[str, Callable[[], None]], n: int, rounds: int) -> dict[str, float]:
    """Median microseconds per step of each, over ``rounds`` interleaved rounds of n."""
    for step in steps.values():
        for _ in range(20):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(n):
                step()
            times[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(v) for name, v in times.items()}


def startup(repeats: int) -> dict[str, float]:
    """Median seconds of a fresh process running each snippet."""
    out = {}
    for name, code in STARTUP.items():
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            runs.append(time.perf_counter() - start)
        out[name] = statistics.median(runs)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=500, help="updates per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the trainer's 1)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result: dict[str, dict[str, float]] = {}
    for label, (source, shape) in NETWORKS.items():
        config = default_config(source)
        steps = candidates(config, shape)
        result[label] = time_steps(steps, args.steps, args.rounds)
        numel = sum(p.numel() for p in build_network(config, shape).parameters())
        print(f"{label}: {numel:,} parameters, {args.threads} thread(s), median of "
              f"{args.rounds} rounds of {args.steps} updates")
        base = result[label]["FlatAdam"]
        for name, us in result[label].items():
            print(f"  {name:<32}{us:>9.1f} us/step  {us / base:>5.2f} x FlatAdam")
    result["startup_s"] = startup(5)
    print("start-up of a fresh process (median of 5):")
    for name, s in result["startup_s"].items():
        print(f"  {name:<32}{s:>7.2f} s")
    out = ROOT / "bench" / "results" / "optimizer.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
