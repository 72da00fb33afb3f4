"""What each lever does to a U-Net's training step: float32 against bfloat16 autocast,
channels-last memory and torch.compile, side by side.

    python bench/precision.py                     # digits and mnist, 2 threads
    python bench/precision.py --data digits --blocks 3

For each data set's default U-Net and batch, one process times a training step (forward,
loss, backward, Adam update) of each variant in alternating blocks, so every variant sees the
same load; reported: the median block's milliseconds per step and the ratio to float32.
``trainer fp32`` / ``trainer bf16`` are ddpmlab's own Trainer (flat parameter buffer,
--precision fp32 / bf16); the other rows are the same network in a plain loop with
torch.optim.Adam (fused), where channels-last and torch.compile can be applied; compile's
first call (the compilation) is reported apart. Also the sampling pass (one network
evaluation of a 500-image batch, inference mode) in float32 and bfloat16.
Writes bench/results/precision.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ddpmlab import feedback
from ddpmlab.config import replace
from ddpmlab.modalities import default_config, modality_for
from ddpmlab.models import build_network
from ddpmlab.precision import native_bf16, under
from ddpmlab.train.trainer import Trainer

OUT = Path(__file__).resolve().parents[1] / "bench" / "results" / "precision.json"


def load() -> str:
    return "load average {:.2f}, {:.2f}, {:.2f} on {} cores".format(*os.getloadavg(),
                                                                    os.cpu_count())


def plain_step(config, x: torch.Tensor, *, bf16: bool, channels_last: bool,
               compiled: bool) -> tuple[Callable[[], None], float]:
    """A training step of the data's U-Net outside the Trainer; (step, first call's seconds)."""
    torch.manual_seed(0)
    model = build_network(config, tuple(x.shape[1:]))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    net = torch.compile(model) if compiled else model
    forward = under(net, torch.device("cpu"), torch.bfloat16 if bf16 else None)
    B, T = config.train.batch_size, config.diffusion.timesteps
    g = torch.Generator().manual_seed(0)
    x0 = x[torch.randint(0, x.shape[0], (B,), generator=g)]
    if channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    t = torch.randint(0, T, (B,), generator=g)
    eps = torch.randn(x0.shape, generator=g)

    def step() -> None:
        loss = (eps - forward(x0, t)).square().mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def trainer_step(config, x: torch.Tensor, precision: str) -> tuple[Callable[[], None], float]:
    trainer = Trainer(replace(config, {"train": {"precision": precision}}), x)
    start = time.perf_counter()
    trainer.train_step()
    return trainer.train_step, time.perf_counter() - start


def measure(data: str, blocks: int, block: int) -> dict:
    # the unconditional U-Net: a class adds one embedding row to each block's timestep one
    config = default_config(data, {"model": {"conditional": False}})
    kind = modality_for(data).prepare(config)
    x = torch.from_numpy(kind.model_input())
    variants = {
        "trainer fp32": lambda: trainer_step(config, x, "fp32"),
        "trainer bf16": lambda: trainer_step(config, x, "bf16"),
        "fp32": lambda: plain_step(config, x, bf16=False, channels_last=False, compiled=False),
        "bf16": lambda: plain_step(config, x, bf16=True, channels_last=False, compiled=False),
        "fp32 channels-last": lambda: plain_step(config, x, bf16=False, channels_last=True,
                                                 compiled=False),
        "bf16 channels-last": lambda: plain_step(config, x, bf16=True, channels_last=True,
                                                 compiled=False),
        "fp32 compile": lambda: plain_step(config, x, bf16=False, channels_last=False,
                                           compiled=True),
        "bf16 compile": lambda: plain_step(config, x, bf16=True, channels_last=False,
                                           compiled=True),
    }
    steps, first = {}, {}
    for name, make in variants.items():
        steps[name], first[name] = make()
        steps[name]()  # a warm step (compile may specialise again)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(blocks):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(block):
                step()
            times[name].append(1000 * (time.perf_counter() - start) / block)
    median = {name: float(np.median(v)) for name, v in times.items()}
    return {"data": data, "batch": config.train.batch_size, "load": load(),
            "ms": median, "first_s": first, "sampling_ms": sampling(config, x)}


def sampling(config, x: torch.Tensor, n: int = 500, repeats: int = 5) -> dict[str, float]:
    """Milliseconds of one network evaluation of n images (inference mode), float32 and
    bfloat16, in contiguous and in channels-last memory (what ``open_run`` uses)."""
    torch.manual_seed(0)
    model = build_network(config, tuple(x.shape[1:])).eval().requires_grad_(False)
    xs = torch.randn(n, *x.shape[1:])
    t = torch.full((n,), config.diffusion.timesteps // 2)
    out = {}
    for layout in ("contiguous", "channels-last"):
        if layout == "channels-last":
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            xs = xs.contiguous(memory_format=torch.channels_last)
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            f = under(model, torch.device("cpu"), dtype)
            with torch.inference_mode():
                f(xs, t)
                runs = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    f(xs, t)
                    runs.append(1000 * (time.perf_counter() - start))
            out[f"{name} {layout}"] = float(np.median(runs))
    return out


def table(rows: list[dict], threads: int) -> dict:
    native = "native" if native_bf16(torch.device("cpu")) else "no native"
    out = []
    for r in rows:
        base = r["ms"]["fp32"]
        for name, ms in r["ms"].items():
            ref = r["ms"]["trainer fp32"] if name.startswith("trainer") else base
            first = r["first_s"][name]
            out.append([r["data"], name, round(ms, 1), round(ref / ms, 2),
                        f"{first:.1f} s" if "compile" in name else ""])
        s = r["sampling_ms"]
        for name, ms in s.items():
            out.append([r["data"], f"sampling pass of 500, {name}", round(ms, 1),
                        round(s["fp32 contiguous"] / ms, 2), ""])
    return {
        "title": "Training step of the image U-Nets: float32, bfloat16 autocast, channels-last, "
                 "torch.compile",
        "command": "python bench/precision.py", "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} CPU ({native} bfloat16), torch {torch.__version__}, "
                   f"{threads} threads",
        "load": "; ".join(r["load"] for r in rows),
        "columns": ["data", "variant", "ms per step (median block)", "speed-up over float32",
                    "compilation"],
        "rows": out,
        "note": "The data set's default U-Net and batch (digits 128, MNIST 64). Each variant "
                "times blocks of steps in turn in one process, so all see the same load. "
                "Trainer rows: ddpmlab's Trainer (--precision fp32 / bf16), ratio to trainer "
                "fp32; other rows: the network in a plain loop with fused Adam, ratio to "
                "its fp32. Sampling rows: one network evaluation of 500 images, ratio to "
                "float32 in contiguous memory.",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", nargs="+", default=["digits", "mnist"])
    p.add_argument("--blocks", type=int, default=5)
    p.add_argument("--block", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with feedback.shown(False):
        rows = [measure(d, args.blocks, args.block) for d in args.data]
    result = {"rows": rows, "tables": [table(rows, args.threads)]}
    OUT.write_text(json.dumps(result, indent=1))
    t = result["tables"][0]
    print(t["title"], "\n" + " | ".join(t["columns"]))
    for r in t["rows"]:
        print(" | ".join(str(v) for v in r))


if __name__ == "__main__":
    main()
