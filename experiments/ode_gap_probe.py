# Pinned to commit 2a762a1, the last commit before the package's top layer was restructured,
# where it ran from bench/ under another name (this file is that one, with this header): it
# imports ddpmlab.run and calls Run.sample with positional steps, which no longer exist.
# To run it there:
#
#     git worktree add /tmp/ddpmlab-2a762a1 2a762a1
#     export PYTHONPATH=/tmp/ddpmlab-2a762a1/src:/tmp/ddpmlab-2a762a1/bench
#     python -m ddpmlab.cli train heart.csv --seed 1 --out RUN   # or swiss_roll --seed 0
#     python experiments/ode_gap_probe.py heart RUN
#
# (that commit's bench/ on the path: it imports `law` from its bench/exact_reference.py; the
# heart.csv file is bench/quality.py's far_away_csv.)

"""The probes of bench/README.md, "What the held-out evaluation can resolve"
(results/few_steps_probes.txt).

    python experiments/ode_gap_probe.py heart RUN        # ddpmlab train heart.csv --seed 1
    python experiments/ode_gap_probe.py floor
    python experiments/ode_gap_probe.py fitted_grid RUN  # ddpmlab train swiss_roll --seed 0
    python experiments/ode_gap_probe.py empirical RUN    # the same run

heart.csv is `quality.far_away_csv`'s file (the few-step table's user CSV).

- heart: where the ODE's W1 gap on heart.csv comes from. First, one draw's W1 by sample seed
  against the two held-out sets and against four fresh sets of the law. Then each sample's
  distance to the clean curve, and W1 with the width across the curve replaced by the data's
  (every sample moved to its nearest curve point plus noise of sd 15). Last, the mass along
  the curve (nearest-point parameter s) of 20,000 samples against the law, in 16 and 256 bins.
- floor: scikit-learn's evenly spaced moons. The floor of two halves of one set against a
  perfect i.i.d. sample, and two i.i.d. sets.
- fitted_grid: DDIM's 20 timesteps fitted by coordinate descent to bring its endpoints closest
  to DDIM over all steps from the same noise, then scored on 12 draws against fresh sets.
- empirical: DDIM driven by the exact denoiser of the run's empirical training law (the
  posterior mean over 8,000 of its training points), 4 draws against fresh sets.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from sklearn.datasets import make_moons

import ddpmlab.samplers.ddim as dd
from ddpmlab import feedback
from ddpmlab.config import replace
from ddpmlab.diffusion import split_output
from ddpmlab.metrics.points import one_nn_accuracy, wasserstein
from ddpmlab.run import Run, open_run
from ddpmlab.samplers.spacing import timesteps

sys.path.insert(0, str(Path(__file__).parent))
from exact_reference import law

OFFSET = np.array([50_000, -30_000])


def curve(s: np.ndarray) -> np.ndarray:
    """The clean heart curve of `quality.heart` at parameters s."""
    return np.stack([16 * np.sin(s) ** 3, 13 * np.cos(s) - 5 * np.cos(2 * s)
                     - 2 * np.cos(3 * s) - np.cos(4 * s)], 1) * 60 + OFFSET


def heart(run: Run) -> None:
    held = run.kind.data.heldout
    R = [held[:2000], held[2000:4000]]
    rng = np.random.default_rng(5)
    E = [curve(s) + rng.normal(0, 15, (2000, 2)) for s in rng.uniform(0, 2 * np.pi, (4, 2000))]
    print(f"real R1 vs R0 {wasserstein(R[1], R[0]):.2f}   exact vs R0 "
          f"{np.mean([wasserstein(e, R[0]) for e in E]):.2f}   exact vs exact "
          f"{wasserstein(E[0], E[1]):.2f}")
    for sampler in ("ddpm", "ddim"):
        for seed in range(6):
            x = run.sample(2000, seed, sampler)
            print(f"{sampler} seed {seed}: vs R0 {wasserstein(x, R[0]):6.2f}  R1 "
                  f"{wasserstein(x, R[1]):6.2f}  exact "
                  f"{np.mean([wasserstein(x, e) for e in E]):6.2f}", flush=True)

    S = np.linspace(0, 2 * np.pi, 200_001)[:-1]
    tree = cKDTree(curve(S))
    rng = np.random.default_rng(0)

    def width(x: np.ndarray) -> str:  # W1, W1 with the data's width, rms distance to the curve
        d, i = tree.query(x)
        moved = curve(S[i]) + rng.normal(0, 15, x.shape)
        return (f"W1 {wasserstein(x, R[0]):6.2f}  width replaced {wasserstein(moved, R[0]):6.2f}"
                f"  rms distance {np.sqrt(np.mean(d ** 2)):5.2f}")

    print(f"{'real R1':<18}{width(R[1])}")
    cells = [("ddpm", None, None), ("ddim", None, None), ("dpm_solver", 20, None),
             ("ddpm", None, "fixed_large")]
    for sampler, k, variance in cells:
        config = run.config
        if variance:
            run.config = replace(config, {"diffusion": {"variance": variance}})
        x = run.sample(2000, 7, sampler, k)
        run.config = config
        print(f"{sampler + (' ' + variance if variance else ''):<18}{width(x)}", flush=True)

    rng = np.random.default_rng(1)
    s = rng.uniform(0, 2 * np.pi, 200_000)
    _, law_i = tree.query(curve(s) + rng.normal(0, 15, (len(s), 2)))
    for sampler, k, _ in cells[:3]:
        _, i = tree.query(run.sample(20_000, 3, sampler, k))
        tv = []
        for bins in (16, 256):
            h, truth = (np.histogram(S[j], bins=bins, range=(0, 2 * np.pi))[0] / len(j)
                        for j in (i, law_i))
            tv.append(f"{bins} bins {0.5 * np.abs(h - truth).sum():.4f}")
        print(f"{sampler}@{k or 'all'}: mass along the curve, TV " + ", ".join(tv), flush=True)


def floor() -> None:
    def iid(n: int, seed: int) -> np.ndarray:
        x, _ = make_moons(64 * n, noise=0.05, random_state=seed)
        return x[np.random.default_rng(seed).choice(64 * n, n, replace=False)]

    halves, perfect, independent = [], [], []
    for s in range(8):
        h, _ = make_moons(4000, noise=0.05, random_state=s)
        halves.append(wasserstein(h[:2000], h[2000:]))
        perfect.append(wasserstein(iid(2000, 100 + s), h[:2000]))
        independent.append(wasserstein(iid(2000, 200 + s), iid(2000, 300 + s)))
    print(f"halves of one set (the held-out floor) {np.mean(halves):.4f}  a perfect i.i.d. "
          f"sample against a half {np.mean(perfect):.4f}  two i.i.d. sets "
          f"{np.mean(independent):.4f}")


def ddim(run: Run, z: torch.Tensor, grid: list[int], denoise=None) -> torch.Tensor:
    """DDIM (eta 0) from z over the timesteps grid, with the run's network or ``denoise``
    (x_t, t) -> x0_hat."""
    d, x = run.config.diffusion, z
    with torch.inference_mode():
        for t, tn in zip(grid, [*grid[1:], -1], strict=True):
            if denoise is None:
                tt = torch.full((len(x),), t, dtype=torch.long)
                out, kind = split_output(run.denoiser(x, tt), d.variance)[0], d.prediction
            else:
                out, kind = denoise(x, t), "x0"
            x, _ = dd.ddim_step(run.schedule, x, t, tn, out, prediction=kind)
    return x


def scored(run: Run, cells: dict, draws: int) -> None:
    """Each cell (seed -> samples in data units) on ``draws`` draws against fresh sets, as
    bench/exact_reference.py scores them; W1 over the first cell's."""
    E = [law("swiss_roll")(2000, np.random.default_rng([1, i])) for i in range(draws)]
    base = None
    for name, draw in cells.items():
        xs = [draw(i) for i in range(draws)]
        pairs = list(zip(xs, E, strict=True))
        w, nna = (np.mean([f(x, e) for x, e in pairs]) for f in (wasserstein, one_nn_accuracy))
        base = base or w
        print(f"{name:<18} 1-NNA {nna:.3f}  W1 over {next(iter(cells))}'s {w / base:.3f}",
              flush=True)


def noise(run: Run, i: int) -> torch.Tensor:
    return torch.randn(2000, 2, generator=torch.Generator().manual_seed(i))


def fitted_grid(run: Run, K: int = 20) -> None:
    T, inv = run.schedule.T, run.kind.scaler.inverse
    full = list(range(T - 1, -1, -1))
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(12345))
    ref = ddim(run, z, full)

    def loss(grid: list[int]) -> float:
        return float((ddim(run, z, grid) - ref).square().sum(1).mean())

    linspace = [int(t) for t in timesteps(T, K, "linspace")[0]]
    grid, best = linspace, loss(linspace)
    print(f"linspace {linspace}  mse {best:.3e}")
    for sweep in range(6):  # coordinate descent on the K-2 interior timesteps
        changed = False
        for i in range(1, K - 1):
            for delta in (8, 4, 2, 1, -1, -2, -4, -8):
                if grid[i + 1] < grid[i] + delta < grid[i - 1]:
                    trial = [*grid[:i], grid[i] + delta, *grid[i + 1:]]
                    if (v := loss(trial)) < best:
                        best, grid, changed = v, trial, True
        print(f"sweep {sweep}: mse {best:.3e}", flush=True)
        if not changed:
            break
    print(f"fitted {grid}")

    def sampled(g: list[int]):
        return lambda i: inv(ddim(run, noise(run, i), g).numpy().astype(np.float64))
    scored(run, {"ddpm": lambda i: run.sample(2000, i, "ddpm"), "ddim@200": sampled(full),
                 "ddim@20 linspace": sampled(linspace), "ddim@20 fitted": sampled(grid)}, 12)


def empirical(run: Run, n_ref: int = 8000, draws: int = 4) -> None:
    T, ab, inv = run.schedule.T, run.schedule.alpha_bar64, run.kind.scaler.inverse
    train = run.kind.data.train
    pick = np.random.default_rng(0).choice(len(train), min(n_ref, len(train)), replace=False)
    X = torch.from_numpy(run.kind.scaler.transform(train[pick])).double()

    def x0_exact(x: torch.Tensor, t: int) -> torch.Tensor:  # E[x_0 | x_t], x_0 uniform on X
        a = float(ab[t])
        return torch.softmax(-torch.cdist(x, a ** 0.5 * X) ** 2 / (2 * (1 - a)), 1) @ X

    def sampled(g: list[int]):
        return lambda i: inv(ddim(run, noise(run, i).double(), g, x0_exact).numpy())
    F = law("swiss_roll")
    scored(run, {"floor": lambda i: F(2000, np.random.default_rng([2, i])),
                 "ddim@200": sampled(list(range(T - 1, -1, -1))),
                 "ddim@20 linspace": sampled([int(t) for t in timesteps(T, 20, "linspace")[0]]),
                 "ddim@50 linspace": sampled([int(t) for t in timesteps(T, 50, "linspace")[0]])},
           draws)


def main() -> None:
    part, *rest = sys.argv[1:] or ["?"]
    parts = {"heart": heart, "floor": floor, "fitted_grid": fitted_grid, "empirical": empirical}
    if part not in parts or (part != "floor") != bool(rest):
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    with feedback.shown(False):
        parts[part](*(open_run(rest[0]),) if rest else ())


if __name__ == "__main__":
    main()
