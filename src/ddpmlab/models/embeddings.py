"""Embeddings of the timestep and of the input coordinates."""

from __future__ import annotations

import math

import torch


def sinusoidal_table(T: int, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Transformer position encoding of t = 0..T-1 (Vaswani et al. 2017, Sec. 3.5), (T, dim).

    As in Ho et al. 2020 (Appendix B), the diffusion timestep is embedded like a position;
    t is rescaled to 0..1000 so that the frequencies suit any T.
    """
    half = dim // 2
    t = torch.arange(T, dtype=torch.float64) * (1000.0 / T)
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    angles = t[:, None] * freqs[None, :]  # (T, half)
    table = torch.cat([angles.sin(), angles.cos()], dim=1)
    if dim % 2:
        table = torch.cat([table, torch.zeros(T, 1, dtype=torch.float64)], dim=1)
    return table.to(torch.float32)


def fourier_matrix(in_dim: int, n_features: int, scale: float, seed: int = 0) -> torch.Tensor:
    """Random Fourier feature frequencies B ~ N(0, scale^2), (in_dim, n_features).

    Tancik et al. 2020 ("Fourier features let networks learn high frequency functions"):
    [sin(2 pi x B), cos(2 pi x B)] lets a small MLP resolve thin structures such as the arms of
    a swiss roll. Drawn from a fixed seed and stored with the model.
    """
    g = torch.Generator().manual_seed(seed)
    return torch.randn(in_dim, n_features, generator=g) * scale


def fourier_features(x: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """(N, in_dim) -> (N, in_dim + 2 n_features): x with its sin and cos features."""
    proj = 2 * math.pi * x @ B
    return torch.cat([x, proj.sin(), proj.cos()], dim=1)


def class_table(num_classes: int, dim: int) -> torch.nn.Embedding:
    """The class embedding of a conditional network, (num_classes + 1, dim).

    Rows 0..num_classes-1 are the classes; the last is the "no class" token (the null label
    of Ho & Salimans 2022, Sec. 3.2), fixed at zero (``padding_idx``: it is never trained),
    so an unconditional call adds nothing and a network called without labels is the
    unconditional model. Every row starts at zero: the network starts class-blind, and a
    class row moves only where its label was seen (with ``--cond-drop 1`` none ever is).
    """
    table = torch.nn.Embedding(num_classes + 1, dim, padding_idx=num_classes)
    torch.nn.init.zeros_(table.weight)
    return table


def add_class(emb: torch.Tensor, table: torch.nn.Module | None,
              y: torch.Tensor | None) -> torch.Tensor:
    """``emb`` (B, dim) plus the class embedding of labels y (B,) int64 in 0..num_classes
    (num_classes: no class); y None adds nothing (no class). A network built without
    classes refuses labels."""
    if y is None:
        return emb
    if table is None:
        raise ValueError("this network was built without classes; call it without labels")
    return emb + table(y)
