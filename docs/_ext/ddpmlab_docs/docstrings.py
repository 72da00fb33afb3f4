"""Docstrings as reStructuredText, without changing how they read in the source.

ddpmlab's docstrings describe fields as ``name: text`` lines with indented continuations,
and write shapes as ``(B, *D)``. Read as reStructuredText, the first are broken definition
lists and the second an unterminated emphasis. ``autodoc-process-docstring`` turns the
fields into a bullet list and escapes a star that starts a shape's name; roles such as
``:func:`` are left as they are, to be resolved by Sphinx.
"""

from __future__ import annotations

import re
from typing import Any

_FIELD = re.compile(r"^([A-Za-z_][\w.]*(?:, [A-Za-z_][\w.]*)*"
                    r"|[A-Za-z_]\w*\([^)]*\)(?: -> (?:\([^)]*\)|[\w.\[\], ]+))?): (\S.*)$")
# a function's signature as an item: ``name(args) -> what it returns``
_SIGNATURE = re.compile(r"^([A-Za-z_]\w*\([^)]*\) -> )(\S.*)$")
_LITERAL = re.compile(r"(``.+?``|:\w+:`[^`]+`)")


def escape_stars(line: str) -> str:
    """A shape's star and every bar (``|x|`` is a norm here, never a substitution) escaped."""
    parts = _LITERAL.split(line)
    return "".join(p if i % 2 else _escape(p) for i, p in enumerate(parts))


def _escape(text: str) -> str:
    """A star that opens a word escaped, unless the next star closes it as an emphasis."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        opens = (ch == "*" and i + 1 < len(text) and text[i + 1].isalnum()
                 and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "*`\\")))
        if opens:
            j = text.find("*", i + 1)
            if j > 0 and not text[j - 1].isspace() and (j + 1 == len(text)
                                                        or not text[j + 1].isalnum()):
                out.append(text[i:j + 1])
                i = j + 1
                continue
            out.append("\\")
        out.append(ch)
        i += 1
    return "".join(out).replace("|", "\\|")


def fields_to_list(lines: list[str]) -> list[str]:
    """``name: text`` at the margin (with lines indented under it) becomes ``- name: text``."""
    out: list[str] = []
    in_list = in_literal = False
    for line in lines:
        stripped = line.strip()
        if in_literal and (not stripped or line.startswith(" ")):
            out.append(line)
            continue
        in_literal = False
        margin = not line.startswith((" ", ":", "-", "*", ">"))
        match = (_FIELD.match(line) or _SIGNATURE.match(line)) if margin else None
        if match:
            if not in_list and out and out[-1].strip():
                out.append("")
            name = match.group(1).removesuffix(" -> ")
            sep = ": " if match.re is _FIELD else " -> "
            out.append(f"- ``{name}``{sep}{match.group(2)}")
            in_list = True
        elif in_list and stripped:  # a field's text runs on to the next blank line
            out.append("  " + stripped)
        else:
            in_list = False
            out.append(line)
        if stripped.endswith("::"):
            in_literal = True
    return out


def process(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    lines[:] = [escape_stars(line) for line in fields_to_list(list(lines))]
