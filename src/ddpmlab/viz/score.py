"""The score field over the plane: arrows of grad log p_t at a few noise levels, over the data.

``plot_score_field`` draws one column per noise level and one row per field (the learned
score, and the exact one where the noised density is known in closed form), each panel the
noised data in grey under unit arrows (the direction of the field; their colour its log
length). From arrays only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ddpmlab.viz.common import DATA_COLOR, _figure, _save, _styled
from ddpmlab.viz.points import Limits


@dataclass(frozen=True)
class ScoreLevel:
    """One noise level: ``title``, the noised data ``points`` (N, 2), the ``grid`` (M, 2) and
    the fields on it, (M, 2) each, by row name (``learned``, ``exact``)."""

    title: str
    points: np.ndarray
    grid: np.ndarray
    fields: dict[str, np.ndarray]


def plot_score_field(levels: Sequence[ScoreLevel], path: str | os.PathLike[str],
                     limits: Limits, rows: Sequence[str], suptitle: str | None = None,
                     note: str | None = None) -> Path:
    """One column per level, one row per field name in ``rows``; axes in ``limits``. A legend
    names the grey points, a colour bar the arrows' colour (the log length of the field,
    shared by every panel); ``note`` is written under the panels (e.g. why a row is absent).
    """
    return _save(_score_figure(levels, limits, rows, suptitle, note), path)


@_styled
def _score_figure(levels: Sequence[ScoreLevel], limits: Limits, rows: Sequence[str],
                  suptitle: str | None, note: str | None = None) -> Figure:
    fig = _figure(2.6 * len(levels) + 0.9, 2.7 * len(rows) + 0.8, layout="constrained")
    axes = fig.subplots(len(rows), len(levels), squeeze=False)
    logs = [np.log10(np.maximum(np.linalg.norm(level.fields[row], axis=1), 1e-12))
            for level in levels for row in rows]
    clim = (min(float(v.min()) for v in logs), max(float(v.max()) for v in logs))
    arrows = None
    for j, level in enumerate(levels):
        for i, row in enumerate(rows):
            ax = axes[i][j]
            ax.scatter(level.points[:, 0], level.points[:, 1], s=1.5, c=DATA_COLOR, alpha=0.4,
                       linewidths=0, rasterized=True,
                       label="held-out data noised to this t" if i == j == 0 else None)
            v = level.fields[row]
            norm = np.linalg.norm(v, axis=1, keepdims=True)
            u = v / np.maximum(norm, 1e-12)
            arrows = ax.quiver(level.grid[:, 0], level.grid[:, 1], u[:, 0], u[:, 1],
                               np.log10(np.maximum(norm[:, 0], 1e-12)), cmap="viridis",
                               angles="xy", pivot="mid", width=0.006, clim=clim)
            ax.set_xlim(limits[0], limits[1])
            ax.set_ylim(limits[2], limits[3])
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(level.title if i == 0 else "", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{row} score")
    assert arrows is not None  # at least one level and one row
    fig.colorbar(arrows, ax=axes, shrink=0.8, label="log10 |s(x, t)|")
    fig.legend(loc="outside lower left", fontsize=8, markerscale=6, frameon=False,
               title="arrows: the direction of the score, coloured by its length",
               title_fontsize=8, alignment="left")
    lines = [line for line in (suptitle, note) if line]
    if lines:
        fig.suptitle("\n".join(lines), fontsize=9)
    return fig
