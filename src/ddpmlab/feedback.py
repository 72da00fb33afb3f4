"""Feedback on long work, on stderr: a bar on a terminal, one status line per phase.

Every phase that can take more than about a second (training, sampling, evaluating, drawing
figures, the bound, a sweep) either shows a :func:`bar` or announces itself with
:func:`status`. Bars are drawn only when stderr is a terminal (tqdm's ``disable=None``); logs
and pipes get one clean status line per bar instead. :func:`shown` turns everything off
(``--quiet``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm

_on = [True]  # one switch for the process: worker threads follow the caller's choice


def enabled() -> bool:
    """Whether progress is shown (True unless inside ``shown(False)``)."""
    return _on[0]


@contextmanager
def shown(on: bool = True) -> Iterator[None]:
    """Show (or, with ``on=False``, hide) progress inside the block."""
    before = enabled()
    _on[0] = on
    try:
        yield
    finally:
        _on[0] = before


def status(text: str) -> None:
    """One line on stderr, ``ddpmlab: text``, unless progress is hidden."""
    if enabled():
        print(f"ddpmlab: {text}", file=sys.stderr, flush=True)


def bar(total: int, desc: str, unit: str = "step", **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr: drawn on a terminal; elsewhere the status line ``desc`` instead;
    nothing when progress is hidden."""
    if enabled() and not sys.stderr.isatty():
        status(desc)
    options = {"leave": False, "dynamic_ncols": True, **kwargs}
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled() else True,
                file=sys.stderr, **options)
