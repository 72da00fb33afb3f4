"""Sphinx configuration of ddpmlab's documentation site.

Built by ``sphinx-build -W --keep-going -n -b html docs docs/_build/html``: warnings are
errors and nitpicky mode makes every cross-reference that does not resolve one of them.
The site needs no network: furo ships its fonts and scripts, intersphinx is not used.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent / "src"))

import ddpmlab  # noqa: E402

project = "ddpmlab"
author = "ddpmlab contributors"
copyright = "ddpmlab contributors, MIT licence"
release = ddpmlab.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "ddpmlab_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "tutorial/*.ipynb", "**/.ipynb_checkpoints"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# sphinx-mathjax-offline copies MathJax into the site and points mathjax_path at it: the
# formulas render without a request to a CDN.

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autosummary_generate = False

# Types of other libraries appear in signatures; without intersphinx (the site is built
# offline) they cannot link, so nitpicky mode checks only ddpmlab's own references.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|np|pathlib|collections|typing|argparse|os|io|enum|http|socketserver|"
               r"dataclasses|matplotlib|PIL|types|abc|concurrent|contextlib|tomllib|tqdm|nn|scipy|"
               r"sklearn|ot|safetensors|http|socketserver|threading|queue|json|subprocess|socket|"
               r"urllib|signal|logging|multiprocessing|tempfile|functools|selectors)(\..*)?"),
    # private helpers and type variables are named in docstrings but not documented
    (r"py:.*", r"(.*\.)?_\w+"),
    (r"py:class", r"ddpmlab\..*\.(Config|State|Tensors|Denoiser|Field)"),
    (r"py:.*", r"(Path|Tensor|Any|Callable|Iterator|Iterable|Sequence|Mapping|Literal|"
               r"Generator|NDArray|ndarray|Module|Optional|Union|T|Config|Self|TypeVar|"
               r"Generic|Protocol|ClassVar|Final|NamedTuple|Enum|IntEnum|object|int|float|str|"
               r"bool|bytes|None|list|dict|tuple|set|frozenset|type|callable|function|"
               r"optional|array|array-like|Array|Denoiser|Field|floating|float64|float32|int64|"
               r"string|C|H|W|B|D|N|K|T|x0)"),
]

html_theme = "furo"
html_title = f"ddpmlab {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
