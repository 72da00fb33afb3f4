"""The tutorials (docs/tutorial/*.py, jupytext percent scripts) run top to bottom in fast mode
and write every figure they promise; the French and English ones run the same code."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).parents[1]
TUTORIAL = ROOT / "docs" / "tutorial"
SCRIPTS = ("course_en.py", "cours_fr.py")
# Every figure of the course, under its name there where it has one (curve, q, curve_150_*,
# reversediffusion*), and those the tutorial adds.
FIGURES = {
    "curve.png", "q.png", "schedules.png",
    "curve_150_1.png", "curve_150_2.png", "curve_150_3.png",
    "training_defaults.png", "samples_course.png", "samples_defaults.png",
    "reversediffusion.gif", "reversediffusioncircles.gif", "reversediffusionmoons.gif",
    "nll_terms.png", "nll_terms_learned.png", "variances.png",
    "digits_data.png", "digits_forward.png",
    *(f"digits_{net}_{kind}" for net in ("seed_unet", "unet")
      for kind in ("training.png", "samples.png")),
    "digits_seed_unet.gif", "digits_unet.gif",
    "flow_paths.png",
}


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


def assert_figures(folder: Path) -> None:
    """Every promised figure is in ``folder`` and is a valid PNG or (animated) GIF."""
    written = {p.name for p in folder.iterdir()}
    assert written == FIGURES, (f"missing {sorted(FIGURES - written)}, "
                                f"unexpected {sorted(written - FIGURES)}")
    for name in sorted(FIGURES):
        with Image.open(folder / name) as img:
            assert img.format == Path(name).suffix[1:].upper(), name
            assert img.width > 100 and img.height > 100, name
            if img.format == "GIF":
                assert img.n_frames > 10, name
            img.verify()


@pytest.mark.parametrize("script", SCRIPTS)
def test_tutorial_runs_in_fast_mode_and_writes_every_figure(script: str, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    env = {**os.environ, "DDPMLAB_TUTORIAL_FAST": "1", "DDPMLAB_TUTORIAL_OUT": str(out),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(TUTORIAL / script)], cwd=ROOT, env=env,
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
