"""Sphinx extension of ddpmlab's site: writes the generated pages before Sphinx reads any.

These pages (ignored by git) are made here from the code or the measured results, so that
none of what they show is copied by hand:

- ``reference/cli.md`` from the argparse parser (:mod:`.cli`),
- ``reference/config.md`` from the configuration dataclasses (:mod:`.config_keys`),
- ``reference/api.md`` and ``reference/modules.md`` from ``ddpmlab.__all__`` and the
  package (:mod:`.api`),
- ``tutorials/course_en.md``, ``tutorials/cours_fr.md`` from the jupytext tutorials
  (:mod:`.tutorials`),
- ``_generated/tables/<result>.mdinc`` from ``bench/results/*.json`` (:mod:`.results`),
  included by the result pages, and ``results/all.md``, the list of every result file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import api, cli, config_keys, docstrings, resolve, results, tutorials

DOCS = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> None:
    """Write only when the text changed, so Sphinx's incremental build stays incremental."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def generate(docs: Path = DOCS) -> None:
    write(docs / "reference" / "cli.md", cli.page())
    write(docs / "reference" / "config.md", config_keys.page())
    write(docs / "reference" / "api.md", api.public_page())
    write(docs / "reference" / "modules.md", api.modules_page())
    for name in tutorials.SCRIPTS:
        script = docs / "tutorial" / f"{name}.py"
        write(docs / "tutorials" / f"{name}.md", tutorials.page(script))
        write(docs / "_generated" / "notebooks" / f"{name}.ipynb", tutorials.notebook(script))
    measured = docs.parent / "bench" / "results"
    for name, text in results.snippets(measured).items():
        write(docs / "_generated" / "tables" / f"{name}.mdinc", text)
    write(docs / "results" / "all.md", results.catalogue_page(measured, docs / "results"))


def _on_builder_inited(app: Any) -> None:
    generate(Path(app.srcdir))


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", _on_builder_inited)
    app.connect("autodoc-process-docstring", docstrings.process)
    app.connect("missing-reference", resolve.missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
