"""Image metrics: the shipped classifiers, closed forms, brute force, known cases and floors."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch

from ddpmlab import metrics
from ddpmlab.data.images import heldout_halves, resolve_images, split_indices
from ddpmlab.errors import UserError
from ddpmlab.metrics import images as im
from ddpmlab.metrics import points
from ddpmlab.metrics.classifier import (
    SHIPPED,
    ClassifierConfig,
    LeNet,
    accuracy,
    embed,
    load_classifier,
    save_classifier,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def digits():
    return resolve_images("digits", seed=0)


def spd(d: int, seed: int) -> np.ndarray:
    a = rng(seed).normal(size=(d, d))
    return a @ a.T / d + 0.5 * np.eye(d)


# ---------------------------------------------------------------- the package split


def test_points_metrics_are_reexported_unchanged():
    for name in ("evaluate", "scores", "average", "format_table", "one_nn_accuracy", "mmd",
                 "wasserstein", "energy_distance", "median_bandwidth", "METRICS", "Result"):
        assert getattr(metrics, name) is getattr(points, name)


# ---------------------------------------------------------------- shipped classifiers


@pytest.mark.parametrize(("name", "target"), [("digits", 0.97), ("mnist", 0.95)])
def test_shipped_classifier_heldout_accuracy(name, target):
    model, meta = load_classifier(name)
    data = resolve_images(name, seed=meta["split_seed"])
    acc = accuracy(model, data.heldout, data.heldout_labels)
    assert acc >= target
    assert acc == pytest.approx(meta["heldout_accuracy"], abs=1e-9)  # the file tells the truth
    assert meta["set"] == name and meta["split_seed"] == 0
    assert tuple(meta["image_shape"]) == data.shape == model.config.image_shape
    assert meta["train_images"] == len(data.train)
    assert not model.training


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_are_small_float32_safetensors(name):
    from importlib import resources

    raw = resources.files("ddpmlab.metrics").joinpath("weights", f"{name}.safetensors").read_bytes()
    assert len(raw) < 1_000_000
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])  # safetensors layout
    meta = json.loads(header.pop("__metadata__")["meta"])
    assert meta["format"] == "ddpmlab-classifier" and meta["settings"]["epochs"] > 0
    assert {t["dtype"] for t in header.values()} == {"F32"}


def test_classifier_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    model = LeNet(ClassifierConfig((1, 8, 8), classes=3, channels=(4, 4), features=8)).eval()
    path = tmp_path / "c.safetensors"
    save_classifier(path, model, {"set": "toy"})
    loaded, meta = load_classifier(path)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    assert torch.equal(loaded(x), model(x)) and meta["set"] == "toy"
    h, p = embed(loaded, x)
    assert h.shape == (5, 8) and p.shape == (5, 3) and np.allclose(p.sum(1), 1)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(UserError, match="not a ddpmlab classifier"):
        load_classifier(tmp_path / "junk.safetensors")
    with pytest.raises(UserError, match="no classifier is shipped for 'cifar10'.*digits, mnist"):
        load_classifier("cifar10")
    with pytest.raises(UserError, match="cannot read classifier"):
        load_classifier(tmp_path / "missing.safetensors")


# ---------------------------------------------------------------- Fréchet distance


def test_gaussian_frechet_matches_sqrtm_and_diagonal_closed_form():
    c1, c2, mu1, mu2 = spd(6, 1), spd(6, 2), rng(3).normal(size=6), rng(4).normal(size=6)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    want = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(c1 + c2 - 2 * root))
    assert im.gaussian_frechet(mu1, c1, mu2, c2) == pytest.approx(want, rel=1e-9)
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])  # commuting: sum (va - vb)^2
    want = float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum() + 3 * 1.0)
    assert im.gaussian_frechet(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == (
        pytest.approx(want, rel=1e-12))


def test_frechet_distance_of_gaussian_draws_is_the_closed_form():
    d, n = 8, 2000
    c1, c2, mu1, mu2 = spd(d, 0), spd(d, 1), np.zeros(d), np.full(d, 0.5)
    true = im.gaussian_frechet(mu1, c1, mu2, c2)  # 4.5; 200 repeats: sd 0.13, bias +0.05
    x, y = rng(5).multivariate_normal(mu1, c1, n), rng(6).multivariate_normal(mu2, c2, n)
    assert im.frechet_distance(x, y) == pytest.approx(true, abs=0.6)
    assert im.frechet_distance(x, y) == pytest.approx(im.frechet_distance(y, x), rel=1e-9)
    assert im.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    same = rng(7).multivariate_normal(mu1, c1, n)
    assert im.frechet_distance(x, same) < 0.1  # 100 repeats: mean 0.03, max 0.06


# ---------------------------------------------------------------- KID


def test_kid_matches_a_double_loop():
    x, y = rng(1).normal(size=(12, 3)), rng(2).normal(0.5, 1.0, size=(9, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    kxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(12), 2)) / (12 * 11)
    kyy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(9), 2)) / (9 * 8)
    kxy = sum(k(a, b) for a in x for b in y) / (12 * 9)
    assert im.kid(x, y) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


def test_kid_is_about_zero_for_one_distribution():
    x, y = rng(1).normal(size=(1000, 8)), rng(2).normal(size=(1000, 8))
    shifted = rng(3).normal(0.3, 1.0, size=(1000, 8))
    same, apart = im.kid(x, y), im.kid(x, shifted)
    assert abs(same) < 0.05 * apart
    assert apart > 0


# ---------------------------------------------------------------- PRDC


def test_prdc_of_identical_sets():
    x = rng(1).normal(size=(300, 4))
    got = im.prdc(x, x.copy(), k=5)
    assert got["precision"] == got["recall"] == got["coverage"] == 1.0
    # each real ball holds its centre and its k neighbours: density = (k + 1) / k
    assert got["density"] == pytest.approx(6 / 5)


def test_prdc_of_disjoint_shifted_sets_is_zero():
    x, y = rng(1).normal(size=(300, 4)), rng(2).normal(10.0, 1.0, size=(300, 4))
    assert im.prdc(x, y) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_matches_a_brute_force_definition():
    real, fake, k = rng(1).normal(size=(40, 3)), rng(2).normal(0.4, 1.2, size=(30, 3)), 3

    def radii(a):
        return np.array([sorted(np.linalg.norm(a - p, axis=1))[k] for p in a])

    rr, rf = radii(real), radii(fake)
    inside = [[np.linalg.norm(f - r) <= rr[i] for i, r in enumerate(real)] for f in fake]
    want = {
        "precision": np.mean([any(row) for row in inside]),
        "recall": np.mean([any(np.linalg.norm(r - f) <= rf[j] for j, f in enumerate(fake))
                           for r in real]),
        "density": sum(map(sum, inside)) / (k * len(fake)),
        "coverage": np.mean([any(inside[j][i] for j in range(len(fake)))
                             for i in range(len(real))]),
    }
    got = im.prdc(real, fake, k=k)
    assert got == pytest.approx(want, abs=1e-12)


# ---------------------------------------------------------------- memorisation


def test_memorised_is_one_for_copies_and_zero_for_heldout(digits):
    train = digits.train
    assert im.memorised_fraction(train[:200], train) == 1.0
    near = np.clip(train[200:400] + rng(1).normal(0, 0.02, train[:200].shape), -1, 1)
    assert im.memorised_fraction(near.astype(np.float32), train) == 1.0
    assert im.memorised_fraction(digits.heldout, train) == 0.0  # every d1 / d2 >= 0.5 here


def test_nearest_train_distances_are_exact():
    train = rng(1).uniform(-1, 1, size=(50, 1, 4, 4)).astype(np.float32)
    x = np.concatenate([train[:3], rng(2).uniform(-1, 1, size=(4, 1, 4, 4))]).astype(np.float32)
    d1, d2 = im.nearest_train(x, train)
    brute = np.sort(np.linalg.norm(x.reshape(7, 1, -1) - train.reshape(1, 50, -1), axis=2), 1)
    assert np.array_equal(d1[:3], np.zeros(3))
    assert np.allclose(d1, brute[:, 0]) and np.allclose(d2, brute[:, 1])


# ---------------------------------------------------------------- evaluate_images


def test_real_vs_real_is_at_its_floor(digits):
    a, b = heldout_halves(digits, seed=0)
    real, other = digits.heldout[a], digits.heldout[b]
    q, p = split_indices(digits.heldout_labels[b], 125, 0)  # two disjoint real sets of 125
    r = im.evaluate_images(other[p], real, other[q], digits.train, "digits")
    assert list(r) == list(im.WITH_CLASSIFIER)
    assert 0.6 < r["fd"]["ratio"] < 1.6
    for name in ("precision", "recall", "density", "coverage", "1nna", "1nna_px", "confident"):
        assert abs(r[name]["value"] - r[name]["floor"]) < 0.15, name
    assert r["class_tv"]["value"] < 0.1 and r["memorised"]["value"] == 0.0
    same = im.evaluate_images(other[q], real, other[q], digits.train, "digits")
    assert all(row["value"] == row["floor"] for row in same.values())
    assert same["fd"]["ratio"] == 1.0


def test_bad_samples_are_far_above_the_floor(digits):
    a, b = heldout_halves(digits, seed=0)
    noisy = np.clip(digits.heldout[b] + rng(1).normal(0, 0.5, digits.heldout[b].shape), -1, 1)
    r = im.evaluate_images(noisy.astype(np.float32), digits.heldout[a], digits.heldout[b],
                           digits.train, "digits")
    assert r["fd"]["ratio"] > 2 and r["kid"]["value"] > r["kid"]["floor"]
    assert r["1nna"]["value"] > r["1nna"]["floor"] + 0.1


def test_without_classifier_or_train(digits):
    a, b = heldout_halves(digits, seed=0)
    x, real = torch.from_numpy(digits.heldout[b].copy()), digits.heldout[a]
    r = im.evaluate_images(x, real, digits.heldout[b], digits.train)  # torch input accepted
    assert list(r) == list(im.WITHOUT_CLASSIFIER)
    floor = im.image_scores(digits.heldout[b], real)  # no train: no memorised
    assert "memorised" not in floor and "fd" not in floor
    assert list(im.evaluate_images(x, real, floor=floor)) == list(floor)


def test_table_and_average_keep_every_row(digits):
    a, b = heldout_halves(digits, seed=0)
    r = im.evaluate_images(digits.heldout[b], digits.heldout[a], digits.heldout[b],
                           digits.train, load_classifier("digits"))
    mean = im.average_images([r, r])
    assert mean["fd"]["ratio"] == 1.0 and list(mean) == list(r)
    table = im.format_image_table(mean, 250, repeats=2)
    assert "n = 250 images per set, mean of 2 draws" in table
    rows = table.splitlines()[2 : 2 + len(r)]
    assert [line.split()[0] for line in rows] == list(r)
    assert all(len(line) == len(rows[0]) for line in rows)
    assert "memorised" in table.splitlines()[-1]


@pytest.mark.parametrize(("bad", "match"), [
    (np.zeros((10, 8, 8), np.float32), r"expected \(N, C, H, W\)"),
    (np.full((10, 1, 8, 8), 255.0, np.float32), r"outside the model range.*x / 127.5 - 1"),
    (np.full((10, 1, 8, 8), -1.5, np.float32), r"clip"),
    (np.full((10, 1, 8, 8), np.nan, np.float32), "NaN"),
    (np.zeros((3, 1, 8, 8), np.float32), "at least 6"),
    (np.zeros((10, 1, 4, 4), np.float32), r"differ in \(C, H, W\)"),
    ("abc", "not a numeric array"),
])
def test_bad_inputs_raise_one_line_user_errors(digits, bad, match):
    with pytest.raises(UserError, match=match) as e:
        im.image_scores(bad, digits.heldout[:50])
    assert "\n" not in str(e.value)


def test_mismatches_raise_user_errors(digits):
    x = digits.heldout[:20]
    with pytest.raises(UserError, match=r"classifier takes images \(1, 28, 28\)"):
        im.image_scores(x, digits.heldout[20:60], classifier="mnist")
    with pytest.raises(UserError, match="real_ref holds 30 images, samples 20"):
        im.evaluate_images(x, digits.heldout[20:60], digits.heldout[60:90])
    with pytest.raises(UserError, match="no classifier is shipped"):
        im.evaluate_images(x, digits.heldout[20:60], digits.heldout[60:80], classifier="faces")
    with pytest.raises(ValueError, match="exactly one"):
        im.evaluate_images(x, digits.heldout[20:60])
    assert math.isfinite(im.image_scores(x, digits.heldout[20:60])["kid_px"])


def test_pooled_class_tv_is_at_its_floor_for_real_images_and_high_for_one_class(digits):
    real, labels = digits.heldout, digits.heldout_labels
    rng = np.random.default_rng(1)
    perfect = real[rng.integers(0, len(real), 1000)]  # i.i.d. from the held-out law
    row = im.pooled_class_tv(perfect, real, "digits")
    assert row["ratio"] is None and 0.01 < row["floor"] < 0.06
    assert abs(row["value"] - row["floor"]) < 0.03
    ones = real[labels == 1][:100]
    assert im.pooled_class_tv(ones, real, "digits")["value"] > 0.8  # one class of ten
