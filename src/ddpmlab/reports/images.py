"""The figures of an image run: grids of the data, the forward and reverse processes,
training progress, samples beside real images, classes, and the reverse-process GIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ddpmlab.data.images import to_unit
from ddpmlab.reports.base import Report
from ddpmlab.viz import images as vi

GRID = 64  # images in the data, sample and GIF grids
GIF_FRAMES = 60
CLASS_ROW = 10  # samples per class in classes.png


class ImageReport(Report):
    gif_n = GRID

    def figures(self, out: Path, seed: int) -> None:
        # a random pick (seed 0): the built-in sets are stored class by class
        rng = np.random.default_rng(0)
        train = self.data.train[rng.permutation(len(self.data.train))[:GRID]]
        vi.plot_image_grid(to_unit(train), out / "data.png", title=self.data.name)
        x0 = torch.from_numpy(np.ascontiguousarray(train[:8], dtype=np.float32))
        frames = self.forward_frames(x0, seed)
        vi.plot_image_forward([(n, self.kind.to_data(x[:1])) for n, x in frames],
                              out / "forward.png",
                              title=f"forward process q(x_t | x_0) over t = 0 .. "
                              f"{self.run.schedule.T} steps")
        vi.plot_image_forward([(n, self.kind.to_data(x)) for n, x in frames[::2]],
                              out / "forward_rows.png")
        progress = self.run.snapshots()
        if progress:
            vi.plot_image_training(progress, out / "training.png")
            for name, (step, frames_s) in zip(("begin", "middle", "end"), progress,
                                              strict=False):
                vi.plot_image_reverse(frames_s, out / f"reverse_{name}.png",
                                      title=f"reverse process after {step} training steps")
        _, samples = self.animate(GRID, seed, out / "reverse.gif")
        held = self.data.heldout  # a random pick of held-out images (seed 0)
        pick = np.random.default_rng(0).permutation(len(held))[:min(GRID, len(held) // 2)]
        real = to_unit(held[pick])
        vi.plot_samples_beside_real(samples[:len(real)], real, out / "samples.png")

    def class_figure(self, path: Path, seed: int, guidance: float) -> None:
        """One row of CLASS_ROW samples per class."""
        names = self.data.class_names
        assert names is not None
        n = CLASS_ROW * len(names)
        x = self.run.sample(n, seed, cls="all", guidance=guidance)
        labels = self.run.labels(n, "all")
        vi.plot_class_rows([x[labels == k] for k in range(len(names))], names, path,
                           title=f"samples by class, guidance w = {guidance:g}")

    def animate(self, n: int, seed: int, path: Path) -> tuple[Path, np.ndarray]:
        """A grid of n images denoised from noise, streamed."""
        frames, end = self.streamed(n, seed, min(GIF_FRAMES, self.run.schedule.T + 1))
        return vi.write_image_gif(frames, path), end[0]

