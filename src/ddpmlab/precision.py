"""Mixed precision: a U-Net's passes in bfloat16 where the hardware computes it natively.

Under ``torch.autocast`` the convolutions and matrix products take bfloat16 inputs and
accumulate in float32, while the weights, their gradients, Adam's moments, the EMA, the
schedules, posteriors, the loss and its reduction, the samplers' updates and the likelihood
stay float32: only the network's activations are rounded (mixed-precision training,
Micikevicius et al. 2018; bfloat16 keeps float32's exponent range, so no loss scaling is
needed, Kalamkar et al. 2019). The network's output is cast back to float32 before anything
else touches it.

``train.precision`` chooses: ``fp32``; ``bf16``; or ``auto``, bfloat16 for a convolutional
network on hardware with native bfloat16 arithmetic (a CPU with AMX or AVX-512 BF16, a CUDA
GPU that supports it) and float32 otherwise. The point MLPs stay float32 under ``auto``:
their layers are too small to gain, and their hand-derived gradients are float32.
Measured: bench/precision.py (docs/results/speed.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ddpmlab.errors import UserError

PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: a CPU with AMX tiles or AVX-512 BF16
    (detected, not assumed), a CUDA device torch reports as bf16-capable."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        # torch's own CPU probes; a torch without them is taken to have neither
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


def convolutional(model: nn.Module) -> bool:
    """Whether ``model`` is an image network (it holds a convolution)."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def autocast_dtype(precision: str, device: torch.device, model: nn.Module) -> torch.dtype | None:
    """The dtype ``model`` runs its passes in under ``precision`` on ``device``; None for
    float32 (no autocast). ``bf16`` on a point MLP is refused in one line."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose one of: "
                        f"{', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if not convolutional(model):
        if precision == "bf16":
            raise UserError("--precision bf16 applies to the image networks (U-Nets); a point "
                            "MLP trains and samples in float32: drop it, or use auto or fp32")
        return None
    if precision == "bf16" or native_bf16(device):
        return torch.bfloat16
    return None


def _cast(fn: Callable[..., torch.Tensor], device_type: str, dtype: torch.dtype,
          *args: Any) -> torch.Tensor:
    with torch.autocast(device_type, dtype=dtype):
        out = fn(*args)
    return out.float()


def under(fn: Callable[..., torch.Tensor], device: torch.device,
          dtype: torch.dtype | None) -> Callable[..., torch.Tensor]:
    """``fn`` (a network, or a denoiser of its arguments) run under autocast to ``dtype``,
    its output in float32; ``fn`` itself when ``dtype`` is None."""
    if dtype is None:
        return fn
    return functools.partial(_cast, fn, device.type, dtype)
