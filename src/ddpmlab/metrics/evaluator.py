"""How a kind of data is scored for a run: :class:`Evaluator`, and what its kinds share.

An evaluator holds a run's data (``ddpmlab.data.PointSet`` or ``ImageSet``) and scores
samples against its held-out part beside the floor that real data of the same size scores:
the evaluation's sets, its metrics, their mean over draws, the per-class scores of a
conditional run, and the printed table. ``ddpmlab.metrics.EVALUATORS`` holds one per
modality, under the modality's name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ddpmlab.config import RunConfig
from ddpmlab.metrics.points import Result, Scores

ClassResult = dict[str, Any]  # {"classes": {name: {metric: value}}, "overall": {...}}


def cut(held: np.ndarray, n: int) -> list[np.ndarray]:
    """``held`` cut in order into m >= 2 disjoint sets of min(n, half of it) items."""
    n = min(n, len(held) // 2)
    return [held[i * n:(i + 1) * n] for i in range(len(held) // n)]


def scored(value: float, floor: float, ratio: bool = True) -> dict[str, float | None]:
    """``{"", "_floor", "_ratio"}`` suffixes of one per-class metric (ratio value / floor)."""
    return {"": value, "_floor": floor,
            "_ratio": value / floor if ratio and floor > 0 else None}


def class_table(result: ClassResult) -> str:
    """The printed table of :meth:`Evaluator.per_class`: a row per class, then all classes.

    ``accuracy`` is the share of samples classified as the class requested (``real``: of
    real held-out items of the class); every other metric is printed beside its floor."""
    rows = [*result["classes"].items(), ("all", result["overall"])]
    metrics = [k for k in rows[0][1] if k not in ("n", "accuracy", "accuracy_real")
               and not k.endswith(("_floor", "_ratio"))]
    head = f"{'class':<10}{'n':>6}{'accuracy':>10}{'(real)':>8}"
    head += "".join(f"{m:>10}{'floor':>8}{'ratio':>7}" for m in metrics)
    lines = [head]
    for name, r in rows:
        acc = "" if r.get("accuracy") is None else f"{r['accuracy']:>10.3f}"
        real = "" if r.get("accuracy_real") is None else f"{r['accuracy_real']:>8.3f}"
        line = f"{name[:9]:<10}{r['n']:>6}{acc or '-':>10}{real or '-':>8}"
        for m in metrics:
            ratio = r.get(f"{m}_ratio")
            line += (f"{r[m]:>10.4g}{r[m + '_floor']:>8.4g}"
                     + (f"{ratio:>7.2f}" if ratio is not None else f"{'-':>7}"))
        lines.append(line)
    lines.append("  n: the items of each set scored, samples and real data alike; accuracy: the "
                 "share of samples classified as the class asked for, (real): of held-out items "
                 "of the class; floor: real data of the same size")
    return "\n".join(lines)


class Evaluator(ABC):
    """Scores samples of one run's data against its held-out part, beside the floor."""

    #: independent sets of n samples of each class that per-class evaluation draws
    class_draws: ClassVar[int] = 1

    def __init__(self, data: Any, config: RunConfig) -> None:
        self.data, self.config = data, config

    @property
    @abstractmethod
    def eval_size(self) -> tuple[int, int]:
        """The default (samples per draw, draws) of an evaluation."""

    @abstractmethod
    def reference_sets(self, n: int) -> list[np.ndarray]:
        """The held-out data cut into m >= 2 disjoint real sets of equal size <= n."""

    def floor(self, sets: list[np.ndarray], i: int) -> Scores:
        """The real-vs-real floor of draw i: set i+1 (mod m) scored against set i (mod m)."""
        m = len(sets)
        return self.scores(sets[(i + 1) % m], sets[i % m])

    @abstractmethod
    def scores(self, x: np.ndarray, real: np.ndarray) -> Scores:
        """Every metric of ``x`` against ``real``, both held-out data in its stored form."""

    @abstractmethod
    def evaluate(self, samples: np.ndarray, real: np.ndarray, floor: Scores) -> Result:
        """``samples`` (in data coordinates) scored against ``real`` beside ``floor``."""

    @abstractmethod
    def average(self, results: list[Result]) -> Result:
        """The mean over draws."""

    def pooled(self, samples: list[np.ndarray]) -> Result:
        """Metrics of all draws' samples together, beside their floors (none by default)."""
        return {}

    @abstractmethod
    def per_class(self, samples: np.ndarray, labels: np.ndarray, seed: int = 0,
                  draws: int = 1) -> ClassResult:
        """Quality of class-conditional ``samples`` (data coordinates) whose requested classes
        are ``labels``: per class and over all, each beside the floor that real data of the
        same size scores (``{"classes": {name: {...}}, "overall": {...}}``). draws: each
        class's samples are that many independent sets in order (``class_draws``)."""

    @classmethod
    @abstractmethod
    def table(cls, result: Result, n: int, repeats: int) -> str:
        """The printed table of a result at n items per set."""

    @staticmethod
    @abstractmethod
    def headline(result: Result) -> tuple[str, str | None]:
        """The two metrics a sweep plots: a 1-NNA, and one with a value/floor ratio (or
        None)."""
