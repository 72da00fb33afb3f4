"""Sample-quality measures, one module per kind of data, each metric printed beside its floor.

- :mod:`ddpmlab.metrics.points`: point sets (n, d): W1, W2, energy, MMD, 1-NNA.
- :mod:`ddpmlab.metrics.images`: image sets (N, C, H, W) in [-1, 1]: Fréchet distance, KID,
  precision/recall/density/coverage and 1-NNA in a small classifier's feature space, the
  classifier's confidence and class histogram, memorisation; imported on use
  (``from ddpmlab.metrics import images``) since it pulls in torch and the shipped weights.
- :mod:`ddpmlab.metrics.classifier`: the small LeNet-style classifiers behind those features.

The point metrics are re-exported here, so ``from ddpmlab import metrics;
metrics.evaluate(...)`` and ``from ddpmlab.metrics import METRICS, format_table`` read as before
the package split.
"""

from ddpmlab.metrics.points import (
    METRICS,
    UNBIASED_NOTE,
    Result,
    Scores,
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

__all__ = [
    "METRICS",
    "UNBIASED_NOTE",
    "Result",
    "Scores",
    "average",
    "energy_distance",
    "evaluate",
    "format_table",
    "median_bandwidth",
    "mmd",
    "one_nn_accuracy",
    "scores",
    "wasserstein",
]
