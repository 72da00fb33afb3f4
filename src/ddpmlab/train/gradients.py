"""The gradient of one training step, by one of two backends, and its sum over the processes.

Both compute dL/dtheta of the step's loss (Ho et al. 2020, Algorithm 1, line 5, with the
chosen target; Nichol & Dhariwal 2021, Sec. 3.1 for a learned variance) into the trainer's
flat gradient buffer, for this process's rows of the batch, then join the processes:

- :class:`HandDerived`: the point MLPs' backward pass written by hand
  (:mod:`ddpmlab.accel.mlp`), in equal leaves of the batch summed as one fixed tree, on one
  process as on many, so a run shared by several processes is the one-process run bit for
  bit.
- :class:`Autograd`: any network and the hybrid loss of a learned variance; under several
  processes the rows are shared nearly equally and the gradients all-reduced (equal to one
  process up to the order of float additions).

The buffer ``reduced`` holds the flat gradient, then the loss and a stop flag, so one
collective joins the gradients, the loss and the processes' requests to stop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ddpmlab import distributed
from ddpmlab.accel import mlp as accel_mlp
from ddpmlab.config import RunConfig
from ddpmlab.diffusion import min_snr_weight
from ddpmlab.errors import UserError
from ddpmlab.likelihood import hybrid_loss
from ddpmlab.objectives import objective_named
from ddpmlab.precision import under
from ddpmlab.schedules import NoiseSchedule


@dataclass(frozen=True)
class Batch:
    """One step's draws for the whole batch (B rows): x0 (B, *D) the examples, t (B,) int64,
    eps (B, *D) the noise, x_t = q_sample(x0, t, eps), y (B,) labels or None; x0_target and
    eps_target: what the network is trained towards (x0 and eps, or their stable-target-field
    counterparts)."""

    x0: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    x_t: torch.Tensor
    y: torch.Tensor | None
    x0_target: torch.Tensor
    eps_target: torch.Tensor


class Backend:
    """Computes this process's part of a step's gradient into ``grad`` and joins the parts."""

    rows: slice  # this process's rows of the batch

    def __init__(self, config: RunConfig, schedule: NoiseSchedule, model: nn.Module,
                 reduced: torch.Tensor) -> None:
        self.config, self.schedule, self.model = config, schedule, model
        self.reduced = reduced
        self.grad = reduced[:-2]  # the flat gradient every parameter's .grad is a view of
        self.group = distributed.current()
        self.objective = objective_named(config.diffusion.objective)

    def target(self, batch: Batch) -> torch.Tensor:
        """What the network is trained towards on this process's rows: the objective's target
        (the DDPM's ``prediction``, or the flow's velocity) of the (stable) x0 and eps."""
        r = self.rows
        return self.objective.target(self.schedule, self.config.diffusion.prediction,
                                     batch.x0_target[r], batch.eps_target[r], batch.t[r])

    def gradient(self, batch: Batch) -> torch.Tensor | None:
        """This process's part of dL/dtheta into ``grad``; its part of the loss, or None
        where :meth:`reduce` gathers it from the leaves."""
        raise NotImplementedError

    def reduce(self, loss: torch.Tensor | None, stop: bool) -> torch.Tensor:
        """Sum the processes' gradients, losses and stop flags; return the batch's loss.
        ``reduced[-1] > 0`` afterwards when some process asked to stop."""
        raise NotImplementedError


class HandDerived(Backend):
    """The point MLPs' hand-derived gradient of the MSE, in equal leaves of the batch
    (:func:`ddpmlab.accel.mlp.leaves_of`)."""

    def __init__(self, config: RunConfig, schedule: NoiseSchedule, model: nn.Module,
                 reduced: torch.Tensor) -> None:
        super().__init__(config, schedule, model, reduced)
        B, world = config.train.batch_size, self.group.world
        self.leaves = accel_mlp.leaves_of(B, config.train.leaves)
        if world > self.leaves:
            wanted = 1 << (world - 1).bit_length()
            raise UserError(
                f"this run cuts its batch of {B} into {self.leaves} equal part(s) (--leaves "
                f"{config.train.leaves}, parts of at least {accel_mlp.LEAF_ROWS} rows), so at "
                f"most {self.leaves} process(es) can train it; start that many, or train a new "
                f"run with --leaves {wanted} and a --batch-size that is a multiple of "
                f"{accel_mlp.LEAF_ROWS * wanted}")
        # a row per leaf of this process: the leaf's gradient, its part of the loss, a flag
        first, stop = distributed.leaf_share(self.leaves, self.group)
        params = list(model.parameters())
        numel = self.grad.numel()
        self.leaf_parts = torch.zeros(stop - first, numel + 2, device=reduced.device)
        columns = self.leaf_parts[:, :numel].split([p.numel() for p in params], dim=1)
        self.leaf_grads = {name: part.view(-1, *p.shape) for (name, p), part
                           in zip(model.named_parameters(), columns, strict=True)}
        self.tensors = model.state_dict(keep_vars=True)  # parameters and buffers, by name
        rows = B // self.leaves
        self.rows = slice(first * rows, stop * rows)

    def gradient(self, batch: Batch) -> None:
        r = self.rows
        with torch.inference_mode():  # no autograd bookkeeping at all
            target = self.target(batch)
            self.leaf_parts[:, -2] = accel_mlp.mse_and_grads(
                self.model, batch.x_t[r], batch.t[r], target, self.leaf_grads, self.tensors,
                None if batch.y is None else batch.y[r], leaves=len(self.leaf_parts),
                total=self.config.train.batch_size)
        return None

    def reduce(self, loss: torch.Tensor | None, stop: bool) -> torch.Tensor:
        with torch.inference_mode():
            self.leaf_parts[:, -1] = 0.0
            self.leaf_parts[0, -1] = float(stop)
            distributed.leaf_sum(self.leaf_parts, self.leaves, out=self.reduced)
        return self.reduced[-2].clone()


def _with_labels(model: Callable[..., torch.Tensor], y: torch.Tensor, x: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
    """A conditional network as the losses' denoiser (x_t, t) -> output, for labels y."""
    return model(x, t, y)


class Autograd(Backend):
    """Autograd's gradient of the MSE, or of the hybrid loss of a learned variance, whose
    t = 0 term uses ``decoder`` (``likelihood.hybrid_loss``'s decoder and levels); the
    network's passes under autocast to ``dtype`` (None: float32; ``ddpmlab.precision``), the
    loss in float32."""

    def __init__(self, config: RunConfig, schedule: NoiseSchedule, model: nn.Module,
                 reduced: torch.Tensor, decoder: dict[str, Any] | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(config, schedule, model, reduced)
        self.rows = distributed.share(config.train.batch_size, self.group)
        self.decoder = decoder or {"decoder": "gaussian"}
        # torch.compile's module shares the parameters (and so the flat buffers) of model
        compiled = torch.compile(model) if config.train.compile else model
        self.network = under(compiled, reduced.device, dtype)

    def gradient(self, batch: Batch) -> torch.Tensor:
        r, d = self.rows, self.config.diffusion
        self.grad.zero_()
        model = (self.network if batch.y is None
                 else functools.partial(_with_labels, self.network, batch.y[r]))
        target = self.target(batch)
        if d.variance == "learned_range":  # Nichol & Dhariwal 2021, Sec. 3.1
            # the VLB term on the example's own x0, the MSE on the (stable) target
            loss = hybrid_loss(self.schedule, model, batch.x0[r], prediction=d.prediction,
                               vlb_weight=d.vlb_weight, target=target,
                               drawn=(batch.t[r], batch.eps[r], batch.x_t[r]), **self.decoder)
        else:  # Ho et al. 2020, Algorithm 1 (Ho Eq. 14 with the chosen target); Lipman Eq. 23
            error = (target - model(batch.x_t[r], batch.t[r])).square()
            if d.min_snr_gamma:  # Hang et al. 2023, Eq. 7: each example's weight
                error = error.flatten(1) * min_snr_weight(self.schedule, d.prediction,
                                                          batch.t[r], d.min_snr_gamma)[:, None]
            loss = error.mean()
        loss.backward()  # into the zeroed views of grad
        return loss.detach()

    def reduce(self, loss: torch.Tensor | None, stop: bool) -> torch.Tensor:
        assert loss is not None
        if not self.group.many:
            self.reduced[-1] = float(stop)
            return loss
        with torch.inference_mode():
            weight = (self.rows.stop - self.rows.start) / self.config.train.batch_size
            self.grad.mul_(weight)
            self.reduced[-2] = loss * weight  # on the device, as the flag after it
            self.reduced[-1] = float(stop)
            distributed.all_reduce(self.reduced)
        return self.reduced[-2].clone()


def backend_for(config: RunConfig, schedule: NoiseSchedule, model: nn.Module,
                reduced: torch.Tensor, autograd: bool = False, *,
                decoder: dict[str, Any] | None = None,
                dtype: torch.dtype | None = None) -> Backend:
    """The hand-derived backend where it covers the model and the loss, else autograd (with
    the data's ``decoder`` for a learned variance's t = 0 term, the network under autocast
    to ``dtype``); a Min-SNR weighted loss goes through autograd too."""
    d = config.diffusion
    if (not autograd and accel_mlp.supports(model) and d.variance != "learned_range"
            and not d.min_snr_gamma):
        return HandDerived(config, schedule, model, reduced)
    return Autograd(config, schedule, model, reduced, decoder, dtype)
