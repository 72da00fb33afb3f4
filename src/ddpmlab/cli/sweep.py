"""``ddpmlab sweep``: samplers x step counts (or guidance weights): quality and seconds."""

from __future__ import annotations

import argparse

from ddpmlab.cli.settings import check_size, eta_of
from ddpmlab.errors import UserError
from ddpmlab.runs.layout import FIGURES
from ddpmlab.runs.run import open_run
from ddpmlab.runs.sweep import GUIDANCE, SWEEP, format_sweep, sweep
from ddpmlab.samplers import STEPPED, sampler_named


def run(args: argparse.Namespace) -> None:
    samplers = args.samplers or (["ddpm"] if args.guidance else list(STEPPED))
    for name in samplers:
        if not sampler_named(name).stepped:
            raise UserError(f"sweep compares step counts, and the {name} sampler's solver "
                            f"chooses its own; score it with evaluate --sampler {name}")
    check_size(args)
    if any(not w >= 0 for w in args.guidance or ()):
        raise UserError(f"--guidance weights must be >= 0, got {args.guidance}")
    eta = eta_of(args, tuple(samplers))
    opened = open_run(args.run)
    rows = sweep(opened, tuple(samplers), tuple(args.steps or ()), args.n, args.seed, eta,
                 args.repeats, spacing=args.spacing, guidance=tuple(args.guidance or ()))
    print(format_sweep(rows))
    name = GUIDANCE if args.guidance else SWEEP
    print(f"written to {opened.path / name} and "
          f"{opened.path / FIGURES / name.replace('.json', '.png')}")
