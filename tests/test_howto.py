"""Every command of the how-to guides and the quick start runs, in a short form.

The ```bash blocks of docs/howto/*.md and docs/tutorials/quickstart.md are run in order,
one page per fresh folder, as a user would paste them; ```text blocks are shown only (a
command that needs two machines or a GPU, or that serves until stopped, goes in one). The
short form appends flags that shrink the work and win over the page's own (argparse keeps
the last): 30 training steps at T = 50 (training's snapshots sample the whole chain) on one
thread (two collapse when other processes share the cores), no figures or evaluation
during training, 50 samples, evaluations of 200. What a page promises about files and
refusals is checked by the commands themselves: a failing one fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs" / "howto").glob("*.md")), ROOT / "docs" / "tutorials" /
         "quickstart.md"]
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)
SHORT = {"train": "--steps 30 --timesteps 50 --threads 1 --no-figures --no-eval",
         "sample": "--number 50", "evaluate": "--number 200 --repeats 1",
         "sweep": "--number 200", "animate": "--number 50"}
COMMAND = re.compile(r"(?:^|-m )ddpmlab (\w+)")


def blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def shortened(script: str) -> str:
    lines = []
    for line in script.replace("\\\n", " ").splitlines():
        match = COMMAND.search(line)
        if match and match.group(1) in SHORT:
            line = f"{line} {SHORT[match.group(1)]}"
        lines.append(line)
    return "\n".join(lines)


def test_shortening_keeps_the_command_and_adds_flags() -> None:
    line = "ddpmlab train swiss_roll --out runs/x --steps 6000"
    assert shortened(line) == line + " " + SHORT["train"]
    assert shortened("torchrun -m ddpmlab sample R --out x.npy").endswith("--number 50")
    assert shortened("python -c 'print(1)'") == "python -c 'print(1)'"


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "index.md"],
                         ids=lambda p: p.stem)
def test_the_commands_of_a_page_run(page: Path, tmp_path: Path) -> None:
    script = "set -e\n" + "\n".join(shortened(b) for b in blocks(page))
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"{page.name}:\n{script}\n{done.stderr[-3000:]}"
