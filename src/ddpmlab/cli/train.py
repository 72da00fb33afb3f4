"""``ddpmlab train``: train a model on points or images into a run directory."""

from __future__ import annotations

import argparse
import sys

from ddpmlab import distributed
from ddpmlab.cli.settings import train_request
from ddpmlab.runs.evaluation import read_evaluation
from ddpmlab.runs.layout import FIGURES
from ddpmlab.runs.training import train_run


def run(args: argparse.Namespace) -> None:
    request = distributed.together(lambda: train_request(args))  # a refusal said once
    config, out, step = distributed.from_main(request)  # not two fresh folders
    trained = train_run(config, out, resume=step is not None, force=args.force,
                        figures=not args.no_figures, evaluate=not args.no_eval,
                        on_start=lambda text: print(text, file=sys.stderr), device=args.device)
    complete = step is not None and step >= config.train.steps  # train_run said so, did nothing
    if complete or not distributed.current().main:  # rank 0 reports for the group
        return
    if not args.no_eval:
        print(read_evaluation(trained.path))
    print(f"run saved in {out}/ (figures in {out / FIGURES}/)" if not args.no_figures
          else f"run saved in {out}/")
