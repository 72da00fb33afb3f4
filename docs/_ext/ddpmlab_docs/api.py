"""The Python API reference, generated from the package.

``reference/api.md`` has one entry per name of ``ddpmlab.__all__`` (the public API),
documented where it is defined (``ddpmlab.config.RunConfig`` for ``ddpmlab.RunConfig``), so
that the docstring's cross-references resolve in its own module. ``reference/modules.md``
has every module with its other members, which those references point into; a name is
described once, on one of the two pages.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from .common import unrole

# Entry points with nothing to document beyond the command line (documented there).
SKIPPED = {"ddpmlab.__main__", "ddpmlab.cli.__main__"}


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "class"
    if callable(obj):
        return "function"
    return "data"


def public() -> dict[str, str]:
    """``{public name: the full name of its definition}``."""
    import ddpmlab

    found = {}
    for name in ddpmlab.__all__:
        obj = getattr(ddpmlab, name)
        module = getattr(obj, "__module__", None) if _kind(obj) != "data" else None
        found[name] = f"{module or ddpmlab._EXPORTS.get(name, 'ddpmlab')}.{name}"
    return found


def _summary(obj: object) -> str:
    doc = inspect.getdoc(obj) if _kind(obj) != "data" else None
    first = " ".join((doc or "").split("\n\n")[0].split())
    return unrole(first).replace("|", "\\|")


def _data(full: str, obj: object) -> str:
    """A registry's entry: its keys and their one-line summaries (a dict's own docstring is
    the builtin's, not ours)."""
    items = obj.items() if isinstance(obj, dict) else []
    lines = [f"   - ``{key}``: {getattr(value, 'summary', '')}" for key, value in items]
    return ("```{eval-rst}\n"
            f".. py:data:: {full}\n   :type: dict\n\n"
            "   The samplers by name; each entry says what its sampler takes:\n\n"
            + "\n".join(lines) + "\n```\n")


def public_page() -> str:
    import ddpmlab

    names = public()
    order = sorted(names, key=lambda n: (_kind(getattr(ddpmlab, n)) != "class", n.lower()))
    out = ["# Python API\n",
           "Every name `import ddpmlab` offers (`ddpmlab.__all__`), generated from its "
           "docstring; each entry gives the module that defines it. Each is loaded on first "
           "use, so `import ddpmlab` stays fast. Shapes are written `(B, *D)`: a batch of "
           "points `(B, 2)` or of images `(B, C, H, W)`. The modules behind them, with "
           "everything else they hold, are in [the module reference](modules.md).\n",
           "| name | what it is |\n|---|---|"]
    out += [f"| {{py:obj}}`ddpmlab.{n} <{names[n]}>` | {_summary(getattr(ddpmlab, n))} |"
            for n in order]
    out.append("")
    for name in order:
        obj = getattr(ddpmlab, name)
        kind = _kind(obj)
        out.append(f"## `ddpmlab.{name}`\n")
        if kind == "data":
            out.append(_data(names[name], obj))
            continue
        options = "\n   :members:" if kind == "class" else ""
        out.append(f"```{{eval-rst}}\n.. auto{kind}:: {names[name]}{options}\n```\n")
    return "\n".join(out)


def modules() -> list[str]:
    import ddpmlab

    found = ["ddpmlab"]
    for info in pkgutil.walk_packages(ddpmlab.__path__, "ddpmlab."):
        if info.name in SKIPPED:
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed: nothing to show
            continue
        found.append(info.name)
    return sorted(found)


def constants(module: str) -> dict[str, str]:
    """``{NAME: the comment above it}`` of a module's top-level UPPER_CASE assignments:
    autodoc shows module data only when it carries a doc comment, and docstrings name them."""
    path = Path(importlib.import_module(module).__file__ or "")
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = {}
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign) else
                   [node.target] if isinstance(node, ast.AnnAssign) else [])
        for t in targets:
            if isinstance(t, ast.Name) and t.id.isupper() and not t.id.startswith("_"):
                above, i = [], node.lineno - 2
                while i >= 0 and lines[i].lstrip().startswith("#"):
                    above.insert(0, lines[i].strip().lstrip("#:").strip())
                    i -= 1
                found[t.id] = " ".join(above)
    return found


_ROLE_SPLIT = re.compile(r"(:[\w:]+:`[^`]+`)")


def _constants(module: str) -> str:
    entries = []
    for name, comment in constants(module).items():
        parts = _ROLE_SPLIT.split(comment.replace("*", "\\*").replace("|", "\\|"))
        text = "".join(p if i % 2 else re.sub(r"(?<!`)`(?!`)", "``", p)  # roles kept
                       for i, p in enumerate(parts))
        entries.append(f".. py:data:: {module}.{name}\n\n   {text}\n" if text else
                       f".. py:data:: {module}.{name}\n")
    return "```{eval-rst}\n" + "\n".join(entries) + "```\n" if entries else ""


def modules_page() -> str:
    by_module: dict[str, list[str]] = {}
    for full in public().values():
        module, name = full.rsplit(".", 1)
        by_module.setdefault(module, []).append(name)
    out = ["# Modules\n",
           "Every module of the package with its members, in the order of the source; the "
           "public names are described in [the Python API](api.md). The dependency "
           "direction between the modules is drawn in "
           "[the architecture](../explanation/architecture.md).\n"]
    for name in modules():
        out.append(f"## `{name}`\n")
        options = ""
        if name != "ddpmlab":
            options = "\n   :members:\n   :undoc-members:\n   :ignore-module-all:"
            excluded = sorted({*by_module.get(name, ()), *constants(name)})
            if excluded:
                options += "\n   :exclude-members: " + ", ".join(excluded)
        out.append(f"```{{eval-rst}}\n.. automodule:: {name}{options}\n```\n")
        if name != "ddpmlab":
            out.append(_constants(name))
    return "\n".join(out)
