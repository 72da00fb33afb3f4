"""What the figures of every kind of data share: the forward frames and the streamed chain."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ddpmlab import feedback
from ddpmlab.config import RunConfig
from ddpmlab.modalities import Modality
from ddpmlab.objectives import objective_named
from ddpmlab.samplers.frames import chain_frames, frame_steps
from ddpmlab.schedules import NoiseSchedule


class Drawable(Protocol):
    """What a report reads of a run (``ddpmlab.runs.run.Run`` is one)."""

    config: RunConfig
    schedule: NoiseSchedule
    kind: Modality
    device: torch.device

    @property
    def denoiser(self) -> Callable[..., torch.Tensor]: ...

    def labels(self, n: int, cls: Any) -> np.ndarray | None: ...

    def sample(self, n: int, seed: int = 0, sampler: Any = None, *, cls: Any = None,
               guidance: float = 0.0, bar: Any = None) -> np.ndarray: ...

    def chain(self, n: int, seed: int = 0, sampler: Any = None, *, cls: Any = None,
              guidance: float = 0.0) -> Iterator[tuple[int, np.ndarray]]: ...

    def snapshots(self) -> list[tuple[int, list[tuple[int, np.ndarray]]]]: ...


class Report:
    """The figures and the GIF of one run (``ddpmlab.reports.REPORTS`` holds one per
    modality, under its name)."""

    gif_n: int  # samples in reverse.gif

    def __init__(self, run: Drawable) -> None:
        self.run, self.kind, self.data = run, run.kind, run.kind.data

    def forward_frames(self, x0: torch.Tensor, seed: int,
                       count: int = 20) -> list[tuple[int, torch.Tensor]]:
        """q(x_n | x_0) of model-space ``x0`` at ``count`` step counts n from 0 (x0 itself) to
        T, one noise draw each (``frame_steps``); n steps applied is timestep n - 1 (a flow
        run's path at t = n / T)."""
        g = torch.Generator().manual_seed(seed)
        frames = [(0, x0)]
        noise = objective_named(self.run.config.diffusion.objective).noise
        for n in frame_steps(self.run.schedule.T, count)[1:]:
            t = torch.full((len(x0),), n - 1, dtype=torch.long)
            eps = torch.randn(x0.shape, generator=g)
            frames.append((n, noise(self.run.schedule, x0, t, eps)))
        return frames

    def streamed(self, n: int, seed: int,
                 count: int) -> tuple[Iterator[tuple[int, np.ndarray]], list[np.ndarray]]:
        """About ``count`` states of the reverse chain of n samples, from x_T to x_0, streamed
        under a progress bar; the list holds the last state seen (x_0 once consumed)."""
        end: list[np.ndarray] = []

        def frames() -> Iterator[tuple[int, np.ndarray]]:
            with feedback.bar(len(frame_steps(self.run.schedule.T, count)),
                              f"animating {n:,} {self.kind.unit}", unit="frame") as bar:
                for k, x in chain_frames(self.run.chain(n, seed), self.run.schedule.T, count):
                    end[:] = [x]
                    bar.update()
                    yield k, x

        return frames(), end

    def figures(self, out: Path, seed: int) -> None:
        """Every figure of the run but the loss curve, into ``out``."""
        raise NotImplementedError

    def class_figure(self, path: Path, seed: int, guidance: float) -> None:
        """A conditional run's samples of every class at ``guidance``, into ``path``."""
        raise NotImplementedError

    def animate(self, n: int, seed: int, path: Path) -> tuple[Path, np.ndarray]:
        """reverse.gif of n samples; returns its path and the chain's end x_0."""
        raise NotImplementedError
