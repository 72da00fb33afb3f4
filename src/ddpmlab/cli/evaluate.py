"""``ddpmlab evaluate``: sample quality beside the real-vs-real floor, per class for a
conditional run when asked, and the likelihood (the bound, the exact one)."""

from __future__ import annotations

import argparse

from ddpmlab import distributed
from ddpmlab.cli.settings import check_size, sampler_spec
from ddpmlab.errors import UserError
from ddpmlab.metrics import class_table
from ddpmlab.runs import likelihood
from ddpmlab.runs.evaluation import evaluate_classes, evaluate_run, score
from ddpmlab.runs.layout import CLASSES, FIGURES, METRICS
from ddpmlab.runs.run import Run, open_run
from ddpmlab.samplers import SamplerSpec, describe


def _silent(*args: object) -> None:
    """print's stand-in on the ranks that do not report."""


def run(args: argparse.Namespace) -> None:
    group = distributed.current()

    def check() -> tuple[Run, SamplerSpec]:
        check_size(args)
        if args.unclipped_bound and not (args.nll or args.exact_nll):
            raise UserError("--unclipped-bound applies to the bound; add --nll")
        if group.many and (args.nll or args.exact_nll):
            raise UserError("--nll and --exact-nll run in one process; start them without "
                            "torchrun")
        opened = open_run(args.run, args.device)
        spec = sampler_spec(args, opened.default_sampler)
        if args.nll:
            likelihood.check_bound(opened)
        if (args.guidance is not None or args.n_class is not None) and opened.classes is None:
            raise UserError(f"--guidance and --n-class need a conditional run; {opened.path} "
                            "was trained without classes (train one with --conditional)")
        opened.check_sampler(spec)
        return opened, spec

    opened, spec = distributed.together(check)  # a refusal said once
    say = print if group.main else _silent  # the other ranks draw their share of samples
    if spec == SamplerSpec(opened.default_sampler, rtol=spec.rtol, atol=spec.atol):  # saved
        say(evaluate_run(opened, args.n, args.seed, args.repeats))
        say(f"written to {opened.path / METRICS}")
    else:  # another sampler: printed, metrics.json keeps the default sampler's numbers
        say(score(opened, args.n, args.seed, args.repeats, spec))
        how = describe(spec, opened.schedule.T, opened.spacing(spec.name))
        say(f"({how}; metrics.json keeps the default sampler's numbers)")
    per_class = args.guidance is not None or args.n_class is not None
    if opened.classes is not None and per_class:  # each class at --guidance
        w = args.guidance or 0.0
        result = evaluate_classes(opened, w, args.n_class, args.seed, spec)
        if group.main:
            sets = f"{result['draws']} independent sets" if result["draws"] > 1 else "one set"
            print(f"per class, guidance w = {w:g}: {sets} of {result['n']} samples "
                  "of each class")
            print(class_table(result))
            print(f"written to {opened.path / CLASSES}")
    bound = None
    if args.nll or (args.exact_nll and opened.objective == "ddpm"):  # a flow has no bound
        bound = likelihood.run_bound(opened, args.n, args.seed,
                                     clip=False if args.unclipped_bound else None)
        print(likelihood.format_bound(bound))
        print(f"written to {opened.path / likelihood.NLL} and "
              f"{opened.path / FIGURES / 'nll_terms.png'}")
    if args.exact_nll:
        exact = likelihood.run_exact_nll(opened, args.n, args.seed, spec.rtol, spec.atol)
        print(likelihood.format_exact_nll(exact, bound))
        print(f"written to {opened.path / likelihood.EXACT_NLL}")
