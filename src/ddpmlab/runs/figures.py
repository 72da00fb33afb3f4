"""The figures of a run directory: every figure into RUN/figures (:func:`make_figures`) and
the reverse-process GIF (:func:`animate`), drawn by the run's report (``ddpmlab.reports``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ddpmlab import feedback, viz
from ddpmlab.config import RunConfig
from ddpmlab.fileio import exclusive
from ddpmlab.reports import report_for
from ddpmlab.runs.layout import FIGURES, LOSS
from ddpmlab.runs.run import Run


def make_figures(run: Run, seed: int = 0, guidance: float = 1.0) -> Path:
    """(Re)draw every figure of a run into RUN/figures from its data, losses and model;
    a conditional run's samples by class at ``guidance`` too (classes.png)."""
    with exclusive(run.path):
        out = run.path / FIGURES
        out.mkdir(exist_ok=True)
        feedback.status(f"drawing the figures into {out}")
        report = report_for(run)
        report.figures(out, seed)
        if run.classes is not None:
            report.class_figure(out / "classes.png", seed, guidance)
        if (run.path / LOSS).exists():
            loss = np.loadtxt(run.path / LOSS, delimiter=",", skiprows=1, ndmin=2)
            if len(loss):
                viz.plot_loss(loss[:, 0], loss[:, 1], out / "loss.png", ema=0.8,
                              window=run.config.train.log_every,
                              ylabel=_loss_label(run.config))
        return out


def _loss_label(config: RunConfig) -> str:
    """What loss.csv holds, in words: the mean squared error of the network's target."""
    target = {"eps": "noise eps", "x0": "clean sample x_0", "v": "velocity v"}
    d = config.diffusion
    vlb = " + lambda L_vlb" if d.variance == "learned_range" else ""
    return f"loss (MSE of the predicted {target.get(d.prediction, d.prediction)}{vlb})"


def animate(run: Run, n: int | None = None, seed: int = 0,
            path: str | os.PathLike[str] | None = None) -> Path:
    """reverse.gif: the reverse chain from noise to the data, streamed.

    n samples (the report's ``gif_n`` by default: 2,000 points, a grid of 64 images).
    Written to ``path``, or to RUN/figures/reverse.gif (with the run locked) by default.
    """
    report = report_for(run)
    n = n or report.gif_n
    if path is not None:
        return report.animate(n, seed, Path(path))[0]
    with exclusive(run.path):
        (run.path / FIGURES).mkdir(exist_ok=True)
        return report.animate(n, seed, run.path / FIGURES / "reverse.gif")[0]
