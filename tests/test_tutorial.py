"""The tutorials (docs/tutorial/*.py, jupytext percent scripts): the French and English ones
run the same code, and the committed figures are those of a full run. That code runs top to
bottom in fast mode, from an installed wheel, in tests/test_wheel.py."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

from helpers import TUTORIAL, assert_figures


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


def test_french_and_english_run_the_same_code() -> None:
    fr, en = cells(TUTORIAL / "cours_fr.py"), cells(TUTORIAL / "course_en.py")
    assert [k for k, _ in fr] == [k for k, _ in en], "the two tutorials' cells differ in order"
    for i, ((kind, a), (_, b)) in enumerate(zip(fr, en, strict=True)):
        if kind == "code":
            assert code_tokens(a) == code_tokens(b), f"code cell {i} differs"
    assert sum(k == "markdown" for k, _ in en) >= 10  # a section per part of the course


def test_the_committed_figures_are_a_full_run() -> None:
    assert_figures(TUTORIAL / "figures")
