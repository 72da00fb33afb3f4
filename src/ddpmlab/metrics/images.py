"""Sample quality of image sets (N, C, H, W) in [-1, 1], each metric printed beside its floor.

Feature-space metrics use a small classifier trained on the set's training split
(:mod:`ddpmlab.metrics.classifier`; shipped for digits and MNIST): h = its 64-dim penultimate
layer, p = its softmax. With ``classifier=None`` (a user's image folder) the same kernel and
neighbour metrics run on the pixels themselves (names ending ``_px``).

* ``fd``: Fréchet distance between Gaussians fitted to the two feature sets (FID's formula,
  Heusel et al. 2017, on this classifier's features instead of Inception's: numbers are not
  comparable with published FIDs). Biased upwards at finite n; read it against its floor.
* ``kid``: unbiased squared MMD with the cubic polynomial kernel (x.y / d + 1)^3 (KID,
  Bińkowski et al. 2018), on the whole sets (no subsets). Scatters around 0 for equal laws.
* ``precision``, ``recall`` (Kynkäänniemi et al. 2019), ``density``, ``coverage`` (Naeem et al.
  2020): k-nearest-neighbour balls (k = 5) around real points / sample points. precision:
  share of samples inside some real ball; recall: share of real points inside some sample
  ball; density: mean number of real balls a sample falls in, / k (about 1 for equal laws, may
  exceed 1); coverage: share of real balls holding at least one sample.
* ``1nna``: leave-one-out 1-NN accuracy (:func:`ddpmlab.metrics.points.one_nn_accuracy`):
  0.5 = indistinguishable (equal sizes), 1.0 = separable.
* ``confident``: share of images the classifier gives a max softmax >= 0.9 (blurry or
  ambiguous samples score low); the floor is the real images' share.
* ``class_tv``: total-variation distance between the predicted-class histograms of the samples
  and of the real images (mode dropping or imbalance).
* ``1nna_px``: 1-NNA on raw pixels (no classifier).
* ``memorised``: share of samples that copy a training image, by the ratio test of Yoon et al.
  2023 and Gu et al. 2023: x is memorised when its nearest training image (pixel L2) is at most
  a third as far as the second nearest, d1 <= d2 / 3 (an exact copy has d1 = 0). Needs only
  pixels and the training set. A training image that has near-duplicates in the training set
  can be copied without being flagged (d2 is small too): read it as a lower bound.

Not provided on pixels: the Fréchet distance, whose C*H*W x C*H*W covariances need far more
images than pixels (784 for MNIST) to be estimated; kid_px and the _px neighbour metrics have
no such need.

Why a floor: as for points, every estimate is biased at finite n, so :func:`evaluate_images`
scores a second real sample (``real_ref``, disjoint from ``real``, of the samples' size; e.g.
the two :func:`~ddpmlab.data.images.heldout_halves`) against ``real``: a perfect model scores
about that floor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from ddpmlab.errors import UserError
from ddpmlab.metrics.classifier import Classifier, LeNet, embed, load_classifier
from ddpmlab.metrics.points import Result, Scores, average, one_nn_accuracy

K = 5  # neighbours for precision/recall/density/coverage (Naeem et al. 2020's choice)
CONFIDENT = 0.9  # max softmax at or above which a prediction counts as confident
MEMO_RATIO = 1.0 / 3.0  # d1 <= d2 / 3: Yoon et al. 2023, Gu et al. 2023
_TOL = 1e-4  # images may overshoot [-1, 1] by float rounding
_ROWS = 2**22  # pairwise entries per chunk (32 MB of float64)
RATIO = ("fd",)  # metrics given a value / floor ratio (strictly positive distances)
WITH_CLASSIFIER = ("fd", "kid", "precision", "recall", "density", "coverage", "1nna",
                   "confident", "class_tv", "1nna_px", "memorised")
WITHOUT_CLASSIFIER = ("kid_px", "precision_px", "recall_px", "density_px", "coverage_px",
                      "1nna_px", "memorised")


# ----------------------------------------------------------------------------- inputs


def _as_images(name: str, x: Any) -> np.ndarray:
    """(N, C, H, W) numpy or torch in [-1, 1] -> float32 numpy, or a one-line UserError."""
    if hasattr(x, "detach"):  # torch.Tensor, any device
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError(f"{name} is not a numeric array; pass (N, C, H, W) floats in [-1, 1]"
                        ) from None
    if a.ndim != 4:
        raise UserError(f"{name} has shape {a.shape}, expected (N, C, H, W) images; add the "
                        "channel axis with x[:, None] for grey (N, H, W) images")
    if len(a) < K + 1:
        raise UserError(f"{name} holds {len(a)} image(s); pass at least {K + 1} (the "
                        f"{K}-nearest-neighbour metrics need them)")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{name} contains NaN or inf; drop or fix those images first")
    lo, hi = float(a.min()), float(a.max())
    if lo < -1 - _TOL or hi > 1 + _TOL:
        hint = ("8-bit pixels? scale with x / 127.5 - 1" if hi > 2 else
                "[0, 1] pixels? scale with 2 * x - 1" if lo >= 0 else "clip with np.clip(x, -1, 1)")
        raise UserError(f"{name} holds values from {lo:g} to {hi:g}, outside the model range "
                        f"[-1, 1]; {hint}")
    return a


def _same_shape(sets: dict[str, np.ndarray]) -> tuple[int, int, int]:
    shapes = {k: v.shape[1:] for k, v in sets.items()}
    first = next(iter(shapes.values()))
    if any(s != first for s in shapes.values()):
        said = ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items())
        raise UserError(f"image sets differ in (C, H, W): {said}; use one image size")
    c, h, w = (int(s) for s in first)
    return c, h, w


def _model(classifier: Classifier | LeNet | str | None) -> LeNet | None:
    if classifier is None or isinstance(classifier, LeNet):
        return classifier
    if isinstance(classifier, Classifier):
        return classifier.model
    return load_classifier(classifier).model


def _pixels(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float64)  # (N, C*H*W)


# ----------------------------------------------------------------------------- Fréchet, KID


def gaussian_frechet(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray,
                     cov2: np.ndarray) -> float:
    """Fréchet (squared W2) distance between N(mu1, cov1) and N(mu2, cov2) in d dims, >= 0.

    |mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^(1/2)) (Dowson & Landau 1982; Heusel et al.
    2017, FID), with tr (cov1 cov2)^(1/2) = tr (s cov2 s)^(1/2), s = cov1^(1/2): a symmetric
    eigenproblem in float64, so no complex parts as scipy.linalg.sqrtm(cov1 @ cov2) leaves.
    """
    w, v = np.linalg.eigh(np.asarray(cov1, dtype=np.float64))
    s = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # cov1^(1/2), PSD
    m = s @ np.asarray(cov2, dtype=np.float64) @ s
    tr_sqrt = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum())
    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    fd = float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """:func:`gaussian_frechet` of the sample means and covariances (ddof 1) of f1 (n, d), f2."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    return gaussian_frechet(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0),
                            np.cov(f2, rowvar=False))


def _poly_sum(a: np.ndarray, b: np.ndarray, d: int) -> float:
    """Sum over all (i, j) of (a_i . b_j / d + 1)^3, in row chunks."""
    step = max(1, _ROWS // len(b))
    return float(sum((((a[i : i + step] @ b.T) / d + 1.0) ** 3).sum()
                     for i in range(0, len(a), step)))


def kid(f1: np.ndarray, f2: np.ndarray) -> float:
    """Unbiased MMD^2 of f1 (n, d) and f2 (m, d), kernel k(x, y) = (x.y / d + 1)^3.

    Bińkowski et al. 2018 (KID), with the U-statistic of Gretton et al. 2012, Eq. (3); on the
    whole sets instead of averaged subsets (same expectation). About 0 for equal laws, often < 0.
    """
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    n, m, d = len(f1), len(f2), f1.shape[1]
    diag1 = float(((np.einsum("ij,ij->i", f1, f1) / d + 1.0) ** 3).sum())  # k(x_i, x_i) terms
    diag2 = float(((np.einsum("ij,ij->i", f2, f2) / d + 1.0) ** 3).sum())
    kxx = (_poly_sum(f1, f1, d) - diag1) / (n * (n - 1))
    kyy = (_poly_sum(f2, f2, d) - diag2) / (m * (m - 1))
    kxy = _poly_sum(f1, f2, d) / (n * m)
    return kxx + kyy - 2.0 * kxy  # Gretton et al. 2012 JMLR, Lemma 6: MMD_u^2


# ----------------------------------------------------------------------------- PRDC


def _kth_distance(f: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row of f (n, d) to its k-th nearest other row (a duplicate counts)."""
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(f).kneighbors(f)
    return dist[:, k]  # column 0 is the point itself (or a duplicate at distance 0)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = K) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` (m, d) against ``real`` (n, d).

    Balls B(x, NND_k(x)) are closed (distance <= radius), as in Kynkäänniemi et al. 2019.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    r_real, r_fake = _kth_distance(real, k), _kth_distance(fake, k)
    in_balls = np.zeros(len(fake))  # number of real balls holding fake_j
    recalled = np.zeros(len(real), dtype=bool)  # real_i inside some fake ball
    nearest = np.full(len(real), np.inf)  # min_j |real_i - fake_j|
    step = max(1, _ROWS // len(real))
    for j in range(0, len(fake), step):
        dist = cdist(fake[j : j + step], real)  # (chunk, n), exact differences
        inside = dist <= r_real[None, :]
        in_balls[j : j + step] = inside.sum(1)
        recalled |= (dist <= r_fake[j : j + step, None]).any(0)
        nearest = np.minimum(nearest, dist.min(0))
    return {
        "precision": float(np.mean(in_balls > 0)),  # Kynkäänniemi et al. 2019, precision
        "recall": float(np.mean(recalled)),  # Kynkäänniemi et al. 2019, recall
        "density": float(in_balls.sum() / (k * len(fake))),  # Naeem et al. 2020, density
        "coverage": float(np.mean(nearest <= r_real)),  # Naeem et al. 2020, coverage
    }


# ----------------------------------------------------------------------------- classifier, copies


def confident_fraction(probs: np.ndarray, threshold: float = CONFIDENT) -> float:
    """Share of rows of probs (N, classes) whose largest probability is >= ``threshold``."""
    return float(np.mean(np.asarray(probs).max(1) >= threshold))


def class_tv(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Total variation 0.5 sum_c |h_a(c) - h_b(c)| of the arg-max class histograms, in [0, 1]."""
    c = probs_a.shape[1]
    ha = np.bincount(probs_a.argmax(1), minlength=c) / len(probs_a)
    hb = np.bincount(probs_b.argmax(1), minlength=c) / len(probs_b)
    return float(0.5 * np.abs(ha - hb).sum())


def nearest_train(x: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel L2 distances of each image x (N, C, H, W) to its two nearest training images.

    Returns (d1, d2), each (N,) float64, d1 <= d2. Candidates are ranked with the fast
    |a|^2 + |b|^2 - 2 a.b expansion, then the three best re-measured exactly (|a - b|) so that
    an exact copy reads d1 = 0.
    """
    a, b = _pixels(x), _pixels(train)
    if len(b) < 2:
        raise UserError(f"train holds {len(b)} image(s); pass at least 2 to test for copies")
    keep = min(3, len(b))
    bb = np.einsum("ij,ij->i", b, b)
    cand = np.empty((len(a), keep), dtype=np.int64)
    step = max(1, _ROWS // len(b))
    for i in range(0, len(a), step):
        d2 = bb[None, :] - 2.0 * (a[i : i + step] @ b.T)  # |a|^2 omitted: same for a row
        cand[i : i + step] = np.argpartition(d2, keep - 1, axis=1)[:, :keep]
    exact = np.sort(np.linalg.norm(a[:, None, :] - b[cand], axis=2), axis=1)  # (N, keep)
    return exact[:, 0], exact[:, 1]


def memorised_fraction(x: np.ndarray, train: np.ndarray, ratio: float = MEMO_RATIO) -> float:
    """Share of images x whose nearest training image is at most ``ratio`` times as far as the
    second nearest (d1 <= ratio * d2; Yoon et al. 2023, Gu et al. 2023 use 1/3)."""
    d1, d2 = nearest_train(x, train)
    return float(np.mean(d1 <= ratio * d2))


# ----------------------------------------------------------------------------- evaluate


def image_scores(x: Any, real: Any, train: Any = None,
                 classifier: Classifier | LeNet | str | None = None) -> Scores:
    """Every metric of images ``x`` against ``real`` (both (N, C, H, W) in [-1, 1]).

    Names and order: :data:`WITH_CLASSIFIER` or, for ``classifier=None``,
    :data:`WITHOUT_CLASSIFIER`; ``memorised`` (against ``train``) only when train is given.
    ``classifier``: a shipped set name ("digits", "mnist"), a loaded classifier, or None.
    """
    sets = {"x": _as_images("x", x), "real": _as_images("real", real)}
    if train is not None:
        sets["train"] = _as_images("train", train)
    shape = _same_shape(sets)
    x, real = sets["x"], sets["real"]
    model = _model(classifier)
    out: Scores = {}
    if model is not None:
        if tuple(model.config.image_shape) != shape:
            raise UserError(f"the classifier takes images {tuple(model.config.image_shape)}, "
                            f"got {shape}; use the classifier of this data set")
        (hx, px), (hr, pr) = embed(model, x), embed(model, real)
        out["fd"] = frechet_distance(hx, hr)
        out["kid"] = kid(hx, hr)
        out.update(prdc(hr, hx))
        out["1nna"] = one_nn_accuracy(hx, hr)
        out["confident"] = confident_fraction(px)
        out["class_tv"] = class_tv(px, pr)
    else:
        fx, fr = _pixels(x), _pixels(real)
        out["kid_px"] = kid(fx, fr)
        out.update({f"{k}_px": v for k, v in prdc(fr, fx).items()})
    out["1nna_px"] = one_nn_accuracy(_pixels(x), _pixels(real))
    if train is not None:
        out["memorised"] = memorised_fraction(x, sets["train"])
    return out


def evaluate_images(samples: Any, real: Any, real_ref: Any = None, train: Any = None,
                    classifier: Classifier | LeNet | str | None = None, *,
                    floor: Scores | None = None) -> Result:
    """Score model ``samples`` against ``real`` beside the real-vs-real floor.

    All image sets are (N, C, H, W) float32 numpy arrays or torch tensors in [-1, 1], of one
    (C, H, W). ``real_ref``: a second real set, disjoint from ``real`` (and from ``train``),
    of the samples' size; the floor is ``image_scores(real_ref, real, train, classifier)``,
    or pass it once computed as ``floor`` instead. ``train``: the model's training images, for
    ``memorised`` (left out when None). Returns ``{metric: {"value", "floor", "ratio"}}``,
    the shape of :func:`ddpmlab.metrics.points.evaluate`; ratio = value / floor for fd only.
    """
    if (real_ref is None) == (floor is None):
        raise ValueError("pass exactly one of real_ref and floor")
    model = _model(classifier)  # load a named classifier once for both calls
    if real_ref is not None:
        n, m = len(samples), len(real_ref)
        if n != m:
            raise UserError(f"real_ref holds {m} images, samples {n}; the floor needs a real "
                            "set of the samples' size")
        floor = image_scores(real_ref, real, train, model)
    assert floor is not None
    out: Result = {}
    for name, value in image_scores(samples, real, train, model).items():
        if name not in floor:
            raise UserError(f"the floor has no {name!r}; compute it with the same classifier "
                            "and train set")
        ratio = value / floor[name] if name in RATIO and floor[name] > 0 else None
        out[name] = {"value": value, "floor": floor[name], "ratio": ratio}
    return out


def pooled_class_tv(samples: Any, heldout: Any, classifier: Classifier | LeNet | str,
                    resamples: int = 20, seed: int = 0) -> dict[str, float | None]:
    """The class histogram of all ``samples`` (N images) against the whole held-out set's.

    Per draw, the class TV of a few hundred samples is mostly multinomial noise (about 0.08
    at 250 over 10 balanced classes, even for a perfect model); pooled over N = 1,000 it
    measures the model. The floor is what a perfect model scores at the same N: the TV of N
    images drawn with replacement from the held-out set (the real law as far as it is
    known), averaged over ``resamples`` draws. Returns ``{"value", "floor", "ratio": None}``.
    """
    model = _model(classifier)
    assert model is not None
    x, real = _as_images("samples", samples), _as_images("heldout", heldout)
    probs, real_probs = embed(model, x)[1], embed(model, real)[1]
    rng = np.random.default_rng(seed)
    floor = np.mean([class_tv(real_probs[rng.integers(0, len(real), len(x))], real_probs)
                     for _ in range(resamples)])
    return {"value": class_tv(probs, real_probs), "floor": float(floor), "ratio": None}


def average_images(results: list[Result]) -> Result:
    """Mean value and floor over :func:`evaluate_images` results of independent draws."""
    return average(results, ratio_names=RATIO)


_READ = {  # each metric in words, printed under the table for the rows present
    "fd": "fd: Fréchet distance between the classifier features of samples and of held-out "
          "images (lower is better; ratio = model / floor, 1 = as good as real images)",
    "kid": "kid: squared kernel distance (KID) in the classifier's features; unbiased, so "
           "it scatters around 0 for equal laws: near or below the floor, even below 0, is "
           "as good as real images",
    "kid_px": "kid_px: squared kernel distance (KID) on pixels; unbiased, so it scatters "
              "around 0 for equal laws: near or below the floor, even below 0, is as good as "
              "real images",
    "precision": "precision (samples that look real), recall (real images the samples "
                 "cover), coverage: shares in 0..1, density about 1: near the floor is ideal",
    "precision_px": "precision_px (samples that look real), recall_px (real images the "
                    "samples cover), coverage_px: shares in 0..1 on pixels, density_px about 1: "
                    "near the floor is ideal",
    "1nna": "1nna: accuracy of telling samples from real images by their nearest neighbour; "
            "0.5 = indistinguishable, 1.0 = fully separable",
    "1nna_px": "1nna_px: accuracy of telling samples from real images by their nearest "
               "neighbour in pixels; 0.5 = indistinguishable, 1.0 = fully separable",
    "confident": f"confident: share of images the classifier is sure of (max softmax >= "
                 f"{CONFIDENT:g}); floor: the real images' share",
    "class_tv": "class_tv: how far the samples' class histogram is from the real images' "
                "(total variation, 0 = the same proportions)",
    "class_tv_all": "class_tv_all: the same for all draws' samples together against the whole "
                    "held-out set; floor: as many held-out images drawn with replacement",
    "memorised": "memorised: share of samples that copy a training image (nearest at most a "
                 "third as far as the second); floor: the share of held-out real images the "
                 "same test flags (near-duplicates in the data itself)",
}


def format_image_table(result: Result, n: int, repeats: int = 1) -> str:
    """Fixed-width plain-text table of an :func:`evaluate_images` result, n images per set."""
    mean = f", mean of {repeats} draws" if repeats > 1 else ""
    lines = [f"image sample quality at n = {n} images per set{mean} "
             "(floor = real vs independent real)",
             f"{'metric':<14}{'model':>12}{'floor':>12}{'ratio':>10}"]
    for name, row in result.items():
        ratio = "-" if row.get("ratio") is None else f"{row['ratio']:.4g}"
        lines.append(f"{name:<14}{row['value']:>12.4g}{row['floor']:>12.4g}{ratio:>10}")
    notes = [_READ[k] for k in result if k in _READ]
    return "\n".join(lines + [f"  {t}" for t in notes])
