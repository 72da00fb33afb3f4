"""``ddpmlab lab``: serve the lab (``ddpmlab.lab``) until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ddpmlab import feedback
from ddpmlab.errors import UserError
from ddpmlab.lab import LOOPBACK, serve


def run(args: argparse.Namespace) -> None:
    runs: Path = args.runs
    if args.run is not None:  # an existing run: its folder is the lab's runs folder
        if not (args.run / "config.json").is_file():
            raise UserError(f"{args.run} is not a ddpmlab run (no config.json); give a folder "
                            "written by `ddpmlab train`, or start `ddpmlab lab` alone")
        runs = args.run.resolve().parent
    if runs.exists() and not runs.is_dir():
        raise UserError(f"{runs} is a file; give a folder with --runs")
    if args.host not in LOOPBACK:
        if not args.expose:
            raise UserError(f"--host {args.host} would let other machines reach the lab; add "
                            "--expose to say so, or leave --host out (127.0.0.1)")
        print(f"ddpmlab: warning: the lab answers on {args.host}: anyone who reaches this "
              "machine can train, upload files and read the runs in "
              f"{runs}; there is no password", file=sys.stderr)

    def ready(address: str) -> None:
        print(f"ddpmlab lab: {address} (runs in {runs}/; Ctrl-C stops it)", flush=True)

    try:
        with feedback.shown(False):  # the page shows the progress; the terminal its address
            serve(runs, args.run, args.host, args.port, on_ready=ready)
    except OSError as e:
        if e.errno == 98:  # EADDRINUSE
            raise UserError(f"port {args.port} is in use; choose another with --port") from None
        raise
