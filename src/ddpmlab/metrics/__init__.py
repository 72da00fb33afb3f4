"""Sample-quality measures, each metric printed beside its floor.

- :mod:`ddpmlab.metrics.points`: point sets (n, d): W1, W2, energy, MMD, 1-NNA.
- :mod:`ddpmlab.metrics.images`: image sets (N, C, H, W) in [-1, 1]: Fréchet distance, KID,
  precision/recall/density/coverage and 1-NNA in a small classifier's feature space, the
  classifier's confidence and class histogram, memorisation.
- :mod:`ddpmlab.metrics.classifier`: the small LeNet-style classifiers behind those features.
- :data:`EVALUATORS`: how a run of each modality is scored (:class:`Evaluator`), under the
  modality's name.
"""

from ddpmlab.metrics.evaluator import ClassResult, Evaluator, Result, Scores, class_table
from ddpmlab.metrics.image_evaluator import ImageEvaluator
from ddpmlab.metrics.point_evaluator import PointEvaluator
from ddpmlab.metrics.points import (
    METRICS,
    UNBIASED_NOTE,
    average,
    energy_distance,
    evaluate,
    format_table,
    median_bandwidth,
    mmd,
    one_nn_accuracy,
    scores,
    wasserstein,
)

EVALUATORS: dict[str, type[Evaluator]] = {"points": PointEvaluator, "images": ImageEvaluator}

__all__ = [
    "EVALUATORS",
    "METRICS",
    "UNBIASED_NOTE",
    "ClassResult",
    "Evaluator",
    "ImageEvaluator",
    "PointEvaluator",
    "Result",
    "Scores",
    "average",
    "class_table",
    "energy_distance",
    "evaluate",
    "format_table",
    "median_bandwidth",
    "mmd",
    "one_nn_accuracy",
    "scores",
    "wasserstein",
]
