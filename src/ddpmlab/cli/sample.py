"""``ddpmlab sample``: draw samples from a trained run into a file."""

from __future__ import annotations

import argparse
import sys

from ddpmlab import distributed
from ddpmlab.cli.settings import check_new_file, positive, sampler_spec
from ddpmlab.runs.run import Run, open_run
from ddpmlab.samplers import SamplerSpec, describe


def run(args: argparse.Namespace) -> None:
    def check() -> tuple[Run, SamplerSpec]:
        positive("--n", args.n)
        opened = open_run(args.run, args.device)
        spec = sampler_spec(args, opened.default_sampler)
        opened.check_sampler(spec)
        opened.labels(args.n, args.cls)  # an unknown class, or one on an unconditional run
        if distributed.current().main:  # the one that writes
            check_new_file(args.out, args.force, opened.kind.sample_suffixes,
                           opened.kind.output_files(args.out, args.n))
        return opened, spec

    opened, spec = distributed.together(check)  # a refusal said once
    main = distributed.current().main
    target = opened.config.train.steps
    if opened.step < target and main:  # a run still training, or stopped before its end
        print(f"ddpmlab: note: {opened.path} has trained {opened.step} of its {target} steps; "
              "sampling that checkpoint", file=sys.stderr)
    x = opened.sample(args.n, args.seed, spec, cls=args.cls, guidance=args.guidance)
    if main:
        meta = {"ddpmlab-run": str(opened.path), "ddpmlab-step": f"{opened.step} of {target}",
                "ddpmlab-sampler": describe(spec, opened.schedule.T,
                                            opened.spacing(spec.name)),
                "ddpmlab-seed": str(args.seed)}
        print(f"wrote {opened.kind.write_samples(x, args.out, meta)} to {args.out}")
