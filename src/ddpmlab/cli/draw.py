"""``ddpmlab figures`` and ``ddpmlab animate``: a run's figures and its reverse-process GIF."""

from __future__ import annotations

import argparse

from ddpmlab.cli.settings import check_new_file, positive
from ddpmlab.runs.figures import animate, make_figures
from ddpmlab.runs.run import open_run


def figures(args: argparse.Namespace) -> None:
    out = make_figures(open_run(args.run), seed=args.seed, guidance=args.guidance)
    print(f"figures written to {out}/")


def gif(args: argparse.Namespace) -> None:
    if args.n is not None:
        positive("--n", args.n)
    if args.out is not None:
        check_new_file(args.out, args.force, (".gif",))
    path = animate(open_run(args.run), n=args.n, seed=args.seed, path=args.out)
    print(f"animation written to {path}")
