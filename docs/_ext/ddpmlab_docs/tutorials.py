"""The course pages, generated from the jupytext "percent" scripts in docs/tutorial/.

The scripts stay the source. A page shows their prose, equations and code in order; after a
code cell that writes a figure (``show("x.png")``, ``keep(run, ..., "x.png")``), the figure
of the full run committed in docs/tutorial/figures/ follows. Nothing is executed: a full run
trains every model of the course (minutes), which a site build must not repeat.
"""

from __future__ import annotations

import re
from pathlib import Path

SCRIPTS = {"course_en": "English", "cours_fr": "français"}
SOURCE = {
    "course_en": "*Download:* the notebook {notebook} or the script {link} (a jupytext "
                 "script); either runs from any folder once ddpmlab is installed. The "
                 "figures below are those of a full run, committed in "
                 "`docs/tutorial/figures/`.\n",
    "cours_fr": "*Télécharger :* le notebook {notebook} ou le script {link} (un script "
                "jupytext) ; l'un et l'autre s'exécutent depuis n'importe quel dossier une "
                "fois ddpmlab installé. Les figures ci-dessous sont celles d'une exécution "
                "complète, conservées dans `docs/tutorial/figures/`.\n",
}
_FIGURE = re.compile(r"""(?:show\(|keep\([^\n]*?,\s*)f?["']([\w{}]+\.(?:png|gif))["']\)""")
_CELL = re.compile(r"^# %%(.*)$", re.M)


def cells(text: str) -> list[tuple[str, str]]:
    """(kind, source) of each cell of a percent script: "markdown" or "code"."""
    text = re.sub(r"\A# ---\n(?:#.*\n)*?# ---\n", "", text)  # jupytext's header
    parts = _CELL.split(text)
    found = []
    for head, body in zip(parts[1::2], parts[2::2], strict=True):
        if "[markdown]" in head:
            lines = [line[2:] if line.startswith("# ") else line.lstrip("#")
                     for line in body.strip("\n").splitlines()]
            found.append(("markdown", "\n".join(lines)))
        elif body.strip():
            found.append(("code", body.strip("\n")))
    return found


def _figures(source: str, figures: Path) -> list[str]:
    names = []
    for name in _FIGURE.findall(source):
        if "{" in name:  # an f-string: every committed figure it can name
            pattern = re.sub(r"\{\w+\}", "*", name)
            names += sorted(p.name for p in figures.glob(pattern))
        else:
            names.append(name)
    return [n for n in dict.fromkeys(names) if (figures / n).exists()]


def page(script: Path) -> str:
    figures = script.parent / "figures"
    out = [f"<!-- generated from docs/tutorial/{script.name}; edit the script -->\n"]
    first = True
    for kind, source in cells(script.read_text(encoding="utf-8")):
        if kind == "markdown":
            out.append(source + "\n")
            if first:
                out.append(SOURCE[script.stem].format(
                    link=f"{{download}}`{script.name} <../tutorial/{script.name}>`",
                    notebook=f"{{download}}`{script.stem}.ipynb "
                             f"<../_generated/notebooks/{script.stem}.ipynb>`"))
                first = False
            continue
        out.append(f"```python\n{source}\n```\n")
        for name in _figures(source, figures):
            out.append(f"![{name}](../tutorial/figures/{name})\n")
    return "\n".join(out)


def notebook(script: Path) -> str:
    """The script as a notebook (jupytext reads its percent cells), offered for download."""
    import jupytext  # the docs extra

    return str(jupytext.writes(jupytext.read(script), fmt="ipynb"))
