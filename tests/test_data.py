"""Tests for ddpmlab.data: toy generators, user point files, splits and standardization."""

from __future__ import annotations

import io
import json
import os
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn import datasets
from sklearn.neighbors import KNeighborsClassifier

from ddpmlab.data import TOY2D, PointSet, Standardizer, load_points, resolve
from ddpmlab.errors import UserError


def _points(n: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 2)) * 3.0 + 1.5


def _csv(x: np.ndarray, header: str | None = None, sep: str = ",") -> str:
    body = "\n".join(f"{float(a)!r}{sep}{float(b)!r}" for a, b in x)
    return (header + "\n" if header else "") + body + "\n"


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _user_error(path: Path | str) -> str:
    with pytest.raises(UserError) as info:
        load_points(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg
    return msg


# ----------------------------------------------------------------------------- generators


@pytest.mark.parametrize("name", TOY2D)
def test_every_built_in_shape_loads_by_name(name: str) -> None:
    """Each name resolves to finite 2-D points of the sizes asked, with class labels (every
    class drawn, in both parts) where the shape has classes, drawn as the unlabelled shape
    draws them."""
    ps = resolve(name, 300, seed=0, heldout=200)
    assert isinstance(ps, PointSet) and ps.name == name
    assert ps.train.shape == (300, 2) and ps.heldout.shape == (200, 2)
    assert np.isfinite(ps.train).all() and np.isfinite(ps.heldout).all()
    assert np.abs(ps.train).max() < 5.0  # within a few units of the origin, as drawn
    if ps.class_names is None:
        assert ps.train_labels is None and ps.heldout_labels is None
        return
    k = len(ps.class_names)
    assert k >= 2 and len(set(ps.class_names)) == k
    for x, y in ((ps.train, ps.train_labels), (ps.heldout, ps.heldout_labels)):
        assert y is not None and y.shape == (len(x),) and y.dtype == np.int64
        assert sorted(set(y.tolist())) == list(range(k))  # every class drawn
    # the labels say where a point lies: its training neighbours' class predicts a held-out
    # point's (each built-in's classes are separated regions)
    knn = KNeighborsClassifier(5).fit(ps.train, ps.train_labels)
    assert np.mean(knn.predict(ps.heldout) == ps.heldout_labels) > 0.95
    # the labels come with the shape's own draws: an unlabelled run trains on the same points
    rng = np.random.default_rng(np.random.SeedSequence(0).spawn(2)[0])
    np.testing.assert_array_equal(TOY2D[name](300, rng), ps.train)


def _sk_seed(seed: int) -> int:
    return int(np.random.default_rng(seed).integers(2**31 - 1))


def test_swiss_roll_matches_source_preparation() -> None:
    X, _ = datasets.make_swiss_roll(300, noise=0.1, random_state=_sk_seed(11))
    np.testing.assert_array_equal(TOY2D["swiss_roll"](300, np.random.default_rng(11)),
                                  X[:, [0, 2]] / 10.0)


def test_moons_and_circles_match_sklearn() -> None:
    moons, _ = datasets.make_moons(301, noise=0.05, random_state=_sk_seed(5))
    circles, _ = datasets.make_circles(301, noise=0.05, factor=0.5, random_state=_sk_seed(5))
    np.testing.assert_array_equal(TOY2D["moons"](301, np.random.default_rng(5)), moons)
    np.testing.assert_array_equal(TOY2D["circles"](301, np.random.default_rng(5)), circles)


@pytest.mark.parametrize("name", TOY2D)
def test_generator_shape_dtype_determinism(name: str) -> None:
    gen = TOY2D[name]
    a = gen(257, np.random.default_rng(1))
    assert a.shape == (257, 2) and a.dtype == np.float64 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, gen(257, np.random.default_rng(1)))
    assert not np.array_equal(a, gen(257, np.random.default_rng(2)))
    assert np.abs(a).max() < 5.0  # all shapes live within a few units of the origin


def test_shapes_look_right() -> None:
    rng = np.random.default_rng(0)
    cb = TOY2D["checkerboard"](4000, rng)
    assert (np.abs(cb) <= 2.0).all()
    assert ((np.floor(cb[:, 0]) + np.floor(cb[:, 1])) % 2 == 0).all()  # only the filled squares
    g = TOY2D["gaussians8"](4000, rng)
    assert abs(np.linalg.norm(g, axis=1).mean() - 2.0) < 0.05
    angles = np.arange(8) * np.pi / 4
    centers = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    nearest = np.linalg.norm(g[:, None] - centers[None], axis=2).argmin(axis=1)
    assert np.bincount(nearest, minlength=8).min() > 350  # all 8 modes populated
    c = np.linalg.norm(TOY2D["circles"](4000, rng), axis=1)
    assert ((np.abs(c - 1.0) < 0.25) | (np.abs(c - 0.5) < 0.25)).all()
    s = TOY2D["spirals"](4000, rng)
    assert 0.3 < (s[:, 0] > 0).mean() < 0.7


# ----------------------------------------------------------------------------- good files


def test_load_csv_with_and_without_header(tmp_path: Path) -> None:
    x = _points(25)
    (tmp_path / "plain.csv").write_text(_csv(x))
    (tmp_path / "head.csv").write_text(_csv(x, header="x,y"))
    (tmp_path / "quoted.csv").write_bytes(  # BOM, CRLF, comment, blank line, quotes: slow path
        ("\ufeff\"x\",\"y\"\r\n# comment\r\n\r\n"
         + "".join(f'"{float(a)!r}", {float(b)!r}\r\n' for a, b in x)).encode())
    for name in ("plain.csv", "head.csv", "quoted.csv"):
        got = load_points(tmp_path / name)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, x)


def test_load_txt_spaces_tabs_commas(tmp_path: Path) -> None:
    x = _points(15)
    (tmp_path / "a.txt").write_text(_csv(x, sep="  "))
    (tmp_path / "b.txt").write_text(_csv(x, header="x\ty", sep="\t"))
    (tmp_path / "c.txt").write_text(_csv(x, sep=", "))
    for name in ("a.txt", "b.txt", "c.txt"):
        np.testing.assert_array_equal(load_points(str(tmp_path / name)), x)


def test_load_npy_dtypes_and_order(tmp_path: Path) -> None:
    x = _points(12)
    np.save(tmp_path / "f64.npy", x)
    np.save(tmp_path / "f32.npy", x.astype(np.float32))
    np.save(tmp_path / "int.npy", np.arange(24).reshape(12, 2))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(x))
    np.testing.assert_array_equal(load_points(tmp_path / "f64.npy"), x)
    np.testing.assert_array_equal(load_points(tmp_path / "fortran.npy"), x)
    np.testing.assert_array_equal(load_points(tmp_path / "f32.npy"), x.astype(np.float32))
    got = load_points(tmp_path / "int.npy")
    assert got.dtype == np.float64 and got[-1].tolist() == [22.0, 23.0]


def test_load_100k_lines_is_fast(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(100_000, 2))
    path = tmp_path / "big.csv"
    path.write_text(_csv(x, header="x,y"))
    t = time.perf_counter()
    got = load_points(path)
    assert time.perf_counter() - t < 1.0
    np.testing.assert_array_equal(got, x)


# ----------------------------------------------------------------------------- bad files


_MKDIR = object()


def _rows(n: int) -> str:
    return "".join(f"{i}.5,{-i}.25\n" for i in range(n))


def _write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    if content is None:
        pass
    elif isinstance(content, np.ndarray):
        np.save(path, content, allow_pickle=True)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_bytes(content.encode())
    elif content is _MKDIR:
        path.mkdir()
    return path


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=_points())
    return buf.getvalue()


_NAN_CSV = "x,y\n" + _rows(15) + "nan,1\n" + _rows(3) + "inf,-inf\n" + _rows(2)
_STRUCT = np.zeros(12, dtype=[("x", "f8"), ("y", "f8")])


def _with_nan(x: np.ndarray, row: int) -> np.ndarray:
    x[row, 1] = np.nan
    return x


BAD_INPUTS = [  # (id, file name, content or None for "not created", expected message parts)
    ("missing", "nothere.csv", None, ["data file not found", "swiss_roll", "spirals", ".npy"]),
    ("directory", "folder.csv", _MKDIR, ["is a directory", ".csv, .txt or .npy"]),
    ("extension", "points.json", "1,2\n", ["unsupported file type '.json'", ".csv, .txt or .npy"]),
    ("no-extension", "points", "1,2\n", ["has no file extension", ".csv, .txt or .npy"]),
    ("empty-csv", "empty.csv", "", ["is empty", "x,y"]),
    ("blank-txt", "blank.txt", "\n  \n\t\n", ["is empty"]),
    ("empty-npy", "empty.npy", b"", ["is empty", "numpy.save"]),
    ("header-only", "head.csv", "x,y\n", ["has a header line but no data rows"]),
    ("comments-only", "c.csv", "# nothing here\n# still nothing\n", ["contains no points"]),
    ("three-columns", "wide.csv", "x,y\n1,2\n3,4\n5,6,7\n" + _rows(10),
     ["expected 2 columns, found 3 in", "(line 4)"]),
    ("ragged-short", "ragged.csv", "1,2\n3\n" + _rows(10),
     ["expected 2 columns, found 1", "(line 2)"]),
    ("ragged-txt", "ragged.txt", _rows(10).replace(",", " ") + "1 2 3\n",
     ["expected 2 columns, found 3", "(line 11)"]),
    ("semicolons", "semi.csv", _rows(12).replace(",", ";"), ["found 1", "(line 1)", "x,y"]),
    ("non-finite", "nan.csv", _NAN_CSV,
     ["has 3 non-finite values", "first at line 17", "remove or fill them"]),
    ("non-numeric", "text.csv", _rows(10) + "3,abc\n",
     ["non-numeric value 'abc'", "(line 11, column 2)"]),
    ("non-numeric-first", "first.csv", "1.0,oops\n" + _rows(10),
     ["non-numeric value 'oops'", "(line 1, column 2)"]),
    ("two-headers", "two.csv", "x,y\nmeters,meters\n" + _rows(10),
     ["non-numeric value 'meters'", "(line 2, column 1)"]),
    ("missing-value", "hole.csv", _rows(2) + "1,\n" + _rows(10),
     ["missing value", "(line 3, column 2)", "fill it in"]),
    ("too-few", "few.csv", "x,y\n" + _rows(3), ["has only 3 points", "need at least 10"]),
    ("binary-csv", "bin.csv", b"\x93NUMPY\x01\x00\xff\xfe\x00garbage", ["not a UTF-8 text file"]),
    ("npy-3-columns", "wide.npy", np.zeros((20, 3)), ["shape (20, 3)", "expected (N, 2)"]),
    ("npy-1d", "flat.npy", np.zeros(40), ["shape (40,)", "expected (N, 2)"]),
    ("npy-transposed", "t.npy", np.zeros((2, 20)), ["shape (2, 20)", "transpose"]),
    ("npy-strings", "s.npy", np.array([["a", "b"]] * 12), ["dtype <U1", "real numbers"]),
    ("npy-complex", "c.npy", np.zeros((12, 2), dtype=complex), ["dtype complex128"]),
    ("npy-bool", "b.npy", np.zeros((12, 2), dtype=bool), ["dtype bool"]),
    ("npy-structured", "rec.npy", _STRUCT, ["dtype", "real numbers"]),
    ("npy-object", "obj.npy", np.array([[1.0, 2.0]] * 12, dtype=object),
     ["Python objects", "never unpickled"]),
    ("npy-text", "text.npy", _rows(12), ["not a valid .npy file"]),
    ("npy-pickle", "pickled.npy", pickle.dumps(_points()), ["not a valid .npy file"]),
    ("npy-npz", "archive.npy", _npz_bytes(), ["not a valid .npy file"]),
    ("npy-truncated", "cut.npy", _npy_bytes(_points(50))[:-100], ["truncated or damaged"]),
    ("npy-non-finite", "nan.npy", _with_nan(_points(), 5), ["1 non-finite value", "row index 5"]),
    ("npy-too-few", "few.npy", np.zeros((4, 2)), ["has only 4 points"]),
]


@pytest.mark.parametrize(("name", "content", "parts"), [c[1:] for c in BAD_INPUTS],
                         ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_one_line_user_error(tmp_path: Path, name: str, content: object,
                                              parts: list[str]) -> None:
    path = _write(tmp_path, name, content)
    msg = _user_error(path)
    assert name in msg
    for part in parts:
        assert part in msg, (part, msg)


class _PlantMarker:
    """Unpickling this object creates a directory: proof that pickle code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_pickled_object_npy_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    arr = np.empty((12, 2), dtype=object)
    arr[:] = _PlantMarker(marker)
    path = tmp_path / "evil.npy"
    np.save(path, arr, allow_pickle=True)
    assert "Python objects" in _user_error(path)
    with pytest.raises(UserError):
        resolve(str(path), 100, 0)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # control: the planted object does fire when unpickled
    assert marker.exists()


def test_unprintable_missing_name_stays_one_line() -> None:
    assert "data file not found" in _user_error("bad\nname.csv")


def test_zip_file_is_not_opened_as_npz(tmp_path: Path) -> None:
    path = tmp_path / "z.npy"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", _npy_bytes(_points()))
    assert "not a valid .npy file" in _user_error(path)


# ----------------------------------------------------------------------------- resolve


def test_resolve_builtin_sizes_and_determinism() -> None:
    ps = resolve("moons", 500, seed=3, heldout=300)
    assert isinstance(ps, PointSet) and ps.name == "moons"
    assert ps.train.shape == (500, 2) and ps.heldout.shape == (300, 2)
    assert ps.train.dtype == ps.heldout.dtype == np.float64
    again = resolve("moons", 500, seed=3, heldout=300)
    np.testing.assert_array_equal(ps.train, again.train)
    np.testing.assert_array_equal(ps.heldout, again.heldout)
    assert not np.array_equal(ps.train, resolve("moons", 500, seed=4, heldout=300).train)
    assert not np.array_equal(ps.train[:300], ps.heldout)
    other_n = resolve("moons", 80, seed=3, heldout=300)  # held-out set does not depend on n
    np.testing.assert_array_equal(other_n.heldout, ps.heldout)
    assert resolve("spirals", 10, seed=0).heldout.shape == (4000, 2)


@pytest.mark.parametrize(("rows", "heldout", "expected"), [(103, 4000, 20), (103, 7, 7),
                                                           (10, 4000, 2), (12, 2, 2)])
def test_resolve_file_split(tmp_path: Path, rows: int, heldout: int, expected: int) -> None:
    x = _points(rows, seed=rows)
    path = tmp_path / "mine.csv"
    path.write_text(_csv(x, header="x,y"))
    ps = resolve(str(path), 5, seed=1, heldout=heldout)
    assert ps.name == "mine.csv"
    assert len(ps.heldout) == expected and len(ps.train) == rows - expected
    both = np.concatenate([ps.train, ps.heldout])
    np.testing.assert_array_equal(np.sort(both.view("f8,f8").ravel()),
                                  np.sort(x.view("f8,f8").ravel()))  # a permutation of the rows
    assert not np.array_equal(both, x)  # shuffled
    assert not np.array_equal(ps.heldout, resolve(str(path), 5, seed=2, heldout=heldout).heldout)


def test_resolve_unknown_name_lists_choices() -> None:
    with pytest.raises(UserError) as info:
        resolve("moon", 100, 0)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("unknown dataset 'moon'; choose one of: ")
    assert all(name in msg for name in TOY2D) and ".csv/.txt/.npy path" in msg


@pytest.mark.parametrize("source", ["nope.csv", "sub/dir/points", "other.npy"])
def test_resolve_path_like_missing_is_not_found(source: str) -> None:
    with pytest.raises(UserError, match="data file not found"):
        resolve(source, 100, 0)


@pytest.mark.parametrize(("source", "n", "seed", "heldout"),
                         [("moons", 1, 0, 10), ("moons", 0, 0, 10), ("moons", 100, -1, 10),
                          ("moons", 100, 0, 1), ("moons", 2.5, 0, 10), ("moons", True, 0, 10),
                          ("any.csv", 100, 0, 0)])
def test_resolve_rejects_bad_sizes(source: str, n: object, seed: object, heldout: object) -> None:
    with pytest.raises(UserError, match="must be an integer of at least") as info:
        resolve(source, n, seed, heldout)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- Standardizer


def test_standardizer_zero_mean_unit_std() -> None:
    x = resolve("swiss_roll", 2000, seed=0).train
    s = Standardizer.fit(x)
    z = s.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)
    assert isinstance(s.mean, tuple) and all(type(v) is float for v in s.mean + s.std)


def test_standardizer_far_from_origin_round_trip() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 2)) * 300.0 + np.array([1e4, -5e3])
    s = Standardizer.fit(x)
    np.testing.assert_allclose(s.mean, (1e4, -5e3), rtol=1e-3)
    np.testing.assert_allclose(s.std, (300.0, 300.0), rtol=0.05)
    back = s.inverse(s.transform(x))
    assert back.dtype == np.float64
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=0)
    z32 = s.transform(x.astype(np.float32))
    assert z32.dtype == np.float32
    assert s.transform(np.arange(6).reshape(3, 2)).dtype == np.float64


def test_standardizer_dict_round_trip() -> None:
    s = Standardizer.fit(_points(30))
    again = Standardizer.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s


@pytest.mark.parametrize("bad", [{}, {"mean": [0.0], "std": [1.0, 1.0]},
                                 {"mean": [0.0, 0.0], "std": [1.0, 0.0]},
                                 {"mean": [float("nan"), 0.0], "std": [1.0, 1.0]},
                                 {"mean": "ab", "std": [1.0, 1.0]}, [1, 2]])
def test_standardizer_from_bad_dict(bad: object) -> None:
    with pytest.raises(UserError) as info:
        Standardizer.from_dict(bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and "train the model again" in str(info.value)


@pytest.mark.parametrize(("column", "axis"), [(0, "x"), (1, "y")])
def test_standardizer_degenerate_axis(column: int, axis: str) -> None:
    x = _points(50)
    x[:, column] = 0.1
    with pytest.raises(UserError) as info:
        Standardizer.fit(x)
    assert str(info.value).startswith(f"all points have the same {axis} value; the data has no "
                                      "spread to learn")
    with pytest.raises(UserError, match="same x value"):
        Standardizer.fit(np.full((20, 2), 1e4 / 3))


def test_standardizer_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    x = _points(40)
    s = Standardizer.fit(x)
    t = torch.from_numpy(x)
    z = s.transform(t)
    assert isinstance(z, torch.Tensor) and z.dtype == torch.float64
    np.testing.assert_allclose(z.numpy(), s.transform(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.inverse(z).numpy(), x, rtol=1e-12, atol=1e-12)
    assert s.inverse(z.float()).dtype == torch.float32
