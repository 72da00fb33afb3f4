"""A trained run ready to sample: :class:`Run`, opened by :func:`open_run`.

Sampling goes from :meth:`Run.sample` to the sampler registry (``ddpmlab.samplers``) with
the run's EMA network as the denoiser; what differs between points and images is asked of
the run's modality (``ddpmlab.modalities``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.std import tqdm

from ddpmlab import checkpoint, distributed, feedback
from ddpmlab.accel.mlp import sampling_denoiser
from ddpmlab.config import RunConfig
from ddpmlab.devices import resolve_device
from ddpmlab.errors import UserError
from ddpmlab.fileio import exclusive
from ddpmlab.modalities import Modality, modality_named
from ddpmlab.models import build_network
from ddpmlab.objectives import objective_named
from ddpmlab.precision import autocast_dtype
from ddpmlab.runs.layout import CKPT, CONFIG, DATA, SNAPSHOTS, load_checkpoint, load_npz
from ddpmlab.samplers import (
    SamplerSpec,
    check,
    default_spacing,
    reverse_chain,
    sampler_named,
    stepped_for,
)
from ddpmlab.samplers.flow_fields import FLOW_SPACING, ode_field_for
from ddpmlab.samplers.guidance import class_labels, guided
from ddpmlab.samplers.ode import Field, Span, ode_sample
from ddpmlab.schedules import NoiseSchedule, make_schedule

Cls = int | str | None  # a class by index or name, "all", "none", or None (Run.labels)
Floors = dict[tuple[int, int], dict[str, float]]


@dataclass
class Run:
    """A trained model ready to sample: its config, EMA network, schedule and data.

    ``kind`` is the run's modality (``ddpmlab.modalities``): its data set, its scaler, and
    everything that differs between points and images.
    """

    path: Path
    config: RunConfig
    model: nn.Module
    schedule: NoiseSchedule
    kind: Modality
    step: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: the network's passes when sampling (``ddpmlab.precision``): None for float32
    autocast: torch.dtype | None = None
    #: real-vs-real floors by (n, draw), computed once (they depend on the held-out data only)
    floors: Floors = field(default_factory=dict, repr=False)

    @property
    def data(self) -> Any:
        """The run's data set: ``name``, ``train``, ``heldout`` (PointSet or ImageSet)."""
        return self.kind.data

    @property
    def denoiser(self) -> Callable[..., torch.Tensor]:
        """The network as the samplers call it, ``(x_t, t, y=None) -> output``
        (``ddpmlab.accel.mlp.sampling_denoiser``), over at most ``kind.network_rows`` rows
        at a time, under the run's precision (``autocast``)."""
        return self._network(self.autocast)

    def _network(self, dtype: torch.dtype | None) -> Callable[..., torch.Tensor]:
        """:attr:`denoiser` under autocast to ``dtype`` (None: float32)."""
        rows = self.kind.network_rows
        if rows is None:
            return sampling_denoiser(self.model, dtype=dtype)
        return sampling_denoiser(self.model, rows, dtype)

    @property
    def classes(self) -> tuple[str, ...] | None:
        """A conditional run's class names (``--class`` takes a name or an index), else None."""
        return self.kind.class_names if getattr(self.model, "num_classes", 0) else None

    def labels(self, n: int, cls: Cls) -> np.ndarray | None:
        """The classes requested for n samples, (n,) int64, or None for no class.

        A conditional run draws, for ``cls`` None, each class in the training data's
        proportions, in class order (p(x) = sum_y p(y) p(x | y), the data's p(y):
        :func:`~ddpmlab.samplers.guidance.class_labels`); for an index or a name, all of that
        class; for ``"all"``, an equal share of each; for ``"none"``, no class (the network's
        unconditional model, learnt from the dropped labels). An unconditional run takes None
        or ``"none"``; any other class is refused with one line, as is an unknown class.
        """
        if cls == "none":
            return None
        names = self.classes
        if names is None:
            if cls is None:
                return None
            raise UserError(f"--class needs a conditional run; {self.path} was trained without "
                            "classes (train one with --conditional)")
        if cls is None:
            return class_labels(n, None, len(names), self.kind.labels()).numpy()
        if cls == "all":
            return class_labels(n, None, len(names)).numpy()
        if isinstance(cls, str) and cls in names:
            return class_labels(n, names.index(cls), len(names)).numpy()
        if isinstance(cls, int) or str(cls).isdigit():
            if 0 <= int(cls) < len(names):
                return class_labels(n, int(cls), len(names)).numpy()
        raise UserError(f"unknown class {cls!r}; this run's classes are 0..{len(names) - 1} "
                        f"({', '.join(names)}), all or none")

    @property
    def objective(self) -> str:
        """What the run was trained with: ``ddpm`` or ``flow`` (``ddpmlab.objectives``)."""
        return self.config.diffusion.objective

    @property
    def default_sampler(self) -> str:
        """What the run samples with unless told: ddpm's ancestral sampler, a flow's Euler."""
        return objective_named(self.objective).default_sampler

    @property
    def samplers(self) -> tuple[str, ...]:
        """The stepped samplers of this run (``samplers.stepped_for`` its objective)."""
        return stepped_for(self.objective)

    def spec(self, sampler: str | SamplerSpec | None) -> SamplerSpec:
        """A sampling request: a spec, a sampler's name, or None for the run's default."""
        return SamplerSpec.of(self.default_sampler if sampler is None else sampler)

    def spacing(self, sampler: str = "ddim") -> str:
        """The timestep spacing ``sampler`` uses unless told (by the run's prediction and the
        sampler: ``ddpmlab.samplers.spacing.default_spacing``; a flow sampler's grid is
        uniform)."""
        if sampler_named(sampler).flow:
            return FLOW_SPACING
        return default_spacing(self.config.diffusion.prediction, sampler)

    def check_sampler(self, sampler: str | SamplerSpec | None) -> int:
        """Refuse a bad sampling request before any work (``ddpmlab.samplers.check``); return
        the steps K (1 for the ODE, whose solver chooses its own)."""
        spec = self.spec(sampler)
        return check(spec, self.schedule.T, self.schedule.alpha_bar64, self.spacing(spec.name),
                     self.objective)

    def ode_field(self, denoiser: Callable[..., torch.Tensor] | None = None, *,
                  clip: bool = False) -> tuple[Field, Span | None]:
        """The field ``samplers.ode`` integrates for this run, and its span (None: the
        DDPM's), of ``denoiser`` (the EMA network itself by default: differentiable)."""
        d = self.config.diffusion
        return ode_field_for(self.model if denoiser is None else denoiser, self.schedule,
                             objective=self.objective, prediction=d.prediction,
                             variance=d.variance, clip=clip)

    def _request(self, n: int, spec: SamplerSpec, cls: Cls,
                 guidance: float) -> tuple[int, np.ndarray | None]:
        """Check a sampling request before any work: (K, the labels of the n samples)."""
        K = self.check_sampler(spec)
        stepped = sampler_named(spec.name).stepped
        # the ODE solves the network without a class unless told one (and refuses it then)
        y = self.labels(n, "none" if cls is None and not stepped else cls)
        if guidance and y is None:
            raise UserError("--guidance needs classes: a conditional run, and a --class other "
                            "than none")
        if not guidance >= 0:
            raise UserError(f"--guidance must be >= 0 (0: plain conditional sampling), got "
                            f"{guidance}")
        if not stepped and y is not None:
            raise UserError(f"--sampler {spec.name} samples the unconditional model only; drop "
                            f"--class or use {', '.join(self.samplers)}")
        return K, y

    def _chain(self, shape: tuple[int, ...], g: torch.Generator, spec: SamplerSpec,
               y: np.ndarray | None = None,
               guidance: float = 0.0) -> Iterator[tuple[int, torch.Tensor]]:
        denoiser = self.denoiser
        if y is not None:  # classifier-free guidance (Ho & Salimans 2022, Eq. 6)
            denoiser = guided(denoiser, torch.from_numpy(y).to(self.device), guidance,
                              len(self.classes or ()), self.config.diffusion.variance)
        d = self.config.diffusion
        return reverse_chain(denoiser, self.schedule, shape, spec, prediction=d.prediction,
                             variance=d.variance, generator=g, clip=self.kind.clip,
                             objective=self.objective)

    def chain(self, n: int, seed: int = 0, sampler: str | SamplerSpec | None = None, *,
              cls: Cls = None, guidance: float = 0.0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(n_steps_left, samples (n, *shape))`` in data coordinates along the chain
        (``sampler`` None: the run's default)."""
        spec = self.spec(sampler)
        _, y = self._request(n, spec, cls, guidance)
        g = torch.Generator(self.device).manual_seed(seed)
        for k, x in self._chain((n, *self.kind.shape), g, spec, y, guidance):
            yield k, self.kind.to_data(x.cpu())

    def sample(self, n: int, seed: int = 0, sampler: str | SamplerSpec | None = None, *,
               cls: Cls = None, guidance: float = 0.0, bar: tqdm | None = None) -> np.ndarray:
        """n samples in data coordinates (points (n, dim) float64, images (n, C, H, W) in
        [0, 1]) by ``sampler``: a name with its defaults, or a :class:`SamplerSpec` (steps,
        spacing, eta; the ODE's tolerances, all n in one solve); None: the run's default
        (:attr:`default_sampler`).

        A conditional run samples ``cls`` (None: each class in the data's proportions; an
        index or a name; ``"all"``: an equal share of each; ``"none"``: no class;
        :meth:`labels`) with classifier-free guidance of weight ``guidance`` (0: plain
        conditional sampling); the ODE solves the network without a class. Shows a bar over
        the samples, or advances ``bar`` (one shared by several draws, counting samples),
        moving with every step.

        The samples come in blocks of ``kind.sample_block`` rows, block b drawn by its own
        generator (:func:`block_seed`), so the same seed on the same device gives the same
        samples however they are shared: under torchrun rank r draws blocks r, r + N, ...
        and every rank returns all n (a GPU draws another random stream than the CPU).
        """
        spec = self.spec(sampler)
        K, y = self._request(n, spec, cls, guidance)
        group = distributed.current()
        if not sampler_named(spec.name).stepped:
            if group.many:
                raise UserError(f"--sampler {spec.name} solves all samples as one system, in "
                                "one process; start it without torchrun")
            return self._ode_sample(n, torch.Generator(self.device).manual_seed(seed), spec,
                                    bar)
        block = self.kind.sample_block
        starts = range(0, n, block)[group.rank::group.world]  # this rank's blocks
        own = bar is None
        if bar is None:
            mine_n = sum(min(block, n - start) for start in starts)
            bar = feedback.bar(mine_n, f"sampling {n:,} {self.kind.unit} ({spec.name}, {K} "
                               "steps)", unit=self.kind.unit.rstrip("s"))

        def draw(start: int) -> np.ndarray:
            rows = min(block, n - start)
            g = torch.Generator(self.device).manual_seed(block_seed(seed, start // block))
            labels = None if y is None else y[start:start + rows]
            x, shown = None, 0
            for i, (_, state) in enumerate(self._chain((rows, *self.kind.shape), g, spec,
                                                       labels, guidance)):
                done = rows * i // K  # the first state is x_T, before any step
                bar.update(done - shown)
                shown, x = done, state
            assert x is not None  # a chain yields x_T at least
            return self.kind.to_data(x.cpu())

        try:
            mine = [draw(start) for start in starts]
        finally:
            if own:
                bar.close()
        shares = distributed.gather(mine)  # rank r's blocks are blocks r, r + N, ...
        count = -(-n // block)
        return np.concatenate([shares[b % group.world][b // group.world] for b in range(count)])

    def _ode_sample(self, n: int, g: torch.Generator, spec: SamplerSpec,
                    bar: tqdm | None) -> np.ndarray:
        # float32: bfloat16's rounding (relative 4e-3) would swamp the adaptive solver's
        # error estimate at rtol 1e-5 and shrink its steps
        ode_field, span = self.ode_field(self._network(None), clip=self.kind.clip)
        if bar is None:
            feedback.status(f"sampling {n:,} {self.kind.unit} with the probability-flow ODE")
        x = ode_sample(ode_field, self.schedule, (n, *self.kind.shape), rtol=spec.rtol,
                       atol=spec.atol, generator=g, span=span).x0
        if bar is not None:
            bar.update(n)
        return self.kind.to_data(x.cpu())

    def snapshots(self) -> list[tuple[int, list[tuple[int, np.ndarray]]]]:
        """The reverse-process snapshots taken while training: ``(training step, frames)``
        with frames ``(steps left, samples)`` from x_T to x_0, in data coordinates."""
        if not (self.path / SNAPSHOTS).exists():
            return []
        snaps = load_npz(self.path / SNAPSHOTS)
        labels = snaps.pop("labels", None)
        if labels is None:
            return []
        rows = sorted((int(k[4:]), v) for k, v in snaps.items())
        return [(s, list(zip(labels.tolist(), v, strict=True))) for s, v in rows]


def block_seed(seed: int, block: int) -> int:
    """The seed of the generator that draws sample block ``block`` (:meth:`Run.sample`):
    ``seed`` itself for the first, so n <= sample_block samples are those of one generator
    seeded with ``seed``; for the others a 63-bit number from NumPy's SeedSequence of
    (seed, block), which keeps distinct blocks' streams apart."""
    if block == 0:
        return seed
    return int(np.random.SeedSequence([seed, block]).generate_state(1, np.uint64)[0] >> 1)


def restore_kind(path: Path, ckpt: checkpoint.Checkpoint) -> Modality:
    """The run's modality with its data.npz and the checkpoint's metadata (a checkpoint
    without ``modality`` holds points)."""
    kind = modality_named(ckpt.meta.get("modality", "points")).restore(
        ckpt.config, load_npz(path / DATA), ckpt.meta)
    saved = ckpt.meta.get("shape")
    if saved is not None and tuple(saved) != kind.shape:
        raise UserError(f"{path / DATA} holds samples of shape {kind.shape} but the checkpoint "
                        f"was trained on {tuple(saved)}; put back the run's own files or train "
                        "again")
    return kind


def open_run(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Run:
    """Load a run directory written by ``train_run``, with clear errors for anything else;
    its network on ``device`` ("cpu", "cuda", "auto": ``ddpmlab.devices.resolve_device``)."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{path} is a file, not a run directory; give the folder that "
                        "`ddpmlab train` wrote")
    if not path.is_dir():
        raise UserError(f"run directory not found: {path} (train one with `ddpmlab train`)")
    if not (path / CKPT).is_file():
        if (path / CONFIG).is_file():  # a run whose training has not checkpointed yet
            with exclusive(path):  # refused while that training runs: "in use"
                pass
            raise UserError(f"{path} has no checkpoint: its training stopped before the first "
                            f"one; continue it with `ddpmlab train --out {path} --resume`")
        raise UserError(f"{path} is not a ddpmlab run (no {CKPT}); "
                        "give a folder written by `ddpmlab train`")
    if not (path / CONFIG).is_file():
        raise UserError(f"{path / CONFIG} is missing: the run is damaged; put it back, or "
                        "train the run again")
    ckpt = load_checkpoint(path)
    kind = restore_kind(path, ckpt)
    config = ckpt.config
    # sampling runs as training did (see config), one rank of several on its share of cores
    torch.set_num_threads(distributed.threads(config.train.threads))
    device = resolve_device(distributed.setup(str(device)))
    model = build_network(config, kind.shape, len(kind.class_names or ()))
    checkpoint.load_weights(model, ckpt.ema, str(path / CKPT))
    model.to(device).eval().requires_grad_(False)
    autocast = autocast_dtype(config.train.precision, device, model)
    # float32 convolutions sample faster in channels-last memory, bfloat16 ones slower
    # (bench/precision.py)
    if kind.channels_last and autocast is None:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return Run(path=path, config=config, model=model,
               schedule=make_schedule(config.diffusion.schedule, config.diffusion.timesteps,
                                      warn=False),
               kind=kind, step=ckpt.step, device=device, autocast=autocast)
