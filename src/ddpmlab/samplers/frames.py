"""Which states of a reverse chain a figure or a GIF keeps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

import numpy as np
import torch

State = TypeVar("State", np.ndarray, torch.Tensor)  # a chain's states, in either form


def frame_steps(T: int, count: int) -> list[int]:
    """``count`` step counts n from 0 (the data) to T (noise), denser near 0: n ~ T (i/k)^2.

    The data appears in the last fifth of the reverse chain, so evenly spaced frames would
    show mostly noise; quadratic spacing gives the end of the chain most of the frames.
    """
    if count >= T + 1:
        return list(range(T + 1))
    return sorted({round(T * (i / (count - 1)) ** 2) for i in range(count)})


def chain_frames(chain: Iterator[tuple[int, State]], T: int,
                 count: int) -> Iterator[tuple[int, State]]:
    """Keep about ``count`` states of a T-step chain, from x_T to x_0 (see frame_steps)."""
    keep = set(frame_steps(T, count))
    return ((k, x) for k, x in chain if k in keep)
