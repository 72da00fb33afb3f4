"""A run directory, and the jobs that read or fill it: train, sample, evaluate, figures.

Layout of a run directory::

    config.json              the whole RunConfig (also inside the checkpoint)
    data.npz                 the training and held-out data (points in data coordinates,
                             images in [-1, 1], with their labels)
    checkpoint.safetensors   model, EMA, optimiser, generator state, step; metadata: the
                             modality, the sample shape, the scaler; rewritten every
                             train.checkpoint_every steps and at the end
    loss.csv                 mean training loss every train.log_every steps (with the checkpoint)
    snapshots.npz            reverse-process frames at the snapshot steps
    metrics.json             sample quality beside its real-vs-real floor
    classes.json             a conditional run's per-class quality (``evaluate``)
    figures/                 data.png, forward.png, reverse_*.png, training.png,
                             samples.png, loss.png, reverse.gif

What differs between points and images is asked of the run's modality
(``ddpmlab.modalities``); nothing here branches on the kind of data.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.std import tqdm

from ddpmlab import checkpoint, distributed, feedback
from ddpmlab.config import RunConfig, from_dict, paths, replace, to_dict, upgrade
from ddpmlab.diffusion import split_output
from ddpmlab.errors import UserError
from ddpmlab.fileio import exclusive, remove_stale_temps, write_atomic, write_bytes, write_json
from ddpmlab.modalities import Modality, chain_frames, modality_for, modality_named
from ddpmlab.models import build_network
from ddpmlab.models.fast import sampling_denoiser
from ddpmlab.samplers import ddim_chain, ddpm_chain, default_spacing, dpm_solver_chain, timesteps
from ddpmlab.samplers.ddim import check_eta
from ddpmlab.samplers.guidance import class_labels, guided
from ddpmlab.samplers.ode import ATOL, RTOL, check_tolerances, network_field, ode_sample
from ddpmlab.schedules import NoiseSchedule, make_schedule
from ddpmlab.train import Diverged, Trainer, default_snapshots, resolve_device

CONFIG, DATA, CKPT = "config.json", "data.npz", "checkpoint.safetensors"
LOSS, SNAPSHOTS, METRICS, FIGURES = "loss.csv", "snapshots.npz", "metrics.json", "figures"
CLASSES = "classes.json"
Cls = int | str | None  # a class by index or name, "all" (an equal share of each), or none
SAMPLERS = ("ddpm", "ddim", "dpm_solver", "ode")  # ode: adaptive, no step count (samplers/ode.py)
STEPPED = tuple(s for s in SAMPLERS if s != "ode")  # the samplers with a step count
CHAIN_FRAMES = 10  # panels in a reverse-process figure
RESUMABLE = ("steps", "checkpoint_every")  # the train settings a resumed run may change
Floors = dict[tuple[int, int], dict[str, float]]
# viz is imported where used: with metrics it pulls in scipy, scikit-learn, POT and
# matplotlib (about a second), which training and a resumed training never need.


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays))  # type: ignore[arg-type]


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UserError(f"{path} is missing; the run is incomplete, train it again") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is damaged ({e}); train the run again") from None


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
    #: real-vs-real floors by (n, draw), computed once (they depend on the held-out data only)
    floors: Floors = field(default_factory=dict, repr=False)

    @property
    def data(self) -> Any:
        """The run's data set: ``name``, ``train``, ``heldout`` (PointSet or ImageSet)."""
        return self.kind.data

    def floor(self, n: int, i: int) -> dict[str, float]:
        """The floor of draw i at n per set (n as ``kind.reference_sets`` cuts it)."""
        sets = self.kind.reference_sets(n)
        key = (len(sets[0]), i % len(sets))
        if key not in self.floors:
            self.floors[key] = self.kind.floor(sets, i)
        return self.floors[key]

    @property
    def denoiser(self) -> Callable[..., torch.Tensor]:
        """The network as the samplers call it, ``(x_t, t, y=None) -> output``
        (``ddpmlab.models.fast.sampling_denoiser``)."""
        return sampling_denoiser(self.model)

    @property
    def classes(self) -> tuple[str, ...] | None:
        """A conditional run's class names (``--class`` takes a name or an index), else None."""
        return self.kind.class_names if getattr(self.model, "num_classes", 0) else None

    def labels(self, n: int, cls: Cls) -> np.ndarray | None:
        """The classes requested for n samples: None (no class), all of one class (an index
        or a name), or ``"all"``: an equal share of each, in class order; (n,) int64.

        Refused with one line: a class on an unconditional run, an unknown class.
        """
        if cls is None:
            return None
        names = self.classes
        if names is None:
            raise UserError(f"--class needs a conditional run; {self.path} was trained without "
                            "classes (train one with --conditional)")
        if cls == "all":
            return class_labels(n, None, len(names)).numpy()
        if isinstance(cls, str) and cls in names:
            return class_labels(n, names.index(cls), len(names)).numpy()
        if isinstance(cls, int) or str(cls).isdigit():
            if 0 <= int(cls) < len(names):
                return class_labels(n, int(cls), len(names)).numpy()
        raise UserError(f"unknown class {cls!r}; this run's classes are 0..{len(names) - 1} "
                        f"({', '.join(names)}), or all")

    def check_sampler(self, sampler: str, steps: int | None, eta: float,
                      spacing: str | None = None, rtol: float = RTOL,
                      atol: float = ATOL) -> int:
        """Refuse a bad sampler, step count, eta, spacing or tolerance before any work;
        return the steps K (1 for the ODE, whose solver chooses its own)."""
        if sampler not in SAMPLERS:
            raise UserError(f"unknown sampler '{sampler}'; choose one of: {', '.join(SAMPLERS)}")
        if sampler == "ode":
            if steps is not None or spacing is not None:
                raise UserError(f"--{'steps' if steps is not None else 'spacing'} does not "
                                "apply to --sampler ode: its adaptive solver chooses the steps "
                                "(set --rtol and --atol instead)")
            check_tolerances(rtol, atol)
            return 1
        K = self.schedule.T if steps is None else steps
        timesteps(self.schedule.T, K, spacing or self.spacing(sampler),
                  self.schedule.alpha_bar64)
        check_eta(eta)
        return K

    def spacing(self, sampler: str = "ddim") -> str:
        """The timestep spacing ``sampler`` uses unless told (by the run's prediction and the
        sampler: ``ddpmlab.samplers.spacing.default_spacing``)."""
        return default_spacing(self.config.diffusion.prediction, sampler)

    def _chain(self, shape: tuple[int, ...], g: torch.Generator, sampler: str,
               steps: int | None, eta: float, spacing: str | None,
               y: np.ndarray | None = None,
               guidance: float = 0.0) -> Iterator[tuple[int, torch.Tensor]]:
        denoiser = self.denoiser
        if y is not None:  # classifier-free guidance (Ho & Salimans 2022, Eq. 6)
            denoiser = guided(denoiser, torch.from_numpy(y).to(self.device), guidance,
                              len(self.classes or ()), self.config.diffusion.variance)
        return reverse_chain(denoiser, self.config, self.schedule, shape, g, sampler,
                             steps, eta, spacing=spacing, clip=self.kind.clip)

    def _request(self, n: int, sampler: str, steps: int | None, eta: float,
                 spacing: str | None, cls: Cls, guidance: float, rtol: float = RTOL,
                 atol: float = ATOL) -> tuple[int, np.ndarray | None]:
        """Check a sampling request before any work: (K, the labels of the n samples)."""
        K = self.check_sampler(sampler, steps, eta, spacing, rtol, atol)
        y = self.labels(n, cls)
        if guidance and y is None:
            raise UserError("--guidance needs --class (a class, or all); without one the "
                            "model samples unconditionally")
        if not guidance >= 0:
            raise UserError(f"--guidance must be >= 0 (0: plain conditional sampling), got "
                            f"{guidance}")
        if sampler == "ode" and y is not None:
            raise UserError("--sampler ode samples the unconditional model only; drop --class "
                            "or use ddpm, ddim or dpm_solver")
        return K, y

    def chain(self, n: int, seed: int = 0, sampler: str = "ddpm", steps: int | None = None,
              eta: float = 0.0, *, spacing: str | None = None, cls: Cls = None,
              guidance: float = 0.0) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(n_steps_left, samples (n, *shape))`` in data coordinates along the chain."""
        if sampler == "ode":
            raise UserError("--sampler ode gives final samples only, not a chain of states; "
                            "use ddpm, ddim or dpm_solver")
        _, y = self._request(n, sampler, steps, eta, spacing, cls, guidance)
        g = torch.Generator(self.device).manual_seed(seed)
        for k, x in self._chain((n, *self.kind.shape), g, sampler, steps, eta, spacing, y,
                                guidance):
            yield k, self.kind.to_data(x.cpu())

    def sample(self, n: int, seed: int = 0, sampler: str = "ddpm", steps: int | None = None,
               eta: float = 0.0, *, spacing: str | None = None,
               bar: tqdm | None = None, cls: Cls = None, guidance: float = 0.0,
               rtol: float = RTOL, atol: float = ATOL) -> np.ndarray:
        """n samples in data coordinates (points (n, dim) float64, images (n, C, H, W) in
        [0, 1]): ``sampler`` with K = ``steps`` visited by ``spacing`` (None: the run's
        :attr:`spacing`); the ODE with tolerances rtol and atol, all n in one solve.

        A conditional run samples class ``cls`` (an index or a name; ``"all"``: an equal
        share of each, in class order, :meth:`labels`) with classifier-free guidance of
        weight ``guidance`` (0: plain conditional sampling); ``cls=None`` samples its
        unconditional model. Shows a bar of the sampling steps, or advances ``bar`` (one
        shared by several draws) by one per step and block.

        The samples come in blocks of ``kind.sample_block`` rows, block b drawn by its own
        generator (:func:`block_seed`), so the same seed on the same device gives the same
        samples however they are shared: under torchrun rank r draws blocks r, r + N, ...
        and every rank returns all n (a GPU draws another random stream than the CPU).
        """
        K, y = self._request(n, sampler, steps, eta, spacing, cls, guidance, rtol, atol)
        group = distributed.current()
        if sampler == "ode":
            if group.many:
                raise UserError("--sampler ode solves all samples as one system, in one "
                                "process; start it without torchrun")
            return self._ode_sample(n, torch.Generator(self.device).manual_seed(seed), rtol,
                                    atol, bar)
        block = self.kind.sample_block
        starts = range(0, n, block)[group.rank::group.world]  # this rank's blocks
        own = bar is None
        if bar is None:
            bar = feedback.bar(len(starts) * K, f"sampling {n:,} {self.kind.unit}")

        def draw(start: int) -> np.ndarray:
            rows = min(block, n - start)
            g = torch.Generator(self.device).manual_seed(block_seed(seed, start // block))
            labels = None if y is None else y[start:start + rows]
            states = self._chain((rows, *self.kind.shape), g, sampler, steps, eta, spacing,
                                 labels, guidance)
            x = None
            for i, (_, state) in enumerate(states):
                bar.update(i > 0)  # the first state is x_T, before any step
                x = state
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

    def _ode_sample(self, n: int, g: torch.Generator, rtol: float, atol: float,
                    bar: tqdm | None) -> np.ndarray:
        d = self.config.diffusion
        field = network_field(self.denoiser, self.schedule, prediction=d.prediction,
                              variance=d.variance, clip=self.kind.clip)
        if bar is None:
            feedback.status(f"sampling {n:,} {self.kind.unit} with the probability-flow ODE")
        x = ode_sample(field, self.schedule, (n, *self.kind.shape), rtol=rtol, atol=atol,
                       generator=g).x0
        if bar is not None:
            bar.update()
        return self.kind.to_data(x.cpu())

    def snapshots(self) -> list[tuple[int, list[tuple[int, np.ndarray]]]]:
        """The reverse-process snapshots taken while training: ``(training step, frames)``
        with frames ``(steps left, samples)`` from x_T to x_0, in data coordinates."""
        if not (self.path / SNAPSHOTS).exists():
            return []
        snaps = _load_npz(self.path / SNAPSHOTS)
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


def reverse_chain(denoiser: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  config: RunConfig, schedule: NoiseSchedule, shape: tuple[int, ...],
                  g: torch.Generator, sampler: str = "ddpm", steps: int | None = None,
                  eta: float = 0.0, *, spacing: str | None = None, clip: bool = False
                  ) -> Iterator[tuple[int, torch.Tensor]]:
    """The run's reverse chain in model space: ``sampler`` with its diffusion settings."""
    d = config.diffusion
    if sampler == "ddpm":
        return ddpm_chain(denoiser, schedule, shape, steps=steps, spacing=spacing,
                          variance=d.variance, prediction=d.prediction, generator=g, clip=clip)
    def mean_part(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return split_output(denoiser(x, t), d.variance)[0]

    # DDIM and DPM-Solver++ use the mean part only: a learned variance's v is dropped
    if sampler == "ddim":
        return ddim_chain(mean_part, schedule, shape, steps=steps, spacing=spacing, eta=eta,
                          prediction=d.prediction, generator=g, clip=clip)
    if sampler == "dpm_solver":
        return dpm_solver_chain(mean_part, schedule, shape, steps=steps, spacing=spacing,
                                prediction=d.prediction, generator=g, clip=clip)
    raise AssertionError(f"sampler {sampler!r} passed check_sampler")


def _read_config(path: Path) -> dict[str, Any]:
    """RUN/config.json as a dict, in today's form (``config.upgrade``)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}); train the run again") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a run configuration; train the run again")
    return upgrade(saved)


def _load_checkpoint(path: Path) -> checkpoint.Checkpoint:
    """RUN's checkpoint, refused if RUN/config.json describes other data, diffusion or model.

    Those sections say what the tensors and data.npz mean; ``train`` may differ (``--resume
    --steps``). A run without config.json relies on its checkpoint alone.
    """
    ckpt = checkpoint.load(path / CKPT)
    if (path / CONFIG).is_file():
        saved = paths(_read_config(path / CONFIG))
        for key, value in paths(to_dict(ckpt.config)).items():
            other = saved.get(key, value)
            if key[0] != "train" and other != value:
                raise UserError(f"{path / CKPT} does not belong to this run: its "
                                f"{'.'.join(key)} is {value!r} but {path / CONFIG} says "
                                f"{other!r}; put back the run's own checkpoint or train again")
    return ckpt


def resume_config(path: str | os.PathLike[str]) -> tuple[RunConfig, bool]:
    """The configuration to continue run ``path`` with, and whether a checkpoint holds its state.

    The checkpoint's configuration, with the :data:`RESUMABLE` train settings of config.json
    (a ``steps`` raised there by hand is honoured); any other difference is refused. A run
    killed before its first checkpoint has only config.json: it starts again from step 0
    (``(config, False)``).
    """
    path = Path(path)
    if (path / CKPT).is_file():
        config = _load_checkpoint(path).config
        if not (path / CONFIG).is_file():
            return config, True
        edited = _read_config(path / CONFIG).get("train", {})
        ours = to_dict(config)["train"]
        for key, value in ours.items():
            if key not in RESUMABLE and edited.get(key, value) != value:
                raise UserError(f"{path / CONFIG} sets train.{key} = {edited[key]!r} but the "
                                f"run was trained with {value!r}; only "
                                f"{', '.join('train.' + k for k in RESUMABLE)} may change on "
                                "resume (put it back, or use --steps)")
        return replace(config, {"train": {k: edited[k] for k in RESUMABLE if k in edited}}), True
    if (path / CONFIG).is_file():
        return from_dict(RunConfig, _read_config(path / CONFIG)), False
    raise UserError(f"nothing to resume in {path} (no {CKPT} or {CONFIG}); "
                    "train it without --resume")


def _restore_kind(path: Path, ckpt: checkpoint.Checkpoint) -> Modality:
    """The run's modality with its data.npz and the checkpoint's metadata (a checkpoint
    without ``modality`` was written before images existed: points)."""
    kind = modality_named(ckpt.meta.get("modality", "points")).restore(
        ckpt.config, _load_npz(path / DATA), ckpt.meta)
    saved = ckpt.meta.get("shape")
    if saved is not None and tuple(saved) != kind.shape:
        raise UserError(f"{path / DATA} holds samples of shape {kind.shape} but the checkpoint "
                        f"was trained on {tuple(saved)}; put back the run's own files or train "
                        "again")
    return kind


def open_run(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Run:
    """Load a run directory written by :func:`train_run`, with clear errors for anything else;
    its network on ``device`` ("cpu", "cuda", "auto": ``train.resolve_device``)."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{path} is a file, not a run directory; give the folder that "
                        "`ddpmlab train` wrote")
    if not path.is_dir():
        raise UserError(f"run directory not found: {path} (train one with `ddpmlab train`)")
    if not (path / CKPT).is_file():
        raise UserError(f"{path} is not a ddpmlab run (no {CKPT}); "
                        "give a folder written by `ddpmlab train`")
    ckpt = _load_checkpoint(path)
    kind = _restore_kind(path, ckpt)
    config = ckpt.config
    # sampling runs as training did (see config), one rank of several on its share of cores
    torch.set_num_threads(distributed.threads(config.train.threads))
    device = resolve_device(distributed.setup(str(device)))
    model = build_network(config, kind.shape, len(kind.class_names or ()))
    checkpoint.load_weights(model, ckpt.ema, str(path / CKPT))
    model.to(device).eval().requires_grad_(False)
    if kind.channels_last:  # 1.18x faster sampling at 28x28 (bench/README.md)
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return Run(path=path, config=config, model=model,
               schedule=make_schedule(config.diffusion.schedule, config.diffusion.timesteps,
                                      warn=False),
               kind=kind, step=ckpt.step, device=device)


def train_run(config: RunConfig, out: str | os.PathLike[str], *, resume: bool = False,
              force: bool = False, progress: bool = True, figures: bool = True,
              evaluate: bool = True, on_start: Callable[[str], None] | None = None,
              device: str | torch.device = "cpu") -> Run:
    """Train a model into run directory ``out``; write checkpoint, losses, snapshots, metrics.

    Everything that can fail on user input (data, names, sizes) is checked before the first
    file is written; ``on_start(description)`` is called once training is about to begin.
    The checkpoint and loss.csv are rewritten every ``train.checkpoint_every`` steps, at the
    end, and on Ctrl-C or SIGTERM (at the end of the step in progress); ``resume=True``
    continues from the checkpoint in ``out`` (temporary files left by a killed run are
    deleted first, and snapshots taken after the checkpoint are taken again), bit for bit as
    if the run had not stopped. A new run refuses an ``out`` that holds a run, or other files
    unless ``force=True`` (they are left alone). ``out`` is locked for the whole call
    (:func:`fileio.exclusive`): a second process on it is refused. ``progress=False`` shows
    no bar or status line; ``evaluate=False`` skips metrics.json, ``figures=False`` the
    figures. ``device``: where to train and sample ("cpu", "cuda", "auto"); the checkpoint
    holds CPU tensors either way.
    """
    out = Path(out)
    device = distributed.setup(str(device))
    group = distributed.current()
    with feedback.shown(progress and feedback.enabled() and group.main):
        trainer, kind, resumed = distributed.together(
            lambda: _prepare(config, out, resume, force, device))
        if not group.main:  # trains its share of every step; rank 0 writes the run
            trainer.fit()
            distributed.together(lambda: None)  # rank 0 has saved the last checkpoint
            run = open_run(out, trainer.device)
            if evaluate:
                evaluate_run(run)  # draws its share of the samples; rank 0 scores them
            return run
        with exclusive(out):
            floors = _train(config, out, trainer, kind, resumed, on_start)
            run = open_run(out, trainer.device)
            run.floors.update(floors)
            if evaluate:
                evaluate_run(run, meanwhile=(lambda: _figures_alone(run)) if figures else None)
            elif figures:
                _figures_alone(run)
    return run


def _prepare(config: RunConfig, out: Path, resume: bool, force: bool,
             device: str) -> tuple[Trainer, Modality, bool]:
    """The checks, data and trainer of :func:`train_run`, before any file is written:
    (trainer, modality, whether a checkpoint is resumed). Only rank 0 looks at ``out``."""
    main = distributed.current().main
    if not resume and main:
        _check_new_out(out, force)
    # resume with no checkpoint (killed before the first one): from step 0
    ckpt = _load_checkpoint(out) if resume and (out / CKPT).is_file() else None
    kind = (_restore_kind(out, ckpt) if ckpt is not None
            else modality_for(config.data.source).prepare(config))
    torch.set_num_threads(distributed.threads(config.train.threads))
    labels = kind.labels()
    trainer = Trainer(config, torch.from_numpy(kind.model_input()), resume_from=ckpt,
                      device=resolve_device(device), classes=len(kind.class_names or ()),
                      labels=None if labels is None else torch.from_numpy(labels))
    if main:
        _make_run_directory(out)
    return trainer, kind, ckpt is not None


def _figures_alone(run: Run) -> None:
    """Rank 0's figures, drawn while the others have gone: sampled without collectives."""
    with distributed.alone():
        make_figures(run)


def _check_new_out(out: Path, force: bool) -> None:
    """Refuse a new run's folder that holds a run, or (without ``force``) someone's files."""
    if not out.is_dir():
        return  # absent, or a file: _make_run_directory refuses the latter
    if (out / CKPT).exists() or (out / CONFIG).exists():
        raise UserError(f"{out} already holds a run; add --resume to continue it, or choose "
                        "another --out")
    others = sorted(p.name for p in out.iterdir())
    if others and not force:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise UserError(f"{out} is a folder that is not a ddpmlab run (it holds {others[0]}"
                        f"{more}); choose another --out, or add --force to write the run into "
                        "it")


def _make_run_directory(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{out} is a file, not a run directory; choose another --out") from None
    except OSError as e:
        raise UserError(f"cannot create the run directory {out} ({e.strerror})") from None


def _train(config: RunConfig, out: Path, trainer: Trainer, kind: Modality, resume: bool,
           on_start: Callable[[str], None] | None) -> Floors:
    """The training loop of :func:`train_run` with its files: config, data, snapshots, loss,
    checkpoints; returns the evaluation's floors, computed meanwhile. Called with ``out``
    locked."""
    for folder in (out, out / FIGURES):
        if folder.is_dir():
            remove_stale_temps(folder)
    write_json(out / CONFIG, to_dict(config))  # on resume, --steps may have changed
    snaps: dict[str, np.ndarray] = {}
    if resume:
        if (out / SNAPSHOTS).exists():
            snaps = _load_npz(out / SNAPSHOTS)
            later = [k for k in snaps if k.startswith("step") and int(k[4:]) > trainer.step]
            if later:  # taken after the checkpoint, before the run was killed: taken again
                snaps = {k: v for k, v in snaps.items() if k not in later}
                _save_npz(out / SNAPSHOTS, **snaps)
        _write_loss(out, trainer)  # loss.csv may be older or newer than the checkpoint
    else:
        _save_npz(out / DATA, **kind.arrays())
    if on_start is not None:
        on_start(f"training {config.model.name} on {kind.describe()} "
                 f"from step {trainer.step} to {config.train.steps} -> {out}")
    meta = kind.meta()
    snapshot_steps = set(config.train.snapshots or default_snapshots(config.train.steps))
    every = config.train.checkpoint_every or config.train.steps + 1  # 0: at the end only
    saved_step = trainer.step if resume else None

    def snapshot(step: int) -> None:  # reverse chain of the EMA model, fixed noise across steps
        g = torch.Generator(trainer.device).manual_seed(config.train.seed + 1)
        chain = reverse_chain(sampling_denoiser(trainer.ema), config, trainer.schedule,
                              (kind.snapshot_n, *kind.shape), g, clip=kind.clip)
        frames = list(chain_frames(chain, trainer.schedule.T, CHAIN_FRAMES))
        snaps[f"step{step}"] = np.stack([kind.to_data(f.cpu()) for _, f in frames])
        snaps["labels"] = np.array([k for k, _ in frames])
        _save_npz(out / SNAPSHOTS, **snaps)

    def on_step(step: int) -> None:  # after every update: keep it cheap
        nonlocal saved_step
        if step in snapshot_steps:
            snapshot(step)
        if step % every == 0 and step < config.train.steps:  # the last one is saved below
            _save_progress(out, trainer, meta)
            saved_step = step

    if trainer.step in snapshot_steps and f"step{trainer.step}" not in snaps:
        snapshot(trainer.step)  # step 0, or a snapshot an interrupt cut short
    floors = _Floors(kind)
    try:
        trainer.fit(on_step=on_step)
        distributed.together(lambda: _save_progress(out, trainer, meta))  # the others wait
    except Diverged as e:  # the weights hold NaN now: keep the last good checkpoint, if any
        floors.cancel()
        kept = ("no checkpoint was written" if saved_step is None
                else f"{out / CKPT} keeps step {saved_step}")
        raise Diverged(f"{e}; {kept}") from None
    except distributed.PeerLost as e:  # rank 0 holds the last complete step: saved
        floors.cancel()
        _save_progress(out, trainer, meta)
        raise distributed.PeerLost(f"{e}; {out / CKPT} keeps step {trainer.step}: continue "
                                   "with the same command and --resume, on any number of "
                                   "processes") from None
    except BaseException:  # Ctrl-C or a failure keeps what was learned so far
        floors.cancel()
        _save_progress(out, trainer, meta)
        raise
    return floors.wait()


class _Floors:
    """The default evaluation's floors (``Modality.floor``), computed on a free core while
    training.

    They depend on the held-out data only. Not a daemon thread: one still inside POT's C++
    at interpreter exit can abort the process, so an interrupted run cancels it and waits
    for the draw in progress (about a second). A failure leaves the draw to be computed, and
    reported, by the evaluation itself.
    """

    def __init__(self, kind: Modality) -> None:
        self.floors: Floors = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(kind,))
        self.thread.start()

    def _work(self, kind: Modality) -> None:
        n, repeats = kind.eval_size
        sets = kind.reference_sets(n)
        for i in range(min(repeats, len(sets))):
            if self.stop.is_set():
                return
            try:
                self.floors[(len(sets[0]), i)] = kind.floor(sets, i)
            except Exception:
                return

    def wait(self) -> Floors:
        self.thread.join()
        return self.floors

    def cancel(self) -> None:
        self.stop.set()
        self.thread.join()


def _write_loss(out: Path, trainer: Trainer) -> None:
    write_bytes(out / LOSS, ("step,loss\n" + "".join(
        f"{s},{v:.6g}\n" for s, v in trainer.history)).encode())


def _save_progress(out: Path, trainer: Trainer, meta: dict[str, Any]) -> None:
    checkpoint.save(out / CKPT, trainer.to_checkpoint(meta))
    _write_loss(out, trainer)


@dataclass(frozen=True)
class Evaluation:
    """Sample quality of a run beside the floor a perfect model would score.

    metrics: metric name -> ``{"value", "floor", "ratio"}``, each averaged over the draws;
        ``str(evaluation)`` is the table the CLI prints.
    n: samples per draw, and items per real reference set.
    repeats: independent draws averaged (draw i against reference set i mod m).
    seed: the first draw's sampling seed (draw i uses seed + i).
    kind: the run's modality (``points``, ``images``), which says how to print it.
    """

    metrics: dict[str, dict[str, float | None]]
    n: int
    repeats: int
    seed: int = 0
    kind: str = "points"

    def __str__(self) -> str:
        return modality_named(self.kind).table(self.metrics, self.n, self.repeats)


def evaluate_run(run: Run, n: int | None = None, seed: int = 0, repeats: int | None = None,
                 meanwhile: Callable[[], object] | None = None) -> Evaluation:
    """:func:`score` the run's default sampler and write metrics.json (rank 0)."""
    with exclusive(run.path):
        result = score(run, n, seed, repeats, meanwhile=meanwhile)
        if distributed.current().main:
            write_json(run.path / METRICS, {"modality": result.kind, "n": result.n,
                                        "repeats": result.repeats, "seed": seed,
                                            "step": run.step, "metrics": result.metrics})
    return result


def read_evaluation(path: str | os.PathLike[str]) -> Evaluation:
    """The Evaluation that RUN/metrics.json holds."""
    saved = json.loads((Path(path) / METRICS).read_text())
    return Evaluation(saved["metrics"], saved["n"], saved["repeats"], saved.get("seed", 0),
                      saved.get("modality", "points"))


def score(run: Run, n: int | None = None, seed: int = 0, repeats: int | None = None,
          sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0, *,
          spacing: str | None = None,
          meanwhile: Callable[[], object] | None = None, cls: Cls = None,
          guidance: float = 0.0, rtol: float = RTOL, atol: float = ATOL) -> Evaluation:
    """Score ``repeats`` draws of n samples against held-out data beside the real floor.

    The held-out data is cut into m >= 2 disjoint real sets R_0 .. R_{m-1} of n items
    (``Modality.reference_sets``). Draw i scores n fresh samples against R_{i mod m}, and
    its floor scores R_{i+1 mod m} against R_{i mod m}: the same metric between two
    independent real samples of the same size. Values and floors are averaged over the
    draws, because one W1 between 2,000-point sets moves by 10-30 % with the reference set
    alone. n and repeats default to the modality's (``Modality.eval_size``: 3 x 2,000
    points; 1,000 images in draws of half the held-out set at most). The floors are
    computed once per ``run`` (:attr:`Run.floors`). ``meanwhile()`` is called once the
    samples are drawn, while the metrics are computed (the train command draws its figures
    then). A conditional run draws class ``cls`` (``"all"``: an equal share of each) at
    guidance weight ``guidance`` (:meth:`Run.sample`). Under torchrun the ranks share the
    sampling and rank 0 alone computes the metrics (the others return no metrics).
    """
    kind = run.kind
    n = kind.eval_size[0] if n is None else n
    repeats = kind.eval_size[1] if repeats is None else repeats
    sets = kind.reference_sets(n)
    n, m = len(sets[0]), len(sets)
    K = run.check_sampler(sampler, steps, eta, spacing, rtol, atol)
    how = f"rtol {rtol:g}, atol {atol:g}" if sampler == "ode" else f"{K} steps"
    bar = feedback.bar(repeats * K, f"evaluating: {repeats} draw{'s' * (repeats > 1)} of "
                       f"{n:,} samples ({sampler}, {how})")

    def draw(i: int) -> np.ndarray:
        return run.sample(n, seed + i, sampler, steps, eta, spacing=spacing, bar=bar, cls=cls,
                          guidance=guidance, rtol=rtol, atol=atol)

    def evaluate(i: int, samples: np.ndarray) -> dict[str, dict[str, float | None]]:
        return kind.evaluate(samples, sets[i % m], floor=run.floor(n, i))

    # The draws are independent and deterministic: one thread each shares the free cores
    # between them (torch's kernels release the GIL), and costs nothing on a busy machine.
    # The metrics (POT, SciPy, scikit-learn) run in C almost entirely outside the GIL, so
    # they go on beside meanwhile() in one thread, leaving it a core; figures (matplotlib)
    # hold the GIL almost throughout, which would stall a torch sampler beside them.
    # several processes gather each draw: one at a time, so the ranks' collectives match
    threads = 1 if distributed.current().many else min(repeats, 4)
    with ThreadPoolExecutor(max_workers=threads) as pool, bar:
        samples = list(pool.map(draw, range(repeats)))
    if not distributed.current().main:
        return Evaluation({}, n, repeats, seed, kind.name)
    feedback.status(f"computing the metrics of {repeats} draw{'s' * (repeats > 1)} and their "
                    "floors")
    with ThreadPoolExecutor(max_workers=1 if meanwhile else min(repeats, 4)) as pool:
        scoring = [pool.submit(evaluate, i, x) for i, x in enumerate(samples)]
        if meanwhile is not None:
            meanwhile()
        result = kind.average([job.result() for job in scoring]) | kind.pooled(samples)
    return Evaluation(result, n, repeats, seed, kind.name)


def score_classes(run: Run, guidance: float = 0.0, n: int | None = None, seed: int = 0,
                  sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
                  spacing: str | None = None) -> dict[str, Any]:
    """Per-class quality of a conditional run at guidance weight w (``Modality.per_class``).

    n samples of each class (default: the modality's whole evaluation, ``eval_size``,
    shared equally: 6,000 points, 1,000 images) in each of the modality's ``class_draws``
    independent sets (points: 3, one per reference set; images: 1), drawn with ``sampler``
    at ``guidance``; each class's metrics beside the floor of real data of the same size.
    Returns ``{"guidance", "n", "draws", "seed", "sampler", "steps", "classes": {...},
    "overall": {...}}``.
    """
    names = run.classes
    if names is None:
        raise UserError(f"{run.path} was trained without classes: per-class evaluation and "
                        "--guidance need a run trained with --conditional")
    per = (n if n is not None else int(np.prod(run.kind.eval_size)) // len(names))
    if per < 2:
        raise UserError(f"--n must be at least 2 samples per class, got {per}")
    draws = run.kind.class_draws
    x = run.sample(per * draws * len(names), seed, sampler, steps, eta, spacing=spacing,
                   cls="all", guidance=guidance)
    labels = run.labels(per * draws * len(names), "all")
    assert labels is not None
    if not distributed.current().main:  # rank 0 computes the metrics
        return {}
    feedback.status(f"computing the per-class metrics of {len(x):,} samples")
    result = run.kind.per_class(x, labels, seed, draws)
    return {"guidance": guidance, "n": per, "draws": draws, "seed": seed, "sampler": sampler,
            "steps": steps or run.schedule.T, **result}


def evaluate_classes(run: Run, guidance: float = 0.0, n: int | None = None, seed: int = 0,
                     sampler: str = "ddpm", steps: int | None = None, eta: float = 0.0,
                     spacing: str | None = None) -> dict[str, Any]:
    """:func:`score_classes`, written to RUN/classes.json."""
    with exclusive(run.path):
        result = score_classes(run, guidance, n, seed, sampler, steps, eta, spacing)
        if distributed.current().main:
            write_json(run.path / CLASSES, result)
    return result


def make_figures(run: Run, seed: int = 0, guidance: float = 1.0) -> Path:
    """(Re)draw every figure of a run into RUN/figures from its data, losses and model;
    a conditional run's samples by class at ``guidance`` too (classes.png)."""
    with exclusive(run.path):
        out = run.path / FIGURES
        out.mkdir(exist_ok=True)
        feedback.status(f"drawing the figures into {out}")
        run.kind.figures(run, out, seed)
        if run.classes is not None:
            run.kind.class_figure(run, out / "classes.png", seed, guidance)
        if (run.path / LOSS).exists():
            from ddpmlab import viz
            loss = np.loadtxt(run.path / LOSS, delimiter=",", skiprows=1, ndmin=2)
            if len(loss):
                viz.plot_loss(loss[:, 0], loss[:, 1], out / "loss.png", ema=0.8,
                              window=run.config.train.log_every,
                              ylabel=_loss_label(run.config))
        return out


def _loss_label(config: RunConfig) -> str:
    """What loss.csv holds, in words: the mean squared error of the network's target."""
    target = {"eps": "noise eps", "x0": "clean sample x_0", "v": "velocity v"}
    d = config.diffusion
    vlb = " + lambda L_vlb" if d.variance == "learned_range" else ""
    return f"loss (MSE of the predicted {target.get(d.prediction, d.prediction)}{vlb})"


def animate(run: Run, n: int | None = None, seed: int = 0,
            path: str | os.PathLike[str] | None = None) -> Path:
    """reverse.gif: the reverse chain from noise to the data, streamed.

    n samples (the modality's ``gif_n`` by default: 2,000 points, a grid of 64 images).
    Written to ``path``, or to RUN/figures/reverse.gif (with the run locked) by default.
    """
    n = n or run.kind.gif_n
    if path is not None:
        return run.kind.animate(run, n, seed, Path(path))[0]
    with exclusive(run.path):
        (run.path / FIGURES).mkdir(exist_ok=True)
        return run.kind.animate(run, n, seed, run.path / FIGURES / "reverse.gif")[0]
