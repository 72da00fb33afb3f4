"""Figures of image diffusion experiments: image grids, forward and reverse chains, their GIF.

*Images* are numpy float arrays ``(N, C, H, W)`` with N >= 1 and C = 1 (grey, drawn with a grey
colormap: 0 is black, 1 white, so MNIST's white digits sit on black) or C = 3 (RGB), values in
[0, 1]. Values outside are clipped: a noisy state x_t mapped from [-1, 1] by ``(x + 1) / 2``
overshoots. A *frame* is a pair ``(t, images (N, C, H, W))``. Wrong shapes and NaN or infinite
values raise :class:`ValueError`, before anything is written.

:func:`tile` lays N images out as one mosaic, the building block of every figure and of the
GIF. Every other function writes one file atomically (a crash leaves the old file or none) and
returns the :class:`~pathlib.Path` it wrote; a missing parent folder raises
:class:`FileNotFoundError`. No pyplot; nothing here trains, samples or imports torch.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ddpmlab.viz.common import (
    DPI,
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

ImageFrame = tuple[int, np.ndarray]
PAD_VALUE = 0.5  # the mid-grey between the images of a mosaic
GIF_WIDTH = 400  # about how wide, in pixels, write_image_gif makes its mosaic by default
_IN_PER_PX = 0.045  # inches per image pixel in figures: an 8-pixel side is 0.36 inch
_MAX_WIDTH = 16.0  # inches: wider rows of panels get smaller panels


def _images(x: object, name: str) -> np.ndarray:
    """``x`` as a float ``(N, C, H, W)`` array, C in {1, 3}, N >= 1, finite, clipped to [0, 1]."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric (N, C, H, W) array: {exc}") from None
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {arr.ndim}-D {arr.shape}")
    n, c, h, w = arr.shape
    if c not in (1, 3):
        raise ValueError(f"{name} must have C = 1 (grey) or 3 (RGB) channels, got {arr.shape}")
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}, need N, H, W >= 1")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.clip(arr, 0.0, 1.0)


def _image_frames(
    frames: Iterable[ImageFrame], name: str, shape: tuple[int, ...] | None = None
) -> list[tuple[int, np.ndarray]]:
    """Validate ``(t, images)`` pairs into a list, non-empty, every frame of one shape."""
    out: list[tuple[int, np.ndarray]] = []
    for i, (t, imgs) in enumerate(frames):
        arr = _images(imgs, f"{name}[{i}] (t={t}) images")
        shape = shape or arr.shape
        if arr.shape != shape:
            raise ValueError(f"{name}[{i}] (t={t}) images have shape {arr.shape}, not {shape}")
        out.append((int(t), arr))
    if not out:
        raise ValueError(f"{name} is empty")
    return out


def tile(images: np.ndarray, nrow: int | None = None, pad: int = 1) -> np.ndarray:
    """The images ``(N, C, H, W)`` as one mosaic ``(H', W', C)``, float in [0, 1].

    ``nrow`` images per row (default ``ceil(sqrt(N))``, at most N), in reading order: image k
    has its top-left corner at row ``(k // cols) * (H + pad)``, column ``(k % cols) * (W + pad)``.
    ``pad`` pixels of mid-grey (:data:`PAD_VALUE`) separate the images (none around the edge),
    and fill the cells after the last image, so ``H' = rows * H + (rows - 1) * pad``.
    """
    arr = _images(images, "images")
    n, c, h, w = arr.shape
    if nrow is not None and nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    cols = min(n, nrow or math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), PAD_VALUE)
    for k in range(n):
        y, x = (k // cols) * (h + pad), (k % cols) * (w + pad)
        out[y : y + h, x : x + w] = arr[k].transpose(1, 2, 0)
    return out


def _show(ax: Axes, mosaic: np.ndarray, title: str | None = None, fontsize: float = 10) -> None:
    """Draw ``mosaic`` (H, W, C) pixel for pixel on bare axes (no ticks, no frame)."""
    if mosaic.shape[2] == 1:
        ax.imshow(mosaic[:, :, 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title, pad=3, fontsize=fontsize)


Cell = tuple[str | None, np.ndarray]  # panel title, mosaic (H, W, C)


@_styled
def _panels_figure(
    cells: Sequence[Sequence[Cell | None]],
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    min_side: float = 0.9,
) -> Figure:
    """A grid of image panels: ``cells[r][c]`` is ``(title, mosaic)`` or None (no panel).

    Every mosaic has one shape. A panel is ``0.045`` inch per pixel wide, at least ``min_side``,
    shrunk so that a row stays within 16 inches; ``row_labels`` go left of each row.
    """
    rows, cols = len(cells), max(len(r) for r in cells)
    h, w = next(cell[1] for row in cells for cell in row if cell is not None).shape[:2]
    side = max(min_side, min(w * _IN_PER_PX, _MAX_WIDTH / cols))
    titled = sum(any(cell is not None and cell[0] for cell in row) for row in cells)
    fontsize = 10 if side >= 1.0 else 8
    width = cols * side + (0.3 if row_labels else 0.0) + 0.15
    height = rows * (side * h / w + 0.05) + 0.25 * titled + (0.4 if title else 0.0) + 0.1
    fig = _figure(width, height, layout="constrained")
    grid = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            cell = cells[r][c] if c < len(cells[r]) else None
            if cell is None:
                fig.delaxes(grid[r, c])
                continue
            _show(grid[r, c], cell[1], cell[0], fontsize)
        if row_labels and cells[r] and cells[r][0] is not None:
            grid[r, 0].set_ylabel(row_labels[r], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def grid_scale(h: int) -> int:
    """Output pixels per image pixel in :func:`plot_image_grid`: 5 for 8 x 8, 2 for 28 x 28."""
    return max(1, math.ceil(40 / h))


@_styled
def _grid_figure(images: np.ndarray, title: str | None, nrow: int | None) -> Figure:
    """Build :func:`plot_image_grid`'s figure: the mosaic at an integer scale, pixel-exact."""
    arr = _images(images, "images")
    mosaic = tile(arr, nrow)
    k = grid_scale(arr.shape[2])
    mh, mw = mosaic.shape[0] * k, mosaic.shape[1] * k
    margin, top = 6, 26 if title else 6
    wpx = max(mw + 2 * margin, 240 if title else 0)
    hpx = mh + margin + top
    # +0.5: Agg truncates the figure's size in pixels; the fractions below use the same size
    fw, fh = wpx + 0.5, hpx + 0.5
    fig = _figure(fw / DPI, fh / DPI)
    left = (wpx - mw) // 2
    ax = fig.add_axes((left / fw, margin / fh, mw / fw, mh / fh))
    _show(ax, mosaic)
    ax.set_aspect("auto")
    ax.set_axis_off()
    if title:
        fig.text(0.5, 1.0 - (top / 2) / fh, title, ha="center", va="center", fontsize=11)
    return fig


@_styled
def plot_class_rows(
    rows: Sequence[np.ndarray],
    names: Sequence[str],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """One row of images per class: ``rows[k]`` (n, C, H, W) in [0, 1] labelled ``names[k]``."""
    cells = [[(None, tile(_images(r, f"rows[{k}]"), nrow=len(r)))] for k, r in enumerate(rows)]
    return _save(_panels_figure(cells, title, row_labels=list(names), min_side=3.0), path)


@_styled
def plot_image_grid(
    images: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
    nrow: int | None = None,
) -> Path:
    """The images ``(N, C, H, W)`` as one :func:`tile` mosaic: a data grid or a sample grid.

    Pixels are drawn nearest, each as a square of ``ceil(40 / H)`` output pixels (5 for 8 x 8
    digits: 0.36 inch per image at 110 dpi; 2 for 28 x 28), ``nrow`` images per row.
    """
    return _save(_grid_figure(images, title, nrow), path)


@_styled
def _forward_figure(frames: Sequence[ImageFrame], title: str | None = None) -> Figure:
    """Build :func:`plot_image_forward`'s figure."""
    checked = _image_frames(frames, "frames")
    n = checked[0][1].shape[0]
    single = [[(_math("q", t), tile(imgs[i : i + 1])) for t, imgs in checked] for i in range(n)]
    if n == 1:  # the source text's grid: rows of 5 panels
        cols = min(5, len(checked))
        cells: list[list[Cell | None]] = [
            list(single[0][r : r + cols]) for r in range(0, len(checked), cols)
        ]
        return _panels_figure(cells, title, min_side=1.0)
    top_titled = [[(cell[0] if r == 0 else None, cell[1]) for cell in row]
                  for r, row in enumerate(single)]
    return _panels_figure(top_titled, title, min_side=0.7)


@_styled
def plot_image_forward(frames: Sequence[ImageFrame], path: str | os.PathLike[str],
                       title: str | None = None) -> Path:
    """The forward process q(x_t | x_0): ``frames`` of ``(t, images (N, C, H, W))``.

    With N = 1, one panel per frame titled q(x_t), on rows of 5 (20 frames: 4 x 5). With
    N > 1, one row per image and one column per frame, step titles on the top row. Every frame
    must have the same shape.
    """
    return _save(_forward_figure(frames, title), path)


def _rows(cells: Sequence[list[tuple[int, np.ndarray]]]) -> list[list[Cell]]:
    """Panels of reverse chains: the tile of each frame's images, titled p(x_t) on the first
    row and on any row whose steps differ from the first row's."""
    first = [t for t, _ in cells[0]]
    return [
        [(_math("p", t) if r == 0 or [s for s, _ in fr] != first else None, tile(imgs))
         for t, imgs in fr]
        for r, fr in enumerate(cells)
    ]


@_styled
def _reverse_figure(frames: Sequence[ImageFrame], title: str | None) -> Figure:
    """Build :func:`plot_image_reverse`'s figure: rows of at most 10 panels."""
    (panels,) = _rows([_image_frames(frames, "frames")])
    cols = min(10, len(panels))
    cells: list[list[Cell | None]] = [
        list(panels[r : r + cols]) for r in range(0, len(panels), cols)
    ]
    return _panels_figure(cells, title)


@_styled
def plot_image_reverse(
    frames: Sequence[ImageFrame], path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """The reverse process of a grid of samples: one panel per frame x_T ... x_0, titled p(x_t).

    Each panel is the :func:`tile` of the frame's images ``(N, C, H, W)``; the panels stand in
    one row, wrapped onto rows of 10 when there are more than 10 frames.
    """
    return _save(_reverse_figure(frames, title), path)


def _steps(n: int) -> str:
    return f"after {n} step" + ("" if n == 1 else "s")


@_styled
def _training_figure(progress: Sequence[tuple[int, Sequence[ImageFrame]]]) -> Figure:
    """Build :func:`plot_image_training`'s figure."""
    if not progress:
        raise ValueError("progress is empty")
    checked: list[list[tuple[int, np.ndarray]]] = []
    for r, (_, frames) in enumerate(progress):
        shape = checked[0][0][1].shape if checked else None  # every row as the first
        checked.append(_image_frames(frames, f"progress[{r}] frames", shape))
    labels = [_steps(int(step)) for step, _ in progress]
    cells: list[list[Cell | None]] = [list(row) for row in _rows(checked)]
    return _panels_figure(cells, row_labels=labels)


@_styled
def plot_image_training(
    progress: Sequence[tuple[int, Sequence[ImageFrame]]], path: str | os.PathLike[str]
) -> Path:
    """Reverse chains through training: one row per ``(training_step, frames)``.

    Each row is as in :func:`plot_image_reverse` (unwrapped), labelled "after N steps"; the
    source text's three figures (beginning, middle and end of training) in one. Every frame of
    every row must have the same shape.
    """
    return _save(_training_figure(progress), path)


@_styled
def _beside_figure(samples: np.ndarray, real: np.ndarray, title: str | None) -> Figure:
    """Build :func:`plot_samples_beside_real`'s figure."""
    smp, rl = _images(samples, "samples"), _images(real, "real")
    if smp.shape != rl.shape:
        raise ValueError(f"samples {smp.shape} and real {rl.shape} must have the same shape")
    return _panels_figure([[("samples", tile(smp)), ("real", tile(rl))]], title, min_side=2.0)


@_styled
def plot_samples_beside_real(
    samples: np.ndarray,
    real: np.ndarray,
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Two mosaics side by side, "samples" and "real": arrays ``(N, C, H, W)`` of one shape."""
    return _save(_beside_figure(samples, real, title), path)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (matplotlib's own, with subscript digits) at ``size`` pixels."""
    try:
        prop = font_manager.FontProperties(family="DejaVu Sans")
        return ImageFont.truetype(font_manager.findfont(prop), size)
    except OSError:  # Pillow without FreeType
        return ImageFont.load_default()


def _labelled(pixels: np.ndarray, label: str) -> np.ndarray:
    """``pixels`` (H, W) or (H, W, 3) uint8 under a white strip with ``label`` in black."""
    w = pixels.shape[1]
    size = max(10, min(20, round(w / 20)))
    strip = Image.new("L", (w, round(1.6 * size)), 255)
    ImageDraw.Draw(strip).text((w / 2, strip.height / 2), label, fill=0, font=_font(size),
                               anchor="mm")
    top = np.asarray(strip)
    if pixels.ndim == 3:
        top = np.repeat(top[:, :, None], 3, axis=2)
    return np.concatenate([top, pixels], axis=0)


def write_image_gif(
    frames: Iterable[ImageFrame],
    path: str | os.PathLike[str],
    nrow: int | None = None,
    fps: float = 20,
    scale: int | None = None,
    hold_last: int = 10,
    title_fmt: str = "x{t_sub}",
) -> Path:
    """Animated GIF of a stream of ``(t, images (N, C, H, W))`` frames, one mosaic a frame.

    ``frames`` is consumed once, lazily (a generator streaming the reverse chain is fine), and
    every frame must have the first one's shape. Each is drawn as its :func:`tile` (``nrow``
    images per row) upscaled ``scale`` times, nearest (default: the mosaic about 400 pixels
    wide), under a white strip with ``title_fmt`` (``{t}``, ``{t_sub}``: t in subscript digits,
    "x{t_sub}" -> x₁₅). Grey images stay grey levels exactly; RGB is quantised to 256
    colours. Timing, ``hold_last`` and the atomic write are :func:`ddpmlab.viz.points.write_gif`'s
    (:mod:`ddpmlab.viz.common`): the file has one frame per input, the last lasting
    ``1 + hold_last`` frame times of ``1000 / fps`` ms rounded to 10 ms.
    """
    target = _target(path)
    frame_ms = _gif_frame_ms(fps, hold_last)
    if scale is not None and scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    if nrow is not None and nrow < 1:
        raise ValueError(f"nrow must be at least 1, got {nrow}")
    shape: tuple[int, ...] | None = None
    gif: list[Image.Image] = []
    for i, (t, imgs) in enumerate(frames):
        arr = _images(imgs, f"frames[{i}] (t={t}) images")
        if shape is not None and arr.shape != shape:
            raise ValueError(f"frames[{i}] (t={t}) images have shape {arr.shape}, not {shape}")
        shape = arr.shape
        mosaic = np.rint(tile(arr, nrow) * 255.0).astype(np.uint8)
        k = scale or max(1, round(GIF_WIDTH / mosaic.shape[1]))
        big = mosaic.repeat(k, axis=0).repeat(k, axis=1)
        pixels = big[:, :, 0] if big.shape[2] == 1 else big
        gif.append(_palette_frame(_labelled(pixels, _step_label(title_fmt, t)), colors=256))
    return _save_gif(target, gif, frame_ms, hold_last)
