"""The ``ddpmlab`` command: parses, seeds, builds configs and calls the library.

Every config flag is one row of :data:`FLAGS`, mapped onto a field of
:class:`~ddpmlab.config.RunConfig`; a TOML file (``--config``) sets the same fields, and
flags win over the file. User mistakes end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from ddpmlab import distributed, feedback
from ddpmlab import run as runs
from ddpmlab.config import RunConfig, load_toml, merge, paths, replace, to_dict, validate
from ddpmlab.data import TOY2D
from ddpmlab.data.images import IMAGE_SETS
from ddpmlab.errors import UserError
from ddpmlab.modalities import default_config
from ddpmlab.samplers.ode import ATOL, RTOL, check_tolerances
from ddpmlab.samplers.spacing import SPACINGS
from ddpmlab.train import Diverged


def seed_type(text: str) -> int:
    """argparse type of every --seed: one rule everywhere, an integer in 0 .. 2**63 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: give an integer") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: seeds are integers from 0 "
                                         "to 2**63 - 1")
    return value


# flag -> (config section, field, type, help)
FLAGS: dict[str, tuple[str, str, Callable[[str], Any], str]] = {
    "--steps": ("train", "steps", int, "training steps"),
    "--seed": ("train", "seed", seed_type, "random seed (data, weights, batches, noise)"),
    "--batch-size": ("train", "batch_size", int, "points per training batch"),
    "--lr": ("train", "lr", float, "peak Adam learning rate"),
    "--threads": ("train", "threads", int, "torch threads (1 is fastest for small MLPs)"),
    "--leaves": ("train", "leaves", int, "equal parts of a batch that a point MLP's gradient "
                 "is summed over: the most processes that train the run bit for bit as one "
                 "(a power of two)"),
    "--checkpoint-every": ("train", "checkpoint_every", int,
                           "write the checkpoint every N steps; 0: only at the end"),
    "--model": ("model", "name", str, "network: resmlp or seed_mlp (points), unet or "
                "seed_unet (images); the default suits the data"),
    "--width": ("model", "width", int, "width of the network: hidden units of an MLP, "
                "channels at full resolution of a U-Net"),
    "--schedule": ("diffusion", "schedule", str,
                   "beta schedule: linear, linear_unscaled, cosine or sigmoid"),
    "--timesteps": ("diffusion", "timesteps", int, "T, the number of diffusion steps"),
    "--variance": ("diffusion", "variance", str,
                   "reverse variance: fixed_small, fixed_large or learned_range"),
    "--prediction": ("diffusion", "prediction", str, "network target: eps, x0 or v"),
    "--stable-target": ("diffusion", "stable_target", int, "train on the stable target field "
                        "over M training examples a step (Xu et al. 2023), for DDIM, "
                        "DPM-Solver++ and the ODE; 0: off"),
    "--conditional": ("model", "conditional", bool, "learn each class and the data as a "
                      "whole in one network, for --class and --guidance (classifier-free "
                      "guidance, Ho & Salimans 2022)"),
    "--cond-drop": ("train", "cond_drop", float, "probability that a training example's "
                    "label is replaced by no class (conditional runs)"),
    "--label-column": ("data", "label_column", str, "class column of a .csv/.txt file of "
                       "points: a header name or a 0-based index"),
    "--font": ("data", "font", str, "a .ttf/.otf file to render text:WORD data with"),
}
FLAG_OF = {(section, name): flag for flag, (section, name, _, _) in FLAGS.items()}
METAVARS = {"--steps": "N", "--seed": "S", "--batch-size": "B", "--threads": "K",
            "--leaves": "L", "--checkpoint-every": "N", "--width": "W", "--timesteps": "T",
            "--model": "NAME", "--schedule": "NAME", "--variance": "NAME",
            "--prediction": "NAME", "--stable-target": "M", "--cond-drop": "P",
            "--label-column": "COL", "--font": "PATH"}
ALIASES = {"--width": ("--hidden",)}  # --hidden: its name before the U-Nets came
#: the setting --width sets, by network
WIDTH = {"resmlp": "hidden", "seed_mlp": "hidden", "unet": "base_channels",
         "seed_unet": "base_width"}


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    defaults = to_dict(RunConfig())
    cond = to_dict(default_config(RunConfig().data.source, {"model": {"conditional": True}}))
    for flag, (section, name, kind, text) in FLAGS.items():
        default = ("by network and data" if flag == "--width" else "Pillow's own font"
                   if flag == "--font" else f"{defaults[section][name]}, for points")
        if section in cond and name in cond[section] and cond[section][name] != \
                defaults[section][name] and kind is not bool:
            default += f"; {cond[section][name]}, for conditional points"
        if kind is bool:  # a switch: on when given, else the config's
            p.add_argument(flag, action="store_const", const=True, default=None,
                           help=f"{text} (default: off)")
            continue
        p.add_argument(flag, *ALIASES.get(flag, ()), type=kind, default=None,
                       dest=flag[2:].replace("-", "_"),
                       metavar=METAVARS.get(flag, name.upper()), help=f"{text} ({default})")


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


def _settings(args: argparse.Namespace, base: RunConfig | None = None
              ) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """What the command line sets (the --config file, then DATA and the flags over it), and
    where each setting came from (by path, for messages).

    ``--width`` becomes the width setting of the network named by --model, the file, or
    else ``base`` (the run's configuration, or the data's defaults).
    """
    settings: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    if args.config:
        for section, values in load_toml(args.config).items():
            if not isinstance(values, dict):
                raise UserError(f"{args.config}: {section} must be a [table] of settings")
            settings[section] = values
        origin |= {key: f"{args.config} ({'.'.join(key)})" for key in paths(settings)}
    if args.data is not None:
        settings = merge(settings, {"data": {"source": args.data}})
        origin["data", "source"] = f"DATA {args.data!r}"
    for section, values in _overrides(args).items():
        settings = merge(settings, {section: values})
        origin |= {(section, key): FLAG_OF[section, key] for key in values}
    width = settings.get("model", {}).pop("width", None)
    if width is not None:
        if base is None:
            source = settings.get("data", {}).get("source", RunConfig().data.source)
            base = default_config(source, settings)
        name = settings["model"].get("name", base.model.name)
        if name not in WIDTH:
            raise UserError(f"unknown model '{name}'; choose one of: {', '.join(WIDTH)}")
        settings["model"][name] = {**settings["model"].get(name, {}), WIDTH[name]: width}
        origin["model", name, WIDTH[name]] = origin.pop(("model", "width"))
    return settings, origin


def _same_source(a: str, b: str) -> bool:
    """Two DATA arguments naming one file (written from other folders) count as the same."""
    return a == b or (Path(a).exists() and Path(b).exists()
                      and Path(a).resolve() == Path(b).resolve())


def _resume_config(args: argparse.Namespace) -> tuple[RunConfig, bool]:
    """The run's saved configuration, checked against what the command line repeats of it.

    Re-running the command that started the run with --resume appended is allowed: every
    setting equal to the saved one passes. A different one is refused, naming it, except
    the train settings a resume may change (``run.RESUMABLE``).
    """
    saved, resumable = runs.resume_config(args.out)
    settings, origin = _settings(args, saved)
    wanted, have = paths(to_dict(replace(saved, settings))), paths(to_dict(saved))
    changes: dict[str, Any] = {}
    for key in paths(settings):
        new, old = wanted[key], have[key]
        if new == old or (key == ("data", "source") and _same_source(new, old)):
            continue
        if key[0] == "train" and key[1] in runs.RESUMABLE:
            changes[key[1]] = new
            continue
        allowed = " and ".join(FLAG_OF["train", k] for k in runs.RESUMABLE)
        raise UserError(f"{origin[key]} differs from the run's {'.'.join(key)} = {old!r}; "
                        f"--resume continues the run as it was configured, only {allowed} may "
                        "change (drop it, or train a new run)")
    return validate(replace(saved, {"train": changes})), resumable


def cmd_train(args: argparse.Namespace) -> None:
    request = distributed.together(lambda: _train_request(args))  # a refusal said once
    config, out, resume = distributed.from_main(request)  # not two fresh folders
    run = runs.train_run(config, out, resume=resume, force=args.force,
                         figures=not args.no_figures, evaluate=not args.no_eval,
                         on_start=lambda text: print(text, file=sys.stderr),
                         device=args.device)
    if not distributed.current().main:  # rank 0 reports for the group
        return
    if not args.no_eval:
        print(runs.read_evaluation(run.path))
    print(f"run saved in {out}/ (figures in {out / runs.FIGURES}/)" if not args.no_figures
          else f"run saved in {out}/")


def _train_request(args: argparse.Namespace) -> tuple[RunConfig, Path, bool]:
    """What `train` is asked: (configuration, run directory, resume?), checked."""
    if args.resume:
        if args.out is None:
            raise UserError("--resume needs --out RUN, the run directory to continue")
        config, resumable = _resume_config(args)
        if not resumable and distributed.current().main:  # killed before its first checkpoint
            print(f"ddpmlab: note: {args.out} holds no checkpoint yet; training it from step 0",
                  file=sys.stderr)
        return config, args.out, True
    if args.data is None and not args.config:
        raise UserError("give the data to learn: a built-in name "
                        f"({', '.join([*TOY2D, *IMAGE_SETS])}), a .csv/.txt/.npy file of "
                        "points, a PNG/JPEG silhouette or text:WORD to draw points from, or "
                        "a folder of images or an .npy/.npz array of them")
    settings, _ = _settings(args)
    source = settings.get("data", {}).get("source", RunConfig().data.source)
    config = validate(default_config(source, settings))
    return config, args.out or _fresh_out(
        Path(config.data.source.replace(":", "-")).stem or "images"), False


def _check_new_file(path: Path, force: bool, suffixes: tuple[str, ...],
                    files: list[Path] | None = None) -> None:
    """Refuse an output file with the wrong suffix, in a missing folder, or (without --force)
    one that exists: nothing a user made is overwritten. Where ``suffixes`` holds "/", a
    path without a suffix is a folder for ``files``, none of which may exist unless --force."""
    folder = "/" in suffixes and (path.suffix == "" or path.is_dir())
    if not folder and path.suffix not in suffixes:
        wanted = [s for s in suffixes if s != "/"] + (["/ (a folder)"] if "/" in suffixes
                                                        else [])
        raise UserError(f"--out must end in {' or '.join(wanted)}, got {path.name}")
    if not folder and path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist; create it first")
    taken = [f for f in files or [] if f.exists()] if folder else [path] * path.exists()
    if taken and not force:
        again = "--out folder, or add --force to replace its files" if folder else \
            "--out, or add --force to replace it"
        raise UserError(f"{taken[0]} exists; choose another {again}")
    probe = path if path.is_dir() else path.parent
    with tempfile.TemporaryFile(dir=probe):  # an unwritable folder fails now, not after
        pass  # minutes of sampling (OSError: one line, from main)


def _check_size(args: argparse.Namespace) -> None:
    if (args.n is not None and args.n < 2) or (args.repeats is not None and args.repeats < 1):
        raise UserError("--n must be at least 2 and --repeats at least 1")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise UserError(f"{name} must be positive, got {value}")


def _eta(args: argparse.Namespace, samplers: tuple[str, ...]) -> float:
    """--eta, refused where no sampler uses it (only DDIM has an eta)."""
    if args.eta is None:
        return 0.0
    if "ddim" not in samplers:
        raise UserError(f"--eta applies to --sampler ddim only (this command uses "
                        f"{', '.join(samplers)}); drop --eta or add the ddim sampler")
    return args.eta


def _tolerances(args: argparse.Namespace) -> tuple[float, float]:
    """(--rtol, --atol), checked; refused where no ODE is solved (--sampler ode,
    --exact-nll)."""
    for name in ("rtol", "atol"):
        if getattr(args, name) is not None and not (args.sampler == "ode" or getattr(
                args, "exact_nll", False)):
            raise UserError(f"--{name} applies to --sampler ode and --exact-nll only; drop it "
                            "or add --sampler ode")
    rtol = RTOL if args.rtol is None else args.rtol
    atol = ATOL if args.atol is None else args.atol
    check_tolerances(rtol, atol)
    return rtol, atol


def cmd_sample(args: argparse.Namespace) -> None:
    def check() -> tuple[runs.Run, float, float, float]:
        _positive("--n", args.n)
        eta = _eta(args, (args.sampler,))
        rtol, atol = _tolerances(args)
        run = runs.open_run(args.run, args.device)
        run.check_sampler(args.sampler, args.steps, eta, args.spacing, rtol, atol)
        run.labels(args.n, args.cls)  # an unknown class, or one on an unconditional run
        if distributed.current().main:  # the one that writes
            _check_new_file(args.out, args.force, run.kind.sample_suffixes,
                            run.kind.output_files(args.out, args.n))
        return run, eta, rtol, atol

    run, eta, rtol, atol = distributed.together(check)  # a refusal said once
    x = run.sample(args.n, args.seed, args.sampler, args.steps, eta, spacing=args.spacing,
                   cls=args.cls, guidance=args.guidance, rtol=rtol, atol=atol)
    if distributed.current().main:
        print(f"wrote {run.kind.write_samples(x, args.out)} to {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    group = distributed.current()

    def check() -> tuple[runs.Run, float, float, float]:
        _check_size(args)
        eta = _eta(args, (args.sampler,))
        rtol, atol = _tolerances(args)
        if group.many and (args.nll or args.exact_nll):
            raise UserError("--nll and --exact-nll run in one process; start them without "
                            "torchrun")
        run = runs.open_run(args.run, args.device)
        if args.guidance and run.classes is None:
            raise UserError(f"--guidance needs a conditional run; {run.path} was trained "
                            "without classes (train one with --conditional)")
        run.check_sampler(args.sampler, args.steps, eta, args.spacing, rtol, atol)
        return run, eta, rtol, atol

    run, eta, rtol, atol = distributed.together(check)  # a refusal said once
    say = print if group.main else _silent  # the other ranks draw their share of samples
    if (args.sampler, args.steps, eta, args.spacing) == ("ddpm", None, 0.0, None):  # saved
        say(runs.evaluate_run(run, args.n, args.seed, args.repeats))
        say(f"written to {run.path / runs.METRICS}")
    else:  # another sampler: printed, metrics.json keeps the default sampler's numbers
        say(runs.score(run, args.n, args.seed, args.repeats, args.sampler, args.steps, eta,
                       spacing=args.spacing, rtol=rtol, atol=atol))
        how = (f"rtol {rtol:g}, atol {atol:g}" if args.sampler == "ode"
               else f"{args.steps or 'all'} steps, "
               f"{args.spacing or run.spacing(args.sampler)} spacing, eta {eta:g}")
        say(f"({args.sampler}, {how}; metrics.json keeps the default sampler's numbers)")
    if run.classes is not None:  # a conditional run: each class at --guidance too
        from ddpmlab.modalities import class_table

        result = runs.evaluate_classes(run, args.guidance, args.n_class, args.seed,
                                       args.sampler, args.steps, eta,
                                       args.spacing)
        if group.main:
            print(f"per class, guidance w = {args.guidance:g}, {result['n']} samples per "
                  "class:")
            print(class_table(result))
            print(f"written to {run.path / runs.CLASSES}")
    if args.nll or args.exact_nll:
        from ddpmlab import analysis

        bound = analysis.run_bound(run, args.n, args.seed)
        print(analysis.format_bound(bound))
        print(f"written to {run.path / analysis.NLL} and "
              f"{run.path / runs.FIGURES / 'nll_terms.png'}")
        if args.exact_nll:
            exact = analysis.run_exact_nll(run, args.n, args.seed, rtol, atol)
            print(analysis.format_exact_nll(exact, bound))
            print(f"written to {run.path / analysis.EXACT_NLL}")


def _silent(*args: object) -> None:
    """print's stand-in on the ranks that do not report."""


def cmd_sweep(args: argparse.Namespace) -> None:
    from ddpmlab.analysis import GUIDANCE, SWEEP, format_sweep, sweep

    samplers = args.samplers or (["ddpm"] if args.guidance else list(runs.STEPPED))
    for name in samplers:
        if name == "ode":
            raise UserError("sweep compares step counts, and the ode sampler's solver chooses "
                            "its own; score it with evaluate --sampler ode")
        if name not in runs.SAMPLERS:
            raise UserError(f"unknown sampler '{name}'; choose one of: {', '.join(runs.SAMPLERS)}")
    _check_size(args)
    if any(not w >= 0 for w in args.guidance or ()):
        raise UserError(f"--guidance weights must be >= 0, got {args.guidance}")
    eta = _eta(args, tuple(samplers))
    run = runs.open_run(args.run)
    rows = sweep(run, tuple(samplers), tuple(args.steps or ()), args.n, args.seed, eta,
                 args.repeats, spacing=args.spacing, guidance=tuple(args.guidance or ()))
    print(format_sweep(rows))
    name = GUIDANCE if args.guidance else SWEEP
    print(f"written to {run.path / name} and "
          f"{run.path / runs.FIGURES / name.replace('.json', '.png')}")


def cmd_figures(args: argparse.Namespace) -> None:
    out = runs.make_figures(runs.open_run(args.run), seed=args.seed, guidance=args.guidance)
    print(f"figures written to {out}/")


def cmd_animate(args: argparse.Namespace) -> None:
    if args.n is not None:
        _positive("--n", args.n)
    if args.out is not None:
        _check_new_file(args.out, args.force, (".gif",))
    path = runs.animate(runs.open_run(args.run), n=args.n, seed=args.seed, path=args.out)
    print(f"animation written to {path}")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in ddpmlab's form: one line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        main = distributed.launched().main  # under torchrun, said once, by rank 0
        self.exit(2, f"ddpmlab: error: {message} (see {self.prog} --help)\n" if main else None)


def _add_sampler_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sampler", choices=runs.SAMPLERS, default="ddpm",
                   help="ddpm (ancestral, Ho et al. 2020), ddim (Song et al. 2021), "
                   "dpm_solver (DPM-Solver++(2M), Lu et al. 2022) or ode (the probability-flow "
                   "ODE, Song et al. 2021, adaptive RK45)")
    p.add_argument("--steps", type=int, default=None, metavar="K",
                   help="sampling steps K in 1..T (default: all T; not ode)")
    _add_spacing(p)
    _add_eta(p)
    for name in ("rtol", "atol"):
        p.add_argument(f"--{name}", type=float, default=None, metavar="TOL",
                       help=f"ODE solver's {'relative' if name == 'rtol' else 'absolute'} "
                       f"tolerance (default: {RTOL:g}; ode only)")


def _add_spacing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spacing", choices=SPACINGS, default=None,
                   help="which K of the T timesteps are visited (default: linspace; logsnr "
                   "for dpm_solver; leading for an eps-prediction run)")


def _add_eta(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eta", type=float, default=None, metavar="E",
                   help="DDIM eta: 0 deterministic, 1 ancestral (default: 0; ddim only)")


def _class(text: str) -> str | int:
    """argparse type of --class: an index, a name, or all (checked against the run)."""
    return int(text) if text.isdigit() else text


def _add_class(p: argparse.ArgumentParser, guidance: float = 0.0, cls: bool = True) -> None:
    if cls:
        p.add_argument("--class", dest="cls", type=_class, default=None, metavar="K",
                       help="a conditional run's class (an index or a name), or all: an equal "
                       "share of each, in class order (default: none, the unconditional "
                       "model)")
    p.add_argument("--guidance", type=float, default=guidance, metavar="W",
                   help="classifier-free guidance weight w >= 0: eps~ = (1 + w) eps(x, t, y) "
                   f"- w eps(x, t) (Ho & Salimans 2022, Eq. 6; default: {guidance:g})")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="auto (a GPU when torch sees one), cpu, cuda or cuda:N (default: "
                   "auto); the same seed on the same device gives the same samples")


def _add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=seed_type, default=0, metavar="S",
                   help="sampling seed (default: 0)")


def _version() -> str:
    try:
        return importlib.metadata.version("ddpmlab")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--quiet", action="store_true",
                        help="no progress bar or status line on stderr")
    p = Parser(prog="ddpmlab",
               description="Denoising diffusion probabilistic models, every step shown.")
    p.add_argument("--version", action="version", version=f"ddpmlab {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", parents=[common],
                       help="train a model on points or images and write a run directory",
                       description="Train a DDPM on 2-D points or on images; writes RUN/ with "
                       "checkpoint, metrics and figures.")
    t.add_argument("data", nargs="?", metavar="DATA", help=f"built-in shape ({', '.join(TOY2D)})"
                   ", a .csv/.txt/.npy file of N x 2 numbers, a single PNG/JPEG picture (a "
                   "silhouette: points drawn from its dark pixels) or text:WORD (a word "
                   "rendered, then drawn from; --font); built-in images "
                   f"({', '.join(IMAGE_SETS)}), a folder of PNG/JPEG files (an image data set) "
                   "or an .npy/.npz array (N, H, W) or (N, C, H, W)")
    t.add_argument("--out", type=Path, metavar="RUN",
                   help="run directory (default: runs/DATA, made unique)")
    t.add_argument("--config", type=Path, metavar="FILE.toml", help="TOML file with [data] "
                   "[diffusion] [model] [train] tables; flags override it")
    _add_config_flags(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its "
                   "checkpoint (from step 0 if it was stopped before its first one); the "
                   "command that started it may be repeated as it was")
    t.add_argument("--force", action="store_true", help="write the run into an existing "
                   "--out folder that holds other files")
    t.add_argument("--no-eval", action="store_true", help="skip the evaluation (metrics.json)")
    t.add_argument("--no-figures", action="store_true", help="skip figures and the GIF")
    _add_device(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", parents=[common], help="draw samples from a trained run")
    s.add_argument("run", type=Path, metavar="RUN", help="run directory")
    s.add_argument("--n", "--number", dest="n", type=int, default=1000,
                   help="number of samples (default: 1000); --number under torchrun, whose "
                   "own parser mistakes --n for one of its options")
    s.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="points: .npy or .csv; images: .npy (N, C, H, W) in [0, 1], .png (a "
                   "grid) or DIR/ (one PNG each)")
    s.add_argument("--force", action="store_true", help="replace --out if it exists")
    _add_seed(s)
    _add_sampler_flags(s)
    _add_class(s)
    _add_device(s)
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", parents=[common],
                       help="sample quality beside the real-vs-real floor")
    e.add_argument("run", type=Path, metavar="RUN", help="run directory")
    e.add_argument("--n", "--number", dest="n", type=int, default=None,
                   help="samples per draw and per real set (default: 2000 points; images: "
                   "half the held-out set, at most 1000)")
    _add_seed(e)
    e.add_argument("--repeats", type=int, default=None, metavar="K",
                   help="independent draws averaged (default: 3 for points; images: 1000 "
                   "samples in all)")
    _add_sampler_flags(e)
    e.add_argument("--nll", action="store_true", help="also the negative log-likelihood bound "
                   "in nats and bits per dimension (figure: RUN/figures/nll_terms.png)")
    _add_class(e, cls=False)
    e.add_argument("--n-class", type=int, default=None, metavar="N",
                   help="a conditional run's samples per class in each set (points: 3 "
                   "independent sets; default: the evaluation's 6,000 points or 1,000 images, "
                   "shared equally)")
    e.add_argument("--exact-nll", action="store_true", help="also the negative log-likelihood "
                   "by the probability-flow ODE (exact divergence for points, Hutchinson's for "
                   "images; --rtol/--atol), beside the bound")
    _add_device(e)
    e.set_defaults(func=cmd_evaluate)

    w = sub.add_parser("sweep", parents=[common],
                       help="sampler x number of steps: quality and seconds")
    w.add_argument("run", type=Path, metavar="RUN", help="run directory")
    w.add_argument("--samplers", nargs="+", default=None, metavar="SAMPLER",
                   help="samplers to compare (default: every one with a step count; with "
                   "--guidance, ddpm)")
    w.add_argument("--steps", type=int, nargs="+", metavar="K",
                   help="step counts (default: 5 10 20 50 100 T)")
    w.add_argument("--n", "--number", dest="n", type=int, default=None,
                   help="samples per set (default: as evaluate)")
    w.add_argument("--repeats", type=int, default=1, metavar="K",
                   help="draws averaged per cell, against the reference sets `evaluate` uses "
                   "(default: 1, its first)")
    _add_spacing(w)
    w.add_argument("--guidance", type=float, nargs="+", metavar="W",
                   help="a conditional run: guidance weights to compare, each scored per "
                   "class with --n samples per class (default steps: T only)")
    _add_eta(w)
    _add_seed(w)
    w.set_defaults(func=cmd_sweep)

    f = sub.add_parser("figures", parents=[common], help="re-make every figure of a run")
    f.add_argument("run", type=Path, metavar="RUN", help="run directory")
    _add_seed(f)
    _add_class(f, guidance=1.0, cls=False)
    f.set_defaults(func=cmd_figures)

    a = sub.add_parser("animate", parents=[common], help="write the reverse diffusion as a GIF")
    a.add_argument("run", type=Path, metavar="RUN", help="run directory")
    a.add_argument("--n", "--number", dest="n", type=int, default=None,
                   help="samples (default: 2000 points, 64 images)")
    _add_seed(a)
    a.add_argument("--out", type=Path, metavar="FILE.gif",
                   help="GIF path (default: RUN/figures/reverse.gif)")
    a.add_argument("--force", action="store_true", help="replace --out if it exists")
    a.set_defaults(func=cmd_animate)
    return p


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
            args.func(args)
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


if __name__ == "__main__":
    sys.exit(main())
