"""Number formats of the result tables (the precision the measurements carry)."""

from __future__ import annotations

from typing import Any


def f1(x: float) -> str:
    return f"{x:.1f}"


def f2(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def pct(x: float) -> str:
    return f"{100 * x:.0f} %" if x >= 0.01 else f"{100 * x:.1f} %"


def split_cell(c: dict[str, Any]) -> str:
    """``1-NNA / W1 over floor`` of one few-step cell."""
    return f"{f3(c['1nna'])} / {f2(c['w1_ratio'])}"
