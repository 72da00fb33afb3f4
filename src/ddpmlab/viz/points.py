"""Figures of 2-D diffusion experiments: point clouds, forward and reverse chains, their GIF.

Every function takes numpy arrays, writes one file atomically and returns the
:class:`~pathlib.Path` it wrote; a missing parent folder raises :class:`FileNotFoundError`, bad
arrays raise :class:`ValueError` (the house rules of :mod:`ddpmlab.viz.common`, which also
holds the loss and bound figures). No pyplot; nothing here trains, samples or imports torch.

Points are ``(N, 2)`` float arrays in data coordinates; a *frame* is a pair ``(t, points)``;
*limits* are ``(xmin, xmax, ymin, ymax)``. Figures of points carry small ticks in data units (in
a grid only the outer panels are labelled) so that the data's scale can be read; GIF frames do
not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from ddpmlab.viz.common import (
    DATA_COLOR,
    POINT_COLOR,
    _figure,
    _gif_frame_ms,
    _math,
    _palette_frame,
    _save,
    _save_gif,
    _step_label,
    _styled,
    _target,
)

Limits = tuple[float, float, float, float]
Frame = tuple[int, np.ndarray]
# Ticks of point figures: small and grey, there to read the scale, not to draw the eye.
_TICKS: dict[str, Any] = {"labelsize": 6.5, "length": 2.0, "width": 0.6, "pad": 1.5,
                          "colors": "#777777"}


def _points(x: object, name: str) -> np.ndarray:
    """Return ``x`` as a float ``(N, 2)`` array with N >= 1 and finite values, else ValueError."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric (N, 2) array: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, 2) with N >= 1, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _frames(frames: Iterable[Frame], name: str) -> list[tuple[int, np.ndarray]]:
    """Validate a finite sequence of ``(t, points (N, 2))`` pairs into a list."""
    out = [(int(t), _points(p, f"{name}[{i}] (t={t}) points")) for i, (t, p) in enumerate(frames)]
    if not out:
        raise ValueError(f"{name} is empty")
    return out


def _limits(limits: Sequence[float], name: str = "limits") -> Limits:
    """Validate ``(xmin, xmax, ymin, ymax)``: four finite numbers with min < max."""
    lim = tuple(float(v) for v in limits)
    if len(lim) != 4 or not all(map(math.isfinite, lim)) or lim[0] >= lim[1] or lim[2] >= lim[3]:
        raise ValueError(f"{name} must be finite (xmin, xmax, ymin, ymax) with min < max: {limits}")
    return lim[0], lim[1], lim[2], lim[3]


def _scatter(
    ax: Axes,
    pts: np.ndarray,
    limits: Limits,
    *,
    title: str | None = None,
    frame: bool = True,
    ticks: bool = True,
    color: str = POINT_COLOR,
    s: float = 2.0,
    alpha: float = 0.5,
    label: str | None = None,
) -> None:
    """Scatter ``pts`` (N, 2) on ``ax`` in the house style: fixed limits, equal aspect.

    ``ticks`` puts small ticks labelled in data units on the left and bottom edges (about 5
    per axis, at round steps); without them the axes are bare, as in GIF frames.
    """
    ax.scatter(pts[:, 0], pts[:, 1], s=s, c=color, alpha=alpha, linewidths=0, label=label)
    ax.set_xlim(limits[0], limits[1])
    ax.set_ylim(limits[2], limits[3])
    ax.set_aspect("equal", adjustable="box")
    if ticks:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
        ax.tick_params(**_TICKS)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    if not frame:
        ax.set_axis_off()
    if title is not None:
        ax.set_title(title, pad=3)


def _label_outer(grid: np.ndarray) -> None:
    """Keep tick labels on the outer panels of ``grid`` (rows, cols) of Axes or None (deleted).

    All panels share one set of limits, so labels on the left column and on the lowest panel
    of each column are enough (sharex/sharey style); a column whose last row is short of a
    panel is labelled on the panel above the gap.
    """
    rows, cols = grid.shape
    for r in range(rows):
        for c in range(cols):
            if grid[r, c] is not None:
                lowest = all(grid[below, c] is None for below in range(r + 1, rows))
                grid[r, c].tick_params(labelbottom=lowest, labelleft=c == 0)


def limits_for(
    *point_sets: np.ndarray, margin: float = 0.05, quantile: float | None = None
) -> Limits:
    """Square ``(xmin, xmax, ymin, ymax)`` covering every ``(N, 2)`` array, plus ``margin``.

    The box is centred on the points and its side is the larger of the x and y spans, widened by
    ``margin`` times that side on each edge. With ``quantile`` (e.g. 0.005) each set contributes
    only its ``[quantile, 1 - quantile]`` range per axis, ignoring far outliers of noise frames.
    """
    if not point_sets:
        raise ValueError("limits_for needs at least one point set")
    if quantile is not None and not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must be in [0, 0.5), got {quantile}")
    lows, highs = [], []
    for i, ps in enumerate(point_sets):
        arr = _points(ps, f"point_sets[{i}]")
        q = quantile or 0.0
        lows.append(np.quantile(arr, q, axis=0) if q else arr.min(axis=0))
        highs.append(np.quantile(arr, 1.0 - q, axis=0) if q else arr.max(axis=0))
    lo, hi = np.min(lows, axis=0), np.max(highs, axis=0)
    center = (lo + hi) / 2.0
    side = float(np.max(hi - lo)) or 1.0
    half = side * (0.5 + margin)
    return (center[0] - half, center[0] + half, center[1] - half, center[1] + half)


def frame_limits(
    items: Iterable[Frame | np.ndarray], margin: float = 0.05, quantile: float | None = None
) -> Limits:
    """Square limits holding every point of every item: frames ``(t, points (N, 2))`` or arrays.

    Meant for a chain from x_T to x_0, where x_T (standard normal noise mapped to data units)
    spreads wider than the data: sizing on the data alone cuts off part of x_T. By default
    the box holds *all* points (their min and max per axis), plus ``margin`` times the side on
    each edge, as :func:`limits_for`; nothing is clipped, at the price that one wild point
    widens the box. ``quantile`` (e.g. 0.0005) trims that fraction per axis and tail of each
    item instead. Mix frames and arrays freely: ``frame_limits([data, *frames])``.
    """
    arrays = []
    for i, item in enumerate(items):
        # a frame is a 2-tuple whose first entry is a scalar t; anything else is points
        is_frame = isinstance(item, tuple) and len(item) == 2 and np.ndim(item[0]) == 0
        arrays.append(_points(item[1] if is_frame else item, f"items[{i}]"))
    if not arrays:
        raise ValueError("frame_limits needs at least one frame or point set")
    return limits_for(*arrays, margin=margin, quantile=quantile)


@_styled
def plot_points(x: np.ndarray, path: str | os.PathLike[str], title: str = "data") -> Path:
    """Scatter one point cloud ``x`` (N, 2) into ``path``."""
    return _save(_points_figure(x, title), path)


@_styled
def _points_figure(x: np.ndarray, title: str) -> Figure:
    """Build the figure of :func:`plot_points`: one scatter with ticks in data units."""
    pts = _points(x, "x")
    fig = _figure(4.6, 4.8, layout="constrained")
    _scatter(fig.add_subplot(), pts, limits_for(pts), title=title, s=4.0, alpha=0.6)
    return fig


@_styled
def _forward_grid_figure(
    frames: Sequence[Frame], title: str | None = None, limits: Limits | None = None
) -> Figure:
    """Build the forward-process grid: rows of 5 panels, one per frame, titled q(x_t)."""
    checked = _frames(frames, "frames")
    cols = min(5, len(checked))
    rows = math.ceil(len(checked) / cols)
    lim = _limits(limits) if limits else limits_for(*(p for _, p in checked), quantile=0.002)
    fig = _figure(2.0 * cols, 2.1 * rows + (0.35 if title else 0.0), layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    for ax, (t, pts) in zip(grid.flat, checked, strict=False):
        _scatter(ax, pts, lim, title=_math("q", t))
    for i in range(len(checked), grid.size):
        fig.delaxes(grid.flat[i])
        grid.flat[i] = None  # _label_outer sees the gap
    _label_outer(grid)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


@_styled
def plot_forward_grid(
    frames: Sequence[Frame],
    path: str | os.PathLike[str],
    title: str | None = None,
    limits: Limits | None = None,
) -> Path:
    """Forward-process figure: ``frames`` of ``(t, points (N, 2))`` on a grid 5 panels wide.

    Every panel shares the same limits (``limits`` or all frames minus 0.2 % outliers).
    """
    return _save(_forward_grid_figure(frames, title, limits), path)


@_styled
def _progress_figure(
    checked: Sequence[tuple[str | None, list[tuple[int, np.ndarray]]]],
    title: str | None,
    limits: Limits | None,
) -> Figure:
    """One row of p(x_t) panels per ``(row_label, checked_frames)``, same limits everywhere.

    ``limits=None`` holds every point of every frame (:func:`frame_limits`), x_T included.
    """
    if not checked:
        raise ValueError("snapshots is empty")
    every = [f for _, fr in checked for f in fr]
    lim = _limits(limits) if limits else frame_limits(every, margin=0.05)
    cols = max(len(fr) for _, fr in checked)
    first_ts = [t for t, _ in checked[0][1]]
    extra = 0.4 if title else 0.0
    fig = _figure(1.75 * cols + 0.3, 1.9 * len(checked) + extra, layout="constrained")
    grid = fig.subplots(len(checked), cols, squeeze=False)
    for r, (label, fr) in enumerate(checked):
        titled = r == 0 or [t for t, _ in fr] != first_ts
        for c, ax in enumerate(grid[r]):
            if c >= len(fr):
                fig.delaxes(ax)
                grid[r, c] = None
                continue
            t, pts = fr[c]
            _scatter(ax, pts, lim, title=_math("p", t) if titled else None)
            if c == 0 and label:
                ax.set_ylabel(label, fontsize=10)
    _label_outer(grid)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


@_styled
def plot_reverse_process(
    frames: Sequence[Frame],
    path: str | os.PathLike[str],
    title: str,
    limits: Limits | None = None,
) -> Path:
    """One row of reverse-chain panels ``(t, points (N, 2))`` from x_T to x_0, titled p(x_t).

    All panels share ``limits``, by default the box of every point of every frame plus a 5 %
    margin (:func:`frame_limits`), so that x_T is not cut off.
    """
    return _save(_progress_figure([(None, _frames(frames, "frames"))], title, limits), path)


@_styled
def plot_training_progress(
    snapshots: Sequence[tuple[int, Sequence[Frame]]],
    path: str | os.PathLike[str],
    title: str | None = None,
    limits: Limits | None = None,
) -> Path:
    """One reverse-chain row per ``(training_step, frames)`` snapshot, labelled "after N
    training steps" (the columns are diffusion steps).

    All panels share ``limits``, by default the box of every point of every snapshot's frames
    plus a 5 % margin (:func:`frame_limits`).
    """
    rows = [
        (f"after {int(step)}\ntraining steps", _frames(frames, f"snapshots[{r}] frames"))
        for r, (step, frames) in enumerate(snapshots)
    ]
    return _save(_progress_figure(rows, title, limits), path)


@_styled
def plot_samples_over_data(
    samples: np.ndarray,
    data: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """``data`` (M, 2) in grey behind ``samples`` (N, 2) in colour, with a legend."""
    return _save(_samples_figure(samples, data, title), path)


@_styled
def _samples_figure(samples: np.ndarray, data: np.ndarray, title: str | None) -> Figure:
    """Build the figure of :func:`plot_samples_over_data`."""
    smp, dat = _points(samples, "samples"), _points(data, "data")
    lim = limits_for(dat, smp, quantile=0.002)
    fig = _figure(4.8, 5.0, layout="constrained")
    ax = fig.add_subplot()
    _scatter(ax, dat, lim, color=DATA_COLOR, s=4.0, alpha=0.45, label="data")
    _scatter(ax, smp, lim, title=title, s=4.0, alpha=0.6, label="samples")
    ax.legend(loc="upper right", markerscale=3.0, handletextpad=0.2)
    return fig


@_styled
def plot_trajectories(
    panels: dict[str, np.ndarray],
    data: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """One panel per entry of ``panels``: trajectories (steps, N, 2) drawn as lines from
    their start (noise) to their end, over ``data`` (M, 2) in grey; one frame for all."""
    paths = {name: np.asarray(x, dtype=np.float64) for name, x in panels.items()}
    dat = _points(data, "data")
    lim = limits_for(dat, *(x.reshape(-1, 2) for x in paths.values()), quantile=0.002)
    fig = _figure(4.4 * len(paths), 4.8, layout="constrained")
    for i, (name, x) in enumerate(paths.items()):
        ax = fig.add_subplot(1, len(paths), i + 1)
        _scatter(ax, dat, lim, color=DATA_COLOR, s=3.0, alpha=0.35)
        ax.plot(x[:, :, 0], x[:, :, 1], lw=0.6, alpha=0.7)
        ax.scatter(x[-1, :, 0], x[-1, :, 1], s=6.0, color="k", zorder=3)
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


@_styled
def plot_classes(
    samples: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    data: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Class-conditional ``samples`` (N, 2) coloured by their requested class ``labels`` (N,)
    (``names[k]`` in the legend), over ``data`` (M, 2) in grey."""
    smp, dat = _points(samples, "samples"), _points(data, "data")
    lim = limits_for(dat, smp, quantile=0.002)
    fig = _figure(4.8, 5.0, layout="constrained")
    ax = fig.add_subplot()
    _scatter(ax, dat, lim, color=DATA_COLOR, s=4.0, alpha=0.3)
    colors = matplotlib.colormaps["tab10"]
    for k, name in enumerate(names):
        _scatter(ax, smp[np.asarray(labels) == k], lim, title=title, s=4.0, alpha=0.6,
                 color=matplotlib.colors.to_hex(colors(k % 10)), label=name)
    ax.legend(loc="upper right", markerscale=3.0, handletextpad=0.2, fontsize=7)
    return _save(fig, path)


@_styled
def write_gif(
    frames: Iterable[Frame],
    path: str | os.PathLike[str],
    limits: Limits,
    fps: float = 20,
    size_px: int = 400,
    hold_last: int = 10,
    title_fmt: str = "t = {t}",
) -> Path:
    """Animated GIF of a stream of ``(t, points (N, 2))`` frames with fixed ``limits``.

    ``frames`` is consumed once, lazily (a generator streaming the reverse chain is fine); each
    frame is rendered by one reused figure and kept only as a small palette image (32 colours).
    The last frame stays on screen ``hold_last`` extra frame times; Pillow stores a repeated
    frame as one frame with a longer duration, so the file has one frame per input and the same
    total play time. GIF timing has 10 ms resolution, so ``1000 / fps`` is rounded to it.
    ``title_fmt`` may use ``{t}`` and ``{t_sub}``, t in subscript digits ("x{t_sub}" -> x₁₅: no
    mathtext to parse). Timing, palette and the atomic write are :mod:`ddpmlab.viz.common`'s.
    """
    target = _target(path)
    lim = _limits(limits)
    if size_px < 32:
        raise ValueError(f"need size_px >= 32: {size_px}")
    frame_ms = _gif_frame_ms(fps, hold_last)
    fig = _figure(4.0, 4.0, dpi=size_px / 4.0)
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.88))
    _scatter(ax, np.empty((0, 2)), lim, ticks=False, s=5.0, alpha=0.6)
    dots, canvas = ax.collections[0], fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    label = fig.text(0.5, 0.95, "", ha="center", va="center", fontsize=13)
    dots.set_animated(True)  # drawn by hand over the static background (blitting)
    label.set_animated(True)
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    images: list[Image.Image] = []
    try:
        for i, (t, pts) in enumerate(frames):
            dots.set_offsets(_points(pts, f"frames[{i}] points"))
            label.set_text(_step_label(title_fmt, t))
            canvas.restore_region(background)
            fig.draw_artist(dots)
            fig.draw_artist(label)
            images.append(_palette_frame(np.asarray(canvas.buffer_rgba())[:, :, :3], colors=32))
    finally:
        fig.clear()
    return _save_gif(target, images, frame_ms, hold_last)
