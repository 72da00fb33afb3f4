"""The sampler sweep of a trained run (``ddpmlab sweep``): sampler x number of steps (x guidance
weight) -> quality beside its floor, and seconds; written to sweep.json (guidance.json) and a
figure."""

from __future__ import annotations

import time

from ddpmlab import feedback, viz
from ddpmlab.errors import UserError
from ddpmlab.fileio import exclusive, write_json
from ddpmlab.metrics import EVALUATORS
from ddpmlab.runs.evaluation import score, score_classes
from ddpmlab.runs.layout import FIGURES
from ddpmlab.runs.run import Run
from ddpmlab.samplers import SAMPLERS, SamplerSpec

SWEEP, GUIDANCE = "sweep.json", "guidance.json"
WARM_UP = 64  # samples each sampler draws before the timed cells
RETIME_BELOW = 2.0  # seconds under which a cell's single draw is timed again
RETIMES = 5  # draws timed in all then, the fastest kept
SECONDS_NOTE = ("seconds: drawing the cell's samples, after a warm-up of every sampler "
                "(the metrics are not counted)")


def sweep(run: Run, samplers: tuple[str, ...] | None = None,
          steps: tuple[int, ...] | None = None,
          n: int | None = None, seed: int = 0, eta: float = 0.0, repeats: int = 1, *,
          spacing: str | None = None, guidance: tuple[float, ...] = ()) -> list[dict]:
    """Sampler x number of steps (x guidance weight) -> quality beside its floor and seconds;
    writes sweep.json and figures/sweep.png (``samplers`` None: the run's stepped ones; each
    row's ``nfe``: the network evaluations of a sample) (with ``guidance``: guidance.json and
    figures/guidance.png).

    steps default: 5, 10, 20, 50, 100 and T (those < T, then T); with ``guidance``, T only.
    Each cell is :func:`ddpmlab.runs.evaluation.score` with ``repeats`` draws: the same
    reference sets and floors as ``evaluate`` with as many repeats (by default one, the first of
    evaluate's three, so its floor differs from evaluate's three-set average by the scatter of
    one set). With ``guidance`` (a conditional run), each cell is
    :func:`ddpmlab.runs.evaluation.score_classes` at that weight, n samples per class: the share
    classified as their class (quality) against the per-class distance to the class's held-out
    data over its floor (diversity and fidelity). ``seconds`` is the wall time of drawing a
    cell's samples (not of its metrics), after a warm-up of every sampler, so that the first
    cell is not charged with the first call's set-up. spacing: as ``Run.sample`` (None: each
    sampler's default, ``Run.spacing``); the file records the one of each sampler.
    """
    samplers = samplers or run.samplers  # the run's stepped samplers (its objective's)
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
        _warm_up(run, samplers, spacing, seed)
        with feedback.bar(len(cells), "sweep", unit="cell") as bar:
            for sampler, k, w in cells:
                bar.set_postfix(sampler=sampler, steps=k, **({} if w is None else {"w": w}))
                spec = SamplerSpec(sampler, k, spacing, eta if SAMPLERS[sampler].eta else 0.0)
                with feedback.shown(False):  # one bar for the sweep, none per cell
                    row = (_score_row(run, n, seed, repeats, spec) if w is None
                           else _guidance_row(run, w, n, seed, spec))
                rows.append({"sampler": sampler, "steps": k,
                             "nfe": k * SAMPLERS[sampler].nfe, **row})
                bar.update()
        name, plot = (GUIDANCE, viz.plot_guidance) if guidance else (SWEEP, viz.plot_sweep)
        # the spacing each sampler used: --spacing, else its default (the run's prediction's)
        used = {s: spacing or run.spacing(s) for s in samplers}
        write_json(run.path / name, {"eta": eta, "seed": seed, "spacing": used, "rows": rows})
        (run.path / FIGURES).mkdir(exist_ok=True)
        plot(rows, run.path / FIGURES / name.replace(".json", ".png"))
    return rows


def _warm_up(run: Run, samplers: tuple[str, ...], spacing: str | None, seed: int) -> None:
    """A few samples of each sampler, discarded: the first call of a process pays for
    set-up (kernels' first dispatch, thread pools, buffers) that no later cell pays."""
    with feedback.shown(False):
        for sampler in samplers:
            run.sample(WARM_UP, seed, SamplerSpec(sampler, min(2, run.schedule.T), spacing))


def _score_row(run: Run, n: int | None, seed: int, repeats: int, spec: SamplerSpec) -> dict:
    result = score(run, n, seed, repeats, spec)
    seconds = result.sampling_seconds
    assert seconds is not None
    if result.repeats == 1 and seconds < RETIME_BELOW:  # mostly noise: the best of RETIMES
        for _ in range(RETIMES - 1):
            start = time.perf_counter()
            run.sample(result.n, seed, spec)
            seconds = min(seconds, time.perf_counter() - start)
    m = result.metrics
    nna, ratio = EVALUATORS[run.kind.name].headline(m)
    return {"n": result.n, "repeats": result.repeats, "seconds": seconds,
            "1nna": m[nna]["value"],
            "1nna_floor": m[nna]["floor"], "ratio_name": ratio,
            "ratio": None if ratio is None else m[ratio]["ratio"]}


def _guidance_row(run: Run, w: float, n: int | None, seed: int, spec: SamplerSpec) -> dict:
    """One guidance weight: accuracy over all classes and its worst class, the per-class
    distance / floor averaged over the classes, and over all classes together."""
    r = score_classes(run, w, n, seed, spec)
    classes, overall = list(r["classes"].values()), r["overall"]
    ratio = next((m[:-6] for m in overall if m.endswith("_ratio")
                  and overall[m] is not None), None)
    accuracies = [c["accuracy"] for c in classes if c["accuracy"] is not None]
    nna = next((m for m in ("1nna", "1nna_px") if m in overall), None)
    return {"guidance": w, "n": r["n"], "seconds": r["sampling_seconds"],
            "accuracy": overall["accuracy"],
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
    width = max([8, *(len(r["sampler"]) + 1 for r in rows)])
    lines = [f"{'sampler':<{width}}{'steps':>6}{'seconds':>9}{'1-NNA':>8}{'floor':>8}{name:>10}"]
    lines += [f"{r['sampler']:<{width}}{r['steps']:>6}{r['seconds']:>9.2f}{r['1nna']:>8.3f}"
              f"{r['1nna_floor']:>8.3f}"
              + ("         -" if r["ratio"] is None else f"{r['ratio']:>10.2f}") for r in rows]
    return "\n".join([*lines, SECONDS_NOTE])


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
    return "\n".join([*lines, SECONDS_NOTE])
