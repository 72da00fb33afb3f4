"""``ddpmlab sweep``: samplers x step counts (or guidance weights): quality and seconds."""

from __future__ import annotations

import argparse

from ddpmlab.cli.settings import check_size, eta_of
from ddpmlab.errors import UserError
from ddpmlab.runs.layout import FIGURES
from ddpmlab.runs.run import open_run
from ddpmlab.runs.sweep import GUIDANCE, SWEEP, format_sweep, sweep
from ddpmlab.samplers import check_objective, sampler_named


def run(args: argparse.Namespace) -> None:
    for name in args.samplers or ():
        if not sampler_named(name).stepped:
            raise UserError(f"sweep compares step counts, and the {name} sampler's solver "
                            f"chooses its own; score it with evaluate --sampler {name}")
    check_size(args)
    if any(not w >= 0 for w in args.guidance or ()):
        raise UserError(f"--guidance weights must be >= 0, got {args.guidance}")
    opened = open_run(args.run)
    samplers = args.samplers or ([opened.default_sampler] if args.guidance
                                 else list(opened.samplers))
    for name in samplers:
        check_objective(name, opened.objective)
    eta = eta_of(args, tuple(samplers))
    rows = sweep(opened, tuple(samplers), tuple(args.steps or ()), args.n, args.seed, eta,
                 args.repeats, spacing=args.spacing, guidance=tuple(args.guidance or ()))
    print(format_sweep(rows))
    name = GUIDANCE if args.guidance else SWEEP
    print(f"written to {opened.path / name} and "
          f"{opened.path / FIGURES / name.replace('.json', '.png')}")
