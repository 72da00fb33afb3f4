"""Noise-prediction networks and their registry.

Every network maps ``(x_t, t)``, x_t of shape ``(B, *shape)`` and t ``(B,)`` int64 in 0..T-1,
to ``(B, out, *shape[1:])``: points have ``shape = (dim,)``, images ``(C, H, W)``. Each is
built from its own settings table (``config.model.<name>``), never from positional options.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ddpmlab.config import ModelConfig, RunConfig
from ddpmlab.errors import UserError
from ddpmlab.models.mlp import ResMLP, SeedMLP
from ddpmlab.models.unet import SeedUNet, UNet, check_size

Shape = tuple[int, ...]


def _resmlp(c: ModelConfig, T: int, shape: Shape, out: int, classes: int) -> nn.Module:
    r = c.resmlp
    return ResMLP(T, shape[0], r.hidden, r.depth, r.fourier_scale, out, classes)


def _seed_mlp(c: ModelConfig, T: int, shape: Shape, out: int, classes: int) -> nn.Module:
    return SeedMLP(T, shape[0], c.seed_mlp.hidden, out, classes)


def _unet(c: ModelConfig, T: int, shape: Shape, out: int, classes: int) -> nn.Module:
    check_size(min(shape[1:]), c.unet)
    if shape[1] != shape[2]:
        check_size(max(shape[1:]), c.unet)
    return UNet(c.unet, T, shape[0], out, classes)


def _seed_unet(c: ModelConfig, T: int, shape: Shape, out: int, classes: int) -> nn.Module:
    for side in set(shape[1:]):
        check_size(side, c.seed_unet)
    return SeedUNet(c.seed_unet, T, shape[0], out, classes)


#: name -> (builder(config, T, sample shape, output channels, classes), rank of the samples
#: it takes)
MODELS: dict[str, tuple[Callable[[ModelConfig, int, Shape, int, int], nn.Module], int]] = {
    "resmlp": (_resmlp, 1),
    "seed_mlp": (_seed_mlp, 1),
    "unet": (_unet, 3),
    "seed_unet": (_seed_unet, 3),
}
KINDS = {1: "points (N, dim)", 3: "images (N, C, H, W)"}


def models_for(rank: int) -> list[str]:
    """The networks that take samples of ``rank`` dimensions (1: points, 3: images)."""
    return [name for name, (_, r) in MODELS.items() if r == rank]


def build_model(config: ModelConfig, timesteps: int, shape: Shape = (2,),
                out_channels: int | None = None, classes: int = 0) -> nn.Module:
    """The network named by ``config.name`` for T = ``timesteps`` and samples of ``shape``.

    out_channels: output features (points) or channels (images), ``shape[0]`` by default;
    twice that for a learned variance. classes: > 0 for a class-conditional network (called
    ``model(x_t, t, y)``), 0 for none. A network that cannot take ``shape`` (a U-Net for
    points, a size its levels cannot halve) is refused with one line.
    """
    if config.name not in MODELS:
        raise UserError(f"unknown model '{config.name}'; choose one of: {', '.join(MODELS)}")
    build, rank = MODELS[config.name]
    if len(shape) != rank:
        given = KINDS.get(len(shape), f"samples of shape {shape}")
        raise UserError(f"model {config.name} takes {KINDS[rank]}, not {given}; choose one "
                        f"of: {', '.join(models_for(len(shape))) or 'none'}")
    return build(config, timesteps, tuple(shape), out_channels or shape[0], classes)


def build_network(config: RunConfig, shape: Shape, classes: int = 0) -> nn.Module:
    """The run's network for samples of ``shape``: twice the outputs for a learned variance
    (v of Nichol & Dhariwal 2021, Eq. 15, beside the mean's output), and a class embedding
    of ``classes`` classes when ``model.conditional`` (the data's class count)."""
    out = 2 * shape[0] if config.diffusion.variance == "learned_range" else shape[0]
    return build_model(config.model, config.diffusion.timesteps, shape, out,
                       classes if config.model.conditional else 0)
