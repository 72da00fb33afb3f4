"""The documentation site builds with warnings as errors and nitpicky references, and what it
promises holds in the HTML: the docstrings' roles are rendered (no raw ``:func:``), every
public name and every flag has its entry, every internal link and anchor resolves, nothing
is fetched from another site, and every result file is shown.

One build (``sphinx-build -E -W --keep-going -n -b html``) serves every check."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import ddpmlab
from ddpmlab.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RAW_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|mod|attr|obj|exc|const):")


class Page(HTMLParser):
    """The ids, links, resources and visible text of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        if tag in ("script", "img", "iframe", "source") and a.get("src"):
            self.resources.append(a["src"] or "")
        if tag == "link" and a.get("href") and a.get("rel") in ("stylesheet", "preload"):
            self.resources.append(a["href"] or "")
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Page]:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-n",
                           "-q", "-b", "html", str(DOCS), str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    pages = {}
    for path in out.rglob("*.html"):
        page = Page()
        page.feed(path.read_text(encoding="utf-8"))
        pages[path] = page
    return pages


def _page(site: dict[Path, Page], name: str) -> tuple[Path, Page]:
    return next((p, page) for p, page in site.items() if p.as_posix().endswith(name))


def test_the_docstrings_roles_are_rendered_not_shown(site: dict[Path, Page]) -> None:
    raw = [f"{p.name}: {m.group(0)}" for p, page in site.items()
           for m in RAW_ROLE.finditer(" ".join(page.text))]
    assert raw == []


def test_every_public_name_has_an_entry_in_the_api_reference(site: dict[Path, Page]) -> None:
    _, api = _page(site, "reference/api.html")
    for name in ddpmlab.__all__:
        obj = getattr(ddpmlab, name)
        module = getattr(obj, "__module__", None) if callable(obj) else None
        anchors = {f"{module}.{name}"} if module else {i for i in api.ids
                                                       if i.endswith("." + name)}
        assert anchors and anchors <= api.ids, name


def test_every_subcommand_and_flag_is_in_the_command_line_reference(
        site: dict[Path, Page]) -> None:
    _, cli = _page(site, "reference/cli.html")
    text = " ".join(cli.text)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"ddpmlab-{name}" in cli.ids, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert flag in text, f"{name} {flag}"


def test_internal_links_and_anchors_resolve(site: dict[Path, Page]) -> None:
    broken = []
    for path, page in site.items():
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("mailto:"):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.name} -> {href}")
            elif parts.fragment and target.suffix == ".html" and target in site and \
                    parts.fragment not in site[target].ids:
                broken.append(f"{path.name} -> {href} (no such anchor)")
    assert broken == []


def test_the_site_fetches_nothing_from_another_site(site: dict[Path, Page]) -> None:
    remote = [f"{p.name}: {r}" for p, page in site.items() for r in page.resources
              if urlsplit(r).scheme or r.startswith("//")]
    assert remote == []


def test_every_result_file_is_shown(site: dict[Path, Page]) -> None:
    _, catalogue = _page(site, "results/all.html")
    text = " ".join(catalogue.text)
    for path in sorted((ROOT / "bench" / "results").glob("*.json")):
        assert path.name in text, path.name
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "tables" in data:  # the format new results use
            for table in data["tables"]:
                assert {"title", "command", "columns", "rows"} <= set(table), path.name


@pytest.mark.parametrize("course", ["course_en", "cours_fr"])
def test_each_course_downloads_as_a_notebook_of_its_cells(site: dict[Path, Page],
                                                          course: str) -> None:
    path, page = _page(site, f"tutorials/{course}.html")
    (href,) = [h for h in page.links if h.endswith(f"{course}.ipynb")]
    notebook = json.loads((path.parent / unquote(href)).read_text(encoding="utf-8"))
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    script = (DOCS / "tutorial" / f"{course}.py").read_text(encoding="utf-8")
    assert kinds.count("markdown") == script.count("# %% [markdown]")
    assert kinds.count("code") == script.count("# %%") - script.count("# %% [markdown]")
