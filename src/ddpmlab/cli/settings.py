"""From the command line to a configuration and a sampling request, checked.

Every config flag is one row of :data:`FLAGS`, mapped onto a field of
:class:`~ddpmlab.config.RunConfig`; a TOML file (``--config``) sets the same fields, and
flags win over the file. The output checks refuse, before any work, a file that would
overwrite what a user made.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ddpmlab import distributed
from ddpmlab.config import RunConfig, load_toml, merge, paths, replace, to_dict, validate
from ddpmlab.data import TOY2D
from ddpmlab.data.images import IMAGE_SETS
from ddpmlab.errors import UserError
from ddpmlab.modalities import default_config
from ddpmlab.runs.layout import RESUMABLE, resume_config
from ddpmlab.samplers import SAMPLERS, SamplerSpec
from ddpmlab.samplers.ode import check_tolerances
from ddpmlab.samplers.spec import ATOL, RTOL


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
    "--batch-size": ("train", "batch_size", int, "examples per training batch"),
    "--lr": ("train", "lr", float, "peak Adam learning rate"),
    "--threads": ("train", "threads", int, "torch threads (1 is fastest for small MLPs)"),
    "--leaves": ("train", "leaves", int, "equal parts of a batch that a point MLP's gradient "
                 "is summed over: the most processes that train the run bit for bit as one "
                 "(a power of two)"),
    "--precision": ("train", "precision", str, "the network's arithmetic: auto (bfloat16 "
                    "for a U-Net where the CPU or GPU has it natively, else float32), fp32 "
                    "or bf16"),
    "--compile": ("train", "compile", bool, "train the network through torch.compile "
                  "(autograd networks: the U-Nets)"),
    "--checkpoint-every": ("train", "checkpoint_every", int,
                           "write the checkpoint every N steps; 0: only at the end"),
    "--model": ("model", "name", str, "network: resmlp or seed_mlp (points), unet or "
                "seed_unet (images); the default suits the data"),
    "--width": ("model", "width", int, "width of the network: hidden units of an MLP, "
                "channels at full resolution of a U-Net"),
    "--objective": ("diffusion", "objective", str, "training objective: ddpm (default) or "
                    "flow (flow matching on the conditional optimal-transport path, the "
                    "velocity as target: Lipman et al. 2023)"),
    "--schedule": ("diffusion", "schedule", str,
                   "beta schedule: linear, linear_unscaled, cosine or sigmoid"),
    "--timesteps": ("diffusion", "timesteps", int, "T, the number of diffusion steps"),
    "--variance": ("diffusion", "variance", str,
                   "reverse variance: fixed_small, fixed_large or learned_range"),
    "--prediction": ("diffusion", "prediction", str, "network target: eps, x0 or v"),
    "--stable-target": ("diffusion", "stable_target", int, "train on the stable target field "
                        "over M training examples a step (Xu et al. 2023), for DDIM, "
                        "DPM-Solver++ and the ODE; 0: off"),
    "--min-snr": ("diffusion", "min_snr_gamma", float, "weight the loss by Min-SNR-gamma "
                  "with this gamma (Hang et al. 2023 use 5); 0: off"),
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
            "--leaves": "L", "--precision": "NAME", "--checkpoint-every": "N", "--width": "W",
            "--timesteps": "T",
            "--model": "NAME", "--objective": "NAME", "--schedule": "NAME", "--variance": "NAME",
            "--prediction": "NAME", "--stable-target": "M", "--min-snr": "GAMMA",
            "--cond-drop": "P", "--label-column": "COL", "--font": "PATH"}
ALIASES = {"--width": ("--hidden",)}  # --hidden: the MLPs' word for their width
#: the setting --width sets, by network
WIDTH = {"resmlp": "hidden", "seed_mlp": "hidden", "unet": "base_channels",
         "seed_unet": "base_width"}


def overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for flag, (section, name, _, _) in FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            out.setdefault(section, {})[name] = value
    return out


def fresh_out(name: str) -> Path:
    """runs/NAME, or runs/NAME-2, -3, ... : a new run never overwrites an old one."""
    base = Path("runs") / name
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def settings_from(args: argparse.Namespace, base: RunConfig | None = None
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
    for section, values in overrides(args).items():
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


def same_source(a: str, b: str) -> bool:
    """Two DATA arguments naming one file (written from other folders) count as the same."""
    return a == b or (Path(a).exists() and Path(b).exists()
                      and Path(a).resolve() == Path(b).resolve())


def resume_request(args: argparse.Namespace) -> tuple[RunConfig, int | None]:
    """The run's saved configuration, checked against what the command line repeats of it.

    Re-running the command that started the run with --resume appended is allowed: every
    setting equal to the saved one passes. A different one is refused, naming it, except
    the train settings a resume may change (``runs.layout.RESUMABLE``).
    """
    saved, step = resume_config(args.out)
    settings, origin = settings_from(args, saved)
    wanted, have = paths(to_dict(replace(saved, settings))), paths(to_dict(saved))
    changes: dict[str, Any] = {}
    for key in paths(settings):
        new, old = wanted[key], have[key]
        if new == old or (key == ("data", "source") and same_source(new, old)):
            continue
        if key[0] == "train" and key[1] in RESUMABLE:
            changes[key[1]] = new
            continue
        allowed = " and ".join(FLAG_OF["train", k] for k in RESUMABLE)
        raise UserError(f"{origin[key]} differs from the run's {'.'.join(key)} = {old!r}; "
                        f"--resume continues the run as it was configured, only {allowed} may "
                        "change (drop it, or train a new run)")
    return validate(replace(saved, {"train": changes})), step


def train_request(args: argparse.Namespace) -> tuple[RunConfig, Path, int | None]:
    """What `train` is asked: (configuration, run directory, the step a resumed run's
    checkpoint holds: None for a new run), checked."""
    if args.resume:
        if args.out is None:
            raise UserError("--resume needs --out RUN, the run directory to continue")
        config, step = resume_request(args)
        if step is None and distributed.current().main:  # killed before its first checkpoint
            print(f"ddpmlab: note: {args.out} holds no checkpoint yet; training it from step 0",
                  file=sys.stderr)
        return config, args.out, step or 0
    if args.data is None and not args.config:
        raise UserError("give the data to learn: a built-in name "
                        f"({', '.join([*TOY2D, *IMAGE_SETS])}), a .csv/.txt/.npy file of "
                        "points, a PNG/JPEG silhouette or text:WORD to draw points from, or "
                        "a folder of images or an .npy/.npz array of them")
    settings, origin = settings_from(args)
    diffusion = settings.get("diffusion", {})
    if diffusion.get("objective") == "flow" and "prediction" in diffusion:
        raise UserError(f"{origin['diffusion', 'prediction']} does not apply to the flow "
                        "objective: its network predicts the velocity eps - x_0; drop it")
    source = settings.get("data", {}).get("source", RunConfig().data.source)
    config = validate(default_config(source, settings))
    return config, args.out or fresh_out(
        Path(config.data.source.replace(":", "-")).stem or "images"), None


def check_new_file(path: Path, force: bool, suffixes: tuple[str, ...],
                    files: list[Path] | None = None) -> None:
    """Refuse an output file with the wrong suffix, in a missing folder, or (without --force)
    one that exists: nothing a user made is overwritten. Where ``suffixes`` holds "/", a
    path without a suffix is a folder for ``files``, none of which may exist unless --force."""
    folder = "/" in suffixes and (path.suffix == "" or path.is_dir())
    if not folder and path.suffix.lower() not in suffixes:
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


def check_size(args: argparse.Namespace) -> None:
    if (args.n is not None and args.n < 2) or (args.repeats is not None and args.repeats < 1):
        raise UserError("--n must be at least 2 and --repeats at least 1")


def positive(name: str, value: int) -> None:
    if value < 1:
        raise UserError(f"{name} must be positive, got {value}")


def eta_of(args: argparse.Namespace, samplers: tuple[str, ...]) -> float:
    """--eta, refused where no sampler uses it (only DDIM has an eta)."""
    if args.eta is None:
        return 0.0
    takers = [name for name, s in SAMPLERS.items() if s.eta]
    if not set(takers) & set(samplers):
        raise UserError(f"--eta applies to --sampler {' and '.join(takers)} only (this command "
                        f"uses {', '.join(samplers)}); drop --eta or add the "
                        f"{' or '.join(takers)} sampler")
    return args.eta


def tolerances(args: argparse.Namespace) -> tuple[float, float]:
    """(--rtol, --atol), checked; refused where no ODE is solved (--sampler ode,
    --exact-nll)."""
    for name in ("rtol", "atol"):
        adaptive = args.sampler is not None and not SAMPLERS[args.sampler].stepped
        if getattr(args, name) is not None and not (adaptive or getattr(args, "exact_nll",
                                                                         False)):
            raise UserError(f"--{name} applies to --sampler ode and --exact-nll only; drop it "
                            "or add --sampler ode")
    rtol = RTOL if args.rtol is None else args.rtol
    atol = ATOL if args.atol is None else args.atol
    check_tolerances(rtol, atol)
    return rtol, atol




def sampler_spec(args: argparse.Namespace, default: str) -> SamplerSpec:
    """The sampling request of ``sample`` and ``evaluate``: --sampler (``default``, the run's,
    when not given), --steps, --spacing, --eta and the ODE's --rtol and --atol, each refused
    where it does not apply."""
    name = args.sampler or default
    eta = eta_of(args, (name,))
    rtol, atol = tolerances(args)
    return SamplerSpec(name, args.steps, args.spacing, eta, rtol, atol)
