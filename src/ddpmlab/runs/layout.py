"""The run directory: its files, how they are read and written, and the checks on them.

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
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ddpmlab import checkpoint
from ddpmlab.config import RunConfig, from_dict, paths, replace, to_dict, upgrade
from ddpmlab.errors import UserError
from ddpmlab.fileio import write_atomic, write_bytes

CONFIG, DATA, CKPT = "config.json", "data.npz", "checkpoint.safetensors"
LOSS, SNAPSHOTS, METRICS, FIGURES = "loss.csv", "snapshots.npz", "metrics.json", "figures"
CLASSES = "classes.json"
RESUMABLE = ("steps", "checkpoint_every")  # the train settings a resumed run may change


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    write_atomic(path, lambda tmp: np.savez(tmp, **arrays))  # type: ignore[arg-type]


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise UserError(f"{path} is missing; the run is incomplete, train it again") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is damaged ({e}); train the run again") from None


def read_config(path: Path) -> dict[str, Any]:
    """RUN/config.json as a dict, in today's form (``config.upgrade``)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is unreadable ({e}); train the run again") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path} is not a run configuration; train the run again")
    return upgrade(saved)


def load_checkpoint(path: Path) -> checkpoint.Checkpoint:
    """RUN's checkpoint, refused if RUN/config.json describes other data, diffusion or model.

    Those sections say what the tensors and data.npz mean; ``train`` may differ (``--resume
    --steps``). A run without config.json relies on its checkpoint alone.
    """
    ckpt = checkpoint.load(path / CKPT)
    if (path / CONFIG).is_file():
        saved = paths(read_config(path / CONFIG))
        for key, value in paths(to_dict(ckpt.config)).items():
            other = saved.get(key, value)
            if key[0] != "train" and other != value:
                raise UserError(f"{path / CKPT} does not belong to this run: its "
                                f"{'.'.join(key)} is {value!r} but {path / CONFIG} says "
                                f"{other!r}; put back the run's own checkpoint or train again")
    return ckpt


def resume_config(path: str | os.PathLike[str]) -> tuple[RunConfig, int | None]:
    """The configuration to continue run ``path`` with, and the step its checkpoint holds.

    The checkpoint's configuration, with the :data:`RESUMABLE` train settings of config.json
    (a ``steps`` raised there by hand is honoured); any other difference is refused. A run
    killed before its first checkpoint has only config.json: it starts again from step 0
    (``(config, None)``).
    """
    path = Path(path)
    if (path / CKPT).is_file():
        ckpt = load_checkpoint(path)
        config = ckpt.config
        if not (path / CONFIG).is_file():
            return config, ckpt.step
        edited = read_config(path / CONFIG).get("train", {})
        ours = to_dict(config)["train"]
        for key, value in ours.items():
            if key not in RESUMABLE and edited.get(key, value) != value:
                raise UserError(f"{path / CONFIG} sets train.{key} = {edited[key]!r} but the "
                                f"run was trained with {value!r}; only "
                                f"{', '.join('train.' + k for k in RESUMABLE)} may change on "
                                "resume (put it back, or use --steps)")
        resumed = replace(config, {"train": {k: edited[k] for k in RESUMABLE if k in edited}})
        return resumed, ckpt.step
    if (path / CONFIG).is_file():
        return from_dict(RunConfig, read_config(path / CONFIG)), None
    raise UserError(f"nothing to resume in {path} (no {CKPT} or {CONFIG}); "
                    "train it without --resume")


def check_new_out(out: Path, force: bool) -> None:
    """Refuse a new run's folder that holds a run, or (without ``force``) someone's files."""
    if not out.is_dir():
        return  # absent, or a file: make_run_directory refuses the latter
    if (out / CKPT).exists() or (out / CONFIG).exists():
        raise UserError(f"{out} already holds a run; add --resume to continue it, or choose "
                        "another --out")
    others = sorted(p.name for p in out.iterdir())
    if others and not force:
        more = f" and {len(others) - 1} more" if len(others) > 1 else ""
        raise UserError(f"{out} is a folder that is not a ddpmlab run (it holds {others[0]}"
                        f"{more}); choose another --out, or add --force to write the run into "
                        "it")


def make_run_directory(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{out} is a file, not a run directory; choose another --out") from None
    except OSError as e:
        raise UserError(f"cannot create the run directory {out} ({e.strerror})") from None


def write_loss(out: Path, history: list[tuple[int, float]]) -> None:
    """loss.csv: the mean training loss at every logged step."""
    write_bytes(out / LOSS, ("step,loss\n" + "".join(
        f"{s},{v:.6g}\n" for s, v in history)).encode())
