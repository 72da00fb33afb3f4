"""Figures and GIFs of diffusion experiments, from numpy arrays, written atomically.

``from ddpmlab import viz`` gives every figure function under one name, whichever module
draws it:

- :mod:`ddpmlab.viz.points`: 2-D point clouds ``(N, 2)``, forward and reverse chains, their
  GIF (:func:`write_gif`), and the limits that hold a chain (:func:`frame_limits`).
- :mod:`ddpmlab.viz.images`: images ``(N, C, H, W)`` in [0, 1], grey or RGB: :func:`tile`,
  grids, forward and reverse chains, samples beside real images, their GIF
  (:func:`write_image_gif`).
- :mod:`ddpmlab.viz.score`: the score field at a few noise levels, learned beside exact.
- :mod:`ddpmlab.viz.common`: the house style, the atomic save, the loss curve, the bound terms,
  per-timestep curves, the sampler sweep, and the GIF timing, palette and write that both
  GIFs share.

Every function writes one file atomically (a crash leaves the old file or none) and returns its
:class:`~pathlib.Path`; a missing parent folder raises :class:`FileNotFoundError`, bad arrays
raise :class:`ValueError`. No pyplot; nothing here trains, samples or imports torch.
"""

from ddpmlab.viz.common import (
    DATA_COLOR,
    DPI,
    POINT_COLOR,
    plot_bound_terms,
    plot_curves,
    plot_guidance,
    plot_loss,
    plot_sweep,
)
from ddpmlab.viz.common import _loss_figure as _loss_figure
from ddpmlab.viz.common import _save as _save
from ddpmlab.viz.images import (
    ImageFrame,
    plot_class_rows,
    plot_image_forward,
    plot_image_grid,
    plot_image_reverse,
    plot_image_training,
    plot_samples_beside_real,
    tile,
    write_image_gif,
)
from ddpmlab.viz.points import (
    Frame,
    Limits,
    frame_limits,
    limits_for,
    plot_classes,
    plot_forward_grid,
    plot_points,
    plot_reverse_process,
    plot_samples_over_data,
    plot_training_progress,
    plot_trajectories,
    write_gif,
)
from ddpmlab.viz.points import _forward_grid_figure as _forward_grid_figure
from ddpmlab.viz.points import _points_figure as _points_figure
from ddpmlab.viz.points import _progress_figure as _progress_figure
from ddpmlab.viz.points import _samples_figure as _samples_figure
from ddpmlab.viz.score import ScoreLevel, plot_score_field

# The private names above (``X as X``: re-exported, not in __all__) are for
# tests/test_viz.py, which inspects the Figure a builder returns, then saves it with _save.

__all__ = [
    "DATA_COLOR",
    "DPI",
    "POINT_COLOR",
    "Frame",
    "ImageFrame",
    "Limits",
    "ScoreLevel",
    "frame_limits",
    "limits_for",
    "plot_bound_terms",
    "plot_class_rows",
    "plot_classes",
    "plot_curves",
    "plot_forward_grid",
    "plot_guidance",
    "plot_image_forward",
    "plot_image_grid",
    "plot_image_reverse",
    "plot_image_training",
    "plot_loss",
    "plot_points",
    "plot_reverse_process",
    "plot_samples_beside_real",
    "plot_samples_over_data",
    "plot_score_field",
    "plot_sweep",
    "plot_training_progress",
    "plot_trajectories",
    "tile",
    "write_gif",
    "write_image_gif",
]
