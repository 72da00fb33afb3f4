"""Cross-references the Python domain leaves unresolved, resolved when they name a real
object that the reference documents under another path.

A docstring may name an object where it is re-exported (``ddpmlab.samplers.SamplerSpec``,
defined in ``ddpmlab.samplers.spec``) or by the short name its own module uses
(``Run.sample`` from ``ddpmlab.runs.evaluation``). The first is found by importing the
path and asking the object where it is defined, the second by the one documented name that
ends with it. A reference that matches nothing, or several things, stays unresolved, and
the nitpicky build fails on it.
"""

from __future__ import annotations

import importlib
from typing import Any

from sphinx.util.nodes import make_refnode


def _imported(target: str) -> str | None:
    """The defining module's path of the object ``target`` names by import, if any."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        module = getattr(obj, "__module__", None)
        qualname = getattr(obj, "__qualname__", None)
        if module and qualname:
            return f"{module}.{qualname}"
        return None
    return None


def _suffix(objects: dict[str, Any], target: str, module: str | None) -> str | None:
    found = [name for name in objects if name.endswith("." + target)]
    if len(found) > 1 and module:
        found = [name for name in found if name.startswith(module + ".")] or found
    return found[0] if len(found) == 1 else None


def missing_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    objects = env.get_domain("py").objects
    name = _imported(target) if "." in target else None
    if name not in objects:
        name = _suffix(objects, target, node.get("py:module"))
    if name is None:
        return None
    entry = objects[name]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode,
                        name)
