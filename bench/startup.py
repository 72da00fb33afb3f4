"""Start-up of the ``ddpmlab`` commands: a fresh process importing each command's module.

    python bench/startup.py

The command line imports a subcommand's module only when it runs (``ddpmlab.cli._job``), so
``sample`` loads sampling, and not the metrics (scipy, scikit-learn, POT) or the figures
(matplotlib) that ``evaluate`` and ``train`` need. Median seconds over ``--repeats`` fresh
processes, beside a bare ``import torch``. Writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = {
    "import torch": "import torch",
    "ddpmlab --version": "from ddpmlab.cli import main; import sys; sys.argv[1:] = "
                         "['--version']; main()",
    "sample (its module)": "import ddpmlab.cli.sample",
    "evaluate (its module)": "import ddpmlab.cli.evaluate",
    "train (its module)": "import ddpmlab.cli.train",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    result = {}
    for name, code in SNIPPETS.items():
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=False, capture_output=True)
            runs.append(time.perf_counter() - start)
        result[name] = statistics.median(runs)
        print(f"{name:<24}{result[name]:6.2f} s", flush=True)
    (ROOT / "bench" / "results" / "startup.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
