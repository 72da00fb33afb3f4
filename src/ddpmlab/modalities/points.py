"""Points: 2-D point clouds (built-in shapes, .csv/.txt/.npy files of N x 2 numbers, the dark
pixels of a picture, a word: ``data.shapes``).

Model space is the standardised data z = (x - mean) / std (``data.Standardizer``); samples
come back in the data's own coordinates (float64). Scored by ``ddpmlab.metrics.point_evaluator``
(W1/W2, energy, MMD, 1-NNA), drawn by ``ddpmlab.reports.points`` (scatter plots).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmlab.config import RunConfig
from ddpmlab.data import TOY2D, PointSet, Standardizer, resolve
from ddpmlab.fileio import save_npy, write_atomic
from ddpmlab.modalities.base import Modality


class Points(Modality):
    name = "points"
    clip = False  # a point cloud has no box to clip to (diffusers' clip_sample would be wrong)
    sample_suffixes = (".npy", ".csv")
    unit = "points"
    snapshot_n = 1000
    # every evaluation and figure (2,000 to 18,000 points) is one random stream
    sample_block = 32_768
    data: PointSet
    scaler: Standardizer

    @classmethod
    def accepts(cls, source: str) -> bool:
        return source in TOY2D

    @classmethod
    def defaults(cls, source: str, conditional: bool = False) -> dict[str, Any]:
        """RunConfig's defaults are the points' (bench/quality.py). A conditional run learns
        its variance (Nichol & Dhariwal 2021): with sigma^2 = beta~ a class's Gaussian comes
        out too narrow even from the exact denoiser (bench/README.md, "Classifier-free
        guidance on points")."""
        return {"diffusion": {"variance": "learned_range"}} if conditional else {}

    @classmethod
    def prepare(cls, config: RunConfig) -> Points:
        d = config.data
        points = resolve(d.source, d.n_train, config.train.seed, d.heldout, d.label_column,
                         d.font)
        return cls(config, points, Standardizer.fit(points.train))

    @classmethod
    def restore(cls, config: RunConfig, saved: dict[str, np.ndarray],
                meta: dict[str, Any]) -> Points:
        scaler = meta.get("scaler", meta.get("standardizer"))  # older runs: "standardizer"
        names = meta.get("class_names")
        points = PointSet(name=meta.get("name", "data"), train=saved["train"],
                          heldout=saved["heldout"], train_labels=saved.get("train_labels"),
                          heldout_labels=saved.get("heldout_labels"),
                          class_names=None if names is None else tuple(names))
        return cls(config, points, Standardizer.from_dict(scaler or {}))

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.data.train.shape[1]),)

    def model_input(self) -> np.ndarray:
        return self.scaler.transform(self.data.train).astype(np.float32)

    def to_data(self, x: torch.Tensor) -> np.ndarray:
        return self.scaler.inverse(x.numpy().astype(np.float64))

    def describe(self) -> str:
        return f"{self.data.name} ({len(self.data.train)} points)"

    def decoder(self) -> dict[str, Any]:
        """A Gaussian density: points are continuous."""
        return {"decoder": "gaussian"}

    def bound_inputs(self, n: int) -> tuple[torch.Tensor, dict[str, Any], float]:
        """The network models standardised points z = (x - mean) / std, so -log p(x) =
        -log p(z) + sum_d log std_d (change of variables)."""
        z = self.scaler.transform(self.data.heldout[:n])
        log_det = float(np.log(self.scaler.std).sum())
        return torch.from_numpy(z).to(torch.float32), self.decoder(), log_det

    def write_samples(self, x: np.ndarray, path: Path, meta: dict[str, str]) -> str:
        """``.npy``: (N, 2) float64; ``.csv``: a header x,y and a row per point (neither
        format holds ``meta``)."""
        if path.suffix.lower() == ".npy":
            write_atomic(path, functools.partial(save_npy, x))
        else:
            write_atomic(path, lambda tmp: np.savetxt(tmp, x, fmt="%.8g", delimiter=",",
                                                      header="x,y", comments=""))
        return f"{len(x)} samples"

