"""What every ddpmlab figure shares: the house style, atomic saving, line plots and GIF writing.

Every public function takes numpy arrays, writes one file and returns the
:class:`~pathlib.Path` it wrote. Writes are atomic: the file is rendered to a temporary sibling
in the target's folder and moved onto the target with :func:`os.replace`
(:func:`ddpmlab.fileio.write_atomic`), so a crash never leaves a half-written file. Figures are
built on :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global figure
registry, nothing left open. The caller owns folders: a missing parent folder raises
:class:`FileNotFoundError`; arrays of the wrong shape, or holding NaN or infinite values, raise
:class:`ValueError`. Nothing here trains, samples or imports torch.

Here: the loss curve (:func:`plot_loss`), the variational bound term by term
(:func:`plot_bound_terms`), per-timestep curves side by side (:func:`plot_curves`), the
sampler sweep (:func:`plot_sweep`), and the pieces that the points' GIF
(:func:`ddpmlab.viz.points.write_gif`) and the images' GIF
(:func:`ddpmlab.viz.images.write_image_gif`) share: frame timing, the step label, the palette
and the atomic write.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator
from PIL import Image

from ddpmlab.fileio import write_atomic

P = ParamSpec("P")
R = TypeVar("R")

DPI = 110
POINT_COLOR = "#2a64ad"
DATA_COLOR = "#a8a8a8"
_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.edgecolor": "#d0d0d0",
    "axes.labelcolor": "#333333",
    "mathtext.fontset": "cm",
    "legend.frameon": False,
}


def _styled(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func`` (build, draw and save) under the house matplotlib style."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]  # keys are rcParams
            return func(*args, **kwargs)

    return wrapper


def _target(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path; raise FileNotFoundError if its parent folder does not exist."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output folder {path.parent} does not exist; create it first")
    return path


def _figure(width: float, height: float, dpi: float = DPI, **kwargs: object) -> Figure:
    """A new pyplot-free Figure with an Agg canvas attached."""
    fig = Figure(figsize=(width, height), dpi=dpi, **kwargs)  # type: ignore[arg-type]
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` atomically (format from the suffix) and free it."""
    target = _target(path)
    try:
        return write_atomic(target, lambda tmp: fig.savefig(tmp, dpi=fig.dpi))
    finally:
        fig.clear()


def _math(dist: str, t: int) -> str:
    """Panel title in the source text's notation: ``$q(\\mathbf{x}_{t})$`` for ``dist="q"``."""
    return rf"${dist}(\mathbf{{x}}_{{{t}}})$"


def _ema(values: np.ndarray, decay: float) -> np.ndarray:
    """Bias-corrected exponential moving average of a 1-D array."""
    out = np.empty_like(values)
    acc = 0.0
    for i, v in enumerate(values):
        acc = decay * acc + (1.0 - decay) * v
        out[i] = acc / (1.0 - decay ** (i + 1))
    return out


@_styled
def plot_loss(
    steps: np.ndarray,
    losses: np.ndarray,
    path: str | os.PathLike[str],
    ema: float = 0.98,
    *,
    window: int | None = None,
    ylabel: str = "training loss",
) -> Path:
    """Training loss against step: ``losses`` (S,) faint, its EMA bold, log-scale y when > 0.

    ``window``: each value is the mean loss over that many training steps (the trainer's
    ``log_every``); it names the faint curve ("mean loss over 50 steps"; without it, "loss as
    logged"). ``ylabel`` says what the loss is, e.g. "loss (MSE of the predicted noise)". The
    legend spells out the smoothing for a reader without the code. A log axis labels, as plain
    numbers, its powers of ten and also 2..9 x 10^k when the losses span under a decade, 2 and
    5 x 10^k under three decades, so that at least about three ticks carry a number.
    """
    return _save(_loss_figure(steps, losses, ema, window=window, ylabel=ylabel), path)


@_styled
def _loss_figure(
    steps: np.ndarray, losses: np.ndarray, ema: float, *, window: int | None, ylabel: str
) -> Figure:
    """Build the figure of :func:`plot_loss`."""
    st = np.asarray(steps, dtype=np.float64)
    ls = np.asarray(losses, dtype=np.float64)
    if st.ndim != 1 or ls.shape != st.shape or st.size == 0:
        raise ValueError(
            f"steps and losses must be 1-D of equal length, got {st.shape}, {ls.shape}"
        )
    if not (np.isfinite(st).all() and np.isfinite(ls).all()):
        raise ValueError("steps or losses contain NaN or infinite values")
    if not 0.0 <= ema < 1.0:
        raise ValueError(f"ema must be in [0, 1), got {ema}")
    if window is not None and window < 1:
        raise ValueError(f"window must be a positive number of steps, got {window}")
    fig = _figure(6.4, 3.6, layout="constrained")
    ax = fig.add_subplot()
    raw = ("loss as logged" if window is None else "loss at each step" if window == 1
           else f"mean loss over {window} steps")
    ax.plot(st, ls, color=POINT_COLOR, alpha=0.3, linewidth=0.8, label=raw)
    ax.plot(st, _ema(ls, ema), color="#17406f", linewidth=2.0,
            label=f"smoothed (exponential moving average, weight {ema:g} on the past)")
    if (ls > 0).all():
        ax.set_yscale("log")
        # Loss curves span a decade or two, where 10^k ticks alone give 1-2 labels: label
        # minor ticks too, as plain numbers, at every k x 10^k within a decade, at 2 and 5 x
        # 10^k over up to three. (Over many decades the minor locator gives none and the
        # decades suffice; within a factor of ~2 it falls back to linear ticks.)
        decades = math.log10(ls.max() / ls.min())
        ax.yaxis.set_major_formatter("{x:.3g}")
        if decades < 3:
            subs = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0] if decades < 1 else [2.0, 5.0]
            ax.yaxis.set_minor_locator(LogLocator(base=10.0, subs=subs))
            ax.yaxis.set_minor_formatter("{x:.3g}")
            ax.grid(True, which="minor", axis="y", color="#f4f4f4", linewidth=0.6)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", color="#ececec", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper right")
    return fig


def _line_axes(fig: Figure, xlabel: str, ylabel: str, position: int = 111) -> Axes:
    ax = fig.add_subplot(position)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", color="#ececec", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    return ax


@_styled
def plot_bound_terms(terms: np.ndarray, prior: float, path: str | os.PathLike[str],
                     title: str = "") -> Path:
    """The variational bound term by term: L_t (T,) nats against t (L_0, the decoder, apart).

    The KL terms L_1 .. L_{T-1} are positive and drawn on a log scale; the decoder term L_0
    (a density, possibly negative) and the prior term L_T are given in the legend.
    """
    terms = np.asarray(terms, dtype=np.float64)
    if terms.ndim != 1 or terms.size < 2 or not np.isfinite(terms).all():
        raise ValueError(f"terms must be a finite 1-D array of at least 2 values: {terms.shape}")
    fig = _figure(6.4, 3.6, layout="constrained")
    ax = _line_axes(fig, "timestep t", "L_t (nats)")
    t = np.arange(1, terms.size)
    ax.plot(t, np.maximum(terms[1:], 1e-12), color=POINT_COLOR, linewidth=1.5,
            label=f"KL terms, sum {terms[1:].sum():.3f}")
    ax.plot([], [], " ", label=f"decoder L_0 = {terms[0]:.3f}")
    ax.plot([], [], " ", label=f"prior L_T = {prior:.2e}")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(loc="upper right")
    return _save(fig, path)


@_styled
def plot_curves(x: np.ndarray, curves: Mapping[str, np.ndarray], path: str | os.PathLike[str],
                *, xlabel: str, ylabel: str, title: str = "", log: bool = False,
                dashed: Collection[str] = ()) -> Path:
    """Several quantities against one axis: ``curves`` maps a legend label to a (N,) array
    over ``x`` (N,), one line each, dashed for the labels in ``dashed``; ``log`` draws y on a
    log scale (every value must then be > 0).

    For per-timestep constants: the schedules' alpha_bar_t, or the reverse variances beta_t,
    beta~_t and a learned sigma_t^2 side by side.
    """
    xs = np.asarray(x, dtype=np.float64)
    if xs.ndim != 1 or xs.size < 2 or not curves:
        raise ValueError(f"need x of at least 2 values and one curve, got {xs.shape}, "
                         f"{len(curves)} curves")
    fig = _figure(6.4, 3.6, layout="constrained")
    ax = _line_axes(fig, xlabel, ylabel)
    for label, values in curves.items():
        y = np.asarray(values, dtype=np.float64)
        if y.shape != xs.shape or not np.isfinite(y).all() or (log and (y <= 0).any()):
            raise ValueError(f"curve {label!r} must be {'positive, ' if log else ''}finite and "
                             f"of shape {xs.shape}, got {y.shape}")
        ax.plot(xs, y, linewidth=1.6, linestyle="--" if label in dashed else "-", label=label)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


@_styled
def plot_sweep(rows: Sequence[dict], path: str | os.PathLike[str]) -> Path:
    """Sampler x number of steps: 1-NNA, a distance / its floor and seconds, one line per
    sampler.

    rows: dicts with keys ``sampler``, ``steps``, ``1nna``, ``ratio`` (W1 / floor for points,
    FD / floor for images; None where the data has no such metric: its panel is left out),
    ``ratio_name`` and ``seconds``.
    """
    if not rows:
        raise ValueError("rows is empty")
    name = (rows[0].get("ratio_name") or "").upper()
    panels = [("1nna", "1-NNA (0.5 ideal)"), ("ratio", f"{name} / floor (1 = real data)"),
              ("seconds", "sampling seconds")]
    panels = [p for p in panels if all(r[p[0]] is not None for r in rows)]
    fig = _figure(11.0 * len(panels) / 3, 3.4, layout="constrained")
    for i, (key, label) in enumerate(panels):
        ax = _line_axes(fig, "sampling steps", label, 100 + 10 * len(panels) + i + 1)
        for sampler in dict.fromkeys(r["sampler"] for r in rows):
            pts = sorted((r["steps"], r[key]) for r in rows if r["sampler"] == sampler)
            ax.plot(*zip(*pts, strict=True), marker="o", label=sampler)
        ax.set_xscale("log")
        if key == "1nna":
            ax.axhline(0.5, color=DATA_COLOR, linewidth=1.0)
        if key == "ratio":
            ax.axhline(1.0, color=DATA_COLOR, linewidth=1.0)
        ax.legend()
    return _save(fig, path)


@_styled
def plot_guidance(rows: Sequence[dict], path: str | os.PathLike[str]) -> Path:
    """The guidance sweep's quality-diversity trade-off against the guidance weight w: the
    share of samples classified as their class, the per-class distance / its floor, and the
    per-class 1-NNA. rows: dicts with ``guidance``, ``accuracy``, ``accuracy_real``,
    ``ratio``, ``ratio_name`` and ``1nna`` (None where the data has no such metric: its
    panel is left out)."""
    if not rows:
        raise ValueError("rows is empty")
    name = (rows[0].get("ratio_name") or "").upper()
    panels = [("accuracy", "samples classified as their class"),
              ("ratio", f"per-class {name} / floor (1 = real data)"),
              ("1nna", "per-class 1-NNA (0.5 ideal)")]
    panels = [p for p in panels if all(r.get(p[0]) is not None for r in rows)]
    if not panels:
        raise ValueError("rows hold no accuracy, ratio or 1nna")
    fig = _figure(3.8 * len(panels), 3.4, layout="constrained")
    for i, (key, label) in enumerate(panels):
        ax = _line_axes(fig, "guidance weight w", label, 100 + 10 * len(panels) + i + 1)
        pts = sorted((r["guidance"], r[key]) for r in rows)
        ax.plot(*zip(*pts, strict=True), marker="o")
        if key == "accuracy" and rows[0].get("accuracy_real") is not None:
            ax.axhline(rows[0]["accuracy_real"], color=DATA_COLOR, linewidth=1.0,
                       label="real held-out data")
            ax.legend()
        if key in ("ratio", "1nna"):
            ax.axhline(1.0 if key == "ratio" else 0.5, color=DATA_COLOR, linewidth=1.0)
    return _save(fig, path)


# --- GIFs: what write_gif (points) and write_image_gif (images) share ---------------------

_SUBSCRIPT = str.maketrans("0123456789-", "₀₁₂₃₄₅₆₇₈₉₋")


def _step_label(title_fmt: str, t: int) -> str:
    """``title_fmt`` with ``{t}`` and ``{t_sub}``, t in subscript digits ("x{t_sub}" -> x₁₅)."""
    return title_fmt.format(t=t, t_sub=str(t).translate(_SUBSCRIPT))


def _gif_frame_ms(fps: float, hold_last: int) -> int:
    """Milliseconds per GIF frame for ``fps``, after checking ``fps > 0`` and ``hold_last >= 0``.

    GIF timing has 10 ms resolution, so ``1000 / fps`` is rounded to it (10 ms at least).
    """
    if not fps > 0 or hold_last < 0:
        raise ValueError(f"need fps > 0 and hold_last >= 0: {fps}, {hold_last}")
    return max(10, round(100.0 / fps) * 10)


def _palette_frame(pixels: np.ndarray, colors: int = 256) -> Image.Image:
    """A GIF frame ('P' image) from uint8 pixels: (H, W) grey or (H, W, 3) RGB.

    Grey maps exactly onto the 256-level grey palette ('L' to 'P', no quantisation); RGB is
    quantised to ``colors`` colours by Pillow's fast octree, much quicker than median cut on
    every frame of a GIF (bench/README.md, "The whole `train` command under 15 s").
    """
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"GIF frame pixels must be uint8 (H, W) or (H, W, 3): {pixels.shape}")
    if pixels.ndim == 2:
        return Image.fromarray(pixels, "L").convert("P")
    rgb = Image.fromarray(np.ascontiguousarray(pixels[:, :, :3]), "RGB")
    return rgb.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)


def _save_gif(target: Path, images: Sequence[Image.Image], frame_ms: int, hold_last: int) -> Path:
    """Write ``images`` (palette frames) as a looping GIF onto ``target``, atomically.

    The last frame stays on screen ``hold_last`` extra frame times; Pillow stores a repeated
    frame as one frame with a longer duration, so the file has one frame per image and the
    same total play time. (Pillow also merges two identical consecutive images into one.)
    """
    if not images:
        raise ValueError("frames is empty")
    durations = [frame_ms] * len(images)
    durations[-1] += hold_last * frame_ms

    def write(tmp: Path) -> None:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=list(images[1:]),
            duration=durations, loop=0, optimize=False,
        )  # fmt: skip

    return write_atomic(target, write)
