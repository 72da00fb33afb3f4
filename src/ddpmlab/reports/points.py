"""The figures of a point run: scatter plots of the data, the forward and reverse processes,
training progress, the score field, the samples, and the reverse-process GIF."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import torch

from ddpmlab import viz
from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
from ddpmlab.diffusion import split_output
from ddpmlab.mixture import GaussianMixture
from ddpmlab.objectives import objective_named
from ddpmlab.reports.base import Report
from ddpmlab.viz import ScoreLevel

SCORE_FRACTIONS = (0.02, 0.1, 0.3, 0.6)  # score.png's noise levels: t + 1 = fraction x T
SCORE_GRID = 21  # arrows per side of score.png's grid
SCORE_N = 2000  # held-out points noised for score.png
GIF_FRAMES = 100  # frames of reverse.gif, spread over the T steps


class PointReport(Report):
    gif_n = 2000

    def figures(self, out: Path, seed: int) -> None:
        data = self.data.train[:2000]
        viz.plot_points(data, out / "data.png", title=self.data.name)
        x0 = torch.from_numpy(self.kind.scaler.transform(data)).to(torch.float32)
        frames = [(n, self.kind.to_data(x)) for n, x in self.forward_frames(x0, seed)]
        viz.plot_forward_grid([(0, data), *frames[1:]], out / "forward.png",
                              title=f"forward process q(x_t | x_0): {self.data.name} noised "
                              f"over t = 0 .. {self.run.schedule.T} steps")
        progress = self.run.snapshots()
        if progress:
            # one frame for every panel, holding the data and every state, x_T's noise included
            limits = viz.frame_limits([data, *(f for _, fr in progress for _, f in fr)],
                                      margin=0.05)
            viz.plot_training_progress(
                progress, out / "training.png", limits=limits,
                title="reverse process p(x_t) (columns: diffusion steps t left) of the model "
                "after each number of training steps (rows)")
            for name, (step, frames_s) in zip(("begin", "middle", "end"), progress,
                                              strict=False):
                viz.plot_reverse_process(frames_s, out / f"reverse_{name}.png",
                                         title=f"reverse process after {step} training steps",
                                         limits=limits)
        levels, errors = self.score_field(seed)
        viz.plot_score_field(levels, out / "score.png", viz.frame_limits(
            [lv.grid for lv in levels]), rows=list(levels[0].fields),
            suptitle="score s(x, t) = -eps_hat / sqrt(1 - alpha_bar_t), standardised units"
            + (" (cos error: mean 1 - cos over the noised held-out data)" if errors else ""),
            note=None if errors else "no exact row: the exact score is known in closed form "
            "only for a Gaussian mixture (gaussians8)")
        _, samples = self.animate(self.gif_n, seed, out / "reverse.gif")
        viz.plot_samples_over_data(samples, data, out / "samples.png",
                                   title=f"{len(samples)} samples over the data")

    def class_figure(self, path: Path, seed: int, guidance: float) -> None:
        """2,000 samples, an equal share of each class, coloured by class over the data."""
        samples = self.run.sample(self.gif_n, seed, cls="all", guidance=guidance)
        labels = self.run.labels(self.gif_n, "all")
        assert self.data.class_names is not None and labels is not None
        viz.plot_classes(samples, labels, self.data.class_names,
                         self.data.train[:2000], path,
                         title=f"samples by class, guidance w = {guidance:g}")

    def exact_mixture(self) -> GaussianMixture | None:
        """The data's law in model space where it is a known Gaussian mixture (gaussians8)."""
        if self.data.name != "gaussians8":
            return None
        mixture = GaussianMixture.isotropic(GAUSSIANS8_CENTRES, GAUSSIANS8_STD)
        return mixture.affine(self.kind.scaler.mean, self.kind.scaler.std)  # z = (x - mean) / std

    def score_field(self, seed: int) -> tuple[list[ScoreLevel], dict[int, float]]:
        """score.png's panels: at each timestep t of SCORE_FRACTIONS, the held-out data
        noised by q(x_t | x_0) (model space) and, on a grid, the learned score s(x, t) =
        -eps_hat / sqrt(1 - ab_t) (Song et al. 2021, Sec. 3.2 with Ho Eq. 11's eps) and, for a
        known mixture, the exact one (``GaussianMixture.noised``). Returns the panels and, for
        a known mixture, the mean cosine error 1 - cos(learned, exact) over the noised data
        at each t. A flow run's path x_t = a x_0 + s eps (a = 1 - t, s = t) is c times the
        DDPM's at alpha_bar = a^2 / c^2, c = sqrt(a^2 + s^2), so its score is the mixture's
        there at x / c, over c, and the learned one -eps_hat / s, eps_hat = x + a u_hat."""

        T, d = self.run.schedule.T, self.run.config.diffusion
        objective = objective_named(d.objective)
        z = torch.from_numpy(self.kind.scaler.transform(self.data.heldout[:SCORE_N])).float()
        g = torch.Generator().manual_seed(seed)
        steps = sorted({min(T - 1, max(0, round(f * T) - 1)) for f in SCORE_FRACTIONS})
        noised = {t: objective.noise(self.run.schedule, z, torch.full((len(z),), t),
                                     torch.randn(z.shape, generator=g)) for t in steps}
        lim = viz.frame_limits([z.numpy(), *(x.numpy() for x in noised.values())], quantile=0.005)
        axis = [np.linspace(lim[0], lim[1], SCORE_GRID), np.linspace(lim[2], lim[3], SCORE_GRID)]
        grid = torch.from_numpy(np.stack(np.meshgrid(*axis), -1).reshape(-1, 2)).float()
        exact = self.exact_mixture()
        levels, errors = [], {}
        for t, x_t in noised.items():
            a_t, s_t = objective.coefficients(self.run.schedule, t)  # x_t = a x_0 + s eps
            c = math.hypot(a_t, s_t)  # 1 for the DDPM
            x = torch.cat([grid, x_t])
            device = self.run.device
            tt = torch.full((len(x),), t, device=device)
            output = split_output(self.run.denoiser(x.to(device), tt), d.variance)[0]
            eps_hat = objective.eps_x0(self.run.schedule, x.to(device), tt, output,
                                       d.prediction)[0]
            learned = (-eps_hat.cpu().double() / s_t).numpy()  # score = -eps / sigma
            fields = {"learned": learned[:len(grid)]}
            title = f"t = {t + 1} of {T}"
            if exact is not None:
                true = (exact.noised(a_t**2 / c**2).score(x / c) / c).numpy()
                fields["exact"] = true[:len(grid)]
                a, b = learned[len(grid):], true[len(grid):]
                cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                errors[t + 1] = float(np.mean(1 - cos))
                title += f", cos error {errors[t + 1]:.3f}"
            levels.append(ScoreLevel(title, x_t.numpy(), grid.numpy(), fields))
        return levels, errors

    def animate(self, n: int, seed: int, path: Path) -> tuple[Path, np.ndarray]:
        """The reverse chain of n points from noise to the data, streamed, with fixed axes."""
        frames, end = self.streamed(n, seed, min(GIF_FRAMES, self.run.schedule.T + 1))
        first = next(frames)  # x_T, pure noise: the widest state, sizes the frame with the data
        limits = viz.frame_limits([self.data.train, first[1]], margin=0.02)
        gif = viz.write_gif(itertools.chain([first], frames), path, limits, title_fmt="x{t_sub}")
        return gif, end[0]

