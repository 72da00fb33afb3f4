# Pinned to commit 2a762a1, the last commit before the package's top layer was restructured,
# where it ran as bench/train_probe.py (this file is that one, with this header): it patches
# ddpmlab.diffusion.sample_timesteps, which training at that commit draws t with, and runs
# ddpmlab.cli as a module. To run it there:
#
#     git worktree add /tmp/ddpmlab-2a762a1 2a762a1
#     export PYTHONPATH=/tmp/ddpmlab-2a762a1/src:/tmp/ddpmlab-2a762a1/bench
#     python experiments/train_probe.py OUT swiss_roll 0 hi:0.5
#
# (that commit's bench/ on the path: heart.csv is its bench/quality.py's far_away_csv.)

"""`ddpmlab train` with a patched timestep draw, for bench/README.md ("The sampler's
share of the gap").

    python experiments/train_probe.py OUT DATA SEED TSAMPLE -- [train flags]
    TSAMPLE: uniform | hi:F (a fraction F of each batch with t uniform in [T/2, T)) |
             lo:F (a fraction F with t uniform in [0, T/4))

DATA heart.csv is bench/quality.py's far-away heart curve.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch

import ddpmlab.diffusion as D


def main() -> None:
    torch.set_num_threads(1)
    out, data, seed, tsample = sys.argv[1:5]
    flags = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if tsample != "uniform":
        kind, _, arg = tsample.partition(":")
        library = D.sample_timesteps

        def patched(batch, T, generator=None, antithetic=False, *, device=None):
            t = library(batch, T, generator, antithetic, device=device)
            n = int(batch * float(arg))
            lo, hi = (T // 2, T) if kind == "hi" else (0, T // 4)
            t[:n] = torch.randint(lo, hi, (n,), generator=generator)
            return t

        D.sample_timesteps = patched
    if data == "heart.csv":
        sys.path.insert(0, str(Path(__file__).parent))
        from quality import far_away_csv
        data = str(far_away_csv(Path(out + "_heart.csv")))
    sys.argv = ["ddpmlab", "train", data, "--out", out, "--seed", seed, "--quiet", "--no-eval",
                "--no-figures", "--force", *flags]
    runpy.run_module("ddpmlab.cli", run_name="__main__")


if __name__ == "__main__":
    main()
