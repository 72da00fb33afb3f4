"""Built-in 2D toy distributions, and the standardization of 2D points.

Built-in shapes (registry :data:`TOY2D`; every generator is ``(n, rng) -> (n, 2) float64``;
those with classes, :data:`LABELLED`, also ``(n, rng) -> (points, labels (n,) int64)`` from
the same draws, with their class names in :data:`CLASS_NAMES`):

- ``swiss_roll``: sklearn's 3D swiss roll (noise 0.1) seen from above, ``X[:, [0, 2]] / 10``.
- ``moons``: two interleaving half circles (sklearn ``make_moons``, noise 0.05).
- ``circles``: two concentric circles, radii 1 and 0.5 (sklearn ``make_circles``, noise 0.05).
- ``gaussians8``: 8 Gaussians (std 0.1) evenly spaced on a circle of radius 2.
- ``checkerboard``: uniform on the 8 filled squares of a 4x4 checkerboard on [-2, 2]^2.
- ``spirals``: two interleaved spirals (FFJORD's "2spirals"), noise 0.1, within about [-4, 4]^2.

:func:`ddpmlab.data.points.resolve` turns a name into a :class:`~ddpmlab.data.points.PointSet`;
:class:`Standardizer` maps points to the model's standardised space and back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ddpmlab.errors import UserError

Generator2D = Callable[[int, np.random.Generator], np.ndarray]


def _sk_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


def swiss_roll(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2): sklearn swiss roll with noise 0.1, coordinates (x, z) divided by 10."""
    from sklearn import datasets  # imported on use: slow to import

    x, _ = datasets.make_swiss_roll(n, noise=0.1, random_state=_sk_seed(rng))
    return np.asarray(x[:, [0, 2]] / 10.0, dtype=np.float64)


Labelled = tuple[np.ndarray, np.ndarray]


def moons_labelled(n: int, rng: np.random.Generator) -> Labelled:
    """:func:`moons` and sklearn's labels: 0 the upper moon, 1 the lower."""
    from sklearn import datasets  # imported on use: slow to import

    x, y = datasets.make_moons(n, noise=0.05, random_state=_sk_seed(rng))
    return np.asarray(x, dtype=np.float64), y.astype(np.int64)


def moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2): sklearn two moons with noise 0.05."""
    return moons_labelled(n, rng)[0]


def circles_labelled(n: int, rng: np.random.Generator) -> Labelled:
    """:func:`circles` and sklearn's labels: 0 the outer circle, 1 the inner."""
    from sklearn import datasets  # imported on use: slow to import

    x, y = datasets.make_circles(n, noise=0.05, factor=0.5, random_state=_sk_seed(rng))
    return np.asarray(x, dtype=np.float64), y.astype(np.int64)


def circles(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2): sklearn concentric circles (radii 1 and 0.5) with noise 0.05."""
    return circles_labelled(n, rng)[0]


_ANGLES = np.arange(8) * (np.pi / 4)
#: gaussians8's components: equal weights, these centres, isotropic std GAUSSIANS8_STD
GAUSSIANS8_CENTRES = 2.0 * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)
GAUSSIANS8_STD = 0.1


def gaussians8_labelled(n: int, rng: np.random.Generator) -> Labelled:
    """:func:`gaussians8` and each point's Gaussian: k at angle 45 k degrees."""
    k = rng.integers(8, size=n)
    return (GAUSSIANS8_CENTRES[k] + GAUSSIANS8_STD * rng.standard_normal((n, 2)),
            k.astype(np.int64))


def gaussians8(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2): mixture of 8 equal Gaussians, std 0.1, centred on a circle of radius 2."""
    return gaussians8_labelled(n, rng)[0]


def checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2): uniform on the squares of [-2, 2]^2 where floor(x) + floor(y) is even (FFJORD)."""
    x = rng.uniform(-2.0, 2.0, n)
    y = rng.random(n) - 2.0 * rng.integers(0, 2, n) + np.floor(x) % 2
    return np.stack([x, y], axis=1)


def spirals_labelled(n: int, rng: np.random.Generator) -> Labelled:
    """:func:`spirals` and each point's arm: 0 and 1."""
    t = np.sqrt(rng.random(n)) * 3.0 * np.pi
    second = rng.random(n) >= 0.5
    arm = np.where(second, -1.0, 1.0)[:, None]
    pts = np.stack([-np.cos(t) * t, np.sin(t) * t], axis=1) + 0.5 * rng.random((n, 2))
    return arm * pts / 3.0 + 0.1 * rng.standard_normal((n, 2)), second.astype(np.int64)


def spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2): two interleaved 540-degree spirals (FFJORD "2spirals") with Gaussian noise 0.1."""
    return spirals_labelled(n, rng)[0]


TOY2D: dict[str, Generator2D] = {
    f.__name__: f for f in (swiss_roll, moons, circles, gaussians8, checkerboard, spirals)
}
LABELLED: dict[str, Callable[[int, np.random.Generator], Labelled]] = {
    "moons": moons_labelled, "circles": circles_labelled, "gaussians8": gaussians8_labelled,
    "spirals": spirals_labelled,
}
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "moons": ("upper", "lower"), "circles": ("outer", "inner"),
    "gaussians8": tuple(f"{45 * k} deg" for k in range(8)), "spirals": ("arm 0", "arm 1"),
}


@dataclass(frozen=True)
class Standardizer:
    """Per-coordinate affine map ``z = (x - mean) / std`` and back.

    ``transform``/``inverse`` take arrays of shape (..., 2): numpy arrays are computed in float64
    and returned in the input's float dtype (float64 for integers); torch tensors (duck-typed,
    no torch import here) stay tensors in their own dtype and device.
    """

    mean: tuple[float, float]
    std: tuple[float, float]

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        """Fit mean and (population) std of the columns of x, shape (N, 2)."""
        a = np.asarray(x, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
            raise ValueError(f"Standardizer.fit expects an (N, 2) array, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("Standardizer.fit got NaN or inf values")
        mean, std = a.mean(axis=0), a.std(axis=0)
        for axis, m, s in zip("xy", mean, std, strict=True):
            if s == 0 or s <= 1e-12 * abs(m):
                raise UserError(f"all points have the same {axis} value; the data has no spread "
                                "to learn (give points that vary in both x and y)")
        return cls((float(mean[0]), float(mean[1])), (float(std[0]), float(std[1])))

    def transform(self, x: Any) -> Any:
        """Data space -> standardized space, shape (..., 2) kept."""
        return self._affine(x, inverse=False)

    def inverse(self, x: Any) -> Any:
        """Standardized space -> data space, shape (..., 2) kept."""
        return self._affine(x, inverse=True)

    def _affine(self, x: Any, inverse: bool) -> Any:
        torch_like = not isinstance(x, np.ndarray) and hasattr(x, "new_tensor")
        a = x if torch_like else np.asarray(x)
        if a.ndim == 0 or a.shape[-1] != 2:
            raise ValueError(f"Standardizer expects shape (..., 2), got {tuple(a.shape)}")
        if torch_like:  # torch.Tensor, duck-typed: keeps its dtype and device
            m, s = x.new_tensor(self.mean), x.new_tensor(self.std)
            return x * s + m if inverse else (x - m) / s
        dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float64)
        a64, m, s = a.astype(np.float64, copy=False), np.asarray(self.mean), np.asarray(self.std)
        return (a64 * s + m if inverse else (a64 - m) / s).astype(dtype, copy=False)

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-ready ``{"mean": [mx, my], "std": [sx, sy]}``; floats round-trip exactly."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Standardizer:
        """Inverse of :meth:`to_dict`; a damaged dict raises UserError."""
        try:
            mean, std = tuple(map(float, d["mean"])), tuple(map(float, d["std"]))
        except (KeyError, TypeError, ValueError):
            mean = std = ()
        if len(mean) != 2 or len(std) != 2 or not all(map(math.isfinite, mean + std)) or (
                min(std) <= 0):
            raise UserError("saved standardizer needs 'mean' and 'std' as 2 finite numbers each "
                            "(std > 0); the model file is damaged, train the model again")
        return cls((mean[0], mean[1]), (std[0], std[1]))
