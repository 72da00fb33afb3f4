"""Sample-quality metrics checked against closed forms, scipy and brute-force double loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from ddpmlab.errors import UserError
from ddpmlab.metrics import (
    METRICS,
    energy_distance,
    evaluate,
    format_table,
    median_bandwidth,
    mmd,
    one_nn_accuracy,
    scores,
    wasserstein,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def norm(a: np.ndarray) -> float:
    return math.sqrt(sum(float(v) ** 2 for v in a))


# ---------------------------------------------------------------- Wasserstein


def test_w1_matches_scipy_in_1d_with_unequal_sizes():
    x, y = rng(1).normal(size=(50, 1)), rng(2).normal(1.0, 2.0, size=(37, 1))
    want = stats.wasserstein_distance(x.ravel(), y.ravel())
    assert wasserstein(x, y, p=1) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_w2_matches_sorted_matching_in_1d():
    x, y = rng(3).normal(size=(60, 1)), rng(4).exponential(size=(60, 1))
    want = np.sqrt(np.mean((np.sort(x.ravel()) - np.sort(y.ravel())) ** 2))
    assert wasserstein(x, y, p=2) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_translation_costs_exactly_the_shift(p):
    # Identity matching is optimal: W1 by Kantorovich-Rubinstein with f(z) = c.z/|c|,
    # W2 because the cross term -2 c.(x_i - x_sigma(i)) sums to 0 over any permutation.
    x = rng(5).normal(size=(80, 2))
    c = np.array([0.3, -1.2])
    assert wasserstein(x, x + c, p=p) == pytest.approx(norm(c), rel=1e-9)


@pytest.mark.parametrize("p", [1, 2])
def test_distance_to_itself_is_zero(p):
    x = rng(6).normal(size=(70, 2)) * 100 + 1000  # large offset: no cancellation error
    assert wasserstein(x, x.copy(), p=p) == 0.0
    assert wasserstein(x, x[rng(7).permutation(70)], p=p) == 0.0


def test_w1_of_two_points_against_one_by_hand():
    # mass 1/2 at (0,0) and (2,0) moved onto (1,0): every unit travels 1.
    two = np.array([[0.0, 0], [2, 0]])
    assert wasserstein(two, np.array([[1.0, 0], [1, 0]])) == 1.0
    assert wasserstein(two, np.array([[1.0, 0]] * 3)) == pytest.approx(1.0, rel=1e-12)
    assert wasserstein(two, np.array([[1.0, 0]] * 3), p=2) == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------- energy distance


def brute_energy(x: np.ndarray, y: np.ndarray) -> float:
    n, m = len(x), len(y)
    exy = sum(norm(a - b) for a in x for b in y) / (n * m)
    exx = sum(norm(x[i] - x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    eyy = sum(norm(y[i] - y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return 2 * exy - exx - eyy


def test_energy_matches_brute_force_double_loop():
    x, y = rng(8).normal(size=(7, 2)), rng(9).normal(0.5, 1.0, size=(5, 2))
    assert energy_distance(x, y) == pytest.approx(brute_energy(x, y), rel=1e-12)


def test_energy_relates_to_scipy_v_statistic_in_1d():
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) with V-statistic means (divide by n^2);
    # the U-statistic divides the same sums by n(n-1) instead.
    x, y = rng(10).normal(size=40), rng(11).normal(0.3, 1.5, size=25)
    sxx, syy = np.abs(x[:, None] - x).sum(), np.abs(y[:, None] - y).sum()
    n, m = len(x), len(y)
    want = (
        stats.energy_distance(x, y) ** 2
        + sxx / n**2
        - sxx / (n * (n - 1))
        + syy / m**2
        - syy / (m * (m - 1))
    )
    assert energy_distance(x[:, None], y[:, None]) == pytest.approx(want, rel=1e-10)


def test_energy_unbiased_under_the_null_and_positive_under_a_shift():
    null = np.array(
        [
            energy_distance(rng(s).normal(size=(200, 2)), rng(s + 100).normal(size=(200, 2)))
            for s in range(8)
        ]
    )
    assert abs(null.mean()) < 3 * null.std(ddof=1) / math.sqrt(len(null))
    assert (null < 0).any()  # the unbiased estimate does go negative: documented behaviour
    shifted = energy_distance(rng(50).normal(size=(200, 2)), rng(51).normal(size=(200, 2)) + 1.0)
    assert shifted > 10 * null.std(ddof=1)


# ---------------------------------------------------------------- MMD


def brute_mmd(x: np.ndarray, y: np.ndarray, h: float) -> float:
    def k(a, b):
        return math.exp(-(norm(a - b) ** 2) / (2 * h * h))

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(a, b) for a in x for b in y) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_matches_brute_force_double_loop():
    x, y = rng(12).normal(size=(6, 2)), rng(13).normal(0.7, 1.0, size=(9, 2))
    assert mmd(x, y, bandwidth=0.8) == pytest.approx(brute_mmd(x, y, 0.8), rel=1e-12)


def test_median_heuristic_is_median_of_pooled_pairwise_distances():
    x, y = rng(14).normal(size=(6, 2)), rng(15).normal(size=(5, 2))
    z = np.vstack([x, y])
    h = float(np.median([norm(z[i] - z[j]) for i in range(11) for j in range(i + 1, 11)]))
    assert median_bandwidth(z) == pytest.approx(h, rel=1e-12)
    assert mmd(x, y) == pytest.approx(brute_mmd(x, y, h), rel=1e-12)


def test_mmd_near_zero_for_same_law_and_grows_with_shift():
    null = np.array(
        [
            mmd(rng(s).normal(size=(200, 2)), rng(s + 100).normal(size=(200, 2)), 1.0)
            for s in range(8)
        ]
    )
    assert abs(null.mean()) < 3 * null.std(ddof=1) / math.sqrt(len(null))
    x, y = rng(60).normal(size=(200, 2)), rng(61).normal(size=(200, 2))
    vals = [mmd(x, y + np.array([s, 0.0]), bandwidth=1.0) for s in (0.5, 1.0, 2.0)]
    assert vals[0] > 3 * null.std(ddof=1)  # a half-sigma shift is already detectable at n=200
    assert vals[2] > 10 * null.std(ddof=1)
    assert all(a < b for a, b in itertools.pairwise(vals))


def test_mmd_rejects_nonpositive_bandwidth():
    with pytest.raises(UserError, match="bandwidth"):
        mmd(rng(0).normal(size=(5, 2)), rng(1).normal(size=(5, 2)), bandwidth=0.0)


# ---------------------------------------------------------------- 1-NNA


def test_1nna_is_half_for_same_gaussian():
    acc = one_nn_accuracy(rng(16).normal(size=(1000, 2)), rng(17).normal(size=(1000, 2)))
    assert abs(acc - 0.5) < 0.05


def test_1nna_is_one_for_separated_clouds():
    x = rng(18).normal(size=(300, 2))
    assert one_nn_accuracy(x, rng(19).normal(size=(200, 2)) + 20.0) == 1.0


def test_1nna_hand_example_with_within_sample_duplicate():
    # x0, x1 duplicates -> each other (right); x2 <-> y0 at 0.1 (both wrong);
    # y1=(5,5): |y1-y0| = 7.0007 < 7.071 = |y1-x2| = |y1-x0| -> y0 (right). 3/5.
    x = np.array([[0.0, 0], [0, 0], [10, 0]])
    y = np.array([[10.0, 0.1], [5, 5]])
    assert one_nn_accuracy(x, y) == pytest.approx(3 / 5)


def test_1nna_excludes_self_by_index_across_labels():
    # x0 == y0: each one's nearest OTHER point is the other copy (wrong label, both wrong).
    # x1=(10,0) <-> x2=(10,-1) right; y1=(10,3) -> x1 at 3 wrong. 2/5.
    x = np.array([[0.0, 0], [10, 0], [10, -1]])
    y = np.array([[0.0, 0], [10, 3]])
    assert one_nn_accuracy(x, y) == pytest.approx(2 / 5)


def test_1nna_triple_duplicates_where_self_may_not_be_returned():
    x = np.array([[1.0, 1.0]] * 3)
    y = np.array([[5.0, 0], [5, 1]])
    assert one_nn_accuracy(x, y) == 1.0


# ---------------------------------------------------------------- evaluate / table


def test_evaluate_keys_floor_and_ratio_in_1d():
    samples = rng(20).normal(0.5, 1.0, size=(100, 1))
    real, real_ref = rng(21).normal(size=(100, 1)), rng(22).normal(size=(100, 1))
    res = evaluate(samples, real, real_ref)
    assert list(res) == list(METRICS)  # every metric, in the table's order
    for row in res.values():
        assert set(row) == {"value", "floor", "ratio"}
    # floor is the real pair, value the model pair, against scipy as an outside reference
    assert res["w1"]["floor"] == pytest.approx(
        stats.wasserstein_distance(real_ref[:, 0], real[:, 0])
    )
    assert res["w1"]["value"] == pytest.approx(
        stats.wasserstein_distance(samples[:, 0], real[:, 0])
    )
    assert res["w2"]["ratio"] == pytest.approx(res["w2"]["value"] / res["w2"]["floor"])
    assert res["w1"]["ratio"] > 1.0
    assert res["energy"]["ratio"] is None and res["mmd"]["ratio"] is None
    assert res["1nna"]["ratio"] is None
    # MMD uses the median heuristic on `real` for both value and floor
    h = median_bandwidth(real)
    assert res["mmd"]["floor"] == pytest.approx(mmd(real_ref, real, bandwidth=h), rel=1e-12)
    swapped = evaluate(real_ref, real, samples)
    for name in METRICS:
        assert swapped[name]["value"] == pytest.approx(res[name]["floor"])


def good(n: int = 10, d: int = 2, seed: int = 0) -> np.ndarray:
    return rng(seed).normal(size=(n, d))


@pytest.mark.parametrize(
    ("samples", "real", "real_ref", "match"),
    [
        (np.where(np.arange(20).reshape(10, 2) == 3, np.nan, good()), good(), good(), "NaN"),
        (good(), good(10, 3), good(), "columns"),
        (good(1), good(), good(1), "row"),
        (good().ravel(), good(), good(), "2-D"),
        (good(), good(), good(12), "rows"),
        (good(), [["a", "b"]] * 3, good(), "numeric"),
    ],
)
def test_evaluate_rejects_bad_input(samples, real, real_ref, match):
    with pytest.raises(UserError, match=match) as info:
        evaluate(samples, real, real_ref)
    assert "\n" not in str(info.value)


def test_format_table_names_every_metric_and_the_sample_size():
    res = evaluate(good(50, seed=1), good(50, seed=2), good(50, seed=3))
    text = format_table(res, 50)
    for name in METRICS:
        assert name in text
    assert "n = 50" in text and "0.5" in text
    lines = text.splitlines()
    assert len(lines) == 2 + len(METRICS) + 2  # title, header, one row per metric, footnote
    rows = lines[1:-2]
    assert len({len(line) for line in rows}) == 1  # fixed-width columns
    assert rows[-1].split()[-1] == "-"


def test_format_table_says_why_energy_and_mmd_can_be_negative():
    # A same-law pair: the unbiased energy and MMD of the model row and the floor sit near 0.
    res = evaluate(good(50, seed=1), good(50, seed=2), good(50, seed=3))
    lines = format_table(res, 50).splitlines()
    assert lines[-2].startswith("note:") and max(map(len, lines[-2:])) <= 80
    note = " ".join(" ".join(lines[-2:]).split())
    for words in ("energy", "mmd", "unbiased", "scatter around 0", "below 0", "below the floor",
                  "normal"):
        assert words in note
    without = {k: v for k, v in res.items() if k in ("w1", "1nna")}
    assert "unbiased" not in format_table(without, 50)  # no note where nothing needs it


def test_a_given_floor_is_used_as_is_and_equals_the_computed_one():
    samples, real, real_ref = good(60, seed=4), good(60, seed=5), good(60, seed=6)
    floor = scores(real_ref, real)
    assert evaluate(samples, real, floor=floor) == evaluate(samples, real, real_ref)
    shifted = {name: 2 * v for name, v in floor.items()}  # a floor is not recomputed
    assert evaluate(samples, real, floor=shifted)["w1"]["floor"] == 2 * floor["w1"]
    with pytest.raises(ValueError, match="exactly one"):
        evaluate(samples, real)
