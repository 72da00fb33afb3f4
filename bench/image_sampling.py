"""The U-Net's sampling speed by batch size and thread count: how many images to push through
the network at once, and on how many threads.

    python bench/image_sampling.py                 # 8 x 8 (digits), 16 x 16, 28 x 28 (MNIST)

Each size uses the network ``ddpmlab train`` builds for it (digits' defaults for 8 x 8 and
for a folder of 16 x 16 images, MNIST's for 28 x 28), in eval mode and channels-last as
``open_run`` sets it. Microseconds per image for one network evaluation at batch B, on 1
and 2 threads, median of interleaved rounds. Writes bench/results/image_sampling.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from ddpmlab.modalities import default_config
from ddpmlab.models import build_network

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"8x8 (digits)": ("digits", 8), "16x16 (a folder)": ("digits", 16),
         "28x28 (mnist)": ("mnist", 28)}
BATCHES = (16, 32, 64, 128, 256, 512, 1024)


def per_image(model: torch.nn.Module, size: int, batch: int, images: int) -> float:
    """Microseconds per image of forward passes over ``images`` images in batches."""
    x = torch.randn(batch, 1, size, size).contiguous(memory_format=torch.channels_last)
    t = torch.full((batch,), 100)
    calls = max(1, images // batch)
    with torch.inference_mode():
        model(x, t)
        start = time.perf_counter()
        for _ in range(calls):
            model(x, t)
    return (time.perf_counter() - start) / (calls * batch) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=2048, help="images per measurement")
    args = p.parse_args()
    result: dict[str, dict[str, dict[int, float]]] = {}
    for label, (source, size) in SIZES.items():
        model = build_network(default_config(source), (1, size, size)).eval()
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        result[label] = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            rounds: dict[int, list[float]] = {b: [] for b in BATCHES}
            for _ in range(args.rounds):
                for b in BATCHES:
                    rounds[b].append(per_image(model, size, b, args.images))
            result[label][f"{threads} threads"] = {b: statistics.median(v)
                                                   for b, v in rounds.items()}
            row = "  ".join(f"{b}: {us:6.0f}" for b, us in
                            result[label][f"{threads} threads"].items())
            print(f"{label:<18}{threads} thread(s), us/image by batch  {row}", flush=True)
    (ROOT / "bench" / "results" / "image_sampling.json").write_text(
        json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
