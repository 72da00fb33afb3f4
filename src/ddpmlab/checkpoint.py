"""The only place that reads or writes model files.

A checkpoint is ONE safetensors file: the tensors (model weights, EMA weights, Adam moments,
the training generator's state) plus a JSON header in the safetensors metadata (format name
and version, the whole :class:`~ddpmlab.config.RunConfig`, the step, the data standardiser,
the optimiser's hyper-parameters). Loading never unpickles: safetensors holds raw tensors
only, so opening a file cannot run code. One file, written atomically, means a checkpoint is
always complete or absent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from ddpmlab.config import RunConfig, from_dict, to_dict, upgrade
from ddpmlab.errors import UserError
from ddpmlab.fileio import write_bytes

FORMAT = "ddpmlab-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """Everything needed to sample from a model or to resume its training."""

    config: RunConfig
    step: int
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    rng: torch.Tensor | None = None  # torch.Generator state (uint8)
    meta: dict[str, Any] = field(default_factory=dict)  # standardiser, loss history, ...


def _optimizer_tensors(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Split an optimiser state_dict into flat tensors and JSON-ready param groups."""
    tensors = {f"optim.{i}.{k}": v for i, s in state["state"].items() for k, v in s.items()}
    return tensors, state["param_groups"]


def _optimizer_state(tensors: dict[str, torch.Tensor], groups: list[Any]) -> dict[str, Any]:
    """Inverse of :func:`_optimizer_tensors`."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        _, i, name = key.split(".", 2)
        state.setdefault(int(i), {})[name] = value
    return {"state": state, "param_groups": groups}


def save(path: str | os.PathLike[str], ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temporary file, fsync, rename)."""
    tensors = {f"model.{k}": v for k, v in ckpt.model.items()}
    tensors |= {f"ema.{k}": v for k, v in ckpt.ema.items()}
    groups = None
    if ckpt.optimizer is not None:
        optim_tensors, groups = _optimizer_tensors(ckpt.optimizer)
        tensors |= optim_tensors
    if ckpt.rng is not None:
        tensors["rng"] = ckpt.rng
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    header = {"config": to_dict(ckpt.config), "step": ckpt.step, "param_groups": groups,
              "meta": ckpt.meta}
    metadata = {"format": FORMAT, "version": str(VERSION), "header": json.dumps(header)}
    return write_bytes(path, st_save(tensors, metadata=metadata))


def _read_metadata(raw: bytes, name: str) -> dict[str, str]:
    """The safetensors metadata of ``raw``, or a UserError saying why it is not a checkpoint."""
    n = int.from_bytes(raw[:8], "little") if len(raw) >= 8 else -1
    if n <= 0 or 8 + n > len(raw):
        raise UserError(f"{name} is not a ddpmlab checkpoint (not a safetensors file, or "
                        "truncated); train again or point to the run's checkpoint.safetensors")
    try:
        header = json.loads(raw[8:8 + n])
    except ValueError:
        raise UserError(f"{name} is not a ddpmlab checkpoint (unreadable header)") from None
    return header.get("__metadata__") or {}


def load(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save`, refusing anything else with a clear message."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a checkpoint file") from None
    meta = _read_metadata(raw, str(path))
    if meta.get("format") != FORMAT:
        raise UserError(f"{path} is a safetensors file but not a ddpmlab checkpoint")
    if meta.get("version") != str(VERSION):
        raise UserError(f"{path} has checkpoint format version {meta.get('version')}; this "
                        f"ddpmlab reads version {VERSION}: use the ddpmlab that wrote it")
    try:
        tensors = st_load(raw)
        header = json.loads(meta["header"])
        config = from_dict(RunConfig, upgrade(header["config"]))  # older runs: today's form
    except (SafetensorError, KeyError, ValueError) as e:
        raise UserError(f"{path} is damaged ({str(e).splitlines()[0]}); train again") from None

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}

    groups = header["param_groups"]
    return Checkpoint(
        config=config,
        step=int(header["step"]),
        model=group("model."),
        ema=group("ema."),
        optimizer=None if groups is None else _optimizer_state(
            {k: v for k, v in tensors.items() if k.startswith("optim.")}, groups),
        rng=tensors.get("rng"),
        meta=header.get("meta", {}),
    )


def load_weights(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state)``, or a one-line UserError naming the first mismatch.

    A checkpoint whose tensors do not fit the network its own configuration builds (another
    width, another model) is refused here instead of with torch's multi-line message.
    """
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        reason = lines[1] if len(lines) > 1 else lines[0]  # lines[0]: "Error(s) in loading ..."
        raise UserError(f"{source} does not match its configuration ({reason}); "
                        "train again") from None
