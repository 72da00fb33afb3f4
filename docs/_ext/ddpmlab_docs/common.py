"""Markdown helpers shared by the generators."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any


def cell(value: Any) -> str:
    """One table cell: pipes escaped, newlines folded, ``None`` as a dash."""
    if value is None:
        return "-"
    return " ".join(str(value).split()).replace("|", "\\|")


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def code(text: str) -> str:
    """Inline code that survives backticks inside it."""
    text = " ".join(str(text).split())
    return f"`` {text} ``" if "`" in text else f"`{text}`"


_ROLE = re.compile(r":[\w:]+:`(~?)([^`<]+?)(?: <[^>]+>)?`")


def unrole(text: str) -> str:
    """Docstring text for a Markdown page: a role (which Markdown would show raw) becomes the
    name it points to, as code (the last part only where the role says ``~``)."""
    return _ROLE.sub(lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`",
                     text)
