"""The ``ddpmlab`` command: parses, seeds, builds configs and calls the library.

Every config flag is one row of :data:`FLAGS`, mapped onto a field of
:class:`~ddpmlab.config.RunConfig`; a TOML file (``--config``) sets the same fields, and
flags win over the file. User mistakes end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab import run as runs
from ddpmlab.config import RunConfig, from_dict, load_toml, replace, to_dict, validate
from ddpmlab.data import TOY2D
from ddpmlab.errors import UserError
from ddpmlab.fileio import write_atomic

# flag -> (config section, field, type, help)
FLAGS: dict[str, tuple[str, str, type, str]] = {
    "--steps": ("train", "steps", int, "training steps"),
    "--seed": ("train", "seed", int, "random seed (data, weights, batches, noise)"),
    "--batch-size": ("train", "batch_size", int, "points per training batch"),
    "--lr": ("train", "lr", float, "peak Adam learning rate"),
    "--threads": ("train", "threads", int, "torch threads (1 is fastest for small MLPs)"),
    "--checkpoint-every": ("train", "checkpoint_every", int,
                           "write the checkpoint every N steps; 0: only at the end"),
    "--model": ("model", "name", str, "network: resmlp or seed_mlp"),
    "--hidden": ("model", "hidden", int, "hidden width of the network"),
    "--schedule": ("diffusion", "schedule", str,
                   "beta schedule: linear, linear_unscaled, cosine or sigmoid"),
    "--timesteps": ("diffusion", "timesteps", int, "T, the number of diffusion steps"),
    "--variance": ("diffusion", "variance", str,
                   "reverse variance: fixed_small, fixed_large or learned_range"),
    "--prediction": ("diffusion", "prediction", str, "network target: eps, x0 or v"),
}
RESUME_FLAGS = {"steps", "checkpoint_every"}  # the train fields --resume may change


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    defaults = to_dict(RunConfig())
    for flag, (section, name, kind, text) in FLAGS.items():
        p.add_argument(flag, type=kind, default=None, metavar=name.upper(),
                       help=f"{text} (default: {defaults[section][name]})")


def _overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for flag, (section, name, _, _) in FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            out.setdefault(section, {})[name] = value
    return out


def _fresh_out(name: str) -> Path:
    """runs/NAME, or runs/NAME-2, -3, ... : a new run never overwrites an old one."""
    base = Path("runs") / name
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def cmd_train(args: argparse.Namespace) -> None:
    overrides = _overrides(args)
    if args.resume:
        if args.out is None:
            raise UserError("--resume needs --out RUN, the run directory to continue")
        if set(overrides) - {"train"} or set(overrides.get("train", {})) - RESUME_FLAGS:
            raise UserError("--resume continues the saved configuration; only --steps and "
                            "--checkpoint-every may change (drop the other flags)")
        saved, resume = runs.resume_config(args.out)
        config = validate(replace(saved, overrides))
        out = args.out
        if not resume:  # killed before its first checkpoint: nothing learned to keep
            print(f"ddpmlab: note: {out} holds no checkpoint yet; training it from step 0",
                  file=sys.stderr)
    else:
        base = from_dict(RunConfig, load_toml(args.config)) if args.config else RunConfig()
        if args.data is not None:
            overrides.setdefault("data", {})["source"] = args.data
        elif not args.config:
            raise UserError("give the data to learn: a built-in name "
                            f"({', '.join(TOY2D)}) or a .csv/.txt/.npy file")
        config = validate(replace(base, overrides))
        out = args.out or _fresh_out(Path(config.data.source).stem)
        if (out / runs.CKPT).exists():
            raise UserError(f"{out} already holds a run; add --resume to continue it, or "
                            "choose another --out")
        resume = False
    run = runs.train_run(config, out, resume=resume, progress=not args.quiet,
                         figures=not args.no_figures,
                         on_start=lambda text: print(text, file=sys.stderr))
    _print_metrics(run)
    print(f"run saved in {out}/ (figures in {out / runs.FIGURES}/)" if not args.no_figures
          else f"run saved in {out}/")


def _print_metrics(run: runs.Run) -> None:
    from ddpmlab.metrics import format_table  # imported on use, as in run.py

    saved = json.loads((run.path / runs.METRICS).read_text())
    print(format_table(saved["metrics"], saved["n"], saved["repeats"]))


def cmd_sample(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise UserError(f"--n must be positive, got {args.n}")
    if args.out.suffix not in (".npy", ".csv"):
        raise UserError(f"--out must end in .npy or .csv, got {args.out.name}")
    if not args.out.parent.is_dir():
        raise UserError(f"output folder {args.out.parent} does not exist; create it first")
    if args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder; give a file name")
    x = runs.open_run(args.run).sample(args.n, args.seed, args.sampler, args.steps, args.eta)
    if args.out.suffix == ".npy":
        write_atomic(args.out, lambda tmp: np.save(tmp, x))
    else:
        write_atomic(args.out, lambda tmp: np.savetxt(tmp, x, fmt="%.8g", delimiter=",",
                                                      header="x,y", comments=""))
    print(f"wrote {len(x)} samples to {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.n < 2 or args.repeats < 1:
        raise UserError("--n must be at least 2 and --repeats at least 1")
    from ddpmlab.metrics import format_table  # imported on use, as in run.py

    run = runs.open_run(args.run)
    if (args.sampler, args.steps, args.eta) == ("ddpm", None, 0.0):
        result, n, repeats = runs.evaluate_run(run, args.n, args.seed, args.repeats)
        written = f"written to {run.path / runs.METRICS}"
    else:  # another sampler: printed, metrics.json keeps the default sampler's numbers
        result, n, repeats = runs.score(run, args.n, args.seed, args.repeats, args.sampler,
                                        args.steps, args.eta)
        written = f"({args.sampler}, {args.steps or 'all'} steps, eta {args.eta:g})"
    print(format_table(result, n, repeats))
    print(written)
    if args.nll:
        from ddpmlab.analysis import NLL, format_bound, run_bound

        print(format_bound(run_bound(run, args.n, args.seed)))
        print(f"written to {run.path / NLL} and {run.path / runs.FIGURES / 'nll_terms.png'}")


def cmd_sweep(args: argparse.Namespace) -> None:
    from ddpmlab.analysis import SWEEP, format_sweep, sweep

    run = runs.open_run(args.run)
    for name in args.samplers:
        if name not in runs.SAMPLERS:
            raise UserError(f"unknown sampler '{name}'; choose one of: {', '.join(runs.SAMPLERS)}")
    rows = sweep(run, tuple(args.samplers), tuple(args.steps or ()), args.n, args.seed, args.eta)
    print(format_sweep(rows))
    print(f"written to {run.path / SWEEP} and {run.path / runs.FIGURES / 'sweep.png'}")


def cmd_figures(args: argparse.Namespace) -> None:
    out = runs.make_figures(runs.open_run(args.run), seed=args.seed)
    print(f"figures written to {out}/")


def cmd_animate(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise UserError(f"--n must be positive, got {args.n}")
    path = runs.animate(runs.open_run(args.run), n=args.n, seed=args.seed, path=args.out)
    print(f"animation written to {path}")


def _add_sampler_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sampler", choices=runs.SAMPLERS, default="ddpm",
                   help="ddpm (ancestral, Ho et al. 2020) or ddim (Song et al. 2021)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps K in 1..T, leading spacing (default: all T)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta: 0 deterministic, 1 "
                   "ancestral (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ddpmlab", description="Denoising diffusion probabilistic models, every step shown.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a model on points and write a run directory",
                       description="Train a DDPM on 2-D points; writes RUN/ with checkpoint, "
                       "metrics and figures.")
    t.add_argument("data", nargs="?", help=f"built-in shape ({', '.join(TOY2D)}) or a "
                   ".csv/.txt/.npy file of N x 2 numbers")
    t.add_argument("--out", type=Path, help="run directory (default: runs/DATA, made unique)")
    t.add_argument("--config", type=Path, help="TOML file with [data] [diffusion] [model] "
                   "[train] tables; flags override it")
    _add_config_flags(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its "
                   "checkpoint (from step 0 if it was stopped before its first one)")
    t.add_argument("--no-figures", action="store_true", help="skip figures and the GIF")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run", type=Path, help="run directory")
    s.add_argument("--n", type=int, default=1000, help="number of points (default: 1000)")
    s.add_argument("--out", type=Path, required=True, help="output .npy or .csv file")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    _add_sampler_flags(s)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="sample quality beside the real-vs-real floor")
    e.add_argument("run", type=Path, help="run directory")
    e.add_argument("--n", type=int, default=runs.EVAL_N, help="points per set (default: 2000)")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    e.add_argument("--repeats", type=int, default=runs.EVAL_REPEATS,
                   help="independent draws averaged, held-out size permitting (default: 3)")
    _add_sampler_flags(e)
    e.add_argument("--nll", action="store_true", help="also the negative log-likelihood bound "
                   "in nats and bits per dimension (figure: RUN/figures/nll_terms.png)")
    e.set_defaults(func=cmd_evaluate)

    w = sub.add_parser("sweep", help="sampler x number of steps: quality and seconds")
    w.add_argument("run", type=Path, help="run directory")
    w.add_argument("--samplers", nargs="+", default=list(runs.SAMPLERS),
                   help="samplers to compare (default: ddpm ddim)")
    w.add_argument("--steps", type=int, nargs="+", help="step counts (default: 5 10 20 50 100 T)")
    w.add_argument("--n", type=int, default=runs.EVAL_N, help="points per set (default: 2000)")
    w.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default: 0)")
    w.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    w.set_defaults(func=cmd_sweep)

    f = sub.add_parser("figures", help="re-make every figure of a run")
    f.add_argument("run", type=Path, help="run directory")
    f.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    f.set_defaults(func=cmd_figures)

    a = sub.add_parser("animate", help="write the reverse diffusion as a GIF")
    a.add_argument("run", type=Path, help="run directory")
    a.add_argument("--n", type=int, default=2000, help="points (default: 2000)")
    a.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    a.add_argument("--out", type=Path, help="GIF path (default: RUN/figures/reverse.gif)")
    a.set_defaults(func=cmd_animate)
    return p


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> str:
    return f"ddpmlab: warning: {message}\n"


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops training like Ctrl-C: checkpoint, then exit


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _warning_line  # one line, no source context
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args.func(args)
    except UserError as e:
        print(f"ddpmlab: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused: a read-only folder, a full disk, ...
        where = e.filename2 or e.filename
        print(f"ddpmlab: error: {e.strerror}: {where}" if e.strerror and where
              else f"ddpmlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddpmlab: interrupted (a checkpoint of the training so far was saved)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
