"""The likelihood of a trained run: the variational bound (``evaluate --nll``) and the exact
likelihood by the probability-flow ODE (``evaluate --exact-nll``), each written to a JSON
file of the run directory (the bound's terms also as a figure)."""

from __future__ import annotations

import math

import torch

from ddpmlab import feedback, viz
from ddpmlab.errors import UserError
from ddpmlab.fileio import exclusive, write_json
from ddpmlab.likelihood import nll_bound
from ddpmlab.runs.evaluation import evaluator_for
from ddpmlab.runs.layout import FIGURES
from ddpmlab.runs.run import Run
from ddpmlab.samplers.ode import ode_nll
from ddpmlab.samplers.spec import ATOL, RTOL

NLL, EXACT_NLL = "nll.json", "exact_nll.json"


def check_bound(run: Run) -> None:
    """Refuse the bound of a flow run: it is a sum over the DDPM chain's T + 1 steps."""
    if run.objective == "flow":
        raise UserError("the variational bound (--nll) belongs to the DDPM's noising chain, "
                        "which a flow run does not have; use --exact-nll alone")


def run_bound(run: Run, n: int | None = None, seed: int = 0, clip: bool | None = None
              ) -> dict:
    """The variational bound on n held-out items, in the data's own units; writes nll.json.

    Points: the network models standardised points, and the change of variables is added
    back; images: the discretised decoder on the data's levels gives a probability mass
    (``Modality.bound_inputs``). n defaults to the evaluation's size.
    clip: x0_hat clamped to [-1, 1] in every reverse step of the bound; None: as the run's
    samplers do (``Modality.clip``: images yes, points never). The clipped bound is the one
    of the chain the image samplers draw from, and the one improved-diffusion's
    ``calc_bpd_loop`` reports, so bits per dimension compare with published figures.
    """
    check_bound(run)
    clip = run.kind.clip if clip is None else clip
    n = evaluator_for(run.kind).eval_size[0] if n is None else n
    if n < 1:
        raise UserError(f"--n must be positive, got {n}")
    x, decoder, log_det = run.kind.bound_inputs(n)
    d = run.config.diffusion
    feedback.status(f"computing the bound's {run.schedule.T + 1} terms on {len(x):,} "
                    f"{run.kind.unit}")
    bound = nll_bound(run.schedule, run.model, x.to(run.device), prediction=d.prediction,
                      variance=d.variance, generator=torch.Generator(run.device).manual_seed(seed),
                      clip=clip, **decoder)
    nats_per_dim = (bound.nats + log_det) / bound.dims
    result = {
        "n": len(x), "seed": seed, "step": run.step, "variance": d.variance,
        "unit": run.kind.unit, "decoder_kind": decoder["decoder"], "clip": clip,
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
    n = evaluator_for(run.kind).eval_size[0] if n is None else n
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
    field, span = run.ode_field()  # a flow's velocity in t, or the DDPM's eps in sigma
    feedback.status(f"integrating the probability-flow ODE on {len(x):,} {run.kind.unit} "
                    f"(rtol {rtol:g}, atol {atol:g})")
    result = ode_nll(field, run.schedule, x, rtol=rtol, atol=atol, generator=g, span=span)
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
            f"{result.get('decoder_kind', 'gaussian')} decoder"
            f"{', x0_hat clipped to [-1, 1]' if result.get('clip') else ''}):\n"
            f"  {result['nats_per_dim']:.4f} nats/dim = {result['bits_per_dim']:.4f} bits/dim"
            + (f" (standardised data: {result['standardised_nats_per_dim']:.4f} nats/dim)"
               if result["standardised_nats_per_dim"] != result["nats_per_dim"] else "")
            + "\n"
            f"  decoder L_0 {result['decoder']:.4f} nats, prior L_T {result['prior']:.2e} nats, "
            f"KL terms {sum(result['terms'][1:]):.4f} nats")
