"""Flat parameter buffers and Adam on them: clipping, the update and the EMA as one kernel each.

A training step of a point MLP (batch 128-512, width 64) costs little arithmetic, so its time
goes to dispatching operations. With the weights, their gradients, the EMA weights and Adam's
two moments each in one flat buffer (every parameter a view of it), the gradient clipping,
the fused Adam update and the EMA are one operation each (bench/README.md, "Performance").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def views_of(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Views of the 1-D ``flat`` shaped as each of ``tensors``, laid end to end."""
    parts = flat.split([x.numel() for x in tensors])
    return [part.view(x.shape) for part, x in zip(parts, tensors, strict=True)]


def flat_views(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A new 1-D buffer holding ``tensors`` end to end, and a view of it shaped as each."""
    flat = torch.cat([x.detach().reshape(-1) for x in tensors])
    return flat, views_of(flat, tensors)


def flatten_parameters(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """Move the parameters into one flat buffer (values kept), each a view of it; return it."""
    flat, views = flat_views(params)
    for p, view in zip(params, views, strict=True):
        p.data = view
    return flat


class FlatAdam:
    """Adam (Kingma & Ba 2015) on flat buffers: ``torch.optim.Adam(fused=True)``'s update.

    ``weights`` and ``grad`` are the flat buffers the parameters and their gradients are views
    of; both moments are flat buffers too, so one fused kernel updates everything.
    :meth:`state_dict` and :meth:`load_state_dict` use torch.optim.Adam's format (one entry
    per parameter), so checkpoints read the same either way. Not a torch.optim.Optimizer:
    ``torch.optim.Adam(fused=True)`` on the same flat buffer runs the same kernel with more
    per-step overhead, and constructing one imports torch._dynamo, which lengthens every
    command's start-up (bench/optimizer.py).
    """

    betas, eps = (0.9, 0.999), 1e-8

    def __init__(self, params: Sequence[torch.Tensor], weights: torch.Tensor, grad: torch.Tensor,
                 lr: float) -> None:
        self.params, self.weights, self.grad, self.lr = params, weights, grad, lr
        self.exp_avg, self.exp_avg_sq = torch.zeros_like(weights), torch.zeros_like(weights)
        # float32, as the fused kernel counts; on the weights' device, as it needs on CUDA
        self.steps = torch.tensor(0.0, device=weights.device)

    def step(self, lr: float) -> None:
        """One update with learning rate ``lr`` from the gradient in ``grad``."""
        self.lr = lr
        self.steps += 1
        torch._fused_adam_([self.weights], [self.grad], [self.exp_avg], [self.exp_avg_sq], [],
                           [self.steps], lr=lr, beta1=self.betas[0], beta2=self.betas[1],
                           weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)

    def state_dict(self) -> dict:
        group = {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": 0,
                 "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                 "differentiable": False, "fused": True, "decoupled_weight_decay": False,
                 "params": list(range(len(self.params)))}
        moments = zip(views_of(self.exp_avg, self.params), views_of(self.exp_avg_sq, self.params),
                      strict=True)
        return {"state": {i: {"step": self.steps.clone(), "exp_avg": m, "exp_avg_sq": v}
                          for i, (m, v) in enumerate(moments)},
                "param_groups": [group]}

    def load_state_dict(self, state: dict) -> None:
        """Copy a state_dict in; ValueError if it belongs to other parameters."""
        entries = state["state"]
        if not entries:  # saved before the first update
            return
        if sorted(entries) != list(range(len(self.params))):
            raise ValueError(f"{len(entries)} parameter states for {len(self.params)} parameters")
        for name, flat in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
            for i, view in enumerate(views_of(flat, self.params)):
                if entries[i][name].shape != view.shape:
                    raise ValueError(f"{name} of parameter {i} has shape "
                                     f"{tuple(entries[i][name].shape)}, not {tuple(view.shape)}")
                view.copy_(entries[i][name])
        self.steps.copy_(entries[0]["step"])
        self.lr = state["param_groups"][0]["lr"]
