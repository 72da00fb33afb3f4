"""Training-step speed of the image networks, side by side (indicative: no quiet-machine wait).

    python bench/unet_speed.py            # under 3 minutes on 2 cores (165 s measured)
    python bench/unet_speed.py --quick    # 8x8 only, 1 thread
    python bench/unet_speed.py --defaults # the digits and MNIST defaults: threads,
                                          # channels-last, sampling rows per call

One step = forward, MSE loss against noise, backward, Adam, on random grey images with random
t (T = 1000): batch 128 at 8x8 (digits), 64 at 28x28 (MNIST). Each cell is the median of a
few steps after one warm-up step, in ms, on 1 and 2 torch threads. Other processes may share
the CPU, so read the numbers as orders of magnitude and ratios, not as a benchmark result.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from ddpmlab.models.unet import SeedUNet, SeedUNetConfig, UNet, UNetConfig

T = 1000
BATCH = {8: 128, 28: 64}

# (label, network factory, sizes to time); 28x28 only where a step takes well under a second
CONFIGS = [
    ("unet b32 (1,2) attn@2", lambda: UNet(UNetConfig(32, (1, 2), attention_resolutions=(2,)),
                                            T, 1, 1), (8, 28)),
    ("unet b32 (1,2) no attn", lambda: UNet(UNetConfig(32, (1, 2), attention_resolutions=(),
                                                       middle_attention=False), T, 1, 1), (8, 28)),
    ("unet b32 (1,2,2) attn@2", lambda: UNet(UNetConfig(32, (1, 2, 2)), T, 1, 1), (8, 28)),
    ("unet b32 (1,2,2) no attn", lambda: UNet(UNetConfig(32, (1, 2, 2), attention_resolutions=(),
                                                         middle_attention=False), T, 1, 1),
     (8, 28)),
    ("unet b64 (1,2) attn@2", lambda: UNet(UNetConfig(64, (1, 2), attention_resolutions=(2,),
                                                      groups=32), T, 1, 1), (8,)),
    ("unet b64 (1,2,2) attn@2", lambda: UNet(UNetConfig(64, (1, 2, 2), groups=32), T, 1, 1),
     (8,)),
    ("seed_unet w32 p2", lambda: SeedUNet(SeedUNetConfig(2, 32), T, 1, 1), (8, 28)),
    ("seed_unet w64 p2", lambda: SeedUNet(SeedUNetConfig(2, 64), T, 1, 1), (8, 28)),
]


def step_ms(make, size: int, threads: int, steps: int, timesteps: int = T) -> float:
    """Median ms of one training step at this size and thread count."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = make()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    n = BATCH[size]
    x = torch.randn(n, 1, size, size)
    t = torch.randint(0, timesteps, (n,))
    eps = torch.randn_like(x)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(net(x, t), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def defaults(steps: int) -> None:
    """The networks of the digits and MNIST defaults: training steps on 1 and 2 threads,
    contiguous and channels-last; sampling ms per image at several rows per call."""
    from ddpmlab.modalities import default_config
    from ddpmlab.models import build_network
    for data, size in (("digits", 8), ("mnist", 28)):
        config = default_config(data)

        def make(channels_last: bool = False, config=config, size=size) -> torch.nn.Module:
            net = build_network(config, (1, size, size))
            return net.to(memory_format=torch.channels_last) if channels_last else net

        T_run = config.diffusion.timesteps
        train = {(th, cl): step_ms(functools.partial(make, cl), size, th, steps, T_run)
                 for th in (1, 2) for cl in (False, True)}
        print(f"{data} default unet ({size}x{size}, batch {BATCH[size]}), ms per training "
              "step: " + ", ".join(f"{th} thread{'s' * (th > 1)}{' channels-last' * cl} "
                                   f"{ms:.0f}" for (th, cl), ms in train.items()), flush=True)
        torch.set_num_threads(2)
        for cl in (False, True):
            net = make(cl).eval()
            cells = []
            for rows in (32, 83, 128, 250):
                x, t = torch.randn(rows, 1, size, size), torch.zeros(rows, dtype=torch.long)
                with torch.inference_mode():
                    net(x, t)
                    start = time.perf_counter()
                    for _ in range(steps):
                        net(x, t)
                ms = 1000 * (time.perf_counter() - start) / steps / rows
                cells.append(f"{rows} rows {ms:.2f}")
            print(f"  sampling, 2 threads{', channels-last' if cl else ''}, ms per image: "
                  + ", ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8x8 only, 1 thread")
    parser.add_argument("--defaults", action="store_true",
                        help="only the digits and MNIST defaults (threads, channels-last, "
                        "sampling)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per cell")
    args = parser.parse_args()
    if args.defaults:
        defaults(args.steps)
        return
    threads = (1,) if args.quick else (1, 2)
    cells = [(s, th) for s in (8, 28) for th in threads if not (args.quick and s == 28)]
    head = "".join(f"{f'{s}x{s} b{BATCH[s]} {th}t':>16}" for s, th in cells)
    print(f"{'network':<26}{'params':>10}{head}   (ms per training step)")
    begin = time.perf_counter()
    for label, make, sizes in CONFIGS:
        params = sum(p.numel() for p in make().parameters())
        row = "".join(f"{step_ms(make, s, th, args.steps):>16.0f}" if s in sizes else f"{'-':>16}"
                      for s, th in cells)
        print(f"{label:<26}{params / 1e6:>9.2f}M{row}", flush=True)
    print(f"total {time.perf_counter() - begin:.0f} s; torch {torch.__version__}; "
          "indicative only (the CPU may be shared)")


if __name__ == "__main__":
    main()
