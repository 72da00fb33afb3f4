"""MLP noise predictors for points: eps_theta(x_t, t), (N, dim) and (N,) -> (N, dim)."""

from __future__ import annotations

import torch
from torch import nn

from ddpmlab.models.embeddings import (
    add_class,
    class_table,
    fourier_features,
    fourier_matrix,
    sinusoidal_table,
)


class SeedMLP(nn.Module):
    """The source text's network, exactly (module and parameter names included).

    Three hidden layers of ``hidden`` units with ReLU; a learned embedding of each timestep
    (one table per layer) is added to every hidden layer before its activation. ``out_dim``
    (default ``dim``) widens the last layer for a learned variance. ``num_classes`` > 0 adds
    a class embedding per layer beside the timestep's (``embeddings.class_table``); 0 builds
    the source text's network unchanged, with no class table.
    """

    def __init__(self, timesteps: int, dim: int = 2, hidden: int = 64,
                 out_dim: int | None = None, num_classes: int = 0) -> None:
        super().__init__()
        self.linears = nn.ModuleList([
            nn.Linear(dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, out_dim or dim),
        ])
        self.step_embeddings = nn.ModuleList([nn.Embedding(timesteps, hidden) for _ in range(3)])
        self.num_classes = num_classes
        if num_classes:
            self.class_embeddings = nn.ModuleList([class_table(num_classes, hidden)
                                                   for _ in range(3)])

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """y: (N,) int64 class labels (num_classes: none), or None (no class)."""
        for idx, embedding_layer in enumerate(self.step_embeddings):
            table = self.class_embeddings[idx] if self.num_classes else None
            x = self.linears[2 * idx](x) + add_class(embedding_layer(t), table, y)
            x = self.linears[2 * idx + 1](x)
        return self.linears[-1](x)


class ResMLP(nn.Module):
    """The default: Fourier input features, a sinusoidal timestep embedding, residual blocks.

    x -> [x, sin 2 pi xB, cos 2 pi xB] -> Linear -> h; each block adds
    Linear(SiLU(Linear(SiLU(h)) + emb_i(t))) to h; the output layer reads SiLU(h).
    The timestep enters every block through its own projection of one shared embedding;
    ``num_classes`` > 0 adds a class embedding to that projection (one row of
    hidden * depth per class, ``embeddings.class_table``), 0 builds no such table.
    """

    fourier: torch.Tensor  # buffers, declared for the type checker
    t_table: torch.Tensor

    def __init__(self, timesteps: int, dim: int = 2, hidden: int = 128, depth: int = 3,
                 fourier_scale: float = 4.0, out_dim: int | None = None,
                 num_classes: int = 0) -> None:
        super().__init__()
        self.depth = depth
        n_fourier = hidden // 2 if fourier_scale > 0 else 0
        self.register_buffer("fourier", fourier_matrix(dim, n_fourier, fourier_scale))
        self.register_buffer("t_table", sinusoidal_table(timesteps, hidden))
        self.t_mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(),
                                   nn.Linear(hidden, hidden * depth))
        self.inp = nn.Linear(dim + 2 * n_fourier, hidden)
        self.blocks_in = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.blocks_out = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(depth)])
        self.out = nn.Linear(hidden, out_dim or dim)
        nn.init.zeros_(self.out.weight)  # start as eps_hat = 0, the best constant guess
        nn.init.zeros_(self.out.bias)
        self.num_classes = num_classes
        self.class_emb: nn.Embedding | None = (class_table(num_classes, hidden * depth)
                                               if num_classes else None)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        """The blocks' timestep embeddings, (N, hidden * depth): the MLP runs once per distinct
        t (a sampler's step has one; a training batch holds fewer distinct t than rows)."""
        steps, inverse = torch.unique(t, return_inverse=True)
        return self.t_mlp(self.t_table.index_select(0, steps)).index_select(0, inverse)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """y: (N,) int64 class labels (num_classes: none), or None (no class)."""
        if self.fourier.shape[1]:
            x = fourier_features(x, self.fourier)
        emb = add_class(self.embed(t), self.class_emb, y).chunk(self.depth, dim=1)  # (N, hidden)s
        h = self.inp(x)
        for lin_in, lin_out, e in zip(self.blocks_in, self.blocks_out, emb, strict=True):
            h = h + lin_out(nn.functional.silu(lin_in(nn.functional.silu(h)) + e))
        return self.out(nn.functional.silu(h))
