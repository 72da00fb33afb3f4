"""The figures and the GIF of a run, drawn from its data, snapshots and model.

:data:`REPORTS` holds how each modality is drawn, under its name (``ddpmlab.runs.figures``
draws a run directory's figures with it). Only the commands that draw import this package
(matplotlib).
"""

from __future__ import annotations

from ddpmlab.reports.base import Drawable, Report
from ddpmlab.reports.images import ImageReport
from ddpmlab.reports.points import PointReport

REPORTS: dict[str, type[Report]] = {"points": PointReport, "images": ImageReport}

__all__ = ["REPORTS", "Drawable", "Report", "report_for"]


def report_for(run: Drawable) -> Report:
    """How the run is drawn: its modality's report."""
    return REPORTS[run.kind.name](run)
