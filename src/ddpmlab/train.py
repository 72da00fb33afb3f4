"""Training: Adam, gradient clipping, a learning-rate schedule, EMA weights, snapshots, resume.

The loop draws its batches from one in-memory tensor (no per-sample DataLoader: for points
that would cost more than the network), and everything random comes from one
``torch.Generator`` seeded by ``train.seed`` and saved in every checkpoint, so a resumed
run continues exactly where it stopped.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ddpmlab import checkpoint
from ddpmlab.config import RunConfig
from ddpmlab.diffusion import check_prediction, check_variance, diffusion_loss
from ddpmlab.errors import UserError
from ddpmlab.likelihood import hybrid_loss
from ddpmlab.models import build_model
from ddpmlab.schedules import make_schedule

LR_SCHEDULES = ("cosine", "constant")


class Diverged(UserError):
    """The loss became NaN or inf: the weights are no longer worth saving."""


def lr_factor(config: RunConfig, step: int) -> float:
    """Multiplier of the base learning rate at ``step``: linear warm-up, then cosine or flat."""
    c = config.train
    warm = min(1.0, (step + 1) / c.warmup) if c.warmup else 1.0
    if c.lr_schedule == "constant":
        return warm
    return warm * 0.5 * (1 + math.cos(math.pi * min(step, c.steps) / c.steps))


def default_snapshots(steps: int) -> tuple[int, ...]:
    """Beginning, middle and end of training: the source text's three reverse-process figures.

    "Beginning" is 5 % of the steps: before that the chain of a near-untrained network leaves
    the frame entirely, which says little.
    """
    return tuple(sorted({max(1, steps // 20), max(1, steps // 2), steps}))


def build_network(config: RunConfig, dim: int) -> torch.nn.Module:
    """The configured network for ``dim``-column data; twice the outputs for a learned variance."""
    check_prediction(config.diffusion.prediction)
    check_variance(config.diffusion.variance)
    out_dim = 2 * dim if config.diffusion.variance == "learned_range" else dim
    return build_model(config.model, config.diffusion.timesteps, dim, out_dim)


class Trainer:
    """Owns the model, its EMA copy, the optimiser and the generator of one run.

    x_train: (N, dim) float32, already standardised. ``resume_from`` continues a checkpoint.
    """

    def __init__(self, config: RunConfig, x_train: torch.Tensor,
                 resume_from: checkpoint.Checkpoint | None = None) -> None:
        if config.train.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"unknown lr_schedule '{config.train.lr_schedule}'; "
                            f"choose one of: {', '.join(LR_SCHEDULES)}")
        self.config = config
        self.x_train = x_train
        self.schedule = make_schedule(config.diffusion.schedule, config.diffusion.timesteps)
        with torch.random.fork_rng():
            torch.manual_seed(config.train.seed)  # the network's initial weights
            self.model = build_network(config, x_train.shape[1])
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.params = list(self.model.parameters())
        self.ema_params = list(self.ema.parameters())
        self.optimizer = torch.optim.Adam(self.params, lr=config.train.lr, fused=True)
        self.generator = torch.Generator().manual_seed(config.train.seed)
        self.step = 0
        self.history: list[tuple[int, float]] = []  # (step, mean loss since the last entry)
        self.loss_sum, self.loss_count = 0.0, 0  # losses since the last history entry
        if resume_from is not None:
            self._restore(resume_from)

    def _restore(self, ckpt: checkpoint.Checkpoint) -> None:
        checkpoint.load_weights(self.model, ckpt.model, "the checkpoint")
        checkpoint.load_weights(self.ema, ckpt.ema, "the checkpoint")
        try:
            if ckpt.optimizer is not None:
                self.optimizer.load_state_dict(ckpt.optimizer)
        except (RuntimeError, KeyError, ValueError) as e:
            raise UserError(f"the checkpoint's optimiser state does not match its model "
                            f"({str(e).splitlines()[0]}); train again") from None
        if ckpt.rng is not None:
            self.generator.set_state(ckpt.rng)
        self.step = ckpt.step
        self.history = [(int(s), float(v)) for s, v in ckpt.meta.get("history", [])]
        self.loss_sum, self.loss_count = ckpt.meta.get("loss_partial", (0.0, 0))

    def to_checkpoint(self, meta: dict) -> checkpoint.Checkpoint:
        """The state to save; raises Diverged rather than hand out non-finite weights.

        A finite loss does not prove finite weights: an overflowing gradient can turn the
        update into NaN one step before the loss shows it.
        """
        if not all(bool(torch.isfinite(p).all()) for p in [*self.params, *self.ema_params]):
            raise Diverged(f"the weights became non-finite at step {self.step}; "
                           "lower the learning rate (--lr)")
        return checkpoint.Checkpoint(
            config=self.config, step=self.step, model=self.model.state_dict(),
            ema=self.ema.state_dict(), optimizer=self.optimizer.state_dict(),
            rng=self.generator.get_state(),
            meta={**meta, "history": self.history,
                  "loss_partial": [self.loss_sum, self.loss_count]})

    def train_step(self) -> torch.Tensor:
        """One update (Ho et al. 2020, Algorithm 1) on a batch drawn with replacement."""
        c = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = c.train.lr * lr_factor(c, self.step)
        idx = torch.randint(0, self.x_train.shape[0], (c.train.batch_size,),
                            generator=self.generator)
        d = c.diffusion
        if d.variance == "learned_range":  # Nichol & Dhariwal 2021, Sec. 3.1
            loss = hybrid_loss(self.schedule, self.model, self.x_train[idx], self.generator,
                               d.antithetic, d.prediction, d.vlb_weight)
        else:  # Ho et al. 2020, Algorithm 1 (with the chosen target)
            loss = diffusion_loss(self.schedule, self.model, self.x_train[idx], self.generator,
                                  d.antithetic, d.prediction)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, c.train.grad_clip, foreach=True)
        self.optimizer.step()
        self.step += 1
        # EMA with the usual warm-up, so early snapshots are not dominated by the random init
        decay = min(c.train.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.params, 1.0 - decay)
        return loss.detach()

    def fit(self, *, progress: bool = True, on_step: Callable[[int], None] | None = None) -> None:
        """Train until ``train.steps``; call ``on_step(step)`` after every update."""
        c = self.config.train
        bar = tqdm(total=c.steps, initial=self.step, disable=not progress, unit="step",
                   dynamic_ncols=True, leave=True)
        try:
            while self.step < c.steps:
                loss = float(self.train_step())
                if not math.isfinite(loss):
                    raise Diverged(f"the loss became {loss} at step {self.step}; "
                                   "lower the learning rate (--lr)")
                self.loss_sum += loss
                self.loss_count += 1
                if self.step % c.log_every == 0 or self.step == c.steps:
                    self.history.append((self.step, self.loss_sum / self.loss_count))
                    bar.set_postfix(loss=f"{self.history[-1][1]:.4f}",
                                    lr=f"{c.lr * lr_factor(self.config, self.step):.2g}")
                    bar.update(self.step - bar.n)
                    self.loss_sum, self.loss_count = 0.0, 0
                if on_step is not None:
                    on_step(self.step)
        finally:
            bar.close()
