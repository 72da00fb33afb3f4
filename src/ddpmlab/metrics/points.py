"""Sample-quality measures between two 2-D point sets, each printed beside its floor.

All functions take ``x`` of shape (n, d) and ``y`` of shape (m, d) and return one float.

* ``w1`` / ``w2``: exact Wasserstein distances W_1 and W_2 (optimal transport with uniform
  weights). The cost of moving one cloud onto the other, in the data's own units.
* ``energy``: unbiased energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (Székely & Rizzo 2013).
  Zero in expectation iff the distributions agree. Being unbiased (U-statistics, no i = j
  terms), the estimate scatters around 0 for equal distributions: it is often negative
  there, and a floor (real vs real) at or below 0 is normal, not a bug.
* ``mmd``: unbiased squared maximum mean discrepancy with a Gaussian kernel (Gretton et al.
  2012). Same reading as energy: it scatters around 0 for equal distributions, so a value
  or floor at or below 0, or a model value below its floor, is normal sampling noise.
* ``1nna``: leave-one-out 1-nearest-neighbour accuracy (Lopez-Paz & Oquab 2017; Xu et al.
  2018). 0.5 means the two sets cannot be told apart, 1.0 means fully separable. 0.5 is the
  ideal only when n == m.

Why a floor: every estimate above is biased by the finite sample size (W_p of two samples of
the *same* distribution is far from 0 at n = 2000 in 2-D). :func:`evaluate` therefore scores
a second, independent real sample against the real one at the same n; a perfect model scores
about that floor, and for W_p the ratio value / floor reads "1.0 = as good as real data".
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import ot
from scipy.spatial.distance import cdist, pdist
from sklearn.neighbors import NearestNeighbors

from ddpmlab.errors import UserError

_BLOCK = 2**22  # pairwise entries per chunk: 4M float64 = 32 MB, keeps n = 5000 well under 500 MB
_MEDIAN_MAX = 2000  # median heuristic uses at most this many points (fixed-seed subsample)


def _check(name: str, a: np.ndarray) -> np.ndarray:
    """Return ``a`` as a float64 (k, d) array or raise UserError naming ``name``."""
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{name} is not a numeric array; pass an (n, d) float array") from None
    if a.ndim != 2:
        raise UserError(f"{name} must be 2-D (points, dims), got shape {a.shape}; reshape it")
    if a.shape[0] < 2:
        raise UserError(f"{name} has {a.shape[0]} row(s); pass at least 2 points")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{name} contains NaN or inf; drop or fix those points first")
    return a


def _pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a pair of point sets (n, d) and (m, d)."""
    x, y = _check("x", x), _check("y", y)
    if x.shape[1] != y.shape[1]:
        raise UserError(f"x has {x.shape[1]} columns but y has {y.shape[1]}; use the same dims")
    return x, y


def _pair_sum(a: np.ndarray, b: np.ndarray, metric: str, fn: Callable | None = None) -> float:
    """Sum of fn(dist(a_i, b_j)) over all (i, j), computed in row chunks. a: (n, d), b: (m, d)."""
    step = max(1, _BLOCK // len(b))
    total = 0.0
    for i in range(0, len(a), step):
        block = cdist(a[i : i + step], b, metric=metric)  # exact, diagonal of cdist(a, a) is 0
        total += float((block if fn is None else fn(block)).sum())
    return total


def wasserstein(x: np.ndarray, y: np.ndarray, p: int = 1) -> float:
    """Exact W_p between the uniform empirical measures on x (n, d) and y (m, d); n != m is fine."""
    x, y = _pair(x, y)
    if p < 1:
        raise UserError(f"p must be >= 1, got {p}; use p=1 or p=2")
    # scipy cdist, not ot.dist: ot.dist's |a|^2+|b|^2-2ab trick leaves ~1e-5 errors at scale 1e3.
    cost = cdist(x, y, "sqeuclidean") if p == 2 else cdist(x, y, "euclidean") ** p
    # W_p^p = min_{P in U(a,b)} <P, D^p> (Peyré & Cuturi 2019, Comp. OT, Eq. 2.11, Prop. 2.2)
    wp = ot.emd2(ot.unif(len(x)), ot.unif(len(y)), cost, numItermax=10**7)
    return float(max(wp, 0.0)) ** (1.0 / p)


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased energy distance between x (n, d) and y (m, d), a float.

    For x and y from the same law the estimate scatters around 0 (unbiased: its mean is 0), so
    negative values are expected there; only values well above the real-vs-real floor matter.
    """
    x, y = _pair(x, y)
    n, m = len(x), len(y)
    exy = _pair_sum(x, y, "euclidean") / (n * m)  # E|X-Y|
    exx = _pair_sum(x, x, "euclidean") / (n * (n - 1))  # E|X-X'|, U-statistic: diagonal is 0
    eyy = _pair_sum(y, y, "euclidean") / (m * (m - 1))  # E|Y-Y'|, U-statistic: diagonal is 0
    return 2.0 * exy - exx - eyy  # Székely & Rizzo 2013, Def. 1: E = 2E|X-Y| - E|X-X'| - E|Y-Y'|


def median_bandwidth(x: np.ndarray) -> float:
    """Median pairwise Euclidean distance of x (k, d) (Gretton et al. 2012, Sec. 8 heuristic).

    Above 2000 points a fixed-seed subsample of 2000 is used (2M pairs) to bound memory.
    """
    x = _check("x", x)
    if len(x) > _MEDIAN_MAX:
        x = x[np.random.default_rng(0).choice(len(x), _MEDIAN_MAX, replace=False)]
    h = float(np.median(pdist(x)))
    if h <= 0.0:
        raise UserError("median pairwise distance is 0 (mostly duplicate points); pass bandwidth")
    return h


def mmd(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD^2 between x (n, d) and y (m, d), Gaussian kernel of width ``bandwidth``.

    ``bandwidth=None`` uses :func:`median_bandwidth` of the pooled sample. For x and y from
    the same law the estimate scatters around 0 (unbiased: its mean is 0), so it is often < 0
    there; only values well above the real-vs-real floor matter.
    """
    x, y = _pair(x, y)
    h = median_bandwidth(np.vstack([x, y])) if bandwidth is None else float(bandwidth)
    if not h > 0.0:
        raise UserError(f"bandwidth must be > 0, got {bandwidth}; pass a positive float or None")

    def kern(d2: np.ndarray) -> np.ndarray:  # k(a, b) = exp(-|a-b|^2 / (2 h^2)) (Gaussian RBF)
        d2 *= -0.5 / h**2
        return np.exp(d2, out=d2)

    n, m = len(x), len(y)
    kxx = (_pair_sum(x, x, "sqeuclidean", kern) - n) / (n * (n - 1))  # sum_{i!=j}; k(a, a) = 1
    kyy = (_pair_sum(y, y, "sqeuclidean", kern) - m) / (m * (m - 1))  # sum_{i!=j}; k(a, a) = 1
    kxy = _pair_sum(x, y, "sqeuclidean", kern) / (n * m)
    return kxx + kyy - 2.0 * kxy  # Gretton et al. 2012 JMLR, Lemma 6, Eq. (3): MMD_u^2


def one_nn_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out 1-NN accuracy of telling x (n, d) from y (m, d): 0.5 ideal (n == m), 1 worst.

    Each point takes the label of its nearest *other* point; ties between equidistant
    neighbours are broken by sklearn's search order.
    """
    x, y = _pair(x, y)
    z = np.vstack([x, y])
    label = np.r_[np.zeros(len(x), dtype=bool), np.ones(len(y), dtype=bool)]
    idx = NearestNeighbors(n_neighbors=2).fit(z).kneighbors(z, return_distance=False)
    # Exclude self by index, not position: with duplicates the other copy may come first.
    nearest = np.where(idx[:, 0] == np.arange(len(z)), idx[:, 1], idx[:, 0])
    return float(np.mean(label[nearest] == label))  # Lopez-Paz & Oquab 2017; Xu et al. 2018 (1-NN)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "w1": partial(wasserstein, p=1),
    "w2": partial(wasserstein, p=2),
    "energy": energy_distance,
    "mmd": mmd,
    "1nna": one_nn_accuracy,
}
_RATIO = ("w1", "w2")  # only strictly positive, distance-valued metrics get a ratio


Scores = dict[str, float]  # metric name -> value, in METRICS order
Result = dict[str, dict[str, float | None]]  # metric name -> value, floor and ratio


def scores(x: np.ndarray, real: np.ndarray) -> Scores:
    """Every metric of ``x`` (n, d) against ``real`` (k, d), in :data:`METRICS` order.

    MMD's bandwidth is the median heuristic on ``real``, so that a model's scores and the
    floor's, both against ``real``, use one kernel.
    """
    x, real = _check("x", x), _check("real", real)
    if x.shape[1] != real.shape[1]:
        raise UserError(f"x has {x.shape[1]} columns, real {real.shape[1]}; use the same dims")
    fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = dict(
        METRICS, mmd=partial(mmd, bandwidth=median_bandwidth(real)))
    return {name: fn(x, real) for name, fn in fns.items()}


def evaluate(samples: np.ndarray, real: np.ndarray, real_ref: np.ndarray | None = None, *,
             floor: Scores | None = None) -> Result:
    """Score model ``samples`` (n, d) against ``real`` (k, d), beside the real-vs-real floor.

    The floor is ``scores(real_ref, real)``: ``real_ref`` (n, d) is a second real sample,
    independent of ``real`` and of the same size as ``samples``. It depends on the real sets
    only, so a caller scoring several models against one pair passes it once computed as
    ``floor`` instead of ``real_ref``. Returns ``{metric: {"value", "floor", "ratio"}}`` in
    :data:`METRICS` order; ratio = value / floor for w1 and w2, None otherwise.
    """
    if (real_ref is None) == (floor is None):
        raise ValueError("pass exactly one of real_ref and floor")
    samples, real = _check("samples", samples), _check("real", real)
    if real.shape[1] != samples.shape[1]:
        raise UserError(f"real has {real.shape[1]} columns, samples {samples.shape[1]}; "
                        "use the same dims")
    if real_ref is not None:
        real_ref = _check("real_ref", real_ref)
        if real_ref.shape != samples.shape:
            raise UserError(f"real_ref has {real_ref.shape[0]} rows of {real_ref.shape[1]}, "
                            f"samples {samples.shape[0]} of {samples.shape[1]}; "
                            "use equal n and dims")
        floor = scores(real_ref, real)
    assert floor is not None
    out: Result = {}
    for name, value in scores(samples, real).items():
        ratio = value / floor[name] if name in _RATIO and floor[name] > 0 else None
        out[name] = {"value": value, "floor": floor[name], "ratio": ratio}
    return out


def average(results: list[Result], ratio_names: tuple[str, ...] = _RATIO) -> Result:
    """Mean value and mean floor over :func:`evaluate` results of independent draws.

    Averaging k draws of the samples and k independent real pairs divides the variance of
    both by k; the ratio is recomputed from the means for the metrics in ``ratio_names``
    (w1 and w2 here; images pass their own).
    """
    out: dict[str, dict[str, float | None]] = {}
    for name in results[0]:
        value = float(np.mean([r[name]["value"] for r in results]))
        floor = float(np.mean([r[name]["floor"] for r in results]))
        ratio = value / floor if name in ratio_names and floor > 0 else None
        out[name] = {"value": value, "floor": floor, "ratio": ratio}
    return out


# Printed under the table: without it a negative energy or MMD (even a negative floor) looks
# like a bug to a reader who has not met unbiased estimators.
UNBIASED_NOTE = ("note: energy and mmd are unbiased estimates: for equal distributions they\n"
                 "      scatter around 0, so values at or below 0, or below the floor, are normal")


def format_table(result: dict[str, dict[str, float | None]], n: int, repeats: int = 1) -> str:
    """Fixed-width plain-text table of an :func:`evaluate` result at sample size ``n``.

    A footnote (:data:`UNBIASED_NOTE`) under the rows says why energy and mmd may be <= 0.
    """
    mean = f", mean of {repeats} draws" if repeats > 1 else ""
    lines = [
        f"sample quality at n = {n} points per set{mean} (floor = real vs independent real; "
        "1-NNA ideal is 0.5)",
        f"{'metric':<8}{'model':>12}{'floor':>12}{'ratio':>10}",
    ]
    for name, row in result.items():
        ratio = "-" if row.get("ratio") is None else f"{row['ratio']:.4g}"
        lines.append(f"{name:<8}{row['value']:>12.4g}{row['floor']:>12.4g}{ratio:>10}")
    if "energy" in result or "mmd" in result:
        lines += UNBIASED_NOTE.splitlines()
    return "\n".join(lines)
