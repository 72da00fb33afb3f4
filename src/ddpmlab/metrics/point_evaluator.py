"""How a run's points are scored: W1/W2 (optimal transport), energy, MMD and 1-NNA
(:mod:`ddpmlab.metrics.points`) against held-out points, and per class for a conditional run."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from ddpmlab.data import PointSet
from ddpmlab.metrics import points
from ddpmlab.metrics.evaluator import ClassResult, Evaluator, Result, Scores, cut, scored

EVAL_N = 2000  # points per set for evaluation
EVAL_REPEATS = 3  # draws averaged for the model value and for the floor
#: per-class evaluation: independent sample sets of each class, and reference sets and
#: floors averaged: one W1 between two 2,000-point sets of a moon (a near-1-D set, along
#: which the transport runs) scatters widely (bench/guidance.py --parts perfect)
CLASS_SETS = 12
REGION_K = 15  # neighbours of the k-NN classifier that says which class's region a point is in


class PointEvaluator(Evaluator):
    class_draws = CLASS_SETS
    data: PointSet

    @property
    def eval_size(self) -> tuple[int, int]:
        return EVAL_N, EVAL_REPEATS

    def reference_sets(self, n: int) -> list[np.ndarray]:
        return cut(self.data.heldout, n)  # drawn i.i.d. (built-ins) or shuffled (files)

    def scores(self, x: np.ndarray, real: np.ndarray) -> Scores:
        return points.scores(x, real)

    def evaluate(self, samples: np.ndarray, real: np.ndarray, floor: Scores) -> Result:
        return points.evaluate(samples, real, floor=floor)

    def average(self, results: list[Result]) -> Result:
        return points.average(results)

    def per_class(self, samples: np.ndarray, labels: np.ndarray, seed: int = 0,
                  draws: int = 1) -> ClassResult:
        """Per class k: W1 and 1-NNA of its samples against the class's held-out points,
        beside the floor a random subset of the class's training points of the same size
        scores against them (at most EVAL_N points a set), and the share of samples in the
        class's region: the class that a k-NN classifier fitted on the training points gives
        (``accuracy_real``: of the held-out points). Value and floor are means over
        CLASS_SETS random reference sets; ``draws``: the samples of each class (in order)
        are that many independent sets, and repeat i scores set i (mod draws) as the floor
        scores a fresh real subset each time (``score_classes`` draws CLASS_SETS sets: one
        set scored many times keeps the whole scatter of that one set)."""
        d, rng = self.data, np.random.default_rng(seed)
        assert d.class_names is not None and d.train_labels is not None
        assert d.heldout_labels is not None
        knn = KNeighborsClassifier(REGION_K).fit(d.train, d.train_labels)

        def compare(x: np.ndarray, held: np.ndarray, train: np.ndarray) -> dict[str, Any]:
            # value and floor are means over CLASS_SETS reference sets, the value over
            # independent sample sets where there are several (``draws``)
            sets = np.array_split(x, draws) if len(x) >= draws else [x]
            n = min(min(map(len, sets)), len(held), len(train), EVAL_N)
            scores: dict[str, tuple[list[float], list[float]]] = {"w1": ([], []),
                                                                  "1nna": ([], [])}
            for i in range(CLASS_SETS):
                ref = held[rng.choice(len(held), n, replace=False)]
                real = train[rng.choice(len(train), n, replace=False)]
                mine = sets[i % len(sets)][:n]
                for name, fn in (("w1", points.wasserstein), ("1nna", points.one_nn_accuracy)):
                    scores[name][0].append(fn(mine, ref))
                    scores[name][1].append(fn(real, ref))
            out: dict[str, Any] = {"n": n}
            for name, (value, floor) in scores.items():
                out |= {name + k: v for k, v in scored(float(np.mean(value)),
                                                       float(np.mean(floor)),
                                                       name == "w1").items()}
            return out

        rows = {}
        for k, name in enumerate(d.class_names):
            x, held = samples[labels == k], d.heldout[d.heldout_labels == k]
            rows[name] = {**compare(x, held, d.train[d.train_labels == k]),
                          "accuracy": float(np.mean(knn.predict(x) == k)) if len(x) else None,
                          "accuracy_real": float(np.mean(knn.predict(held) == k))}
        overall = {**compare(samples[rng.permutation(len(samples))], d.heldout, d.train),
                   "accuracy": float(np.mean(knn.predict(samples) == labels)),
                   "accuracy_real": float(np.mean(knn.predict(d.heldout) == d.heldout_labels))}
        return {"classes": rows, "overall": overall}

    @classmethod
    def table(cls, result: Result, n: int, repeats: int) -> str:
        return points.format_table(result, n, repeats)

    @staticmethod
    def headline(result: Result) -> tuple[str, str | None]:
        return "1nna", "w1"
