"""The ``ddpmlab`` command: parses, builds configs and calls the library.

User mistakes end with one line on stderr and exit status 2; an interrupted training keeps
a checkpoint and exits with 130.
"""

from __future__ import annotations

import importlib
import signal
import sys
import warnings
from collections.abc import Callable
from typing import Any

from ddpmlab import distributed, feedback
from ddpmlab.cli.parser import build_parser
from ddpmlab.errors import UserError
from ddpmlab.train import Diverged


def _job(name: str) -> Callable[..., None]:
    """The function behind a subcommand, ``module`` (its ``run``) or ``module:function`` of
    ddpmlab.cli. Imported on use: evaluation and figures load scipy, scikit-learn, POT and
    matplotlib, which would more than double the start-up of ``sample`` (bench/README.md,
    "The optimiser and start-up")."""
    module, _, function = name.partition(":")
    job: Callable[..., None] = getattr(importlib.import_module(f"ddpmlab.cli.{module}"),
                                       function or "run")
    return job


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    return f"ddpmlab: warning: {message}\n"


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops training like Ctrl-C: checkpoint, then exit


#: the commands torchrun may start on several processes (ddpmlab.distributed)
SHARED = ("train", "sample", "evaluate")


def main(argv: list[str] | None = None) -> int:
    group = distributed.launched()
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _warning_line  # one line, no source context
    signal.signal(signal.SIGTERM, _terminate)
    # under torchrun, rank 0 speaks for the group: what every rank agrees on (an
    # interrupt, a NaN, a lost peer, a failure another rank reports) is said once, by it
    say = group.main or not group.many
    try:  # joining torchrun's group: what fails here fails alike on every rank
        if group.many and args.command not in SHARED:
            raise UserError(f"`{args.command}` runs in one process; only "
                            f"{', '.join(SHARED)} share their work under torchrun")
        distributed.setup(getattr(args, "device", "cpu"))
    except UserError as e:
        if say:
            print(f"ddpmlab: error: {e}", file=sys.stderr)
        return 2
    try:
        with feedback.shown(not args.quiet and group.main):
            _job(args.job)(args)
    except distributed.ElsewhereFailed:
        return 2
    except (distributed.PeerLost, Diverged) as e:
        if say:
            print(f"ddpmlab: error: {e}", file=sys.stderr)
        return 1
    except UserError as e:  # another rank's own failure: said by it, naming itself
        where = "" if say else f"rank {group.rank}: "
        print(f"ddpmlab: error: {where}{e}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused: a read-only folder, a full disk, ...
        where = e.filename2 or e.filename
        print(f"ddpmlab: error: {e.strerror}: {where}" if e.strerror and where
              else f"ddpmlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        saved = " (a checkpoint of the training so far was saved)" if args.command == "train" \
            else ""
        if say:
            print(f"ddpmlab: interrupted{saved}", file=sys.stderr)
        return 130
    finally:
        distributed.teardown()
    return 0
