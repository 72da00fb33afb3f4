"""Configuration: one frozen dataclass per concern, saved whole with every checkpoint.

A run is described by a :class:`RunConfig` holding a :class:`DataConfig`, a
:class:`DiffusionConfig`, a :class:`ModelConfig` and a :class:`TrainConfig`. The same
fields are set by a TOML file (``[data]``, ``[diffusion]``, ``[model]``, ``[train]`` tables)
and by command-line flags; :func:`from_dict` checks names and types so that a typo in a
config file fails with the list of valid keys instead of being ignored.

This module imports nothing else of ddpmlab's except the error type.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal, TypeVar

from ddpmlab.errors import UserError

# The choices of each named setting, checked once where a config is built (from_dict); the
# registries that implement them (schedules.SCHEDULES, models.MODELS, ...) hold the same
# names, which tests/test_config.py checks.
Schedule = Literal["linear", "linear_unscaled", "cosine", "sigmoid"]
Variance = Literal["fixed_small", "fixed_large", "learned_range"]
Prediction = Literal["eps", "x0", "v"]
ModelName = Literal["resmlp", "seed_mlp", "unet", "seed_unet"]
LrSchedule = Literal["cosine", "constant"]
Objective = Literal["ddpm", "flow"]
Precision = Literal["auto", "fp32", "bf16"]


def _choice(value: Any, kind: Any, where: str) -> Any:
    """``value`` if it is one of the Literal ``kind``'s choices, else one line naming them."""
    choices = typing.get_args(kind)
    if value not in choices:
        name = where.rsplit(".", 1)[-1]
        label = "model" if name == "name" else name.replace("_", " ")
        raise UserError(f"unknown {label} '{value}'; choose one of: {', '.join(choices)}")
    return value


class _Choices:
    """Refuses a named setting outside its choices however the config is built."""

    def __post_init__(self) -> None:
        for name, kind in typing.get_type_hints(type(self)).items():
            if typing.get_origin(kind) is Literal:
                _choice(getattr(self, name), kind, name)


@dataclass(frozen=True)
class DataConfig:
    """Where the training data come from (``ddpmlab.modalities`` says which kind it is).

    source: a built-in shape name (``swiss_roll``, ``moons``, ...) or a .csv/.txt/.npy path of
        points; a built-in image set (``digits``, ``mnist``), a folder of images or an
        .npy/.npz array of them.
    n_train: points drawn for training from a built-in shape (a file, or images, give what
        they hold).
    label_column: the class column of a .csv/.txt file of points, by header name or 0-based
        index ("" for none); the other two columns are x and y. Built-in shapes and images
        bring their own labels.
    heldout: points kept apart for evaluation (a file keeps at most a fifth of its rows);
        8,000 = a 2,000-point reference and three 2,000-point floors. Images: the count for
        a built-in set (500 digits, 1,000 MNIST by their defaults); a folder or an array
        keeps a fifth.
    font: a .ttf/.otf file to render ``text:WORD`` data with ("": Pillow's own font).

    A single PNG/JPEG file is a silhouette whose dark pixels the points are drawn from, and
    ``text:WORD`` a word rendered and drawn from likewise (``ddpmlab.data.shapes``); a folder
    of pictures is an image data set.
    """

    source: str = "swiss_roll"
    label_column: str = ""
    n_train: int = 20_000
    heldout: int = 8_000
    font: str = ""


@dataclass(frozen=True)
class DiffusionConfig(_Choices):
    """The forward process and the reverse variance (Ho et al. 2020, Sec. 2-3).

    objective: ``ddpm`` (Ho et al. 2020: the noising chain of ``schedule``, the target
        ``prediction``) or ``flow``: flow matching on the conditional optimal-transport path
        x_t = (1 - t) x_0 + t eps, the network trained to predict the velocity eps - x_0
        (Lipman et al. 2023, Eq. 22-23 with sigma_min = 0; Liu et al. 2023, Eq. 1), at the T
        times t = (k + 1) / T of the timesteps k = 0..T-1 the networks embed
        (``ddpmlab.flow``). A flow has no reverse variance and no noise schedule: ``schedule``,
        ``prediction`` and ``variance`` do not apply to it (``learned_range`` is refused). A
        config saved without it is a DDPM's.
    schedule: beta schedule name (see ``ddpmlab.schedules.SCHEDULES``).
    timesteps: T, the number of noising steps; timesteps are indexed 0..T-1.
    variance: ``fixed_small`` (sigma_t^2 = posterior variance beta~_t) or ``fixed_large``
        (sigma_t^2 = beta_t), the two choices of Ho et al. 2020, Sec. 3.2; or
        ``learned_range``: the network also outputs v in [-1, 1] interpolating their logs
        (Nichol & Dhariwal 2021, Eq. 15), trained with the hybrid loss.
    prediction: what the network outputs: ``eps`` (Ho et al. 2020), ``x0``, or ``v``
        (Salimans & Ho 2022). ``v`` by default: x0_hat = sqrt(ab) x_t - sqrt(1 - ab) v_hat
        divides by nothing, where eps's x0_hat divides by sqrt(alpha_bar), near 0 at the
        cosine schedule's last step, which DDIM and DPM-Solver++ amplify (bench/README.md,
        "Few-step sampling"). The image defaults keep ``eps``, as measured there.
    antithetic: draw t and T-1-t in the same batch, as the source text's loss does.
    vlb_weight: lambda of the hybrid loss L_simple + lambda L_vlb (Nichol & Dhariwal 2021,
        Sec. 3.1: 0.001); used with ``learned_range`` only. See ``likelihood.hybrid_loss``.
    stable_target: M > 0 trains on the stable target field (Xu, Tong & Jaakkola 2023): each
        example's target averaged, by its posterior weight, over M training examples drawn
        afresh each step (``diffusion.stable_target``); 0 trains on the example's own
        target. 512 for points: the deterministic samplers (DDIM, DPM-Solver++, the ODE)
        rest on the network at high noise, where this target has far less variance
        (bench/README.md, "Few-step sampling"). Images keep 0.
    min_snr_gamma: gamma > 0 weights each example's loss by Min-SNR-gamma (Hang et al. 2023:
        the x0-space weight min(SNR_t, gamma) in the target's space,
        ``diffusion.min_snr_weight``); 0: the unweighted loss of Ho et al. 2020. A DDPM
        with a fixed variance only.
    """

    schedule: Schedule = "cosine"
    timesteps: int = 200
    objective: Objective = "ddpm"
    variance: Variance = "fixed_small"
    prediction: Prediction = "v"
    antithetic: bool = False
    vlb_weight: float = 0.001
    stable_target: int = 512
    min_snr_gamma: float = 0.0


@dataclass(frozen=True)
class ResMLPConfig:
    """``resmlp``, the default network for points (``ddpmlab.models.mlp.ResMLP``).

    hidden: width of the hidden layers.
    depth: residual blocks.
    fourier_scale: frequency scale of the input Fourier features (0 turns them off).
    """

    hidden: int = 64
    depth: int = 3
    fourier_scale: float = 4.0


@dataclass(frozen=True)
class SeedMLPConfig:
    """``seed_mlp``, the source text's network, exactly: three hidden layers of ``hidden``."""

    hidden: int = 64


@dataclass(frozen=True)
class SeedUNetConfig:
    """The source text's U-Net (Ronneberger et al. 2015).

    poolings: 2x2 max-poolings (= number of resolutions - 1). The 2015 network has 4 (five
        resolutions, 64 to 1024 channels) and 5 * poolings + 3 = 23 convolutions; 4 needs sizes
        divisible by 16, so the default, 2, is the most that 28x28 MNIST allows.
    base_width: channels at full resolution, doubled at each pooling (64 in the paper).
    """

    poolings: int = 2
    base_width: int = 64


@dataclass(frozen=True)
class UNetConfig:
    """Ho et al. 2020's U-Net (Appendix B), in improved-diffusion's form.

    base_channels: width at full resolution; level i has base_channels * channel_mult[i].
    channel_mult: one entry per resolution; len(channel_mult) - 1 stride-2 downsamplings.
    num_res_blocks: residual blocks per level on the way down (one more on the way up).
    attention_resolutions: downsampling rates (1, 2, 4, ...) whose levels get self-attention,
        as improved-diffusion's UNetModel takes them: 2 is the 16x16 level of a 32x32 image
        (Ho et al.'s choice) and the 4x4 level of 8x8 digits; () for none.
    middle_attention: self-attention between the middle residual blocks (Ho et al.).
    num_heads: attention heads (1 in Ho et al.; 4 in Nichol & Dhariwal 2021).
    dropout: inside every residual block (0.1 in Ho et al. for CIFAR-10).
    groups: GroupNorm groups (32 in both papers); must divide every width.
    scale_shift_norm: the timestep scales and shifts the normalised features (Nichol &
        Dhariwal 2021) instead of being added before them (Ho et al.).
    """

    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (2,)
    middle_attention: bool = True
    num_heads: int = 1
    dropout: float = 0.1
    groups: int = 8
    scale_shift_norm: bool = False


@dataclass(frozen=True)
class ModelConfig(_Choices):
    """The noise-prediction network eps_theta(x_t, t): its name and each network's settings.

    name: ``resmlp`` (the default for points), ``seed_mlp`` (the source text's MLP), ``unet``
        (the default for images) or ``seed_unet`` (the source text's U-Net).
    The network named is built from its own table (``[model.resmlp]``, ``[model.unet]``, ...);
    the others are saved too but unused.
    conditional: a class embedding beside the timestep's, for classifier-free guidance
        (Ho & Salimans 2022); the data must have at least two classes.
    """

    name: ModelName = "resmlp"
    conditional: bool = False
    resmlp: ResMLPConfig = field(default_factory=ResMLPConfig)
    seed_mlp: SeedMLPConfig = field(default_factory=SeedMLPConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    seed_unet: SeedUNetConfig = field(default_factory=SeedUNetConfig)


@dataclass(frozen=True)
class TrainConfig(_Choices):
    """The optimisation: Adam, gradient clipping, a learning-rate schedule and EMA weights.

    batch_size: examples per step; 512 for points, where the v target needs it to learn
        circles' thin rings (bench/README.md, "Few-step sampling").
    lr_schedule: ``cosine`` (linear warm-up then cosine decay to 0) or ``constant``.
    ema_decay: decay of the exponential moving average of the weights used for sampling
        (0 disables it: the raw weights are used).
    snapshots: reverse-process snapshots at these training steps for the training-progress
        figure; empty means the beginning, middle and end (5 %, 50 % and 100 % of steps).
    threads: torch intra-op threads for training and for sampling from the run (``open_run``
        sets them too); 1 suits these small MLPs, whose operations are too short to share,
        and torch's threads collapse when another process shares the cores (bench/perf.py).
    checkpoint_every: write the checkpoint (and loss.csv) every this many steps, so a killed
        run resumes from there; 0 writes it only at the end (and on Ctrl-C or SIGTERM).
    cond_drop: for a conditional model, the probability that an example's label is replaced
        by the "no class" token (p_uncond of Ho & Salimans 2022, Algorithm 1; 0.1 as there),
        so one network learns eps(x_t, t, y) and eps(x_t, t).
    leaves: the equal parts of each batch whose gradients a point MLP sums as one fixed tree
        (a power of two; fewer where the batch does not divide into parts of 16 rows), and
        so the most processes that train the run bit for bit as one does; more leaves cost
        more per step (bench/distributed.py --parts leaves).
    precision: ``auto`` (bfloat16 autocast for an image network where the CPU or GPU
        computes bfloat16 natively, float32 otherwise), ``fp32`` or ``bf16``; it applies to
        the network's passes in training and sampling, never to the maths around them
        (``ddpmlab.precision``).
    compile: train the network through ``torch.compile`` (not the point MLPs' hand-derived
        gradients); off by default, its compilation costing what it saves (bench/precision.py).
    """

    steps: int = 4_000
    batch_size: int = 512
    lr: float = 4e-3
    lr_schedule: LrSchedule = "cosine"
    warmup: int = 200
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    seed: int = 0
    log_every: int = 50
    snapshots: tuple[int, ...] = ()
    threads: int = 1
    checkpoint_every: int = 1000
    cond_drop: float = 0.1
    leaves: int = 2
    precision: Precision = "auto"
    compile: bool = False


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run: saved as config.json and inside every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


Config = TypeVar("Config")


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass; tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check one value against a field's annotation, converting only where lossless."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        return _choice(value, kind, where)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a table of settings, not {value!r}")
        return from_dict(kind, value, where)
    if origin is tuple:
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        if not isinstance(value, list | tuple):
            raise UserError(f"{where} must be a list, not {value!r}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {kind}")  # keep configs flat and simple
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise UserError(
            f"{where} must be {kind.__name__}, not {type(value).__name__} {value!r}"
        )
    return value


def from_dict(cls: type[Config], data: dict[str, Any], where: str = "") -> Config:
    """Build a config dataclass from a dict, refusing unknown keys and wrong types.

    Missing keys keep their defaults, so a file need only name what it changes. ``where`` is
    the dotted path of ``data`` inside the whole config, for messages (``train``, ...).
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        section = f"in [{where}]" if where else "sections"
        raise UserError(f"unknown setting {where + '.' if where else ''}{unknown[0]}; "
                        f"valid {section}: {', '.join(names)}")
    values = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**values)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` applied, tables merged key by key at every depth."""
    out = dict(base)
    for key, value in over.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = merge(base[key], value) if nested else value
    return out


def replace(config: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """A copy of ``config`` with ``{"train": {"steps": 10}, "model": {"unet": {...}}}`` applied
    (nested tables merged, not replaced) and type-checked; from_dict names a bad key."""
    return from_dict(RunConfig, merge(to_dict(config), overrides))


LEGACY_MODEL = ("hidden", "depth", "fourier_scale")  # [model] keys before per-model tables


def upgrade(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved RunConfig dict in today's form: runs written before the per-model tables had
    ``model.hidden``, ``model.depth`` and ``model.fourier_scale`` (resmlp's and seed_mlp's
    settings), now ``model.resmlp.*`` and ``model.seed_mlp.hidden``; runs written before the
    stable target field have no ``diffusion.stable_target`` and trained without it (0), and
    runs written before ``train.precision`` trained and sampled in float32; a resume and a
    sample keep both."""
    diffusion = saved.get("diffusion")
    if isinstance(diffusion, dict) and "stable_target" not in diffusion:
        saved = {**saved, "diffusion": {**diffusion, "stable_target": 0}}
    train = saved.get("train")
    if isinstance(train, dict) and "precision" not in train:
        saved = {**saved, "train": {**train, "precision": "fp32"}}
    model = saved.get("model")
    if not isinstance(model, dict) or not set(model) & set(LEGACY_MODEL):
        return saved
    flat = {k: model[k] for k in LEGACY_MODEL if k in model}
    nested = {k: v for k, v in model.items() if k not in LEGACY_MODEL}
    nested["resmlp"] = {**flat, **nested.get("resmlp", {})}
    if "hidden" in flat:
        nested["seed_mlp"] = {"hidden": flat["hidden"], **nested.get("seed_mlp", {})}
    return {**saved, "model": nested}


#: configurations shipped inside the package (src/ddpmlab/presets/NAME.toml), named on the
#: command line as ``--config NAME``: ``seed`` is the source text's own configuration
PRESETS = ("seed",)


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file, or a preset of :data:`PRESETS` by its name, into a dict
    (checked later by :func:`from_dict`).

    A name without the ``.toml`` suffix that is a preset is the packaged file, so the source
    text's configuration works from an installed wheel as from the checkout."""
    source: Path | Traversable = Path(path)
    if str(path) in PRESETS:
        source = resources.files("ddpmlab") / "presets" / f"{path}.toml"
    try:
        with source.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        hint = "" if Path(path).suffix else f" (presets: {', '.join(PRESETS)})"
        raise UserError(f"config file not found: {path}{hint}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None


def validate(config: RunConfig) -> RunConfig:
    """Refuse values no run can use (sizes <= 0, T < 2, decay outside [0, 1))."""
    checks = [
        (config.data.n_train >= 2, "data.n_train must be at least 2"),
        (config.data.heldout >= 2, "data.heldout must be at least 2"),
        (config.diffusion.timesteps >= 2, "diffusion.timesteps must be at least 2"),
        (config.diffusion.objective != "flow" or config.diffusion.variance != "learned_range",
         "the flow objective learns a velocity and has no reverse variance: drop "
         "--variance learned_range (or train --objective ddpm)"),
        (config.diffusion.vlb_weight >= 0, "diffusion.vlb_weight must be >= 0"),
        (config.diffusion.min_snr_gamma >= 0, "diffusion.min_snr_gamma must be >= 0 (0: off; "
         "Hang et al. 2023 use 5)"),
        (not config.diffusion.min_snr_gamma or (config.diffusion.objective == "ddpm"
                                                and config.diffusion.variance != "learned_range"),
         "--min-snr weights the DDPM's simple loss: it does not apply to the flow objective "
         "or to --variance learned_range's hybrid loss; drop one of them"),
        (config.diffusion.stable_target >= 0, "diffusion.stable_target must be >= 0 "
         "(0: off)"),
        (config.model.resmlp.hidden >= 1, "model.resmlp.hidden must be positive"),
        (config.model.resmlp.depth >= 1, "model.resmlp.depth must be positive"),
        (config.model.resmlp.fourier_scale >= 0, "model.resmlp.fourier_scale must be >= 0"),
        (config.model.seed_mlp.hidden >= 1, "model.seed_mlp.hidden must be positive"),
        (config.train.steps >= 1, "train.steps must be positive (try --steps 4000)"),
        (config.train.batch_size >= 2, "train.batch_size must be at least 2"),
        (config.train.leaves >= 1 and not config.train.leaves & (config.train.leaves - 1),
         "train.leaves must be a power of two (1, 2, 4, 8, ...)"),
        (config.train.lr > 0, "train.lr must be positive"),
        (0 <= config.train.seed < 2**63, "train.seed must be an integer from 0 to 2**63 - 1"),
        (config.train.warmup >= 0, "train.warmup must be >= 0"),
        (config.train.grad_clip > 0, "train.grad_clip must be positive"),
        (0 <= config.train.ema_decay < 1, "train.ema_decay must be in [0, 1)"),
        (config.train.log_every >= 1, "train.log_every must be positive"),
        (config.train.threads >= 1, "train.threads must be positive"),
        (0 <= config.train.cond_drop <= 1, "train.cond_drop must be in [0, 1]"),
        (config.train.checkpoint_every >= 0, "train.checkpoint_every must be >= 0 "
         "(0: only at the end)"),
        (all(0 <= s <= config.train.steps for s in config.train.snapshots),
         "train.snapshots must lie between 0 and train.steps"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    return config


def paths(settings: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """The leaves of nested settings by path: ``{"model": {"unet": {"groups": 8}}}`` ->
    ``{("model", "unet", "groups"): 8}``."""
    out: dict[tuple[str, ...], Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out |= paths(value, (*prefix, key))
        else:
            out[(*prefix, key)] = value
    return out
