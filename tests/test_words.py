"""The project speaks of itself only: no file a user or a maintainer reads tells how it was made
(work sessions, tracker issues, rounds of work, "last time"). The words are searched for in
every tracked text file outside tests/data (frozen records) and this file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".cff", ".yaml", ".yml", ".sh", ".rst",
            ".html", ".js", ".css", ""}
NARRATION = re.compile(
    r"\bsessions?\b"                              # a work session (not pytest's scope)
    r"|\bissues? ?#?\d+|\b(?:the|this|that|its) issue(?:'s)?\b"
    r"|\b(?:first|second|third|fourth|fifth|sixth|earlier|previous|last|next) round\b"
    r"|_round_probe|\blast time\b|\bthis (?:PR|pull request)\b",
    re.IGNORECASE)
#: code that means something else by the word
ALLOWED = re.compile(r"""scope=["']session["']|start_new_session|requests\.Session""")


def narrating_lines() -> list[str]:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    found = []
    for name in files:
        path = ROOT / name
        if (name.startswith("tests/data/") or name == "tests/test_words.py"
                or path.suffix not in SUFFIXES or not path.is_file()):
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if NARRATION.search(ALLOWED.sub("", line)):
                found.append(f"{name}:{number}: {line.strip()[:100]}")
    return found


def test_the_pattern_finds_what_it_is_for() -> None:
    for line in ("as measured in session 9", "see issue 12", "the issue's bounds",
                 "a second round of probes", "better than last time"):
        assert NARRATION.search(line), line
    for line in ('@pytest.fixture(scope="session")', "rounds of 500 updates, interleaved",
                 "the sampler issues one call", "round(x, 3)", "around the mean"):
        assert not NARRATION.search(ALLOWED.sub("", line)), line


def test_no_tracked_file_narrates_how_the_project_was_made() -> None:
    assert narrating_lines() == []
