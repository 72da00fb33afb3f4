"""The result tables, rendered from ``bench/results/*.json`` at build time.

A result file in the project's convention carries its tables itself: a top-level
``"tables": [{"title", "command", "machine", "date", "load", "columns", "rows", "note"}]``.
The files written before that convention are read by an adapter in :mod:`.adapters`,
which builds the same dictionaries from the file's own numbers; what the file does not
record (the command that made it, the load) is stated there once per file. A file with
neither is an error: the site refuses to build rather than leave a result unshown.

Each file becomes ``_generated/tables/<stem>.mdinc`` (every table of the file) and
``<stem>-<i>.mdinc`` (table i alone), which the result pages ``{include}``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from . import adapters
from .common import code, table

MACHINE = adapters.MACHINE


def committed(path: Path) -> str:
    """The date the result file was last committed (the measurement's date), from git."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%cs", "--", path.name],
                             cwd=path.parent, capture_output=True, text=True, timeout=20)
    except OSError:
        return "not recorded"
    return out.stdout.strip() or "not committed yet"


def tables(path: Path) -> list[dict[str, Any]]:
    """The tables of one result file, in the convention's form."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "tables" in data:
        found = list(data["tables"])
    elif path.stem in adapters.ADAPTERS:
        found = adapters.ADAPTERS[path.stem](data)
    else:
        raise ValueError(f"{path}: no \"tables\" key and no adapter in docs/_ext/"
                         "ddpmlab_docs/adapters.py; add one of them")
    date = committed(path)
    for t in found:
        t.setdefault("machine", MACHINE)
        t.setdefault("load", "not recorded")
        t.setdefault("date", date)
    return found


def render(t: dict[str, Any], source: str) -> str:
    out = [f"**{t['title']}**\n"]
    out.append(table(t["columns"], t["rows"]))
    meta = [f"command: {code(t['command'])}" if t.get("command") else None,
            f"machine: {t['machine']}", f"load: {t['load']}", f"date: {t['date']}",
            f"data: `bench/results/{source}`"]
    out.append("*" + "; ".join(m for m in meta if m) + ".*\n")
    if t.get("note"):
        out.append(str(t["note"]) + "\n")
    return "\n".join(out)


def snippets(folder: Path) -> dict[str, str]:
    """``{name: markdown}`` of every result file and of each of its tables."""
    out: dict[str, str] = {}
    for path in sorted(folder.glob("*.json")):
        found = tables(path)
        parts = [render(t, path.name) for t in found]
        out[path.stem] = "\n".join(parts)
        for i, part in enumerate(parts):
            out[f"{path.stem}-{i}"] = part
    return out




def catalogue_page(folder: Path, pages: Path) -> str:
    """``results/all.md``: every result file, its tables and the pages that show them; a
    file no page includes (a new one in the "tables" format) is shown here in full."""
    shown: dict[str, list[str]] = {}
    for page in sorted(pages.glob("*.md")):
        if page.name == "all.md":
            continue
        text = page.read_text(encoding="utf-8")
        for stem in {m.split("-")[0] if m.rsplit("-", 1)[-1].isdigit() else m
                     for m in _INCLUDED.findall(text)}:
            shown.setdefault(stem, []).append(page.stem)
    out = ["# Every result file\n",
           "Each file of `bench/results/`, the tables it holds and the pages that show them. "
           "A file that no page shows yet is rendered here in full, so every measurement "
           "appears on the site.\n"]
    for path in sorted(folder.glob("*.json")):
        out.append(f"## `{path.name}`\n")
        where = shown.get(path.stem)
        titles = [t["title"] for t in tables(path)]
        if where:
            links = ", ".join(f"[{p}]({p}.md)" for p in sorted(where))
            out.append("\n".join(f"- {t}" for t in titles) + f"\n\nShown in: {links}.\n")
        else:
            out.append(f"```{{include}} ../_generated/tables/{path.stem}.mdinc\n```\n")
    return "\n".join(out)


_INCLUDED = re.compile(r"_generated/tables/([\w-]+)\.mdinc")
