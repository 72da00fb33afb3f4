"""What each view of the lab shows, computed with the library as the CLI computes it.

The data is prepared by the modality's own loader (``ddpmlab.modalities``: the CLI's
``train`` reads a shape, a file, a picture or ``text:WORD`` the same way, with the same
one-line refusals); the forward process is :func:`ddpmlab.q_sample` on a
:func:`ddpmlab.make_schedule`; everything about a trained model goes through
:func:`ddpmlab.open_run`, :meth:`ddpmlab.Run.sample`, :meth:`ddpmlab.Run.chain` and
:func:`ddpmlab.score`. Payloads are plain JSON: points as flat ``[x0, y0, x1, y1, ...]``
lists in data units, images as 8-bit pixel lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmlab import (
    GaussianMixture,
    Run,
    SamplerSpec,
    UserError,
    default_config,
    make_schedule,
    open_run,
    q_sample,
    score,
)
from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
from ddpmlab.diffusion import predict_eps_x0, split_output
from ddpmlab.modalities import Modality, modality_for

SHOWN = 1000  # points drawn in a scatter view
IMAGES_SHOWN = 16  # images in a grid view
TRAJECTORIES = 8  # points followed along the reverse chain
SCORE_GRID = 17  # arrows per side of the score field
PREVIEW = SamplerSpec("ddim", steps=20)  # live samples while training: cheap beside a step


def points_json(x: np.ndarray) -> list[float]:
    """(n, 2) points as a flat list, rounded to what a plot can show."""
    return [round(v, 4) for v in np.asarray(x, dtype=np.float64).ravel().tolist()]


def images_json(x: np.ndarray) -> dict[str, Any]:
    """(n, C, H, W) images in [0, 1] as 8-bit pixels, channel-last, with their shape."""
    x = np.clip(np.asarray(x), 0, 1)
    n, c, h, w = x.shape
    pixels = np.round(x.transpose(0, 2, 3, 1) * 255).astype(np.uint8)
    return {"n": n, "c": c, "h": h, "w": w, "pixels": pixels.ravel().tolist()}


def payload(kind: Modality, x: np.ndarray) -> dict[str, Any]:
    """Samples in data units as the page draws them: points or images."""
    if kind.name == "points":
        return {"points": points_json(x)}
    return {"images": images_json(x)}


@dataclass
class Data:
    """The data on the page: prepared once, with fixed noise for the forward view."""

    source: str
    label: str
    kind: Modality
    x0: torch.Tensor  # (n, *shape) model space, the examples the forward view noises
    eps: torch.Tensor  # (n, *shape) their noise, fixed so the slider moves them smoothly

    @classmethod
    def prepare(cls, source: str, label: str) -> Data:
        """Read ``source`` as ``ddpmlab train SOURCE`` would (a bad file: its one line)."""
        kind = modality_for(source).prepare(default_config(source))
        shown = SHOWN if kind.name == "points" else IMAGES_SHOWN
        x0 = torch.from_numpy(kind.model_input()[:shown])
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
        return cls(source, label, kind, x0, eps)

    def view(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind.name,
                "count": len(self.kind.data.train),
                **payload(self.kind, self.kind.to_data(self.x0))}

    def forward(self, schedule: str, T: int, t: int) -> dict[str, Any]:
        """Samples of q(x_t | x_0) at timestep t in 0..T-1 (Ho et al. 2020, Eq. 4)."""
        s = schedule_of(schedule, T)
        if not 0 <= t < T:
            raise UserError(f"t must be in 0..{T - 1}, got {t}")
        x_t = q_sample(s, self.x0, torch.full((len(self.x0),), t), self.eps)
        return {"t": t, **payload(self.kind, self.kind.to_data(x_t))}


@lru_cache(maxsize=16)
def schedule_of(name: str, T: int) -> Any:
    if not 2 <= T <= 2000:
        raise UserError(f"T must be in 2..2000, got {T}")
    return make_schedule(name, T, warn=False)


def curves(name: str, T: int) -> dict[str, Any]:
    """alpha_bar_t and log10 SNR_t = log10(alpha_bar / (1 - alpha_bar)) (Kingma et al. 2021,
    Eq. 2) over t in 0..T-1, and what x_T keeps of x_0: sqrt(alpha_bar_{T-1}) (Ho Eq. 4)."""
    ab = schedule_of(name, T).alpha_bar64
    snr = np.log10(ab / (1 - ab))
    return {"alpha_bar": [round(v, 6) for v in ab.tolist()],
            "log_snr": [round(v, 4) for v in snr.tolist()],
            "kept": round(math.sqrt(ab[-1]), 3), "terminal_alpha_bar": round(float(ab[-1]), 4)}


def preview(path: Path, seed: int = 0) -> dict[str, Any]:
    """Samples of the EMA model in a run's latest checkpoint (live view while it trains)."""
    run = open_run(path)
    n = SHOWN if run.kind.name == "points" else IMAGES_SHOWN
    return {"step": run.step, **payload(run.kind, run.sample(n, seed, PREVIEW))}


class RunView:
    """An opened run: its reverse chain (kept for the slider), score field and samplers."""

    def __init__(self, path: Path) -> None:
        self.run: Run = open_run(path)
        self.name = path.name
        self.frames: np.ndarray | None = None  # (T + 1, n, *shape) in data units, x_T first

    @property
    def kind(self) -> Modality:
        return self.run.kind

    def summary(self) -> dict[str, Any]:
        run, d = self.run, self.run.config.diffusion
        shown = SHOWN if run.kind.name == "points" else IMAGES_SHOWN
        real = run.kind.to_data(torch.from_numpy(run.kind.model_input()[:shown]))
        return {"name": self.name, "kind": run.kind.name, "step": run.step,
                "steps": run.config.train.steps, "T": run.schedule.T,
                "schedule": d.schedule, "data": run.kind.data.name,
                "exact": self.mixture() is not None, "real": payload(run.kind, real)}

    def chain(self) -> np.ndarray:
        if self.frames is None:
            n = SHOWN // 2 if self.kind.name == "points" else 8
            self.frames = np.stack([x for _, x in self.run.chain(n, seed=0)])
        return self.frames

    def reverse(self, k: int) -> dict[str, Any]:
        """The DDPM chain (Ho et al. 2020, Algorithm 2) after k of its T steps, and, for
        points, the first TRAJECTORIES points' paths from x_T to x_0."""
        frames = self.chain()
        T = len(frames) - 1
        if not 0 <= k <= T:
            raise UserError(f"the reverse step must be in 0..{T}, got {k}")
        out: dict[str, Any] = {"k": k, "T": T, **payload(self.kind, frames[k])}
        if self.kind.name == "points":
            out["paths"] = [points_json(frames[:, i]) for i in range(TRAJECTORIES)]
        return out

    def mixture(self) -> GaussianMixture | None:
        """The data's law in model space where it is a known mixture (gaussians8)."""
        if self.kind.name != "points" or self.kind.data.name != "gaussians8":
            return None
        s = self.kind.scaler
        return GaussianMixture.isotropic(GAUSSIANS8_CENTRES, GAUSSIANS8_STD).affine(s.mean, s.std)

    def score(self, t: int) -> dict[str, Any]:
        """The learned score s(x, t) = -eps_hat / sqrt(1 - alpha_bar_t) (Song et al. 2021,
        Sec. 3.2, with Ho Eq. 11's eps) on a grid of model space, and the exact one
        (``GaussianMixture.noised``) where the data has one; vectors in model units."""
        if self.kind.name != "points":
            raise UserError("the score field is drawn for points only")
        s, d = self.run.schedule, self.run.config.diffusion
        if not 0 <= t < s.T:
            raise UserError(f"t must be in 0..{s.T - 1}, got {t}")
        axis = np.linspace(-3, 3, SCORE_GRID)
        grid = torch.from_numpy(np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)).float()
        tt = torch.full((len(grid),), t)
        output = split_output(self.run.denoiser(grid, tt), d.variance)[0]
        eps_hat = predict_eps_x0(s, grid, tt, output, d.prediction)[0]
        ab = float(s.alpha_bar[t])
        fields = {"learned": (-eps_hat.double() / math.sqrt(1 - ab)).numpy()}
        mixture = self.mixture()
        if mixture is not None:
            fields["exact"] = mixture.noised(ab).score(grid).numpy()
        return {"t": t, "grid": points_json(self.kind.to_data(grid)),
                **{k: points_json(v) for k, v in fields.items()}}

    def samplers(self, names: list[str], steps: int) -> list[dict[str, Any]]:
        """Each sampler at ``steps`` (the ODE chooses its own), scored by
        :func:`ddpmlab.score` beside the real-vs-real floor, with the seconds its scored draw
        of n samples took, and another draw to show."""
        out = []
        for name in names:
            spec = SamplerSpec(name) if name == "ode" else SamplerSpec(name, steps=steps)
            self.run.check_sampler(spec)
            result = score(self.run, repeats=1, sampler=spec)
            x = self.run.sample(SHOWN if self.kind.name == "points" else IMAGES_SHOWN, 1, spec)
            metrics = {k: {"value": v.get("value"), "floor": v.get("floor")}
                       for k, v in result.metrics.items() if isinstance(v, dict)}
            out.append({"sampler": name, "steps": None if name == "ode" else steps,
                        "seconds": round(result.sampling_seconds or 0.0, 3),
                        "n": result.n, "metrics": metrics, **payload(self.kind, x)})
        return out
