"""The configuration keys, generated from the frozen dataclasses of ``ddpmlab.config``: each
TOML table, each key with its type, its default for points, digits and MNIST (the data's
measured defaults, ``ddpmlab.modalities.default_config``) and the dataclass's own words."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from typing import Any

from .common import code, table, unrole

_FIELD = re.compile(r"^    ([a-z_]+): (.*)$")
KINDS = {"points": "swiss_roll", "digits": "digits", "mnist": "mnist"}


def field_docs(cls: type) -> dict[str, str]:
    """``name: text`` paragraphs of a dataclass's docstring, continuation lines joined."""
    docs: dict[str, str] = {}
    current = None
    for line in (cls.__doc__ or "").splitlines():
        match = _FIELD.match(line)
        if match and match.group(1) in {f.name for f in dataclasses.fields(cls)}:
            current = match.group(1)
            docs[current] = match.group(2)
        elif current and line.startswith("        "):
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs


def _type(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return " \\| ".join(repr(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if value == "":
        return '""'
    return str(value).lower() if isinstance(value, bool) else str(value)


def _value(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def _section(cls: type, path: tuple[str, ...], defaults: dict[str, Any]) -> list[str]:
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    rows, nested = [], []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            nested.append((hints[f.name], (*path, f.name)))
            continue
        values = {kind: _shown(_value(c, (*path, f.name))) for kind, c in defaults.items()}
        shown = (next(iter(values.values())) if len(set(values.values())) == 1 else
                 "; ".join(f"{v} ({k})" for k, v in values.items()))
        rows.append([code(f.name), code(_type(hints[f.name])), shown,
                     unrole(docs.get(f.name, ""))])
    summary = unrole(inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0])
    out = [f"## `[{'.'.join(path)}]`\n", f"{' '.join(summary.split())} "
           f"({{py:class}}`~ddpmlab.config.{cls.__name__}`)\n",
           table(["key", "type", "default", "meaning"], rows)]
    for sub, subpath in nested:
        out += _section(sub, subpath, defaults)
    return out


def page() -> str:
    from ddpmlab.config import RunConfig
    from ddpmlab.modalities import default_config

    defaults = {kind: default_config(source) for kind, source in KINDS.items()}
    out = ["# Configuration keys\n",
           "Generated from the dataclasses of `ddpmlab.config`. A TOML file given to "
           "`ddpmlab train --config FILE.toml` sets these keys, table by table; flags given "
           "on the command line win over it; unknown keys and wrong types are refused with "
           "one line. Defaults follow the data (the measured defaults of each built-in set, "
           "`ddpmlab.default_config`): where points, digits and MNIST differ, each is "
           "given. The whole configuration is saved as `config.json` in the run directory "
           "and inside every checkpoint.\n",
           "```toml\n[diffusion]\nschedule = \"cosine\"\ntimesteps = 200\n\n[model]\n"
           "name = \"resmlp\"\n\n[model.resmlp]\nhidden = 128\n\n[train]\nsteps = 6000\n```\n"]
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        out += _section(hints[f.name], (f.name,), defaults)
    return "\n".join(out)
