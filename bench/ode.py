"""The probability-flow ODE, measured: exact likelihoods, ODE samples, scipy beside torchdiffeq.

    python bench/ode.py                          # every part (about 10 minutes on 2 cores)
    python bench/ode.py --parts gaussian swiss

1. gaussian: 2-D Gaussian data (mu = (0.5, -0.25), std = (0.3, 0.6)) and its exact eps,
   called as a perfect network would be (integer timesteps of the cosine schedule, T = 200,
   through ``samplers.ode.network_field``): the ODE's NLL on 2,000 points beside their true
   NLL, and 2,000 ODE samples' W1 beside the floor (W1 between two true samples of 2,000),
   each averaged over 3 draws; at three tolerances, with function evaluations and seconds.
2. solvers: the same ODE sampled with scipy's solve_ivp (RK45) and torchdiffeq's dopri5 (the
   same Dormand-Prince pair), same tolerances: evaluations and seconds.
3. swiss: `ddpmlab train swiss_roll` with default settings; the bound (`evaluate --nll`) beside
   the ODE's exact NLL (`evaluate --exact-nll`), and the ODE sampler's quality beside DDPM's.
4. digits: `ddpmlab train digits` with default settings (one thread, as every run here);
   bits/dim of the bound beside the ODE's (Hutchinson's estimator, uniform dequantisation on
   the 17 levels) with its standard error.

Timings on a shared machine are under load unless it was quiet. Writes bench/results/ode.json.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import ddpmlab
from ddpmlab import Run, SamplerSpec
from ddpmlab.metrics import wasserstein
from ddpmlab.mixture import GaussianMixture
from ddpmlab.modalities import default_config
from ddpmlab.samplers.ode import network_field, ode_nll, ode_sample, sigma_max
from ddpmlab.schedules import make_schedule

ROOT = Path(__file__).resolve().parents[1]
GAUSS = GaussianMixture.isotropic([0.5, -0.25], [0.3, 0.6])
TOLS = (1e-3, 1e-4, 1e-5)


def gaussian(n: int = 2000, draws: int = 3) -> list[dict]:
    s = make_schedule("cosine", 200)
    field = network_field(GAUSS.denoiser(s.alpha_bar), s)
    rows = []
    print(f"Gaussian data, exact eps on the cosine schedule (T = 200), {n} points, "
          f"{draws} draws")
    print(f"{'rtol=atol':>10}{'ODE NLL':>10}{'true NLL':>10}{'diff':>10}{'NFE':>6}"
          f"{'W1':>8}{'floor':>8}{'ratio':>7}{'NFE':>6}{'s/draw':>8}")
    for tol in TOLS:
        nll, true, nfe_nll, w1, floor, nfe, secs = [], [], [], [], [], [], []
        for i in range(draws):
            g = torch.Generator().manual_seed(100 + i)
            x0, ref, ref2 = (GAUSS.sample(n, g).float() for _ in range(3))
            r = ode_nll(field, s, x0, rtol=tol, atol=tol)
            nll.append(r.nats_per_dim)
            nfe_nll.append(r.nfe)
            true.append(float(-GAUSS.log_prob(x0).mean()) / 2)
            start = time.perf_counter()
            smp = ode_sample(field, s, (n, 2), rtol=tol, atol=tol, generator=g)
            secs.append(time.perf_counter() - start)
            nfe.append(smp.nfe)
            w1.append(wasserstein(smp.x0.double().numpy(), ref.double().numpy()))
            floor.append(wasserstein(ref2.double().numpy(), ref.double().numpy()))
        row = {"tol": tol, "ode_nll": float(np.mean(nll)), "true_nll": float(np.mean(true)),
               "nfe_nll": float(np.mean(nfe_nll)), "w1": float(np.mean(w1)),
               "w1_floor": float(np.mean(floor)), "nfe_sample": float(np.mean(nfe)),
               "seconds_sample": float(np.mean(secs))}
        row["diff"], row["ratio"] = row["ode_nll"] - row["true_nll"], row["w1"] / row["w1_floor"]
        rows.append(row)
        print(f"{tol:>10.0e}{row['ode_nll']:>10.4f}{row['true_nll']:>10.4f}{row['diff']:>+10.4f}"
              f"{row['nfe_nll']:>6.0f}{row['w1']:>8.4f}{row['w1_floor']:>8.4f}"
              f"{row['ratio']:>7.2f}{row['nfe_sample']:>6.0f}{row['seconds_sample']:>8.2f}")
    return rows


def solvers(n: int = 2000) -> list[dict]:
    from torchdiffeq import odeint

    s = make_schedule("cosine", 200)
    field = network_field(GAUSS.denoiser(s.alpha_bar), s)
    start = sigma_max(s)
    rows = []
    print(f"\nsolvers, the same ODE (Gaussian, exact eps), {n} samples")
    for tol in TOLS:
        x_T = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
        start = time.perf_counter()
        ours = ode_sample(field, s, (n, 2), rtol=tol, atol=tol, x_T=x_T)
        scipy_s = time.perf_counter() - start
        calls = [0]

        def rhs(sigma: torch.Tensor, y: torch.Tensor, calls: list[int] = calls) -> torch.Tensor:
            calls[0] += 1
            return field(y.float(), float(sigma)).double()

        start = time.perf_counter()
        with torch.inference_mode():
            ys = odeint(rhs, math.sqrt(1 + start**2) * x_T.double(),
                        torch.tensor([start, 0.0], dtype=torch.float64), rtol=tol, atol=tol,
                        method="dopri5")
        torch_s = time.perf_counter() - start
        gap = float((ys[-1].float() - ours.x0).abs().max())
        rows.append({"tol": tol, "scipy_nfe": ours.nfe, "scipy_seconds": scipy_s,
                     "torchdiffeq_nfe": calls[0], "torchdiffeq_seconds": torch_s,
                     "max_difference": gap})
        print(f"  rtol=atol {tol:.0e}: scipy RK45 {ours.nfe} evaluations {scipy_s:.2f} s; "
              f"torchdiffeq dopri5 {calls[0]} evaluations {torch_s:.2f} s; "
              f"samples differ by at most {gap:.1e}")
    return rows


def _quality(run, sampler: str, **kw) -> dict:
    start = time.perf_counter()
    m = ddpmlab.score(run, sampler=SamplerSpec(sampler, **kw)).metrics
    return {"sampler": sampler, **kw, "seconds": time.perf_counter() - start,
            "1nna": m["1nna"]["value"], "1nna_floor": m["1nna"]["floor"],
            "w1_ratio": m["w1"]["ratio"]}


def _run(tmp: Path, source: str) -> Run:
    """The default run on ``source`` in ``tmp``: trained there, or opened if it is there."""
    if (tmp / source / "checkpoint.safetensors").is_file():
        return ddpmlab.open_run(tmp / source)
    # one thread: on a shared machine two threads beside other processes run 8x slower
    config = default_config(source, {"train": {"threads": 1}})
    return ddpmlab.train_run(config, tmp / source, figures=False, evaluate=False)


def swiss(tmp: Path) -> dict:
    run = _run(tmp, "swiss_roll")
    bound = ddpmlab.run_bound(run)
    start = time.perf_counter()
    exact = ddpmlab.run_exact_nll(run)
    exact["seconds"] = time.perf_counter() - start
    print(f"\nswiss_roll, defaults: bound {bound['nats_per_dim']:.4f} nats/dim, ODE "
          f"{exact['nats_per_dim']:.4f} +- {exact['stderr_nats_per_dim']:.4f} nats/dim "
          f"({exact['nfe']} evaluations, {exact['seconds']:.1f} s)")
    quality = [_quality(run, "ddpm")] + [_quality(run, "ode", rtol=t, atol=t) for t in TOLS]
    for q in quality:
        print(f"  {q['sampler']:>5} {q.get('rtol', '')!s:>7}: 1-NNA {q['1nna']:.3f} (floor "
              f"{q['1nna_floor']:.3f}), W1 {q['w1_ratio']:.2f} x floor, {q['seconds']:.1f} s "
              "for 3 draws of 2,000 with their metrics")
    return {"bound": bound["nats_per_dim"], "exact": exact, "quality": quality}


def digits(tmp: Path) -> dict:
    run = _run(tmp, "digits")
    bound = ddpmlab.run_bound(run)
    start = time.perf_counter()
    exact = ddpmlab.run_exact_nll(run)
    exact["seconds"] = time.perf_counter() - start
    print(f"\ndigits, defaults: bound {bound['bits_per_dim']:.4f} bits/dim, ODE "
          f"{exact['bits_per_dim']:.4f} +- {exact['stderr_bits_per_dim']:.4f} bits/dim "
          f"(Hutchinson, {exact['n']} images, {exact['nfe']} evaluations, "
          f"{exact['seconds']:.1f} s)")
    return {"bound_bits_per_dim": bound["bits_per_dim"], "exact": exact}


def main() -> None:
    parts = {"gaussian": gaussian, "solvers": solvers, "swiss": swiss, "digits": digits}
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", choices=list(parts), default=list(parts))
    ap.add_argument("--runs", type=Path, default=None, help="keep the trained runs in this "
                    "folder and reuse those found there (default: a temporary folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = ROOT / "bench" / "results" / "ode.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        runs.mkdir(parents=True, exist_ok=True)
        for name in args.parts:
            fn = parts[name]
            out[name] = fn(runs) if name in ("swiss", "digits") else fn()  # type: ignore[operator]
            path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
