"""Where tensors live: the ``--device`` names, read once."""

from __future__ import annotations

import re

import torch

from ddpmlab.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(name: str) -> torch.device:
    """The device ``--device name`` asks for: ``auto`` (CUDA when torch sees one, else the
    CPU), ``cpu``, ``cuda`` (the current CUDA device) or ``cuda:N``.

    UserError, in one line, for a CUDA device torch cannot see, or any other name.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name) if isinstance(name, str) else None
    if match is None:
        raise UserError(f"unknown device {name!r}; choose one of: {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is visible to torch "
                        "(torch.cuda.is_available() is False); use --device cpu or auto")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if match[1] is None else int(match[1])
    if index >= count:
        raise UserError(f"--device {name}: torch sees {count} CUDA device(s), "
                        f"cuda:0..cuda:{count - 1}; choose one of them, or --device auto")
    return torch.device("cuda", index)
