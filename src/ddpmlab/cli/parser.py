"""The ``ddpmlab`` command line: every subcommand and flag, generated from the configuration
(:data:`~ddpmlab.cli.settings.FLAGS`) and the registries (samplers, spacings, data sets)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from ddpmlab import __version__, distributed
from ddpmlab.cli.settings import ALIASES, FLAGS, METAVARS, seed_type
from ddpmlab.config import RunConfig, to_dict
from ddpmlab.data import TOY2D
from ddpmlab.data.images import IMAGE_SETS
from ddpmlab.modalities import default_config
from ddpmlab.samplers import SAMPLERS, SPACINGS
from ddpmlab.samplers.flow_fields import FLOW_SPACINGS
from ddpmlab.samplers.spec import RTOL


def _defaults_text(section: str, name: str) -> str:
    """A flag's default for each kind of data where they differ: "4000 for points; 1000 for
    digits and image folders; 3000 for mnist" (an array's are a folder's)."""
    kinds = {"points": default_config(RunConfig().data.source),
             "conditional points": default_config(RunConfig().data.source,
                                                  {"model": {"conditional": True}}),
             "digits": default_config("digits"),
             "image folders": default_config("images.npz"),  # named, not read
             "mnist": default_config("mnist")}
    if (section, name) == ("model", "conditional"):  # the flag that makes that kind
        del kinds["conditional points"]
    values: dict[str, list[str]] = {}
    for kind, config in kinds.items():
        value = to_dict(config)[section][name]
        shown = ("on" if value else "off") if isinstance(value, bool) else (
            "none" if value == "" else str(value))
        values.setdefault(shown, []).append(kind)
    if len(values) == 1:
        return next(iter(values))

    def joined(kinds: list[str]) -> str:
        if {"points", "conditional points"} <= set(kinds):
            kinds.remove("conditional points")
        return " and ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 1 else kinds)

    return "; ".join(f"{v} for {joined(k)}" for v, k in values.items())


def add_config_flags(p: argparse.ArgumentParser) -> None:
    for flag, (section, name, kind, text) in FLAGS.items():
        if kind is bool:  # --flag / --no-flag, else the config's
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                           help=f"{text} (default: {_defaults_text(section, name)})")
            continue
        default = ("by network and data" if flag == "--width" else "Pillow's own font"
                   if flag == "--font" else _defaults_text(section, name))
        p.add_argument(flag, *ALIASES.get(flag, ()), type=kind, default=None,
                       dest=flag[2:].replace("-", "_"),
                       metavar=METAVARS.get(flag, name.upper()),
                       help=f"{text} (default: {default})")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in ddpmlab's form: one line on stderr, exit status 2; and no
    abbreviated flags, where a typo in a longer one could set another (``--step``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        main = distributed.launched().main  # under torchrun, said once, by rank 0
        self.exit(2, f"ddpmlab: error: {message} (see {self.prog} --help)\n" if main else None)


def _add_sampler_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help=", ".join(f"{name} ({s.summary})" for name, s in SAMPLERS.items())
                   + " (default: ddpm; euler for a flow run)")
    p.add_argument("--steps", type=int, default=None, metavar="K",
                   help="sampling steps K in 1..T (default: all T; not ode)")
    _add_spacing(p)
    _add_eta(p)
    for name in ("rtol", "atol"):
        p.add_argument(f"--{name}", type=float, default=None, metavar="TOL",
                       help=f"ODE solver's {'relative' if name == 'rtol' else 'absolute'} "
                       f"tolerance (default: {RTOL:g}; ode only)")


def _add_spacing(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spacing", choices=(*SPACINGS, *FLOW_SPACINGS), default=None,
                   help="which K of the T timesteps are visited (default: linspace; logsnr "
                   "for dpm_solver; leading for an eps-prediction run). logsnr is ddpmlab's "
                   "grid: t = T-1, then uniform in log-SNR from lambda = -2, and DPM-Solver++ "
                   "steps first order into its last timestep below 18 steps; logsnr_official "
                   "is the official DPM-Solver's: uniform from its start (lambda >= -5.1) to "
                   "t = 0, rounded to timesteps, first order there below 11 steps (the "
                   "official steps = K - 1 with denoise_to_zero); euler and heun: uniform "
                   "(default) or shifted times")


def _add_eta(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eta", type=float, default=None, metavar="E",
                   help="DDIM eta: 0 deterministic, 1 ancestral (default: 0; ddim only)")


def _class(text: str) -> str | int:
    """argparse type of --class: an index, a name, or all (checked against the run)."""
    return int(text) if text.isdigit() else text


def _add_class(p: argparse.ArgumentParser, guidance: float | None = 0.0,
               cls: bool = True) -> None:
    if cls:
        p.add_argument("--class", dest="cls", type=_class, default=None, metavar="K",
                       help="a conditional run's class (an index or a name), all (an equal "
                       "share of each, in class order) or none (the network without a class) "
                       "(default: each class in the training data's proportions)")
    why = ("none: no per-class evaluation" if guidance is None else f"{guidance:g}" + (
        "; classes.png shows guidance at work, where sample and evaluate default to 0, plain "
        "conditional sampling" if guidance else ""))
    p.add_argument("--guidance", type=float, default=guidance, metavar="W",
                   help="classifier-free guidance weight w >= 0: eps~ = (1 + w) eps(x, t, y) "
                   f"- w eps(x, t) (Ho & Salimans 2022, Eq. 6; default: {why})")


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="auto (a GPU when torch sees one), cpu, cuda or cuda:N (default: "
                   "auto); the same seed on the same device gives the same samples")


def _add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=seed_type, default=0, metavar="S",
                   help="sampling seed (default: 0)")


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--quiet", action="store_true",
                        help="no progress bar or status line on stderr")
    p = Parser(prog="ddpmlab",
               description="Denoising diffusion probabilistic models, every step shown.")
    p.add_argument("--version", action="version", version=f"ddpmlab {__version__}")
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
    t.add_argument("--config", metavar="FILE.toml|seed", help="TOML file with [data] "
                   "[diffusion] [model] [train] tables, or `seed`: the source text's own "
                   "configuration, shipped with ddpmlab; flags override it")
    add_config_flags(t)
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its "
                   "checkpoint (from step 0 if it was stopped before its first one); the "
                   "command that started it may be repeated as it was")
    t.add_argument("--force", action="store_true", help="write the run into an existing "
                   "--out folder that holds other files")
    t.add_argument("--no-eval", action="store_true", help="skip the evaluation (metrics.json)")
    t.add_argument("--no-figures", action="store_true", help="skip figures and the GIF")
    _add_device(t)
    t.set_defaults(job="train")

    s = sub.add_parser("sample", parents=[common],
                       help="draw samples from a trained run")
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
    s.set_defaults(job="sample")

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
                   "in nats and bits per dimension (figure: RUN/figures/nll_terms.png); on "
                   "images each reverse step's x0_hat is clipped to [-1, 1] by default, as the "
                   "samplers do and as improved-diffusion's calc_bpd_loop reports its bits/dim")
    e.add_argument("--unclipped-bound", action="store_true",
                   help="--nll on images with x0_hat not clipped: the bound of the network's "
                   "raw Gaussian steps, which the samplers do not take (points are never "
                   "clipped)")
    _add_class(e, guidance=None, cls=False)
    e.add_argument("--n-class", type=int, default=None, metavar="N",
                   help="a conditional run's samples per class in each set (points: 3 "
                   "independent sets; default: the evaluation's 6,000 points or 1,000 images, "
                   "shared equally); --guidance or --n-class adds each class's quality at "
                   "that weight (0 by default), several minutes on a CPU")
    e.add_argument("--exact-nll", action="store_true", help="also the negative log-likelihood "
                   "by the probability-flow ODE (exact divergence for points, Hutchinson's for "
                   "images; --rtol/--atol), beside a DDPM run's bound (a flow run has none)")
    _add_device(e)
    e.set_defaults(job="evaluate")

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
    w.set_defaults(job="sweep")

    f = sub.add_parser("figures", parents=[common],
                       help="re-make every figure of a run")
    f.add_argument("run", type=Path, metavar="RUN", help="run directory")
    _add_seed(f)
    _add_class(f, guidance=1.0, cls=False)
    f.set_defaults(job="draw:figures")

    a = sub.add_parser("animate", parents=[common],
                       help="write the reverse diffusion as a GIF")
    a.add_argument("run", type=Path, metavar="RUN", help="run directory")
    a.add_argument("--n", "--number", dest="n", type=int, default=None,
                   help="samples (default: 2000 points, 64 images)")
    _add_seed(a)
    a.add_argument("--out", type=Path, metavar="FILE.gif",
                   help="GIF path (default: RUN/figures/reverse.gif)")
    a.add_argument("--force", action="store_true", help="replace --out if it exists")
    a.set_defaults(job="draw:gif")

    b = sub.add_parser("lab", parents=[common],
                       help="the lab: a local web app to draw data, train and sample live",
                       description="Serve the lab on 127.0.0.1 (the optional extra "
                       "ddpmlab[lab]): data, the forward process, live training, the reverse "
                       "process and the samplers, in French or English.")
    b.add_argument("run", type=Path, nargs="?", metavar="RUN",
                   help="a run directory to open (its folder becomes the runs folder)")
    b.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR",
                   help="the folder the lab trains into and lists runs from (default: runs)")
    b.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free)")
    b.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1, this machine only; another needs --expose)")
    b.add_argument("--expose", action="store_true", help="allow a --host other machines can "
                   "reach (a warning is printed: the lab has no password)")
    b.set_defaults(job="lab")
    return p
