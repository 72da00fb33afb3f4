"""The training step of two source trees side by side: the same defaults, alternating.

    python bench/compare_trees.py OLD/src NEW/src --rounds 3

Each round trains, in a fresh process per tree (one torch thread), the default
configuration of swiss_roll (400 steps after 20 of warm-up) and of digits (40 after 20),
and prints the median milliseconds per step of each tree. Used to check that a change of
the code's layout left the step time alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CODE = """
import json, time, torch
torch.set_num_threads(1)
from ddpmlab.modalities import default_config, modality_for
from ddpmlab.train import Trainer
out = {}
for source, steps in (("swiss_roll", 400), ("digits", 40)):
    config = default_config(source)
    kind = modality_for(source).prepare(config)
    trainer = Trainer(config, torch.from_numpy(kind.model_input()))
    for _ in range(20):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    out[source] = (time.perf_counter() - start) / steps * 1e3
print(json.dumps(out))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("trees", nargs=2, metavar="SRC", help="the src folders of the two trees")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    times: dict[str, list[dict[str, float]]] = {tree: [] for tree in args.trees}
    for _ in range(args.rounds):
        for tree in args.trees:
            env = dict(os.environ, PYTHONPATH=tree)
            run = subprocess.run([sys.executable, "-c", CODE], env=env, check=True,
                                 capture_output=True, text=True)
            times[tree].append(json.loads(run.stdout.strip().splitlines()[-1]))
    print(f"{'ms per training step':<24}" + "".join(f"{t[-30:]:>32}" for t in args.trees))
    for source in ("swiss_roll", "digits"):
        print(f"{source:<24}" + "".join(
            f"{statistics.median(r[source] for r in times[t]):>32.3f}" for t in args.trees))


if __name__ == "__main__":
    main()
