"""Sample quality of a run beside the floor a perfect model would score: :func:`score`,
:func:`evaluate_run` (metrics.json) and, for a conditional run, :func:`score_classes`.

How a kind of data is scored is its evaluator's (``ddpmlab.metrics.EVALUATORS``, under the
modality's name); this module draws the samples and averages the draws.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab import distributed, feedback
from ddpmlab.errors import UserError
from ddpmlab.fileio import exclusive, write_json
from ddpmlab.metrics import EVALUATORS, Evaluator
from ddpmlab.modalities import Modality
from ddpmlab.runs.layout import CLASSES, METRICS
from ddpmlab.runs.run import Cls, Floors, Run
from ddpmlab.samplers import SamplerSpec, describe


def evaluator_for(kind: Modality) -> Evaluator:
    """How the run's data is scored: its modality's evaluator, holding the data."""
    return EVALUATORS[kind.name](kind.data, kind.config)


def floor(run: Run, evaluator: Evaluator, n: int, i: int) -> dict[str, float]:
    """The floor of draw i at n per set (n as ``reference_sets`` cuts it), computed once per
    run (:attr:`Run.floors`)."""
    sets = evaluator.reference_sets(n)
    key = (len(sets[0]), i % len(sets))
    if key not in run.floors:
        run.floors[key] = evaluator.floor(sets, i)
    return run.floors[key]


@dataclass(frozen=True)
class Evaluation:
    """Sample quality of a run beside the floor a perfect model would score.

    metrics: metric name -> ``{"value", "floor", "ratio"}``, each averaged over the draws;
        ``str(evaluation)`` is the table the CLI prints.
    n: samples per draw, and items per real reference set.
    repeats: independent draws averaged (draw i against reference set i mod m).
    seed: the first draw's sampling seed (draw i uses seed + i).
    kind: the run's modality (``points``, ``images``), which says how to print it.
    sampling_seconds: the wall time of drawing the samples (not of the metrics).
    """

    metrics: dict[str, dict[str, float | None]]
    n: int
    repeats: int
    seed: int = 0
    kind: str = "points"
    sampling_seconds: float | None = None

    def __str__(self) -> str:
        return EVALUATORS[self.kind].table(self.metrics, self.n, self.repeats)


def evaluate_run(run: Run, n: int | None = None, seed: int = 0, repeats: int | None = None,
                 meanwhile: Callable[[], object] | None = None) -> Evaluation:
    """:func:`score` the run's default sampler and write metrics.json (rank 0)."""
    with exclusive(run.path):
        result = score(run, n, seed, repeats, meanwhile=meanwhile)
        if distributed.current().main:
            write_json(run.path / METRICS, {"modality": result.kind, "n": result.n,
                                        "repeats": result.repeats, "seed": seed,
                                            "step": run.step, "metrics": result.metrics})
    return result


def read_evaluation(path: str | os.PathLike[str]) -> Evaluation:
    """The Evaluation that RUN/metrics.json holds."""
    saved = json.loads((Path(path) / METRICS).read_text())
    return Evaluation(saved["metrics"], saved["n"], saved["repeats"], saved.get("seed", 0),
                      saved.get("modality", "points"))


def score(run: Run, n: int | None = None, seed: int = 0, repeats: int | None = None,
          sampler: str | SamplerSpec | None = None, *, cls: Cls = None, guidance: float = 0.0,
          meanwhile: Callable[[], object] | None = None) -> Evaluation:
    """Score ``repeats`` draws of n samples by ``sampler`` (a name or a
    :class:`~ddpmlab.samplers.SamplerSpec`; None: the run's default) against held-out data
    beside the real floor.

    The held-out data is cut into m >= 2 disjoint real sets R_0 .. R_{m-1} of n items
    (``Evaluator.reference_sets``). Draw i scores n fresh samples against R_{i mod m}, and
    its floor scores R_{i+1 mod m} against R_{i mod m}: the same metric between two
    independent real samples of the same size. Values and floors are averaged over the
    draws, because one W1 between two 2,000-point sets moves with the reference set alone.
    n and repeats default to the evaluator's (``Evaluator.eval_size``: 3 x 2,000 points;
    1,000 images, or five per held-out image if fewer, in draws of half the held-out set at
    most). The floors are computed once
    per ``run`` (:attr:`Run.floors`). ``meanwhile()`` is called once the samples are drawn,
    while the metrics are computed (the train command draws its figures then). A conditional
    run draws class ``cls`` (``"all"``: an equal share of each) at guidance weight
    ``guidance`` (:meth:`Run.sample`). Under torchrun the ranks share the sampling and rank 0
    alone computes the metrics (the others return no metrics).
    """
    spec = run.spec(sampler)
    evaluator = evaluator_for(run.kind)
    n = evaluator.eval_size[0] if n is None else n
    repeats = evaluator.eval_size[1] if repeats is None else repeats
    sets = evaluator.reference_sets(n)
    n, m = len(sets[0]), len(sets)
    run.check_sampler(spec)
    how = describe(spec, run.schedule.T, run.spacing(spec.name))
    bar = feedback.bar(repeats * n, f"evaluating: {repeats} draw{'s' * (repeats > 1)} of "
                       f"{n:,} samples ({how})", unit="sample")

    def draw(i: int) -> np.ndarray:
        return run.sample(n, seed + i, spec, bar=bar, cls=cls, guidance=guidance)

    def evaluate(i: int, samples: np.ndarray) -> dict[str, dict[str, float | None]]:
        return evaluator.evaluate(samples, sets[i % m], floor=floor(run, evaluator, n, i))

    # The draws are independent and deterministic: one thread each shares the free cores
    # between them (torch's kernels release the GIL), and costs nothing on a busy machine.
    # The metrics (POT, SciPy, scikit-learn) run in C almost entirely outside the GIL, so
    # they go on beside meanwhile() in one thread, leaving it a core; figures (matplotlib)
    # hold the GIL almost throughout, which would stall a torch sampler beside them.
    # several processes gather each draw: one at a time, so the ranks' collectives match
    threads = 1 if distributed.current().many else min(repeats, 4)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool, bar:
        samples = list(pool.map(draw, range(repeats)))
    seconds = time.perf_counter() - start
    if not distributed.current().main:
        return Evaluation({}, n, repeats, seed, run.kind.name, seconds)
    with ThreadPoolExecutor(max_workers=1 if meanwhile else min(repeats, 4)) as pool, \
            feedback.bar(repeats, f"computing the metrics of {repeats} "
                         f"draw{'s' * (repeats > 1)} and their floors", unit="draw") as metrics_bar:
        scoring = [pool.submit(evaluate, i, x) for i, x in enumerate(samples)]
        for job in scoring:
            job.add_done_callback(lambda _: metrics_bar.update())
        if meanwhile is not None:
            meanwhile()
        result = (evaluator.average([job.result() for job in scoring])
                  | evaluator.pooled(samples))
    return Evaluation(result, n, repeats, seed, run.kind.name, seconds)


def score_classes(run: Run, guidance: float = 0.0, n: int | None = None, seed: int = 0,
                  sampler: str | SamplerSpec | None = None) -> dict[str, Any]:
    """Per-class quality of a conditional run at guidance weight w (``Evaluator.per_class``).

    n samples of each class (default: the evaluator's whole evaluation, ``eval_size``,
    shared equally: 6,000 points, 1,000 images) in each of the evaluator's ``class_draws``
    independent sets, drawn with ``sampler`` at ``guidance``; each class's metrics beside
    the floor of real data of the same size. Returns ``{"guidance", "n", "draws", "seed",
    "sampler", "steps", "sampling_seconds", "classes": {...}, "overall": {...}}``.
    """
    spec = run.spec(sampler)
    names = run.classes
    if names is None:
        raise UserError(f"{run.path} was trained without classes: per-class evaluation and "
                        "--guidance need a run trained with --conditional")
    evaluator = evaluator_for(run.kind)
    per = n if n is not None else int(np.prod(evaluator.eval_size)) // len(names)
    if per < 2:
        raise UserError(f"--n must be at least 2 samples per class, got {per}")
    draws = evaluator.class_draws
    start = time.perf_counter()
    x = run.sample(per * draws * len(names), seed, spec, cls="all", guidance=guidance)
    seconds = time.perf_counter() - start
    labels = run.labels(per * draws * len(names), "all")
    assert labels is not None
    if not distributed.current().main:  # rank 0 computes the metrics
        return {}
    feedback.status(f"computing the per-class metrics of {len(x):,} samples")
    result = evaluator.per_class(x, labels, seed, draws)
    return {"guidance": guidance, "n": per, "draws": draws, "seed": seed, "sampler": spec.name,
            "steps": spec.steps or run.schedule.T, "sampling_seconds": seconds, **result}


def evaluate_classes(run: Run, guidance: float = 0.0, n: int | None = None, seed: int = 0,
                     sampler: str | SamplerSpec | None = None) -> dict[str, Any]:
    """:func:`score_classes`, written to RUN/classes.json."""
    with exclusive(run.path):
        result = score_classes(run, guidance, n, seed, sampler)
        if distributed.current().main:
            write_json(run.path / CLASSES, result)
    return result


class BackgroundFloors:
    """The default evaluation's floors (``Evaluator.floor``), computed on a free core while
    training.

    They depend on the held-out data only. Not a daemon thread: one still inside POT's C++
    at interpreter exit can abort the process, so an interrupted run cancels it and waits
    for the draw in progress (about a second). A failure leaves the draw to be computed, and
    reported, by the evaluation itself.
    """

    def __init__(self, evaluator: Evaluator) -> None:
        self.floors: Floors = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(evaluator,))
        self.thread.start()

    def _work(self, evaluator: Evaluator) -> None:
        n, repeats = evaluator.eval_size
        sets = evaluator.reference_sets(n)
        for i in range(min(repeats, len(sets))):
            if self.stop.is_set():
                return
            try:
                self.floors[(len(sets[0]), i)] = evaluator.floor(sets, i)
            except Exception:
                return

    def wait(self) -> Floors:
        self.thread.join()
        return self.floors

    def cancel(self) -> None:
        self.stop.set()
        self.thread.join()
