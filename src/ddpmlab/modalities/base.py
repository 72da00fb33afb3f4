"""What a kind of data must answer for the run code: :class:`Modality`.

Run code, training and the CLI never branch on the kind of data; they ask the run's modality
(``ddpmlab.modalities.MODALITIES``, keyed by the name saved in the checkpoint). A modality
owns the data set and its split, the map to model space and back (the *scaler*), the sample
shape, whether x0_hat is clipped to [-1, 1], and how samples are written. How a kind is
scored lives in ``ddpmlab.metrics`` and how it is drawn in ``ddpmlab.reports``, under the
same name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ddpmlab.config import RunConfig


class Modality(ABC):
    """One run's data seen through its kind: the data set, its scaler, and what to do with it.

    Built by :meth:`prepare` (a new run: load and fit) or :meth:`restore` (an existing run:
    data.npz and the checkpoint's metadata). ``data`` has ``name``, ``train`` and ``heldout``
    (in the modality's stored form), ``class_names``, ``train_labels`` and
    ``heldout_labels``; ``scaler`` maps data to model space and back.
    """

    name: ClassVar[str]
    clip: ClassVar[bool]  # x0_hat clipped to [-1, 1] in every sampler (images, never points)
    unit: ClassVar[str]  # "points", "images": for messages
    sample_suffixes: ClassVar[tuple[str, ...]]  # what `sample --out` writes
    snapshot_n: ClassVar[int]  # samples in each reverse-process snapshot
    #: rows per random stream of Run.sample: its unit of reproducibility and of sharing
    sample_block: ClassVar[int]
    channels_last: ClassVar[bool] = False  # sample with the network in channels-last memory

    def __init__(self, config: RunConfig, data: Any, scaler: Any) -> None:
        self.config, self.data, self.scaler = config, data, scaler

    @classmethod
    @abstractmethod
    def accepts(cls, source: str) -> bool:
        """Whether data.source names data of this kind (without reading it, where possible)."""

    @classmethod
    @abstractmethod
    def defaults(cls, source: str, conditional: bool = False) -> dict[str, Any]:
        """Config settings chosen by measurement for this source (and for a conditional run
        of it), applied under the user's."""

    @classmethod
    @abstractmethod
    def prepare(cls, config: RunConfig) -> Modality:
        """A new run's data, loaded from ``config.data`` and split, with a fitted scaler."""

    @classmethod
    @abstractmethod
    def restore(cls, config: RunConfig, saved: dict[str, np.ndarray],
                meta: dict[str, Any]) -> Modality:
        """The run's data from data.npz's arrays and the checkpoint's metadata."""

    def arrays(self) -> dict[str, np.ndarray]:
        """What data.npz holds: the data, and the labels where it has classes."""
        labels = {key: getattr(self.data, key) for key in ("train_labels", "heldout_labels")
                  if getattr(self.data, key) is not None}
        return {"train": self.data.train, "heldout": self.data.heldout, **labels}

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

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample, as the network takes it: (dim,) or (C, H, W)."""

    @property
    def network_rows(self) -> int | None:
        """Rows per network evaluation when sampling (None: ``accel.mlp.SAMPLING_ROWS``)."""
        return None

    @abstractmethod
    def model_input(self) -> np.ndarray:
        """The training data in model space, (N, *shape) float32."""

    @abstractmethod
    def to_data(self, x: torch.Tensor) -> np.ndarray:
        """Model-space samples (n, *shape) -> the data's own coordinates (what users get)."""

    @abstractmethod
    def describe(self) -> str:
        """The training data in a few words, for the start line."""

    @abstractmethod
    def decoder(self) -> dict[str, Any]:
        """The decoder p(x_0 | x_1) of the data, as ``nll_bound`` and ``hybrid_loss`` take it:
        a density for continuous data, the discretised decoder on the data's levels for
        quantised data (Ho et al. 2020, Eq. 13)."""

    @abstractmethod
    def bound_inputs(self, n: int) -> tuple[torch.Tensor, dict[str, Any], float]:
        """(x0 in model space, nll_bound's decoder options, log |Jacobian| of data -> model
        space summed over one sample's dimensions) for the likelihood bound on n held-out."""

    def output_files(self, path: Path, n: int) -> list[Path]:
        """The files ``write_samples`` makes inside a folder ``path`` (checked beforehand)."""
        return []

    @abstractmethod
    def write_samples(self, x: np.ndarray, path: Path, meta: dict[str, str]) -> str:
        """Write samples where ``sample --out`` says (checked already), with ``meta`` (the
        run and its step) where the format holds text; returns what it wrote."""
