"""Point data sets: a built-in shape, a picture, a word or a user file, as a :class:`PointSet`.

:func:`resolve` takes a built-in name (:data:`ddpmlab.data.toy2d.TOY2D`), a picture or
``text:WORD`` (:mod:`ddpmlab.data.shapes`) or the path of a user file. User files (``.csv``,
``.txt``, ``.npy``) are read by :func:`load_points`, or with a class column by
:func:`load_labelled_points`; anything wrong with them raises
:class:`~ddpmlab.errors.UserError` with a one-line message naming file and fix.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab.data import shapes
from ddpmlab.data.toy2d import CLASS_NAMES, LABELLED, TOY2D
from ddpmlab.errors import UserError

SUFFIXES = (".csv", ".txt", ".npy")
MIN_POINTS = 10  # a file must give >= 2 held-out points (N // 5) and still leave 8 to train on
_ROWS = "write one point per line as x,y"
_NPY = "save an (N, 2) float array with numpy.save"


def _label(path: str | os.PathLike[str]) -> str:
    s = os.fspath(path)
    return s if s.isprintable() else ascii(s)


def _is_float(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def load_points(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a user point file (.csv, .txt or .npy) into a checked (N, 2) float64 array.

    Text files hold one point per line, comma- (.csv) or whitespace/comma-separated (.txt), with
    an optional first header line (words, no numbers); blank lines and ``#`` comments are
    skipped. ``.npy`` files are read without ever unpickling. Needs N >= ``MIN_POINTS``.
    """
    name = _label(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"data file not found: {name} (give a built-in name: {', '.join(TOY2D)}, "
                        "or the path of a .csv/.txt/.npy file)")
    if p.is_dir():
        raise UserError(f"{name} is a directory, not a data file; give the path of a .csv, "
                        ".txt or .npy file")
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        what = f"unsupported file type {p.suffix!r}" if p.suffix else "no file extension"
        raise UserError(f"{name} has {what}; use a .csv, .txt or .npy file")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {name} ({e.strerror}); check that it is readable") from None
    if not raw or (suffix != ".npy" and not raw.strip()):
        raise UserError(f"{name} is empty; {_NPY if suffix == '.npy' else _ROWS}")
    pts, rows = _read_npy(raw, name) if suffix == ".npy" else _read_text(raw, name, suffix)
    bad = ~np.isfinite(pts)
    if bad.any():
        k, i = int(bad.sum()), int(np.argmax(bad.any(axis=1)))
        raise UserError(f"{name} has {k} non-finite value{'s' * (k != 1)} (NaN or inf; first at "
                        f"{f'line {rows[i]}' if rows else f'row index {i}'}); remove or fill them")
    if len(pts) < MIN_POINTS:
        raise UserError(f"{name} has only {len(pts)} point{'s' * (len(pts) != 1)}; need at least "
                        f"{MIN_POINTS} (2 or more are held out for evaluation, the rest train)")
    return pts


def _read_text(raw: bytes, name: str, suffix: str) -> tuple[np.ndarray, list[int]]:
    """Parse text into ((N, 2) values, 1-based line of each row; [] when numpy parsed it all)."""
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{name} is not a UTF-8 text file (bad byte at offset {e.start}); "
                        f"save it as plain text, {_ROWS}") from None
    tokens: list[str] = []
    rows: list[int] = []
    names: list[str] = []  # the header's column names, if it has one
    header = fast = False
    for lineno, line in enumerate(lines, 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        fields = s.split(",") if suffix == ".csv" or "," in s else s.split()
        fields = [f.strip().strip('"') for f in fields]
        if not (rows or header or any(map(_is_float, fields))) and any(map(str.isalpha, s)):
            header = True  # one optional header: a first line of words (letters, no numbers)
            names = fields
            continue
        if not fast:  # first data row: try numpy's C parser on the rest, scan by hand on doubt
            fast, sep = True, "," if suffix == ".csv" or "," in s else None
            try:
                pts = np.loadtxt(lines[lineno - 1:], delimiter=sep, ndmin=2, dtype=np.float64)
                if pts.shape[1] == 2 and np.isfinite(pts).all():
                    return pts, []
            except ValueError:
                pass
        if len(fields) != 2:
            raise UserError(f"expected 2 columns, found {len(fields)} in {name} (line {lineno}); "
                            + (_label_hint(fields, names) if len(fields) == 3 else _ROWS))
        tokens += fields
        rows.append(lineno)
    if not rows:
        raise UserError(f"{name} has a header line but no data rows; {_ROWS}" if header
                        else f"{name} contains no points; {_ROWS}")
    try:
        return np.array(list(map(float, tokens)), dtype=np.float64).reshape(-1, 2), rows
    except ValueError:
        i = next(i for i, tok in enumerate(tokens) if not _is_float(tok))
        at = f"in {name} (line {rows[i // 2]}, column {i % 2 + 1})"
        if not tokens[i]:
            raise UserError(f"missing value {at}; fill it in or delete the row") from None
        raise UserError(f"non-numeric value {tokens[i][:40]!r} {at}; every row after an "
                        "optional header must be two numbers") from None


def _label_hint(fields: list[str], names: list[str]) -> str:
    """For a row of three columns: name the one that looks like a class (a word or a whole
    number; the last if none does) as ``--label-column`` would take it."""
    whole = [i for i, f in enumerate(fields) if not _is_float(f) or f.lstrip("+-").isdigit()]
    i = whole[-1] if whole else len(fields) - 1
    column = names[i] if len(names) == len(fields) and names[i] else str(i)
    return (f"if a column holds each point's class, name it with --label-column {column} "
            "(and add --conditional to learn each class)")


def _read_npy(raw: bytes, name: str) -> tuple[np.ndarray, list[int]]:
    """Parse .npy bytes, checking magic, dtype and shape before any data is read."""
    fmt, f = np.lib.format, io.BytesIO(raw)
    try:
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise UserError(f"{name} uses .npy format version {version[0]}.{version[1]} "
                            f"(structured data); {_NPY}")
        reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = reader(f)
    except UserError:
        raise
    except Exception:  # bad magic, garbled header: never fall back to pickle
        raise UserError(f"{name} is not a valid .npy file; {_NPY}") from None
    if dtype.hasobject:
        raise UserError(f"{name} holds Python objects (dtype {dtype}), which are never unpickled; "
                        f"{_NPY}")
    if dtype.kind not in "iuf":
        raise UserError(f"{name} has dtype {dtype}, expected real numbers; {_NPY}")
    if len(shape) != 2 or shape[1] != 2:
        hint = " (transpose it with .T)" if len(shape) == 2 and shape[0] == 2 else ""
        raise UserError(f"{name} has shape {shape}, expected (N, 2) with one row per point{hint}; "
                        f"{_NPY}")
    f.seek(0)
    try:
        arr = fmt.read_array(f, allow_pickle=False)
    except Exception:
        raise UserError(f"{name} is truncated or damaged (less data than its header says); "
                        f"{_NPY}") from None
    return np.asarray(arr, dtype=np.float64), []


def load_labelled_points(path: str | os.PathLike[str],
                         column: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """A .csv/.txt file of points with a class column: ((N, 2) float64, labels (N,) int64,
    class names).

    ``column`` is a header name or a 0-based index; the file has three fields a row, the
    other two x and y. Class names are the column's distinct values (sorted as numbers when
    they all are), labels their indices. Needs ``MIN_POINTS`` rows and two classes or more.
    """
    name, p = _label(path), Path(path).expanduser()
    fix = f"write one point per line as x,y and its class in column {column!r}"
    if p.suffix.lower() not in (".csv", ".txt"):
        raise UserError(f"--label-column needs a .csv or .txt file, not {name}; {fix}")
    if not p.is_file():
        raise UserError(f"data file not found: {name}")
    try:
        lines = p.read_bytes().decode("utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {name} as UTF-8 text ({e}); {fix}") from None
    rows = [(i, [f.strip().strip('"') for f in (s.split(",") if "," in s else s.split())])
            for i, line in enumerate(lines, 1) if (s := line.split("#", 1)[0].strip())]
    if not rows:
        raise UserError(f"{name} contains no points; {fix}")
    header = rows[0][1] if not column.isdigit() or not all(
        map(_is_float, (f for j, f in enumerate(rows[0][1]) if j != int(column)))) else None
    if column.isdigit():
        index = int(column)
    elif header is not None and column in header:
        index = header.index(column)
    else:
        raise UserError(f"{name} has no column named {column!r} (header: "
                        f"{', '.join(header or []) or 'none'}); give a header name or a "
                        "0-based column index")
    body = rows[1:] if header is not None else rows
    values, labels = [], []
    for lineno, fields in body:
        if len(fields) != 3 or index >= 3:
            raise UserError(f"expected 3 columns (x, y and the class) in {name} (line {lineno} "
                            f"has {len(fields)}, class column {index}); {fix}")
        xy = [f for j, f in enumerate(fields) if j != index]
        if not all(map(_is_float, xy)):
            raise UserError(f"non-numeric coordinate in {name} (line {lineno}: "
                            f"{', '.join(xy)[:60]}); {fix}")
        values.append([float(v) for v in xy])
        labels.append(fields[index])
    pts = np.array(values, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all() or len(pts) < MIN_POINTS:
        raise UserError(f"{name} needs at least {MIN_POINTS} finite points, has "
                        f"{int(np.isfinite(pts).all(axis=1).sum())}; {fix}")
    distinct = set(labels)
    names = tuple(sorted(distinct, key=float) if all(map(_is_float, distinct))
                  else sorted(distinct))
    if len(names) < 2:
        raise UserError(f"the class column {column!r} of {name} holds one class only "
                        f"({names[0]!r}); a conditional model needs two or more (or drop "
                        "--label-column)")
    index_of = {c: k for k, c in enumerate(names)}
    return pts, np.array([index_of[c] for c in labels], dtype=np.int64), names


@dataclass(frozen=True, eq=False)
class PointSet:
    """A named 2D data set: ``train`` (n, 2) and ``heldout`` (m, 2), both float64; with
    classes, ``train_labels`` (n,) and ``heldout_labels`` (m,) int64 in 0..classes-1 and
    ``class_names`` (else all None)."""

    name: str
    train: np.ndarray
    heldout: np.ndarray
    train_labels: np.ndarray | None = None
    heldout_labels: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None


def _need_int(what: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise UserError(f"{what} must be an integer of at least {low}, got {value!r}; "
                        f"pass a whole number >= {low}")


def resolve(source: str, n: int, seed: int, heldout: int = 4000, label_column: str = "",
            font: str = "") -> PointSet:
    """Turn a built-in name, a picture, ``text:WORD`` or a file path into a :class:`PointSet`.

    Built-ins, pictures and words (``data.shapes``: points drawn from the dark pixels; ``font``
    for a word): ``n`` training and ``heldout`` held-out points from two independent streams
    spawned from ``seed`` (so the held-out set does not change with ``n``), with their
    labels for the shapes in :data:`LABELLED`. Files: rows are shuffled with ``seed`` and
    ``max(2, min(heldout, N // 5))`` are held out, the rest train (``n`` is ignored for
    files); ``label_column`` names a class column (:func:`load_labelled_points`).
    """
    source = os.fspath(source)
    _need_int("seed", seed, 0)
    _need_int("heldout", heldout, 2)
    if font and not source.startswith(shapes.TEXT):
        raise UserError("--font applies to text:WORD data only; drop it")
    if source in TOY2D or shapes.is_shape(source):
        if label_column:
            raise UserError(f"--label-column applies to a .csv/.txt file; {source} brings its "
                            "own labels" + ("" if source in LABELLED else " (none)"))
        _need_int("n", n, 2)
        train_ss, held_ss = np.random.SeedSequence(int(seed)).spawn(2)
        train_rng, held_rng = np.random.default_rng(train_ss), np.random.default_rng(held_ss)
        if source in LABELLED:
            (x, y), (xh, yh) = LABELLED[source](n, train_rng), LABELLED[source](heldout, held_rng)
            return PointSet(source, x, xh, y, yh, CLASS_NAMES[source])
        if source in TOY2D:
            name, gen = source, TOY2D[source]
        else:
            name, dark = shapes.darkness_of(source, font)
            gen = lambda k, rng: shapes.sample_picture(dark, k, rng)  # noqa: E731
        return PointSet(name, gen(n, train_rng), gen(heldout, held_rng))
    p = Path(source)
    if not (p.suffix or "/" in source or os.sep in source or p.exists()):
        raise UserError(f"unknown dataset {source!r}; choose one of: {', '.join(TOY2D)} "
                        "or give a .csv/.txt/.npy path")
    if label_column:
        pts, labels, names = load_labelled_points(source, label_column)
    else:
        pts, labels, names = load_points(source), None, None
    k = max(2, min(heldout, len(pts) // 5))
    order = np.random.default_rng(int(seed)).permutation(len(pts))
    if labels is None:
        return PointSet(p.name, pts[order[k:]], pts[order[:k]])
    return PointSet(p.name, pts[order[k:]], pts[order[:k]], labels[order[k:]],
                    labels[order[:k]], names)
