"""ddpmlab's default U-Net beside the loop a diffusers user writes: same data, T, batch, threads
and wall-time budget; speed and sample quality side by side.

    python bench/images.py                          # digits: ddpmlab's default training
    python bench/images.py --data mnist
    python bench/images.py --steps 50 --threads 1   # a short check that it runs end to end

Needs the ``bench`` extra (``pip install -e '.[bench]' -c constraints.txt``: diffusers). Time it
on a quiet machine: the CPU share other processes used in the second before the start is
printed and saved (``cpu_busy_before``), and with 2 threads on 2 shared cores torch's steps/s
collapse (bench/README.md, "threads"). Writes bench/results/images.json.

**Data.** ``resolve_images(data, seed=0, heldout=config.data.heldout)``: the split every ddpmlab
run and the shipped classifiers use (digits: 1,297 training images 1x8x8, 500 held out; MNIST:
4,000 and 1,000, 1x28x28), in [-1, 1]. Both sides train on ``s.train``.

**ddpmlab.** ``default_config(data)``: the data set's defaults (the U-Net of
``config.model.unet``, T, schedule, batch, lr with its warm-up and cosine decay, EMA, steps,
threads), read from the config, not restated here. ``Trainer(config, x).train_step()`` for
``train.steps`` steps (or ``--steps``), the loss read every step as ``Trainer.fit`` does; the
wall time this takes is the budget the diffusers loop then gets. Sampling:
the EMA weights, ``reverse_chain`` (DDPM over all T steps, x0_hat clipped, as ``ddpmlab
sample``) in the row chunks ``Run.sample`` uses (65,536 / (C*H*W) rows).

**diffusers**, as the Hugging Face Diffusion Models Course writes it at this size (the MNIST
network of Unit 1, "Diffusion Models from Scratch", section "UNet2DModel", and of Unit 2's
class-conditioned example, which is the same network with 4 extra input channels for the
label; github.com/huggingface/diffusion-models-class)::

    UNet2DModel(sample_size=H, in_channels=C, out_channels=C, layers_per_block=2,
                block_out_channels=(32, 64, 64),
                down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    torch.optim.AdamW(model.parameters(), lr=1e-3)

unchanged at 8x8: UNet2DModel's last down block does not downsample, so three blocks halve
twice, 28 -> 14 -> 7 for MNIST and 8 -> 4 -> 2 for digits (self-attention at 4x4 and 2x2).
``squaredcos_cap_v2`` is Nichol & Dhariwal's cosine schedule with beta capped at 0.999, the
betas of ddpmlab's ``cosine`` (the largest difference is printed); for another ddpmlab schedule
its betas are passed as ``trained_betas``. The scheduler's other defaults match ddpmlab's:
epsilon prediction, ``fixed_small`` variance, x0_hat clipped to [-1, 1]. lr 1e-3 is the
course's at MNIST size (its MNIST notebooks use ``Adam(lr=1e-3)``; Unit 1's "Introduction to
Diffusers" uses ``AdamW(lr=4e-4)`` for a 4-level network at 32x32); AdamW's default weight
decay 0.01 shrinks the weights by lr * 0.01 = 1e-5 a step. The loop: ``DataLoader(...,
batch_size=B, shuffle=True)`` over the training images, epoch after epoch; t uniform in
0..T-1; ``noisy = scheduler.add_noise(x, noise, t)``; ``F.mse_loss(model(noisy, t).sample,
noise)``; ``zero_grad``, ``backward``, ``step``; ``loss.item()`` every step (the course's
``losses.append(loss.item())``). No EMA, gradient clipping, warm-up or lr schedule: the
course's loops have none. Two departures, both for a like-for-like comparison: t covers all T
steps (the course's ``torch.randint(0, 999, ...)`` leaves out the last one) and ``drop_last=True``
(every step sees B images, as ddpmlab's). Sampling is the course's loop under
``torch.no_grad()``: ``set_timesteps(T)``, ``for t in timesteps: x = scheduler.step(model(x,
t).sample, t, x, generator=g).prev_sample``, all n images at once.

**Quality.** ``evaluate_images`` with the data set's shipped classifier: n samples of each
side against one half of the held-out set (``heldout_halves(s, seed=0)``), the floor from the
other half; n defaults to a half (250 for digits, 500 for MNIST); a smaller n scores the same
n-image subsets of both halves. ``fd`` is the Fréchet distance of classifier features, read
against its floor; ``confident`` the share of samples the classifier gives a softmax >= 0.9;
``class_tv`` the class-histogram distance; ``memorised`` the share of samples copying a
training image. Seeds are fixed (initial weights, batches, x_T and the sampling noise: 0).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ddpmlab.accel.mlp import sampling_denoiser
from ddpmlab.config import to_dict
from ddpmlab.data.images import heldout_halves, resolve_images
from ddpmlab.metrics.images import evaluate_images
from ddpmlab.modalities import default_config
from ddpmlab.samplers import SamplerSpec, reverse_chain
from ddpmlab.samplers.ddpm import final_state
from ddpmlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "images.json"
DATA = ("digits", "mnist")
SEED = 0
LR = 1e-3  # the course's at MNIST size (see the module docstring)
BLOCKS = (32, 64, 64)
DOWN = ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")
UP = ("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D")
ROWS_PIXELS = 65_536  # Run.sample's chunk: this many pixels' worth of rows at a time
SHOWN = ("fd", "confident", "class_tv", "memorised", "1nna")  # metrics in the printed table


def cpu_busy(seconds: float = 1.0) -> float:
    """Share of all cores' time outside idle and iowait over ``seconds`` (/proc/stat; as in
    bench/perf.py, not the load average)."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return float("nan")

    def ticks() -> tuple[int, int]:
        fields = [int(v) for v in stat.read_text().split("\n")[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = ticks()
    time.sleep(seconds)
    total1, idle1 = ticks()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def timed_loop(step: Any, seconds: float) -> tuple[int, float, list[float]]:
    """Call ``step()`` (returning the loss as a float) until ``seconds`` of wall time are
    spent; return the steps, the seconds they took and the losses."""
    losses: list[float] = []
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        losses.append(step())
    return len(losses), elapsed, losses


def train_ddpmlab(config: Any, x: torch.Tensor) -> dict[str, Any]:
    """``train.steps`` steps of ddpmlab's trainer, timed."""
    trainer = Trainer(config, x)
    start = time.perf_counter()
    losses = [float(trainer.train_step()) for _ in range(config.train.steps)]
    steps, elapsed = len(losses), time.perf_counter() - start
    if not all(math.isfinite(v) for v in losses[-100:]):
        raise SystemExit("ddpmlab's loss became non-finite")
    return {"trainer": trainer, "steps": steps, "train_s": elapsed, "losses": losses,
            "params": n_params(trainer.model)}


def sample_ddpmlab(trainer: Trainer, config: Any, n: int,
                   shape: tuple[int, int, int]) -> tuple[torch.Tensor, float]:
    denoiser = sampling_denoiser(trainer.ema)
    g = torch.Generator().manual_seed(SEED)
    chunk = max(1, ROWS_PIXELS // math.prod(shape))
    d = config.diffusion
    start = time.perf_counter()
    x = final_state(lambda rows: reverse_chain(denoiser, trainer.schedule, rows, SamplerSpec(),
                                               prediction=d.prediction, variance=d.variance,
                                               generator=g, clip=True),
                    (n, *shape), chunk=chunk)
    return x, time.perf_counter() - start


def diffusers_scheduler(config: Any, trainer_betas: torch.Tensor) -> tuple[Any, float]:
    """The course's DDPMScheduler at ddpmlab's T; the largest |beta| difference from ddpmlab's."""
    from diffusers import DDPMScheduler
    T = config.diffusion.timesteps
    if config.diffusion.schedule == "cosine":  # Nichol & Dhariwal 2021, capped at 0.999
        scheduler = DDPMScheduler(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    else:  # no diffusers name for it: the same betas
        scheduler = DDPMScheduler(num_train_timesteps=T,
                                  trained_betas=trainer_betas.double().numpy())
    gap = float((scheduler.betas.double() - trainer_betas.double()).abs().max())
    return scheduler, gap


def train_diffusers(scheduler: Any, x: torch.Tensor, batch: int,
                    seconds: float) -> dict[str, Any]:
    from diffusers import UNet2DModel
    from torch.utils.data import DataLoader, TensorDataset
    c, h, _ = x.shape[1:]
    torch.manual_seed(SEED)  # the initial weights
    model = UNet2DModel(sample_size=h, in_channels=c, out_channels=c, layers_per_block=2,
                        block_out_channels=BLOCKS, down_block_types=DOWN, up_block_types=UP)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    loader = DataLoader(TensorDataset(x), batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(SEED))
    T = scheduler.config.num_train_timesteps
    g = torch.Generator().manual_seed(SEED + 1)  # t and the noise
    batches = iter(())

    def step() -> float:
        nonlocal batches
        try:
            (x0,) = next(batches)
        except StopIteration:  # the next epoch
            batches = iter(loader)
            (x0,) = next(batches)
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, T, (x0.shape[0],), generator=g)
        noisy = scheduler.add_noise(x0, noise, t)
        loss = F.mse_loss(model(noisy, t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    steps, elapsed, losses = timed_loop(step, seconds)
    if not all(math.isfinite(v) for v in losses[-100:]):
        raise SystemExit("the diffusers loop's loss became non-finite")
    return {"model": model, "steps": steps, "train_s": elapsed, "losses": losses,
            "params": n_params(model)}


def sample_diffusers(model: Any, scheduler: Any, n: int,
                     shape: tuple[int, int, int]) -> tuple[torch.Tensor, float]:
    model.eval()
    g = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    scheduler.set_timesteps(scheduler.config.num_train_timesteps)
    x = torch.randn((n, *shape), generator=g)
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(x, t).sample
            x = scheduler.step(eps, t, x, generator=g).prev_sample
    return x, time.perf_counter() - start


def quality(samples: torch.Tensor, real: np.ndarray, real_ref: np.ndarray, train: np.ndarray,
            classifier: str) -> dict[str, dict[str, float | None]]:
    x = samples.clamp(-1.0, 1.0).numpy().astype(np.float32)  # float rounding at +-1
    return evaluate_images(x, real, real_ref, train=train, classifier=classifier)


def summary(side: dict[str, Any], sample_s: float,
            metrics: dict[str, dict[str, float | None]]) -> dict[str, Any]:
    tail = side["losses"][-100:]
    return {"params": side["params"], "steps": side["steps"], "train_s": side["train_s"],
            "steps_per_s": side["steps"] / side["train_s"],
            "loss_last_100": float(np.mean(tail)) if tail else None,
            "sample_s": sample_s, "metrics": metrics}


def table(result: dict[str, Any]) -> str:
    a, b = result["ddpmlab"], result["diffusers"]
    ma, mb = a["metrics"], b["metrics"]
    rows = [("parameters", f"{a['params']:,}", f"{b['params']:,}", ""),
            ("training steps", f"{a['steps']:,}", f"{b['steps']:,}", ""),
            ("steps/s", f"{a['steps_per_s']:.2f}", f"{b['steps_per_s']:.2f}", ""),
            ("loss, last 100 steps", f"{a['loss_last_100']:.4f}", f"{b['loss_last_100']:.4f}",
             ""),
            (f"sampling {result['n']} images, s", f"{a['sample_s']:.2f}",
             f"{b['sample_s']:.2f}", "")]
    for name in SHOWN:
        if name in ma:
            rows.append((name, f"{ma[name]['value']:.4g}", f"{mb[name]['value']:.4g}",
                         f"{ma[name]['floor']:.4g}"))
            if ma[name].get("ratio") is not None:
                rows.append((f"{name} / floor", f"{ma[name]['ratio']:.3g}",
                             f"{mb[name]['ratio']:.3g}", ""))
    c, h, w = result["shape"]
    head = (f"{result['data']} {c}x{h}x{w}, T = {result['T']}, batch {result['batch']}, "
            f"{result['threads']} thread(s), {result['seconds']:.1f} s of training per side, "
            f"n = {result['n']} samples vs {result['n']} held-out (floor: the other "
            f"{result['n']})")
    lines = [head, f"{'':<28}{'ddpmlab':>14}{'diffusers':>14}{'floor':>12}"]
    lines += [f"{k:<28}{u:>14}{v:>14}{f:>12}" for k, u, v, f in rows]
    lines.append(f"steps/s ratio ddpmlab / diffusers: {result['steps_per_s_ratio']:.2f}x")
    lines.append(f"schedules: max |beta_ddpmlab - beta_diffusers| = {result['beta_gap']:.2e}")
    if result["cpu_busy_before"] > 0.1:
        lines.append(f"note: the CPU was {result['cpu_busy_before']:.0%} busy before the start; "
                     "the speeds are not those of a quiet machine")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", choices=DATA, default="digits")
    p.add_argument("--steps", type=int, default=None,
                   help="ddpmlab's training steps (default: the data set's train.steps); "
                   "their wall time is the diffusers loop's budget")
    p.add_argument("--n", type=int, default=None,
                   help="samples per side (default: half the held-out set)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for both sides (default: ddpmlab's train.threads)")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args()
    try:
        import diffusers
    except ImportError:
        sys.exit("bench/images.py needs diffusers: pip install -e '.[bench]' -c constraints.txt")

    # unconditional, as the course's loop it is compared with
    config = default_config(args.data, {"model": {"conditional": False}}
                            | ({"train": {"steps": args.steps}} if args.steps else {}))
    threads = args.threads or config.train.threads
    torch.set_num_threads(threads)
    s = resolve_images(args.data, seed=SEED, heldout=config.data.heldout)
    first, rest = heldout_halves(s, seed=SEED)
    half = len(first)
    n = half if args.n is None else args.n
    if not 6 <= n <= half:
        sys.exit(f"--n must be between 6 and {half} (half the held-out set: the floor needs a "
                 "real set of the samples' size)")
    if n < half:  # the same n-image subsets of both halves
        pick = np.sort(np.random.default_rng(SEED).permutation(half)[:n])
        first, rest = first[pick], rest[pick]
    real, real_ref = s.heldout[first], s.heldout[rest]
    x = torch.from_numpy(np.ascontiguousarray(s.train, dtype=np.float32))
    shape = s.shape
    busy = cpu_busy()
    print(f"{args.data}: {len(x):,} training images {shape}, T = {config.diffusion.timesteps}, "
          f"batch {config.train.batch_size}, {threads} thread(s), {config.train.steps} ddpmlab "
          f"steps; CPU {busy:.0%} busy before the start", flush=True)

    print("ddpmlab: training ...", flush=True)
    ours = train_ddpmlab(config, x)
    seconds = ours["train_s"]
    print(f"ddpmlab: {ours['steps']:,} steps; sampling {n} ...", flush=True)
    x_ours, ours_sample_s = sample_ddpmlab(ours["trainer"], config, n, shape)

    scheduler, gap = diffusers_scheduler(config, ours["trainer"].schedule.beta)
    print("diffusers: training ...", flush=True)
    theirs = train_diffusers(scheduler, x, config.train.batch_size, seconds)
    print(f"diffusers: {theirs['steps']:,} steps; sampling {n} ...", flush=True)
    x_theirs, theirs_sample_s = sample_diffusers(theirs["model"], scheduler, n, shape)

    print("scoring ...", flush=True)
    result: dict[str, Any] = {
        "data": args.data, "shape": list(shape), "T": config.diffusion.timesteps,
        "schedule": config.diffusion.schedule, "batch": config.train.batch_size,
        "threads": threads, "seconds": seconds, "n": n, "beta_gap": gap,
        "cpu_busy_before": busy,
        "ddpmlab": summary(ours, ours_sample_s,
                           quality(x_ours, real, real_ref, s.train, args.data)),
        "diffusers": summary(theirs, theirs_sample_s,
                             quality(x_theirs, real, real_ref, s.train, args.data)),
        "ddpmlab_config": to_dict(config),
        "diffusers_config": {"block_out_channels": list(BLOCKS), "layers_per_block": 2,
                             "down_block_types": list(DOWN), "up_block_types": list(UP),
                             "optimizer": "AdamW", "lr": LR, "ema": None},
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "python": platform.python_version(), "machine": platform.processor()
                     or platform.machine()},
    }
    result["steps_per_s_ratio"] = (result["ddpmlab"]["steps_per_s"]
                                   / result["diffusers"]["steps_per_s"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=list) + "\n")
    print(table(result))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
