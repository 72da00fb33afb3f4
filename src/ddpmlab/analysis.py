"""Analyses of a trained run: the likelihood bound (``evaluate --nll``), the exact likelihood
by the probability-flow ODE (``evaluate --exact-nll``) and the sampler sweep.

Each reads a run directory, computes, and writes a JSON file (and a figure) into it.
"""

from __future__ import annotations

import math
import time

import torch

from ddpmlab import feedback, viz
from ddpmlab.errors import UserError
from ddpmlab.fileio import exclusive, write_json
from ddpmlab.likelihood import nll_bound
from ddpmlab.run import FIGURES, STEPPED, Run, score, score_classes
from ddpmlab.samplers.ode import ATOL, RTOL, network_field, ode_nll

NLL, EXACT_NLL, SWEEP, GUIDANCE = "nll.json", "exact_nll.json", "sweep.json", "guidance.json"


def run_bound(run: Run, n: int | None = None, seed: int = 0) -> dict:
    """The variational bound on n held-out items, in the data's own units; writes nll.json.

    Points: the network models standardised points, and the change of variables is added
    back; images: the discretised decoder on the data's levels gives a probability mass
    (``Modality.bound_inputs``). n defaults to the modality's evaluation size.
    """
    n = run.kind.eval_size[0] if n is None else n
    if n < 1:
        raise UserError(f"--n must be positive, got {n}")
    x, decoder, log_det = run.kind.bound_inputs(n)
    d = run.config.diffusion
    feedback.status(f"computing the bound's {run.schedule.T + 1} terms on {len(x):,} "
                    f"{run.kind.unit}")
    bound = nll_bound(run.schedule, run.model, x.to(run.device), prediction=d.prediction,
                      variance=d.variance, generator=torch.Generator(run.device).manual_seed(seed),
                      **decoder)
    nats_per_dim = (bound.nats + log_det) / bound.dims
    result = {
        "n": len(x), "seed": seed, "step": run.step, "variance": d.variance,
        "unit": run.kind.unit, "decoder_kind": decoder["decoder"],
        "nats_per_dim": nats_per_dim, "bits_per_dim": nats_per_dim / math.log(2),
        "standardised_nats_per_dim": bound.nats_per_dim, "prior": bound.prior,
        "decoder": float(bound.terms[0]), "terms": bound.terms.tolist(),
    }
    with exclusive(run.path):
        write_json(run.path / NLL, result)
        (run.path / FIGURES).mkdir(exist_ok=True)
        viz.plot_bound_terms(bound.terms, bound.prior, run.path / FIGURES / "nll_terms.png",
                             title=f"bound terms, {d.variance} variance, step {run.step}")
    return result


def run_exact_nll(run: Run, n: int | None = None, seed: int = 0, rtol: float = RTOL,
                  atol: float = ATOL) -> dict:
    """-log p(x) under the probability-flow ODE on n held-out items, in the data's own units
    (``samplers.ode.ode_nll``); writes exact_nll.json.

    The same items and change of variables as :func:`run_bound`. Where the bound uses the
    discretised decoder (images on L levels, bins of width 2 / (L - 1) in [-1, 1]), the
    items are dequantised uniformly within their bins and the bins' volume is taken off:
    -log P(x) <= E_u[-log p(x + u)] - D log(2 / (L - 1)) (Jensen; Theis et al. 2016, Sec.
    3.1), a probability mass like the bound's, so the two compare. Divergence: exact up to
    ``ode.EXACT_MAX_DIMS`` dimensions (points), else Hutchinson's (images), with the standard
    error over the items (the probes' noise included). The network runs without clipping:
    the ODE's density is that of the unclipped field.
    """
    n = run.kind.eval_size[0] if n is None else n
    if n < 2:
        raise UserError(f"--n must be at least 2 for a standard error, got {n}")
    x, decoder, log_det = run.kind.bound_inputs(n)
    g = torch.Generator(run.device).manual_seed(seed)
    x = x.to(run.device)
    dequantised = 0.0
    if decoder["decoder"] == "discretized":
        width = 2.0 / (decoder["levels"] - 1)  # the bins of the bound's decoder (Ho Eq. 13)
        x = x + width * (torch.rand(x.shape, generator=g, device=run.device) - 0.5)
        dequantised = -math.log(width)  # per dimension: -log(bin volume) / D, added below
    d = run.config.diffusion
    field = network_field(run.model, run.schedule, prediction=d.prediction, variance=d.variance)
    feedback.status(f"integrating the probability-flow ODE on {len(x):,} {run.kind.unit} "
                    f"(rtol {rtol:g}, atol {atol:g})")
    result = ode_nll(field, run.schedule, x, rtol=rtol, atol=atol, generator=g)
    # -log P(x) <= -log p(x + u) - D log(width): the mass of a bin is at least its volume
    # times the density's geometric mean over it (Jensen)
    nats_per_dim = result.nats_per_dim + log_det / result.dims + dequantised
    out = {
        "n": len(x), "seed": seed, "step": run.step, "unit": run.kind.unit, "rtol": rtol,
        "atol": atol, "nfe": result.nfe, "divergence": result.divergence,
        "dequantised_levels": decoder.get("levels"),
        "nats_per_dim": nats_per_dim, "bits_per_dim": nats_per_dim / math.log(2),
        "stderr_nats_per_dim": result.stderr_per_dim,
        "stderr_bits_per_dim": result.stderr_per_dim / math.log(2),
        "prior_nats_per_dim": float(result.prior.mean()) / result.dims,
    }
    with exclusive(run.path):
        write_json(run.path / EXACT_NLL, out)
    return out


def format_exact_nll(result: dict, bound: dict | None = None) -> str:
    levels = result.get("dequantised_levels")
    deq = f", uniformly dequantised on {levels} levels" if levels else ""
    lines = [f"negative log-likelihood by the probability-flow ODE on {result['n']} held-out "
             f"{result['unit']} ({result['divergence']} divergence{deq}; rtol {result['rtol']:g},"
             f" atol {result['atol']:g}, {result['nfe']} function evaluations):",
             f"  {result['nats_per_dim']:.4f} nats/dim = {result['bits_per_dim']:.4f} bits/dim "
             f"(standard error {result['stderr_bits_per_dim']:.4f} bits/dim)"]
    if bound is not None:
        lines.append(f"  beside the variational bound: {bound['nats_per_dim']:.4f} nats/dim = "
                     f"{bound['bits_per_dim']:.4f} bits/dim (exact - bound = "
                     f"{result['nats_per_dim'] - bound['nats_per_dim']:+.4f} nats/dim)")
    return "\n".join(lines)


def format_bound(result: dict) -> str:
    return (f"negative log-likelihood bound on {result['n']} held-out "
            f"{result.get('unit', 'points')} ({result['variance']} variance, "
            f"{result.get('decoder_kind', 'gaussian')} decoder):\n"
            f"  {result['nats_per_dim']:.4f} nats/dim = {result['bits_per_dim']:.4f} bits/dim"
            + (f" (standardised data: {result['standardised_nats_per_dim']:.4f} nats/dim)"
               if result["standardised_nats_per_dim"] != result["nats_per_dim"] else "")
            + "\n"
            f"  decoder L_0 {result['decoder']:.4f} nats, prior L_T {result['prior']:.2e} nats, "
            f"KL terms {sum(result['terms'][1:]):.4f} nats")


def sweep(run: Run, samplers: tuple[str, ...] = STEPPED, steps: tuple[int, ...] | None = None,
          n: int | None = None, seed: int = 0, eta: float = 0.0, repeats: int = 1, *,
          spacing: str | None = None, guidance: tuple[float, ...] = ()) -> list[dict]:
    """Sampler x number of steps (x guidance weight) -> quality beside its floor and seconds;
    writes sweep.json and figures/sweep.png (with ``guidance``: guidance.json and
    figures/guidance.png).

    steps default: 5, 10, 20, 50, 100 and T (those < T, then T); with ``guidance``, T only.
    Each cell is :func:`ddpmlab.run.score` with ``repeats`` draws: the same reference sets
    and floors as ``evaluate`` with as many repeats (by default one, the first of evaluate's
    three, so its floor differs from evaluate's three-set average by the scatter of one
    set). With ``guidance`` (a conditional run), each cell is
    :func:`ddpmlab.run.score_classes` at that weight, n samples per class: the share
    classified as their class (quality) against the per-class distance to the class's
    held-out data over its floor (diversity and fidelity). Seconds are the whole cell:
    sampling and metrics. spacing: as ``Run.sample`` (None: each sampler's default,
    ``Run.spacing``); the file records the one of each sampler.
    """
    T = run.schedule.T
    steps = steps or ((T,) if guidance else (*(k for k in (5, 10, 20, 50, 100) if k < T), T))
    if any(not 1 <= k <= T for k in steps):
        raise UserError(f"sampling steps must lie in 1..{T} (T of this run), got {list(steps)}")
    if guidance and run.classes is None:
        raise UserError(f"--guidance needs a conditional run; {run.path} was trained without "
                        "classes (train one with --conditional)")
    rows = []
    cells = [(sampler, k, w) for sampler in samplers for k in steps for w in guidance or (None,)]
    with exclusive(run.path):
        with feedback.bar(len(cells), "sweep", unit="cell") as bar:
            for sampler, k, w in cells:
                bar.set_postfix(sampler=sampler, steps=k, **({} if w is None else {"w": w}))
                start = time.perf_counter()
                with feedback.shown(False):  # one bar for the sweep, none per cell
                    row = (_score_row(run, n, seed, repeats, sampler, k, eta, spacing) if w is None
                           else _guidance_row(run, w, n, seed, sampler, k, eta, spacing))
                rows.append({"sampler": sampler, "steps": k,
                             "seconds": time.perf_counter() - start, **row})
                bar.update()
        name, plot = (GUIDANCE, viz.plot_guidance) if guidance else (SWEEP, viz.plot_sweep)
        # the spacing each sampler used: --spacing, else its default (the run's prediction's)
        used = {s: spacing or run.spacing(s) for s in samplers}
        write_json(run.path / name, {"eta": eta, "seed": seed, "spacing": used, "rows": rows})
        (run.path / FIGURES).mkdir(exist_ok=True)
        plot(rows, run.path / FIGURES / name.replace(".json", ".png"))
    return rows


def _score_row(run: Run, n: int | None, seed: int, repeats: int, sampler: str, k: int,
               eta: float, spacing: str | None) -> dict:
    result = score(run, n, seed, repeats, sampler, k, eta, spacing=spacing)
    m = result.metrics
    nna, ratio = run.kind.headline(m)
    return {"n": result.n, "repeats": result.repeats, "1nna": m[nna]["value"],
            "1nna_floor": m[nna]["floor"], "ratio_name": ratio,
            "ratio": None if ratio is None else m[ratio]["ratio"]}


def _guidance_row(run: Run, w: float, n: int | None, seed: int, sampler: str, k: int,
                  eta: float, spacing: str | None) -> dict:
    """One guidance weight: accuracy over all classes and its worst class, the per-class
    distance / floor averaged over the classes, and over all classes together."""
    r = score_classes(run, w, n, seed, sampler, k, eta, spacing)
    classes, overall = list(r["classes"].values()), r["overall"]
    ratio = next((m[:-6] for m in overall if m.endswith("_ratio")
                  and overall[m] is not None), None)
    accuracies = [c["accuracy"] for c in classes if c["accuracy"] is not None]
    nna = next((m for m in ("1nna", "1nna_px") if m in overall), None)
    return {"guidance": w, "n": r["n"], "accuracy": overall["accuracy"],
            "1nna": None if nna is None else sum(c[nna] for c in classes) / len(classes),
            "accuracy_min": min(accuracies) if accuracies else None,
            "accuracy_real": overall["accuracy_real"], "ratio_name": ratio,
            "ratio": None if ratio is None else
            sum(c[f"{ratio}_ratio"] for c in classes) / len(classes),
            "ratio_all": None if ratio is None else overall[f"{ratio}_ratio"],
            "classes": r["classes"], "overall": overall}


def format_sweep(rows: list[dict]) -> str:
    if rows and "guidance" in rows[0]:
        return format_guidance(rows)
    name = f"{(rows[0]['ratio_name'] or 'ratio').upper()}/floor" if rows else "ratio"
    lines = [f"{'sampler':<8}{'steps':>6}{'seconds':>9}{'1-NNA':>8}{'floor':>8}{name:>10}"]
    lines += [f"{r['sampler']:<8}{r['steps']:>6}{r['seconds']:>9.2f}{r['1nna']:>8.3f}"
              f"{r['1nna_floor']:>8.3f}"
              + ("         -" if r["ratio"] is None else f"{r['ratio']:>10.2f}") for r in rows]
    return "\n".join(lines)


def format_guidance(rows: list[dict]) -> str:
    """The guidance sweep as a table: w, accuracy (all, worst class; real data's), per-class
    and overall distance / floor, the per-class 1-NNA (0.5 ideal), seconds."""
    name = (rows[0]["ratio_name"] or "ratio").upper() if rows else "ratio"
    lines = [f"{'w':>5}{'accuracy':>10}{'worst':>8}{'(real)':>8}{f'{name}/floor':>11}"
             f"{'(all)':>8}{'1-NNA':>7}{'seconds':>9}"]

    def num(v: float | None, width: int, digits: int) -> str:
        return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"

    lines += [f"{r['guidance']:>5g}{num(r['accuracy'], 10, 3)}{num(r['accuracy_min'], 8, 3)}"
              f"{num(r['accuracy_real'], 8, 3)}{num(r['ratio'], 11, 2)}"
              f"{num(r['ratio_all'], 8, 2)}{num(r['1nna'], 7, 3)}{r['seconds']:>9.1f}"
              for r in rows]
    return "\n".join(lines)
