# Pinned to commit 2a762a1, the last commit before the package's top layer was restructured,
# where it ran as bench/exact_few_steps.py (this file is that one, with this header). To run it
# there:
#
#     git worktree add /tmp/ddpmlab-2a762a1 2a762a1
#     PYTHONPATH=/tmp/ddpmlab-2a762a1/src python experiments/exact_few_steps.py
#
# It imports only the lower layer (samplers, mixture, point metrics, schedules), which the
# restructuring left alone.

"""DDIM, DPM-Solver++ and DDPM driven by the exact eps of gaussians8 (standardised as a run
sees it; cosine schedule, T = 200): how much of the few-step gap is the solvers' own
discretisation (bench/README.md, "The sampler's share of the gap").

    python experiments/exact_few_steps.py

3 draws of 2,000 samples, each against its own 2,000 mixture samples; W1 over the mean
real-vs-real floor of those sets.
"""

from __future__ import annotations

import numpy as np
import torch

from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD
from ddpmlab.metrics.points import one_nn_accuracy, wasserstein
from ddpmlab.mixture import GaussianMixture
from ddpmlab.samplers import ddim_sample, ddpm_sample, dpm_solver_sample
from ddpmlab.schedules import make_schedule

N, DRAWS = 2000, 3
CELLS = [("ddpm", None, None), ("ddim", 200, "linspace"), ("ddim", 20, "linspace"),
         ("ddim", 20, "logsnr"), ("ddim", 30, "linspace"), ("ddim", 50, "linspace"),
         ("dpm_solver", 200, "logsnr"), ("dpm_solver", 20, "logsnr"),
         ("dpm_solver", 20, "linspace"), ("dpm_solver", 10, "logsnr")]


def main() -> None:
    torch.set_num_threads(1)
    c = GAUSSIANS8_CENTRES
    scale = float(np.sqrt((c**2).sum(1).mean() / 2 + GAUSSIANS8_STD**2))  # the data's std
    mix = GaussianMixture.isotropic(c / scale, GAUSSIANS8_STD / scale)
    s = make_schedule("cosine", 200)
    eps = mix.denoiser(s.alpha_bar)
    real = [mix.sample(N, torch.Generator().manual_seed(100 + i)).numpy() for i in range(DRAWS)]
    floor = np.mean([wasserstein(real[i], real[(i + 1) % DRAWS]) for i in range(DRAWS)])
    print(f"W1 floor {floor:.4f}")
    samplers = {"ddpm": ddpm_sample, "ddim": ddim_sample, "dpm_solver": dpm_solver_sample}
    for sampler, K, spacing in CELLS:
        w, a = [], []
        for i in range(DRAWS):
            x = samplers[sampler](eps, s, (N, 2), steps=K, spacing=spacing,
                                  generator=torch.Generator().manual_seed(i)).numpy()
            w.append(wasserstein(x, real[i]))
            a.append(one_nn_accuracy(x, real[i]))
        print(f"{sampler:<11}{K or 'all':>4} {spacing or '':<9} W1 {np.mean(w) / floor:.2f} x "
              f"floor  1-NNA {np.mean(a):.3f}", flush=True)


if __name__ == "__main__":
    main()
