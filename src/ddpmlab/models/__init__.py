"""Noise-prediction networks and their registry."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ddpmlab.config import ModelConfig
from ddpmlab.errors import UserError
from ddpmlab.models.mlp import ResMLP, SeedMLP

MODELS: dict[str, Callable[[ModelConfig, int, int, int], nn.Module]] = {
    "resmlp": lambda c, T, dim, out: ResMLP(T, dim, c.hidden, c.depth, c.fourier_scale, out),
    "seed_mlp": lambda c, T, dim, out: SeedMLP(T, dim, c.hidden, out),
}


def build_model(config: ModelConfig, timesteps: int, dim: int = 2,
                out_dim: int | None = None) -> nn.Module:
    """The network named by ``config.name`` for T = ``timesteps`` and data of ``dim`` columns.

    out_dim: output columns, ``dim`` by default; 2 * dim for a learned variance.
    """
    if config.name not in MODELS:
        raise UserError(f"unknown model '{config.name}'; choose one of: {', '.join(MODELS)}")
    return MODELS[config.name](config, timesteps, dim, out_dim or dim)
