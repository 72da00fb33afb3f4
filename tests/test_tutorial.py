"""The tutorials (docs/tutorial/*.py, jupytext percent scripts) run top to bottom in fast mode
and write every figure they promise; the French and English ones run the same code."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tokenize
from pathlib import Path

from helpers import TUTORIAL, assert_figures

ROOT = Path(__file__).parents[1]


def cells(path: Path) -> list[tuple[str, str]]:
    """The (kind, source) cells of a percent script: kind "markdown" or "code"."""
    out: list[tuple[str, list[str]]] = []
    for line in path.read_text().splitlines(keepends=True):
        if line.startswith("# %%"):
            out.append(("markdown" if "[markdown]" in line else "code", []))
        elif out:
            out[-1][1].append(line)
    return [(kind, "".join(lines)) for kind, lines in out]


def code_tokens(source: str) -> list[tuple[int, str]]:
    """A code cell's tokens, comments and blank lines left out."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [(t.type, t.string) for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL)]


def test_tutorial_runs_in_fast_mode_and_writes_every_figure(tmp_path: Path) -> None:
    # the French one from the checkout; the English one, whose code is the same
    # (test_french_and_english_run_the_same_code), from an installed wheel (test_wheel.py)
    out = tmp_path / "figures"
    env = {**os.environ, "DDPMLAB_TUTORIAL_FAST": "1", "DDPMLAB_TUTORIAL_OUT": str(out),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(TUTORIAL / "cours_fr.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "whole tutorial:" in done.stdout  # it reached its last cell
    assert_figures(out)


def test_french_and_english_run_the_same_code() -> None:
    fr, en = cells(TUTORIAL / "cours_fr.py"), cells(TUTORIAL / "course_en.py")
    assert [k for k, _ in fr] == [k for k, _ in en], "the two tutorials' cells differ in order"
    for i, ((kind, a), (_, b)) in enumerate(zip(fr, en, strict=True)):
        if kind == "code":
            assert code_tokens(a) == code_tokens(b), f"code cell {i} differs"
    assert sum(k == "markdown" for k, _ in en) >= 10  # a section per part of the course


def test_the_committed_figures_are_a_full_run() -> None:
    assert_figures(TUTORIAL / "figures")
