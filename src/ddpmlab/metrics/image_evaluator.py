"""How a run's images are scored (:mod:`ddpmlab.metrics.images`): in the feature space of the
classifier shipped for a built-in set (Fréchet distance, KID, PRDC, 1-NNA, confident share,
class histogram), in pixels for other images, and memorisation; per class for a conditional
run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ddpmlab.data.images import ImageSet, from_unit
from ddpmlab.metrics.classifier import SHIPPED, embed, load_classifier
from ddpmlab.metrics.evaluator import ClassResult, Evaluator, Result, Scores, cut, scored
from ddpmlab.metrics.images import (
    average_images,
    evaluate_images,
    format_image_table,
    frechet_distance,
    image_scores,
    pooled_class_tv,
)
from ddpmlab.metrics.points import one_nn_accuracy

EVAL_IMAGES = 1000  # samples scored in all, in draws of a reference set's size
HELDOUT_MULTIPLE = 5  # at most this many samples per held-out image
FLOOR_REPEATS = 3  # training subsets averaged for a per-class floor


class ImageEvaluator(Evaluator):
    data: ImageSet

    @property
    def eval_size(self) -> tuple[int, int]:
        """Draws of half the held-out set (at most EVAL_IMAGES), EVAL_IMAGES samples in all,
        or HELDOUT_MULTIPLE times the held-out set where that is fewer: a small folder's few
        held-out images cannot tell more samples apart."""
        held = len(self.data.heldout)
        n = min(EVAL_IMAGES, held // 2)
        return n, max(1, math.ceil(min(EVAL_IMAGES, HELDOUT_MULTIPLE * held) / n))

    def reference_sets(self, n: int) -> list[np.ndarray]:
        """Disjoint random held-out sets of n (seed 0). Not stratified by class: a perfect
        model's samples are not, so neither is the real set that gives its floor."""
        held = self.data.heldout
        return cut(held[np.random.default_rng(0).permutation(len(held))], n)

    def _classifier(self) -> str | None:
        source = self.config.data.source
        return source if source in SHIPPED else None

    def scores(self, x: np.ndarray, real: np.ndarray) -> Scores:
        return image_scores(x, real, self.data.train, self._classifier())

    def evaluate(self, samples: np.ndarray, real: np.ndarray, floor: Scores) -> Result:
        return evaluate_images(from_unit(samples), real, train=self.data.train,
                               classifier=self._classifier(), floor=floor)

    def average(self, results: list[Result]) -> Result:
        return average_images(results)

    def pooled(self, samples: list[np.ndarray]) -> Result:
        classifier = self._classifier()
        if classifier is None or len(samples) < 2:
            return {}
        return {"class_tv_all": pooled_class_tv(from_unit(np.concatenate(samples)),
                                                self.data.heldout, classifier)}

    def per_class(self, samples: np.ndarray, labels: np.ndarray, seed: int = 0,
                  draws: int = 1) -> ClassResult:
        """Per class k, in the feature space of the data's shipped classifier: the share of
        its samples the classifier calls k (``accuracy_real``: of the held-out images of k),
        and the Fréchet distance of its samples to the class's held-out images, beside the
        floor random subsets of the class's training images of the same size score (mean
        of FLOOR_REPEATS); then
        the same over all classes. Without a shipped classifier: pixel-space 1-NNA only."""
        d, rng = self.data, np.random.default_rng(seed)
        assert d.class_names is not None and d.train_labels is not None
        assert d.heldout_labels is not None
        x = from_unit(samples).astype(np.float32)
        name = self._classifier()
        if name is not None:
            model = load_classifier(name).model
            (hx, px), (hh, ph), (ht, _) = embed(model, x), embed(model, d.heldout), \
                embed(model, d.train)
        else:  # pixels as features
            hx, hh, ht = (a.reshape(len(a), -1) for a in (x, d.heldout, d.train))

        def compare(i: np.ndarray, j: np.ndarray, k: np.ndarray) -> dict[str, Any]:
            """Samples i against held-out j, beside training subsets of k (mean of
            FLOOR_REPEATS: the floor of 100 images moves with the subset)."""
            n = min(len(i), len(k))
            metric, key = (frechet_distance, "fd") if name else (one_nn_accuracy, "1nna_px")
            if not name:  # 1-NNA needs sets of one size
                j = j[rng.permutation(len(j))[:n]]
                n = min(n, len(j))
            refs = [k[rng.choice(len(k), n, replace=False)][:n] for _ in range(FLOOR_REPEATS)]
            floor = float(np.mean([metric(ht[ref], hh[j]) for ref in refs]))
            return {"n": n, **{key + s: v for s, v in
                               scored(metric(hx[i[:n]], hh[j]), floor, bool(name)).items()}}

        held, train = d.heldout_labels, d.train_labels
        rows = {}
        for k, cname in enumerate(d.class_names):
            i = np.flatnonzero(labels == k)
            rows[cname] = compare(i, np.flatnonzero(held == k), np.flatnonzero(train == k))
            rows[cname] |= {"accuracy": float(np.mean(px[i].argmax(1) == k)) if name else None,
                            "accuracy_real": (float(np.mean(ph[held == k].argmax(1) == k))
                                              if name else None)}
        overall = compare(np.arange(len(x)), np.arange(len(held)), np.arange(len(train)))
        overall |= {"accuracy": float(np.mean(px.argmax(1) == labels)) if name else None,
                    "accuracy_real": float(np.mean(ph.argmax(1) == held)) if name else None}
        return {"classes": rows, "overall": overall}

    @classmethod
    def table(cls, result: Result, n: int, repeats: int) -> str:
        text = format_image_table(result, n, repeats)
        if "fd" not in result:
            text += ("\nnote: no classifier is shipped for these images: pixel-space metrics "
                     "only (no fd, confident or class_tv)")
        return text

    @staticmethod
    def headline(result: Result) -> tuple[str, str | None]:
        return ("1nna", "fd") if "fd" in result else ("1nna_px", None)
