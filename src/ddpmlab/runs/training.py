"""Training a run into its directory: :func:`train_run`.

The checks, the data and the trainer come first, before any file is written; then the loop
(``ddpmlab.train.Trainer``) with its files: config, data, snapshots, loss and checkpoints;
then the evaluation (``ddpmlab.runs.evaluation``) while the figures (``ddpmlab.reports``) are
drawn.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpmlab import checkpoint, distributed, feedback
from ddpmlab.accel.mlp import sampling_denoiser
from ddpmlab.config import RunConfig, to_dict
from ddpmlab.devices import resolve_device
from ddpmlab.fileio import exclusive, remove_stale_temps, write_json
from ddpmlab.modalities import Modality, modality_for
from ddpmlab.runs.evaluation import BackgroundFloors, evaluate_run, evaluator_for
from ddpmlab.runs.figures import make_figures
from ddpmlab.runs.layout import (
    CKPT,
    CONFIG,
    DATA,
    FIGURES,
    SNAPSHOTS,
    check_new_out,
    load_checkpoint,
    load_npz,
    make_run_directory,
    save_npz,
    write_loss,
)
from ddpmlab.runs.run import Floors, Run, open_run, restore_kind
from ddpmlab.samplers import SamplerSpec, reverse_chain
from ddpmlab.samplers.frames import chain_frames
from ddpmlab.samplers.guidance import class_labels, guided
from ddpmlab.train import Diverged, Trainer, default_snapshots

CHAIN_FRAMES = 10  # panels in a reverse-process figure


def train_run(config: RunConfig, out: str | os.PathLike[str], *, resume: bool = False,
              force: bool = False, progress: bool = True, figures: bool = True,
              evaluate: bool = True, on_start: Callable[[str], None] | None = None,
              device: str | torch.device = "cpu") -> Run:
    """Train a model into run directory ``out``; write checkpoint, losses, snapshots, metrics.

    Everything that can fail on user input (data, names, sizes) is checked before the first file
    is written; ``on_start(description)`` is called once training is about to begin. The
    checkpoint and loss.csv are rewritten every ``train.checkpoint_every`` steps, at the end,
    and on Ctrl-C or SIGTERM (at the end of the step in progress); ``resume=True`` continues
    from the checkpoint in ``out`` (temporary files left by a killed run are deleted first, and
    snapshots taken after the checkpoint are taken again), bit for bit as if the run had not
    stopped; on a run that has reached ``train.steps`` it changes nothing (``on_start`` says so)
    and returns the run. A new run refuses an ``out`` that holds a run, or other files unless
    ``force=True`` (they are left alone). ``out`` is locked for the whole call
    (``ddpmlab.fileio.exclusive``): a second process on it is refused. ``progress=False`` shows
    no bar or status line; ``evaluate=False`` skips metrics.json, ``figures=False`` the figures.
    ``device``: where to train and sample ("cpu", "cuda", "auto"); the checkpoint
    holds CPU tensors either way.
    """
    out = Path(out)
    device = distributed.setup(str(device))
    group = distributed.current()
    with feedback.shown(progress and feedback.enabled() and group.main):
        trainer, kind, resumed = distributed.together(
            lambda: _prepare(config, out, resume, force, device))
        if resumed and trainer.step >= config.train.steps:  # complete: nothing is rewritten
            if on_start is not None and group.main:
                on_start(f"{out} is complete: it has trained {trainer.step} of "
                         f"{config.train.steps} steps; nothing to do (raise --steps to train "
                         "further)")
            return open_run(out, trainer.device)
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
        check_new_out(out, force)
    # resume with no checkpoint (killed before the first one): from step 0
    ckpt = load_checkpoint(out) if resume and (out / CKPT).is_file() else None
    kind = (restore_kind(out, ckpt) if ckpt is not None
            else modality_for(config.data.source).prepare(config))
    torch.set_num_threads(distributed.threads(config.train.threads))
    labels = kind.labels()
    trainer = Trainer(config, torch.from_numpy(kind.model_input()), resume_from=ckpt,
                      device=resolve_device(device), classes=len(kind.class_names or ()),
                      labels=None if labels is None else torch.from_numpy(labels),
                      decoder=kind.decoder())
    if main:
        make_run_directory(out)
    return trainer, kind, ckpt is not None


def _figures_alone(run: Run) -> None:
    """Rank 0's figures, drawn while the others have gone: sampled without collectives."""
    with distributed.alone():
        make_figures(run)


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
            snaps = load_npz(out / SNAPSHOTS)
            later = [k for k in snaps if k.startswith("step") and int(k[4:]) > trainer.step]
            if later:  # taken after the checkpoint, before the run was killed: taken again
                snaps = {k: v for k, v in snaps.items() if k not in later}
                save_npz(out / SNAPSHOTS, **snaps)
        write_loss(out, trainer.history)  # loss.csv may be older or newer than the checkpoint
    else:
        save_npz(out / DATA, **kind.arrays())
    if on_start is not None:
        on_start(f"training {config.model.name} on {kind.describe()} "
                 f"from step {trainer.step} to {config.train.steps} -> {out}")
    meta = kind.meta()
    snapshot_steps = set(config.train.snapshots or default_snapshots(config.train.steps))
    every = config.train.checkpoint_every or config.train.steps + 1  # 0: at the end only
    saved_step = trainer.step if resume else None

    # a conditional run's snapshots: each class in the data's proportions, as the run samples
    y = (class_labels(kind.snapshot_n, None, trainer.classes, kind.labels()).to(trainer.device)
         if trainer.classes else None)

    def snapshot(step: int) -> None:  # reverse chain of the EMA model, fixed noise across steps
        g = torch.Generator(trainer.device).manual_seed(config.train.seed + 1)
        d = config.diffusion
        denoiser = sampling_denoiser(trainer.ema, dtype=trainer.autocast)
        if y is not None:
            denoiser = guided(denoiser, y, 0.0, trainer.classes)
        chain = reverse_chain(denoiser,
                              trainer.schedule,
                              (kind.snapshot_n, *kind.shape),
                              SamplerSpec(trainer.objective.default_sampler),
                              prediction=d.prediction, variance=d.variance, generator=g,
                              clip=kind.clip, objective=d.objective)
        frames = list(chain_frames(chain, trainer.schedule.T, CHAIN_FRAMES))
        snaps[f"step{step}"] = np.stack([kind.to_data(f.cpu()) for _, f in frames])
        snaps["labels"] = np.array([k for k, _ in frames])
        save_npz(out / SNAPSHOTS, **snaps)

    def on_step(step: int) -> None:  # after every update: keep it cheap
        nonlocal saved_step
        if step in snapshot_steps:
            snapshot(step)
        if step % every == 0 and step < config.train.steps:  # the last one is saved below
            _save_progress(out, trainer, meta)
            saved_step = step

    if trainer.step in snapshot_steps and f"step{trainer.step}" not in snaps:
        snapshot(trainer.step)  # step 0, or a snapshot an interrupt cut short
    floors = BackgroundFloors(evaluator_for(kind))
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


def _save_progress(out: Path, trainer: Trainer, meta: dict[str, Any]) -> None:
    checkpoint.save(out / CKPT, trainer.to_checkpoint(meta))
    write_loss(out, trainer.history)
