# Pinned to commit 2a762a1, the last commit before the package's top layer was restructured,
# where it ran as bench/sampler_probe.py (this file is that one, with this header): it
# imports ddpmlab.run and patches its timesteps, ddim_chain and check_eta, which no longer
# exist there. To run it there:
#
#     git worktree add /tmp/ddpmlab-2a762a1 2a762a1
#     export PYTHONPATH=/tmp/ddpmlab-2a762a1/src
#     python -m ddpmlab.cli train swiss_roll --seed 0 --out RUN
#     python experiments/sampler_probe.py RUN ddpm:: ddim:20: dpm_solver:20:logsnr@-2

"""Probe samplers, grids and hybrid chains on a trained point run (bench/README.md, "The
sampler's share of the gap"). Each cell is `ddpmlab.run.score` (3 draws of 2,000 against the
reference sets and floors of `evaluate`).

    python experiments/sampler_probe.py RUN SPEC ...
    SPEC = sampler:K:spacing[:eta[:raw[:lower_order_final]]]   (empty K: all T steps)

    ddpm::                       DDPM, all steps
    dpm_solver:20:logsnr@-3      DPM-Solver++ at 20 steps, t = T-1 then uniform in lambda
                                 from -3 to lambda_0 (no value: from lambda_{T-2})
    ddim:20:karras@7 / ddim:20:quad      Karras et al.'s rho grid, Song et al.'s quadratic t
    ddim:20:pow@0.7              t = (T-1) u^0.7, u uniform in [0, 1] (quad: pow@2)
    ddim:::1                     DDIM with eta 1
    ddim:::-50                   hybrid: eta 1 at t >= 50, eta 0 below (-50.5: the reverse)
    ddim:20::0:raw               the raw weights instead of the EMA
    dpm_solver:10:logsnr:::0     DPM-Solver++ with second order into the last t

The grids and hybrid chains are patched into the samplers for the run of this script only.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

import ddpmlab.run as R
import ddpmlab.samplers.ddim as dd
import ddpmlab.samplers.ddpm as dpm_
import ddpmlab.samplers.dpm_solver as dp
import ddpmlab.samplers.spacing as sp
from ddpmlab import checkpoint, feedback

LIBRARY = sp.timesteps
LAM: dict[int, np.ndarray] = {}
AB: dict[int, np.ndarray] = {}


def grid(T: int, K: int, spacing: str = "linspace", alpha_bar=None):
    """The library's spacings, or the probe's: logsnr@L, karras@rho, quad."""
    if spacing in sp.SPACINGS:
        return LIBRARY(T, K, spacing, AB[T])
    lam = LAM[T]
    name, _, arg = spacing.partition("@")
    if name in ("quad", "pow"):  # t = (T-1) u^p, u uniform: quad p = 2; p < 1 favours high t
        p = 2.0 if name == "quad" else float(arg)
        t = np.unique(np.round((np.linspace(0, 1, K) ** p) * (T - 1)).astype(int))[::-1]
        return t.copy(), np.append(t[1:], -1)
    if name == "logsnr":  # T-1, then K-1 points uniform in lambda from arg to lambda_0
        target = np.linspace(float(arg) if arg else lam[-2], lam[0], K - 1)
    elif name == "karras":  # T-1, then K-1 Karras sigmas from sigma_{T-2} to sigma_0
        rho = float(arg or 7)
        hi, lo = np.exp(-lam[-2]) ** (1 / rho), np.exp(-lam[0]) ** (1 / rho)
        target = -np.log((hi + np.linspace(0, 1, K - 1) * (lo - hi)) ** rho)
    else:
        raise SystemExit(f"unknown grid {spacing}")
    t = np.unique([int(np.argmin(np.abs(lam - x))) for x in np.append(lam[-1], target)])[::-1]
    return t.copy(), np.append(t[1:], -1).astype(np.int64)  # collisions merged: fewer than K


LIBRARY_DDIM = dd.ddim_chain


def hybrid_chain(denoiser, schedule, shape, *, steps=None, spacing=None, eta=0.0,
                 prediction="eps", generator=None, x_T=None, clip=False):
    """eta >= 0: the library's DDIM. eta = -t*: eta 1 at t >= t*, 0 below; -(t* + 0.5): eta 1
    below t*, 0 from t* up."""
    if eta >= 0:
        yield from LIBRARY_DDIM(denoiser, schedule, shape, steps=steps, spacing=spacing,
                                eta=eta, prediction=prediction, generator=generator, x_T=x_T,
                                clip=clip)
        return
    tstar, below = int(-eta), -eta != int(-eta)
    t_seq, t_prev = grid(schedule.T, schedule.T if steps is None else steps,
                         spacing or "linspace")
    x = torch.randn(shape, generator=generator)
    yield int(t_seq[0]) + 1, x
    for t, tn in zip(t_seq.tolist(), t_prev.tolist(), strict=True):
        with torch.inference_mode():
            out = denoiser(x, torch.full((shape[0],), t, dtype=torch.long))
            e = 1.0 if ((t < tstar) if below else (t >= tstar)) else 0.0
            z = torch.randn(shape, generator=generator) if e > 0 and tn >= 0 else None
            x, _ = dd.ddim_step(schedule, x, t, tn, out, eta=e, prediction=prediction, noise=z)
        yield tn + 1, x


def main() -> None:
    torch.set_num_threads(1)
    for module in (dd, dp, dpm_, R):
        if hasattr(module, "timesteps"):
            module.timesteps = grid
    R.ddim_chain = hybrid_chain
    R.check_eta = lambda eta: None
    run = R.open_run(sys.argv[1])
    ab = run.schedule.alpha_bar64
    AB[run.schedule.T], LAM[run.schedule.T] = ab, 0.5 * np.log(ab / (1 - ab))
    ema = {k: v.clone() for k, v in run.model.state_dict().items()}
    raw = checkpoint.load(run.path / R.CKPT).model
    out = {}
    with feedback.shown(False):
        for spec in sys.argv[2:]:
            parts = spec.split(":") + [""] * 6
            sampler, spacing = parts[0], parts[2] or None
            K = int(parts[1]) if parts[1] else None
            eta = float(parts[3]) if parts[3] else 0.0
            run.model.load_state_dict(raw if parts[4] == "raw" else ema)
            dp.LOWER_ORDER_FINAL = int(parts[5]) if parts[5] else 18
            k = len(grid(run.schedule.T, K or run.schedule.T,
                         spacing or run.spacing(sampler))[0])
            m = R.score(run, sampler=sampler, steps=K, eta=eta, spacing=spacing).metrics
            out[spec] = {"1nna": m["1nna"]["value"], "w1": m["w1"]["value"],
                         "w1_ratio": m["w1"]["ratio"], "K": k}
            print(f"{spec:<28} K={k}  1nna {m['1nna']['value']:.3f}  W1 {m['w1']['value']:.4f}"
                  f" ({m['w1']['ratio']:.2f}x floor)", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
