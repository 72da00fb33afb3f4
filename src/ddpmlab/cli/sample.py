"""``ddpmlab sample``: draw samples from a trained run into a file."""

from __future__ import annotations

import argparse

from ddpmlab import distributed
from ddpmlab.cli.settings import check_new_file, positive, sampler_spec
from ddpmlab.runs.run import Run, open_run
from ddpmlab.samplers import SamplerSpec


def run(args: argparse.Namespace) -> None:
    def check() -> tuple[Run, SamplerSpec]:
        positive("--n", args.n)
        spec = sampler_spec(args)
        opened = open_run(args.run, args.device)
        opened.check_sampler(spec)
        opened.labels(args.n, args.cls)  # an unknown class, or one on an unconditional run
        if distributed.current().main:  # the one that writes
            check_new_file(args.out, args.force, opened.kind.sample_suffixes,
                           opened.kind.output_files(args.out, args.n))
        return opened, spec

    opened, spec = distributed.together(check)  # a refusal said once
    x = opened.sample(args.n, args.seed, spec, cls=args.cls, guidance=args.guidance)
    if distributed.current().main:
        print(f"wrote {opened.kind.write_samples(x, args.out)} to {args.out}")
