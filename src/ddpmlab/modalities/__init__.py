"""Modalities: what differs between kinds of data (points, images), one module each.

run.py, train and the CLI never branch on the kind of data; they ask the run's modality, a
:class:`Modality` found in :data:`MODALITIES` by the name saved in the checkpoint's metadata
(``meta["modality"]``; runs written before modalities existed are points). A modality owns:
loading and splitting the data, the map to model space and back (the *scaler*), the sample
shape, whether x0_hat is clipped to [-1, 1], the evaluation against held-out data beside its
floor, the figures, the GIF and the sample writers. Adding a kind of data means one new
module here (and its data/, metrics/ and viz/ parts), nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import torch

from ddpmlab import feedback
from ddpmlab.config import RunConfig
from ddpmlab.diffusion import q_sample
from ddpmlab.errors import UserError

if TYPE_CHECKING:
    from ddpmlab.run import Run

Result = dict[str, dict[str, float | None]]
ClassResult = dict[str, Any]  # {"classes": {name: {metric: value}}, "overall": {...}}
Scores = dict[str, float]
State = TypeVar("State", np.ndarray, torch.Tensor)  # a chain's states, in either form


def frame_steps(T: int, count: int) -> list[int]:
    """``count`` step counts n from 0 (the data) to T (noise), denser near 0: n ~ T (i/k)^2.

    The data appears in the last fifth of the reverse chain, so evenly spaced frames would
    show mostly noise; quadratic spacing gives the end of the chain most of the frames.
    """
    if count >= T + 1:
        return list(range(T + 1))
    return sorted({round(T * (i / (count - 1)) ** 2) for i in range(count)})


def chain_frames(chain: Iterator[tuple[int, State]], T: int,
                 count: int) -> Iterator[tuple[int, State]]:
    """Keep about ``count`` states of a T-step chain, from x_T to x_0 (see frame_steps)."""
    keep = set(frame_steps(T, count))
    return ((k, x) for k, x in chain if k in keep)


def class_table(result: ClassResult) -> str:
    """The printed table of :meth:`Modality.per_class`: a row per class, then all classes.

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
    return "\n".join(lines)


def scored(value: float, floor: float, ratio: bool = True) -> dict[str, float | None]:
    """``{"", "_floor", "_ratio"}`` suffixes of one per-class metric (ratio value / floor)."""
    return {"": value, "_floor": floor,
            "_ratio": value / floor if ratio and floor > 0 else None}


def cut(held: np.ndarray, n: int) -> list[np.ndarray]:
    """``held`` cut in order into m >= 2 disjoint sets of min(n, half of it) items."""
    n = min(n, len(held) // 2)
    return [held[i * n:(i + 1) * n] for i in range(len(held) // n)]


class Modality(ABC):
    """One run's data seen through its kind: the data set, its scaler, and what to do with it.

    Built by :meth:`prepare` (a new run: load and fit) or :meth:`restore` (an existing run:
    data.npz and the checkpoint's metadata). ``data`` has ``name``, ``train`` and ``heldout``
    (in the modality's stored form); ``scaler`` maps data to model space and back.
    """

    name: ClassVar[str]
    clip: ClassVar[bool]  # x0_hat clipped to [-1, 1] in every sampler (images, never points)
    sample_suffixes: ClassVar[tuple[str, ...]]  # what `sample --out` writes
    unit: ClassVar[str]  # "points", "images": for messages
    snapshot_n: ClassVar[int]  # samples in each reverse-process snapshot
    #: independent sets of n samples of each class that per-class evaluation draws
    class_draws: ClassVar[int] = 1
    gif_n: ClassVar[int]  # samples in reverse.gif
    #: rows per random stream of Run.sample: its unit of reproducibility and of sharing
    sample_block: ClassVar[int]
    channels_last: ClassVar[bool] = False  # sample with the network in channels-last memory

    def __init__(self, config: RunConfig, data: Any, scaler: Any) -> None:
        self.config, self.data, self.scaler = config, data, scaler

    # --- data ---------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def accepts(cls, source: str) -> bool:
        """Whether data.source names data of this kind (without reading it, where possible)."""

    @classmethod
    @abstractmethod
    def defaults(cls, source: str) -> dict[str, Any]:
        """Config settings chosen by measurement for this source, applied under the user's."""

    @classmethod
    def conditional_defaults(cls, source: str) -> dict[str, Any]:
        """Settings measured for a conditional run (``model.conditional``) of this source,
        applied over :meth:`defaults` and under the user's; none by default."""
        return {}

    @classmethod
    @abstractmethod
    def prepare(cls, config: RunConfig) -> Modality:
        """A new run's data, loaded from ``config.data`` and split, with a fitted scaler."""

    @classmethod
    @abstractmethod
    def restore(cls, config: RunConfig, saved: dict[str, np.ndarray],
                meta: dict[str, Any]) -> Modality:
        """The run's data from data.npz's arrays and the checkpoint's metadata."""

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]:
        """What data.npz holds."""

    def meta(self) -> dict[str, Any]:
        """The checkpoint metadata that says what the tensors mean (the class names, whose
        count is a conditional network's number of classes, included)."""
        names = self.class_names
        return {"modality": self.name, "name": self.data.name, "shape": list(self.shape),
                "scaler": self.scaler.to_dict(),
                "class_names": None if names is None else list(names)}

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """One name per class of the data, or None where it has no labels."""
        names: tuple[str, ...] | None = self.data.class_names
        return names

    def labels(self) -> np.ndarray | None:
        """The training data's labels, (N,) int64 in 0..classes-1, or None."""
        labels: np.ndarray | None = self.data.train_labels
        return labels

    def label_arrays(self) -> dict[str, np.ndarray]:
        """The labels data.npz holds beside the data (none for data without classes)."""
        return {key: getattr(self.data, key) for key in ("train_labels", "heldout_labels")
                if getattr(self.data, key) is not None}

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample, as the network takes it: (dim,) or (C, H, W)."""

    @abstractmethod
    def model_input(self) -> np.ndarray:
        """The training data in model space, (N, *shape) float32."""

    @abstractmethod
    def to_data(self, x: torch.Tensor) -> np.ndarray:
        """Model-space samples (n, *shape) -> the data's own coordinates (what users get)."""

    @abstractmethod
    def describe(self) -> str:
        """The training data in a few words, for the start line."""

    # --- evaluation ---------------------------------------------------------------------
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

    @abstractmethod
    def bound_inputs(self, n: int) -> tuple[torch.Tensor, dict[str, Any], float]:
        """(x0 in model space, nll_bound's decoder options, log |Jacobian| of data -> model
        space summed over one sample's dimensions) for the likelihood bound on n held-out."""

    # --- output -------------------------------------------------------------------------
    def forward_frames(self, run: Run, x0: torch.Tensor, seed: int,
                       count: int = 20) -> list[tuple[int, torch.Tensor]]:
        """q(x_n | x_0) of model-space ``x0`` at ``count`` step counts n from 0 (x0 itself) to
        T, one noise draw each (``frame_steps``); n steps applied is timestep n - 1."""
        g = torch.Generator().manual_seed(seed)
        frames = [(0, x0)]
        for n in frame_steps(run.schedule.T, count)[1:]:
            t = torch.full((len(x0),), n - 1, dtype=torch.long)
            frames.append((n, q_sample(run.schedule, x0, t, torch.randn(x0.shape, generator=g))))
        return frames

    def streamed(self, run: Run, n: int, seed: int,
                 count: int) -> tuple[Iterator[tuple[int, np.ndarray]], list[np.ndarray]]:
        """About ``count`` states of the reverse chain of n samples, from x_T to x_0, streamed
        under a progress bar; the list holds the last state seen (x_0 once consumed)."""
        end: list[np.ndarray] = []

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            with feedback.bar(len(frame_steps(run.schedule.T, count)),
                              f"animating {n:,} {self.unit}", unit="frame") as bar:
                for k, x in chain_frames(run.chain(n, seed), run.schedule.T, count):
                    end[:] = [x]
                    bar.update()
                    yield k, x

        return frames(), end

    @abstractmethod
    def figures(self, run: Run, out: Path, seed: int) -> None:
        """Every figure of the run but the loss curve, into ``out``."""

    @abstractmethod
    def class_figure(self, run: Run, path: Path, seed: int, guidance: float) -> None:
        """A conditional run's samples of every class at ``guidance``, into ``path``."""

    @abstractmethod
    def animate(self, run: Run, n: int, seed: int, path: Path) -> tuple[Path, np.ndarray]:
        """reverse.gif of n samples; returns its path and the chain's end x_0."""

    def output_files(self, path: Path, n: int) -> list[Path]:
        """The files ``write_samples`` makes inside a folder ``path`` (checked beforehand)."""
        return []

    @abstractmethod
    def write_samples(self, x: np.ndarray, path: Path) -> str:
        """Write samples where ``sample --out`` says (checked already); returns what it wrote."""


def _registry() -> dict[str, type[Modality]]:
    from ddpmlab.modalities.images import Images
    from ddpmlab.modalities.points import Points
    return {"points": Points, "images": Images}


def modality_named(name: str) -> type[Modality]:
    """The modality a checkpoint names; refused with one line if this ddpmlab has none."""
    registry = _registry()
    if name not in registry:
        raise UserError(f"this run holds data of kind {name!r}, which this ddpmlab does not "
                        f"know ({', '.join(registry)}); use the ddpmlab that wrote it")
    return registry[name]


def modality_for(source: str) -> type[Modality]:
    """The modality of data.source: images for a built-in image set, a folder, an .npz or
    an .npy of 3 or more dimensions (the image reader refuses 5); points otherwise."""
    registry = _registry()
    return registry["images"] if registry["images"].accepts(source) else registry["points"]


def default_config(source: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """The configuration ``ddpmlab train SOURCE`` uses: RunConfig's defaults, the source's
    measured defaults (:meth:`Modality.defaults`) over them, those of a conditional run
    (:meth:`Modality.conditional_defaults`) when ``overrides`` turn ``model.conditional``
    on, then ``overrides``."""
    from ddpmlab.config import merge, replace
    kind = modality_for(source)
    measured = merge(kind.defaults(source), {"data": {"source": source}})
    if (overrides or {}).get("model", {}).get("conditional"):
        measured = merge(measured, kind.conditional_defaults(source))
    return replace(RunConfig(), merge(measured, overrides or {}))
