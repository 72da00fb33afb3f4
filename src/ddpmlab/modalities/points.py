"""Points: 2-D point clouds (built-in shapes, .csv/.txt/.npy files of N x 2 numbers, the dark
pixels of a picture, a word: ``data.shapes``).

Model space is the standardised data z = (x - mean) / std (``data.Standardizer``); samples
come back in the data's own coordinates (float64). Evaluation: W1/W2 (optimal transport),
energy, MMD and 1-NNA (``ddpmlab.metrics.points``); figures are scatter plots.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ddpmlab.config import RunConfig
from ddpmlab.data import TOY2D, PointSet, Standardizer, resolve
from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
from ddpmlab.diffusion import predict_eps_x0, q_sample, split_output
from ddpmlab.fileio import write_atomic
from ddpmlab.mixture import GaussianMixture
from ddpmlab.modalities import ClassResult, Modality, Result, Scores, cut, scored

if TYPE_CHECKING:
    from ddpmlab.run import Run
    from ddpmlab.viz import ScoreLevel

SCORE_FRACTIONS = (0.02, 0.1, 0.3, 0.6)  # score.png's noise levels: t + 1 = fraction x T
SCORE_GRID = 21  # arrows per side of score.png's grid
EVAL_N = 2000  # points per set for evaluation
EVAL_REPEATS = 3  # draws averaged for the model value and for the floor
#: per-class evaluation: independent sample sets of each class, and reference sets and
#: floors averaged. One W1 between two sets of 2,000 points of a moon scatters widely (a
#: near-1-D set: the transport runs along the curve): three left a perfect sampler anywhere
#: in 0.64-1.27 x its floor, twelve in 0.91-1.22 (bench/guidance.py --parts perfect)
CLASS_SETS = 12
GIF_FRAMES = 100  # frames of reverse.gif, spread over the T steps
REGION_K = 15  # neighbours of the k-NN classifier that says which class's region a point is in
# metrics and viz are imported where used: they pull in scipy, scikit-learn, POT and
# matplotlib (about a second), which training and a resumed training never need.


class Points(Modality):
    name = "points"
    clip = False  # a point cloud has no box to clip to (diffusers' clip_sample would be wrong)
    sample_suffixes = (".npy", ".csv")
    unit = "points"
    snapshot_n = 1000
    gif_n = 2000
    sample_block = 32_768  # as many points as sampling held at once before blocks: every
    # evaluation and figure (2,000 to 18,000 points) is one stream, as it was
    data: PointSet
    scaler: Standardizer

    @classmethod
    def accepts(cls, source: str) -> bool:
        return source in TOY2D

    class_draws = CLASS_SETS

    @classmethod
    def defaults(cls, source: str) -> dict[str, Any]:
        return {}  # RunConfig's defaults are the points' (bench/quality.py)

    @classmethod
    def conditional_defaults(cls, source: str) -> dict[str, Any]:
        # sigma^2 = beta~ at T = 200 makes a Gaussian component 11 % too narrow even with
        # the exact denoiser (bench/guidance.py --parts exact), which per-class W1 sees
        # (1.25..1.40 x floor for gaussians8's worst class); a learned variance (Nichol &
        # Dhariwal 2021) gives the width (bench/README.md, "guidance")
        return {"diffusion": {"variance": "learned_range"}}

    @classmethod
    def prepare(cls, config: RunConfig) -> Points:
        d = config.data
        points = resolve(d.source, d.n_train, config.train.seed, d.heldout, d.label_column,
                         d.font)
        return cls(config, points, Standardizer.fit(points.train))

    @classmethod
    def restore(cls, config: RunConfig, saved: dict[str, np.ndarray],
                meta: dict[str, Any]) -> Points:
        scaler = meta.get("scaler", meta.get("standardizer"))  # the latter: before modalities
        names = meta.get("class_names")
        points = PointSet(name=meta.get("name", "data"), train=saved["train"],
                          heldout=saved["heldout"], train_labels=saved.get("train_labels"),
                          heldout_labels=saved.get("heldout_labels"),
                          class_names=None if names is None else tuple(names))
        return cls(config, points, Standardizer.from_dict(scaler or {}))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"train": self.data.train, "heldout": self.data.heldout, **self.label_arrays()}

    @property
    def shape(self) -> tuple[int, ...]:
        return (int(self.data.train.shape[1]),)

    def model_input(self) -> np.ndarray:
        return self.scaler.transform(self.data.train).astype(np.float32)

    def to_data(self, x: torch.Tensor) -> np.ndarray:
        return self.scaler.inverse(x.numpy().astype(np.float64))

    def describe(self) -> str:
        return f"{self.data.name} ({len(self.data.train)} points)"

    # --- evaluation ---------------------------------------------------------------------
    @property
    def eval_size(self) -> tuple[int, int]:
        return EVAL_N, EVAL_REPEATS

    def reference_sets(self, n: int) -> list[np.ndarray]:
        return cut(self.data.heldout, n)  # drawn i.i.d. (built-ins) or shuffled (files)

    def scores(self, x: np.ndarray, real: np.ndarray) -> Scores:
        from ddpmlab import metrics
        return metrics.scores(x, real)

    def evaluate(self, samples: np.ndarray, real: np.ndarray, floor: Scores) -> Result:
        from ddpmlab import metrics
        return metrics.evaluate(samples, real, floor=floor)

    def average(self, results: list[Result]) -> Result:
        from ddpmlab import metrics
        return metrics.average(results)

    def per_class(self, samples: np.ndarray, labels: np.ndarray, seed: int = 0,
                  draws: int = 1) -> ClassResult:
        """Per class k: W1 and 1-NNA of its samples against the class's held-out points,
        beside the floor a random subset of the class's training points of the same size
        scores against them (at most EVAL_N points a set), and the share of samples in the
        class's region: the class that a k-NN classifier fitted on the training points gives
        (``accuracy_real``: of the held-out points). Value and floor are means over
        CLASS_SETS random reference sets; ``draws``: the samples of each class (in order)
        are that many independent sets, and repeat i scores set i (mod draws) as the floor
        scores a fresh real subset each time (``score_classes`` draws CLASS_SETS sets: one
        set scored many times keeps the whole scatter of that one set)."""
        from sklearn.neighbors import KNeighborsClassifier

        from ddpmlab.metrics.points import one_nn_accuracy, wasserstein
        d, rng = self.data, np.random.default_rng(seed)
        assert d.class_names is not None and d.train_labels is not None
        assert d.heldout_labels is not None
        knn = KNeighborsClassifier(REGION_K).fit(d.train, d.train_labels)

        def compare(x: np.ndarray, held: np.ndarray, train: np.ndarray) -> dict[str, Any]:
            # one W1 between two sets of 2,000 points moves by up to 2x with the sets alone
            # (moons), so value and floor are means over CLASS_SETS reference sets, the
            # value over independent sample sets where there are several (``draws``)
            sets = np.array_split(x, draws) if len(x) >= draws else [x]
            n = min(min(map(len, sets)), len(held), len(train), EVAL_N)
            scores: dict[str, tuple[list[float], list[float]]] = {"w1": ([], []),
                                                                  "1nna": ([], [])}
            for i in range(CLASS_SETS):
                ref = held[rng.choice(len(held), n, replace=False)]
                real = train[rng.choice(len(train), n, replace=False)]
                mine = sets[i % len(sets)][:n]
                for name, fn in (("w1", wasserstein), ("1nna", one_nn_accuracy)):
                    scores[name][0].append(fn(mine, ref))
                    scores[name][1].append(fn(real, ref))
            out: dict[str, Any] = {"n": n}
            for name, (value, floor) in scores.items():
                out |= {name + k: v for k, v in scored(float(np.mean(value)),
                                                       float(np.mean(floor)),
                                                       name == "w1").items()}
            return out

        rows = {}
        for k, name in enumerate(d.class_names):
            x, held = samples[labels == k], d.heldout[d.heldout_labels == k]
            rows[name] = {**compare(x, held, d.train[d.train_labels == k]),
                          "accuracy": float(np.mean(knn.predict(x) == k)) if len(x) else None,
                          "accuracy_real": float(np.mean(knn.predict(held) == k))}
        overall = {**compare(samples[rng.permutation(len(samples))], d.heldout, d.train),
                   "accuracy": float(np.mean(knn.predict(samples) == labels)),
                   "accuracy_real": float(np.mean(knn.predict(d.heldout) == d.heldout_labels))}
        return {"classes": rows, "overall": overall}

    @classmethod
    def table(cls, result: Result, n: int, repeats: int) -> str:
        from ddpmlab.metrics import format_table
        return format_table(result, n, repeats)

    @staticmethod
    def headline(result: Result) -> tuple[str, str | None]:
        return "1nna", "w1"

    def bound_inputs(self, n: int) -> tuple[torch.Tensor, dict[str, Any], float]:
        """The network models standardised points z = (x - mean) / std, so -log p(x) =
        -log p(z) + sum_d log std_d (change of variables)."""
        z = self.scaler.transform(self.data.heldout[:n])
        log_det = float(np.log(self.scaler.std).sum())
        return torch.from_numpy(z).to(torch.float32), {"decoder": "gaussian"}, log_det

    # --- output -------------------------------------------------------------------------
    def figures(self, run: Run, out: Path, seed: int) -> None:
        from ddpmlab import viz
        data = self.data.train[:2000]
        viz.plot_points(data, out / "data.png", title=self.data.name)
        x0 = torch.from_numpy(self.scaler.transform(data)).to(torch.float32)
        frames = [(n, self.to_data(x)) for n, x in self.forward_frames(run, x0, seed)]
        viz.plot_forward_grid([(0, data), *frames[1:]], out / "forward.png")
        progress = run.snapshots()
        if progress:
            # one frame for every panel, holding the data and every state, x_T's noise included
            limits = viz.frame_limits([data, *(f for _, fr in progress for _, f in fr)],
                                      margin=0.05)
            viz.plot_training_progress(progress, out / "training.png", limits=limits)
            for name, (step, frames_s) in zip(("begin", "middle", "end"), progress,
                                              strict=False):
                viz.plot_reverse_process(frames_s, out / f"reverse_{name}.png",
                                         title=f"reverse process after {step} training steps",
                                         limits=limits)
        levels, errors = self.score_field(run, seed)
        viz.plot_score_field(levels, out / "score.png", viz.frame_limits(
            [lv.grid for lv in levels]), rows=list(levels[0].fields),
            suptitle="score s(x, t) = -eps_hat / sqrt(1 - alpha_bar_t), standardised units"
            + (" (cos error: mean 1 - cos over the noised held-out data)" if errors else ""))
        _, samples = self.animate(run, self.gif_n, seed, out / "reverse.gif")
        viz.plot_samples_over_data(samples, data, out / "samples.png",
                                   title=f"{len(samples)} samples over the data")

    def class_figure(self, run: Run, path: Path, seed: int, guidance: float) -> None:
        """2,000 samples, an equal share of each class, coloured by class over the data."""
        from ddpmlab import viz
        samples = run.sample(self.gif_n, seed, cls="all", guidance=guidance)
        labels = run.labels(self.gif_n, "all")
        assert self.data.class_names is not None and labels is not None
        viz.plot_classes(samples, labels, self.data.class_names,
                         self.data.train[:2000], path,
                         title=f"samples by class, guidance w = {guidance:g}")

    def exact_mixture(self) -> GaussianMixture | None:
        """The data's law in model space where it is a known Gaussian mixture (gaussians8)."""
        if self.data.name != "gaussians8":
            return None
        mixture = GaussianMixture.isotropic(GAUSSIANS8_CENTRES, GAUSSIANS8_STD)
        return mixture.affine(self.scaler.mean, self.scaler.std)  # z = (x - mean) / std

    def score_field(self, run: Run, seed: int) -> tuple[list[ScoreLevel], dict[int, float]]:
        """score.png's panels: at each timestep t of SCORE_FRACTIONS, the held-out data
        noised by q(x_t | x_0) (model space) and, on a grid, the learned score s(x, t) =
        -eps_hat / sqrt(1 - ab_t) (Song et al. 2021, Sec. 3.2 with Ho Eq. 11's eps) and, for a
        known mixture, the exact one (``GaussianMixture.noised``). Returns the panels and, for
        a known mixture, the mean cosine error 1 - cos(learned, exact) over the noised data
        at each t."""
        from ddpmlab.viz import ScoreLevel, frame_limits

        T, d = run.schedule.T, run.config.diffusion
        z = torch.from_numpy(self.scaler.transform(self.data.heldout[:EVAL_N])).float()
        g = torch.Generator().manual_seed(seed)
        steps = sorted({min(T - 1, max(0, round(f * T) - 1)) for f in SCORE_FRACTIONS})
        noised = {t: q_sample(run.schedule, z, torch.full((len(z),), t), torch.randn(
            z.shape, generator=g)) for t in steps}
        lim = frame_limits([z.numpy(), *(x.numpy() for x in noised.values())], quantile=0.005)
        axis = [np.linspace(lim[0], lim[1], SCORE_GRID), np.linspace(lim[2], lim[3], SCORE_GRID)]
        grid = torch.from_numpy(np.stack(np.meshgrid(*axis), -1).reshape(-1, 2)).float()
        exact = self.exact_mixture()
        levels, errors = [], {}
        for t, x_t in noised.items():
            ab = float(run.schedule.alpha_bar[t])
            x = torch.cat([grid, x_t])
            tt = torch.full((len(x),), t, device=run.device)
            output = split_output(run.denoiser(x.to(run.device), tt), d.variance)[0]
            eps_hat = predict_eps_x0(run.schedule.to(run.device), x.to(run.device), tt, output,
                                     d.prediction)[0]
            learned = (-eps_hat.cpu().double() / math.sqrt(1 - ab)).numpy()  # s = -eps / sigma
            fields = {"learned": learned[:len(grid)]}
            title = f"t = {t + 1} of {T}"
            if exact is not None:
                true = exact.noised(ab).score(x).numpy()
                fields["exact"] = true[:len(grid)]
                a, b = learned[len(grid):], true[len(grid):]
                cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
                errors[t + 1] = float(np.mean(1 - cos))
                title += f", cos error {errors[t + 1]:.3f}"
            levels.append(ScoreLevel(title, x_t.numpy(), grid.numpy(), fields))
        return levels, errors

    def animate(self, run: Run, n: int, seed: int, path: Path) -> tuple[Path, np.ndarray]:
        """The reverse chain of n points from noise to the data, streamed, with fixed axes."""
        from ddpmlab import viz
        frames, end = self.streamed(run, n, seed, min(GIF_FRAMES, run.schedule.T + 1))
        first = next(frames)  # x_T, pure noise: the widest state, sizes the frame with the data
        limits = viz.frame_limits([self.data.train, first[1]], margin=0.02)
        gif = viz.write_gif(itertools.chain([first], frames), path, limits, title_fmt="x{t_sub}")
        return gif, end[0]

    def write_samples(self, x: np.ndarray, path: Path) -> str:
        if path.suffix == ".npy":
            write_atomic(path, lambda tmp: np.save(tmp, x))
        else:
            write_atomic(path, lambda tmp: np.savetxt(tmp, x, fmt="%.8g", delimiter=",",
                                                      header="x,y", comments=""))
        return f"{len(x)} samples"

