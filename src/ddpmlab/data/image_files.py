"""User image files: a folder of PNG/JPEG files, or a .npy/.npz array, read and checked.

Each reader returns a :class:`RawImages`, pixels scaled to [-1, 1], which
:func:`ddpmlab.data.images.resolve_images` splits into an :class:`~ddpmlab.data.images.ImageSet`.

- A folder of ``.png``/``.jpg``/``.jpeg`` files (any case), all of one size, read with Pillow
  (:func:`load_folder`). Modes: 1/L are grey; LA and RGBA drop their alpha channel; P/PA, CMYK
  and YCbCr are converted to RGB. A file counts as grey when its mode is grey or its red, green
  and blue channels are equal everywhere; if every file is grey the set has C = 1, else C = 3
  (grey files replicated). 16-bit and floating-point files are refused (save 8-bit files);
  levels = 256. If the folder holds no image files itself but sub-folders of images, each
  sub-folder is a class: class names are the sub-folder names sorted, labels their indices;
  otherwise labels are None and sub-folders are ignored. Files whose names start with "." and
  files with other suffixes are ignored; files are read in sorted order.
- A ``.npy`` array (N, H, W) (C = 1) or (N, C, H, W) with C in {1, 3}, or a ``.npz`` holding
  ``images`` (the same) and optionally ``labels`` (N,) of whole numbers >= 0 (classes =
  max + 1), read by :func:`load_array` without ever unpickling. The value range is detected
  from the dtype and the values (:func:`array_to_model`): integer dtypes are 8-bit (0..255);
  float arrays whose values are all whole numbers with a maximum above 1 are 8-bit too; any
  other float array must lie in [0, 1]. Values outside the detected range, NaN and inf are
  refused. levels = 256 either way (float values in [0, 1] are kept as they are, not rounded).

Anything wrong raises :class:`~ddpmlab.errors.UserError` with a one-line message naming the
problem and the fix.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz")
MIN_SIDE = 4  # pixels: smaller images cannot go through a U-Net's downsampling
_ARRAY_FIX = ("save uint8 values 0..255 or floats in [0, 1] shaped (N, H, W) or (N, C, H, W) "
              "with C = 1 or 3 using numpy.save")
_GREY_MODES = {"1", "L", "LA"}
_RGB_MODES = {"RGB", "RGBA", "P", "PA", "CMYK", "YCbCr"}


@dataclass(frozen=True)
class RawImages:
    """A loaded, checked source before the held-out split: ``x`` (N, C, H, W) float32 in
    [-1, 1], ``labels`` (N,) int64 or None, the grey ``levels`` of the source per channel and
    one name per class (or None)."""

    x: np.ndarray
    labels: np.ndarray | None
    levels: int
    class_names: tuple[str, ...] | None


def levels_to_model(values: np.ndarray, levels: int) -> np.ndarray:
    """Integer pixels 0..levels-1 (any shape) -> float32 in [-1, 1]: ``2 v / (levels - 1) - 1``."""
    v = np.asarray(values, dtype=np.float32)
    return v * np.float32(2.0 / (levels - 1)) - np.float32(1.0)


def _label(path: str | os.PathLike[str]) -> str:
    s = os.fspath(path)
    return s if s.isprintable() else ascii(s)


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
    return a.astype(np.float32) * 2 - 1, 256  # [0, 1] -> [-1, 1], as images.from_unit


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


def load_array(path: str | os.PathLike[str]) -> RawImages:
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
        return RawImages(x, None, levels, None)
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
            return RawImages(x, None, levels, None)
        y, names = _check_labels(member("labels"), len(x), name)
    return RawImages(x, y, levels, names)


# ----------------------------------------------------------------------------- folders


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()


def _read_image(path: Path, shown: str) -> tuple[np.ndarray, bool]:
    """One file -> (H, W) or (H, W, 3) uint8 and whether it is grey."""
    from PIL import Image  # imported on use: keeps start-up fast

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


def load_folder(path: str | os.PathLike[str]) -> RawImages:
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
    return RawImages(levels_to_model(x, 256), labels, 256, names or None)
