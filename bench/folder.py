"""A folder of one's own images, timed: 200 PNGs of 16 x 16 in two class folders.

    python bench/folder.py                      # this tree
    python bench/folder.py --pythonpath OTHER/src --run RUN   # another tree, on RUN

Makes the folder with Pillow (discs and bars at random places, seed 0), then times, each in a
fresh process: ``ddpmlab train FOLDER --steps 300`` (evaluation and figures included), the
same with ``--no-eval --no-figures`` (training alone), ``ddpmlab evaluate RUN`` and
``ddpmlab sample RUN --n 1000``. ``--run`` skips training and times evaluate and sample on
an existing run (a copy of it), so that two trees can be compared on one model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_folder(out: Path, n: int = 100, seed: int = 0) -> Path:
    """n discs and n bars, 16 x 16 grey, in out/discs and out/bars."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    for cls in ("discs", "bars"):
        (out / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cy, cx = rng.uniform(4, 12, 2)
            if cls == "discs":
                img = ((yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(4, 12)) * 255
            else:
                width = rng.integers(2, 4)
                img = (np.abs(xx - cx) <= width / 2) * (np.abs(yy - cy) <= 5) * 255
            Image.fromarray(img.astype(np.uint8)).save(out / cls / f"{i:03d}.png")
    return out


def timed(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ddpmlab", *args, "--quiet"], check=True, env=env,
                   capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pythonpath", help="the src folder of another ddpmlab tree")
    p.add_argument("--run", type=Path, help="time evaluate and sample on (a copy of) this run")
    args = p.parse_args()
    env = dict(os.environ, **({"PYTHONPATH": args.pythonpath} if args.pythonpath else {}))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        run = tmp_path / "run"
        if args.run is None:
            folder = str(make_folder(tmp_path / "folder"))
            seconds = timed(["train", folder, "--steps", "300", "--out", str(run)], env)
            print(f"train --steps 300: {seconds:.1f} s")
            seconds = timed(["train", folder, "--steps", "300", "--out", str(tmp_path / "alone"),
                             "--no-eval", "--no-figures"], env)
            print(f"  training alone (--no-eval --no-figures): {seconds:.1f} s")
        else:
            shutil.copytree(args.run, run)
            (run / "metrics.json").unlink(missing_ok=True)
        print(f"evaluate: {timed(['evaluate', str(run)], env):.1f} s")
        out = str(tmp_path / "x.npy")
        seconds = timed(["sample", str(run), "--n", "1000", "--out", out], env)
        print(f"sample --n 1000: {seconds:.1f} s")


if __name__ == "__main__":
    main()
