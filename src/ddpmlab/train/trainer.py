"""Training (Ho et al. 2020, Algorithm 1): Adam, gradient clipping, a learning-rate schedule,
EMA weights and resume.

The loop draws its batches from one in-memory tensor (no per-sample DataLoader: for points
that would cost more than the network), and everything random comes from one
``torch.Generator`` seeded by ``train.seed`` and saved in every checkpoint, so a resumed
run continues exactly where it stopped.

The weights, their gradients, the EMA weights and Adam's moments each live in one flat
buffer (:mod:`ddpmlab.accel.adam`), and the gradient comes from a backend
(:mod:`ddpmlab.train.gradients`): the point MLPs' hand-derived backward pass, or autograd.

A trainer runs on one device (``ddpmlab.devices.resolve_device`` reads ``--device``): the
model, the EMA, the flat buffers, the training data and the generator live there;
checkpoints hold CPU tensors, so a run saved on one device resumes on another.

Under torchrun the ranks share each step (``ddpmlab.distributed``): every rank draws the whole
batch's random numbers from the one generator, keeps its rows, and one collective of the
flat gradient buffer (with the loss and a stop flag at its end) joins them.
"""

from __future__ import annotations

import copy
import hashlib
import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.std import tqdm

from ddpmlab import checkpoint, distributed, feedback
from ddpmlab.accel.adam import FlatAdam, flatten_parameters, views_of
from ddpmlab.config import RunConfig
from ddpmlab.devices import resolve_device
from ddpmlab.errors import UserError
from ddpmlab.models import build_network
from ddpmlab.objectives import objective_named
from ddpmlab.precision import autocast_dtype
from ddpmlab.schedules import make_schedule
from ddpmlab.train.gradients import Batch, backend_for


def _on_cpu(tree: Any) -> Any:
    """``tree`` (tensors in dicts, lists and tuples) with every tensor copied to the CPU."""
    if isinstance(tree, torch.Tensor):
        return tree.cpu()
    if isinstance(tree, dict):
        return {k: _on_cpu(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_on_cpu(v) for v in tree)
    return tree


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


@contextmanager
def interrupts_between_steps() -> Iterator[list[int]]:
    """Inside the block, SIGINT and SIGTERM are recorded instead of raising at once.

    Yields the list of signals caught; the training loop looks at it after each complete
    step and raises KeyboardInterrupt there. An interrupt that landed mid-step (between the
    Adam update and the EMA, or before the step's loss is counted) would otherwise save a
    state that no uninterrupted run passes through, and the resume would not be exact.
    Off the main thread (where Python delivers no signals) the block changes nothing.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def record(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {s: signal.signal(s, record) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Trainer:
    """Owns the model, its EMA copy, the optimiser and the generator of one run.

    x_train: (N, *shape) float32 in model space (standardised points, images in [-1, 1]).
    labels: (N,) int64 classes of x_train in 0..classes-1, for a conditional model
    (``model.conditional``; ``classes`` >= 2 of them); each example's label is replaced by
    the "no class" token with probability ``train.cond_drop`` (Ho & Salimans 2022,
    Algorithm 1), drawn from the training generator after the batch. An unconditional run
    draws nothing more.
    ``resume_from`` continues a checkpoint.
    ``decoder``: the data's decoder p(x_0 | x_1) (``Modality.decoder``), for the t = 0 term
    of a learned variance's hybrid loss (None: a Gaussian density, for continuous data).
    ``autograd=True`` computes every gradient with autograd, the reference the tests compare
    the hand-derived gradients with.
    ``device``: where everything lives and runs (a name is read by :func:`resolve_device`).
    The initial weights are drawn on the CPU and moved, so they are the same on every
    device; the training draws come from a generator on the device, so a CUDA run is not
    the CPU run (another random stream), only reproducible on CUDA.
    """

    def __init__(self, config: RunConfig, x_train: torch.Tensor,
                 resume_from: checkpoint.Checkpoint | None = None, *,
                 autograd: bool = False, device: str | torch.device = "cpu",
                 labels: torch.Tensor | None = None, classes: int = 0,
                 decoder: dict[str, Any] | None = None) -> None:
        if config.model.conditional and (labels is None or classes < 2):
            raise UserError("--conditional needs data with two classes or more (moons, "
                            "circles, gaussians8, spirals, digits, mnist, a --label-column, an "
                            ".npz with labels or a folder of class folders); this data has "
                            f"{'no labels' if labels is None else f'{classes} class'} "
                            "(model.conditional, on by default for digits and mnist, needs "
                            "Trainer's labels= and classes=; --no-conditional turns it off)")
        self.config = config
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.x_train = x_train.to(self.device)  # itself on the CPU
        self.classes = classes if config.model.conditional else 0
        self.labels = None if not self.classes or labels is None else labels.to(self.device)
        # built on the CPU (float64 maths), its constants moved once; itself on the CPU
        self.schedule = make_schedule(config.diffusion.schedule,
                                      config.diffusion.timesteps).to(self.device)
        self.objective = objective_named(config.diffusion.objective)  # DDPM or flow
        with torch.random.fork_rng():
            torch.manual_seed(config.train.seed)  # the network's initial weights, on the CPU
            self.model = build_network(config, tuple(x_train.shape[1:]),
                                       self.classes).to(self.device)
        # the EMA is never trained: eval mode, so snapshots drawn from it run without dropout
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.params = list(self.model.parameters())
        self.ema_params = list(self.ema.parameters())
        self.flat = flatten_parameters(self.params)  # the weights, every parameter a view
        self.ema_flat = flatten_parameters(self.ema_params)
        # what the ranks sum each step: the gradients, then the loss and a stop flag
        self.reduced = torch.zeros(self.flat.numel() + 2, device=self.device)
        self.grad_flat = self.reduced[:-2]
        for p, g in zip(self.params, views_of(self.grad_flat, self.params), strict=True):
            p.grad = g  # autograd accumulates into an existing .grad in place
        self.group = distributed.current()
        if self.group.world > config.train.batch_size:
            raise UserError(f"--batch-size {config.train.batch_size} cannot be shared by "
                            f"{self.group.world} processes; give each at least one example")
        # bfloat16 passes for a U-Net where the hardware has them (ddpmlab.precision)
        self.autocast = autocast_dtype(config.train.precision, self.device, self.model)
        self.gradients = backend_for(config, self.schedule, self.model, self.reduced, autograd,
                                     decoder=decoder, dtype=self.autocast)
        self.caught: list[int] = []  # signals that asked to stop (fit), sent to the others
        self.stop = False  # some rank asked to stop during the last step
        self.optimizer = FlatAdam(self.params, self.flat, self.grad_flat, config.train.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(config.train.seed)
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
            self._restore_rng(ckpt.rng)
        self.step = ckpt.step
        self.history = [(int(s), float(v)) for s, v in ckpt.meta.get("history", [])]
        self.loss_sum, self.loss_count = ckpt.meta.get("loss_partial", (0.0, 0))

    def _restore_rng(self, state: torch.Tensor) -> None:
        """Continue the saved random stream, or, from a generator of another kind (a CPU
        checkpoint resumed on CUDA, or the reverse), start one seeded from the saved state.

        The two kinds' states differ (CPU: Mersenne Twister, 5,056 bytes; CUDA: Philox, a
        seed and an offset), so such a resume trains on, reproducibly, but is not the run
        that continuing on the first device would give.
        """
        if state.numel() == self.generator.get_state().numel():
            self.generator.set_state(state)
            return
        digest = hashlib.sha256(state.numpy().tobytes()).digest()
        self.generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        feedback.status(f"the checkpoint's random state is from another kind of generator "
                        f"than this {self.device.type} one: training continues with a new "
                        "random stream seeded from it, not the one the saving device would "
                        "have drawn")

    def to_checkpoint(self, meta: dict) -> checkpoint.Checkpoint:
        """The state to save; raises Diverged rather than hand out non-finite weights.

        A finite loss does not prove finite weights: an overflowing gradient can turn the
        update into NaN one step before the loss shows it. Every tensor is on the CPU (a
        CPU run's own tensors, not copies), as safetensors writes them.
        """
        if not all(bool(torch.isfinite(p).all()) for p in [*self.params, *self.ema_params]):
            raise Diverged(f"the weights became non-finite at step {self.step}; "
                           "lower the learning rate (--lr)")
        model, ema, optimizer = (self.model.state_dict(), self.ema.state_dict(),
                                 self.optimizer.state_dict())
        if self.device.type != "cpu":  # safetensors writes CPU tensors (a CPU run's, uncopied)
            model, ema, optimizer = _on_cpu(model), _on_cpu(ema), _on_cpu(optimizer)
        return checkpoint.Checkpoint(
            config=self.config, step=self.step, model=model, ema=ema, optimizer=optimizer,
            rng=self.generator.get_state(),  # a CPU uint8 tensor for every kind of generator
            meta={**meta, "history": self.history,
                  "loss_partial": [self.loss_sum, self.loss_count]})

    def train_step(self) -> torch.Tensor:
        """One update (Ho et al. 2020, Algorithm 1) on a batch drawn with replacement.

        The draws are those of the whole batch (indices, dropped labels, t, eps, in that
        order); under several processes this rank computes the gradient of its rows, and
        the ranks' gradients and losses are summed before the update.
        """
        c, d = self.config, self.config.diffusion
        before = self.generator.get_state() if self.group.many else None
        # line 2: x0 ~ q(x0), a class label dropped with probability cond_drop
        idx = torch.randint(0, self.x_train.shape[0], (c.train.batch_size,),
                            generator=self.generator, device=self.device)
        x0 = self.x_train.index_select(0, idx)
        y = None if self.labels is None else self._drop(self.labels.index_select(0, idx))
        # lines 3-4: t ~ Uniform, eps ~ N(0, I), x_t = q_sample(x0, t, eps) (or the flow's path)
        t, eps, x_t = self.objective.draw(self.schedule, x0, self.generator, d.antithetic)
        x0_target, eps_target = self._stable(x0, y, t, eps, x_t)
        # line 5: the gradient of the loss, this rank's rows, summed over the ranks
        batch = Batch(x0, t, eps, x_t, y, x0_target, eps_target)
        loss = self.gradients.gradient(batch)
        try:
            loss = self.gradients.reduce(loss, bool(self.caught))
        except distributed.PeerLost:
            # the others' state is the last complete step: rewind this one's draws to it, so
            # that the checkpoint rank 0 writes now resumes exactly
            assert before is not None  # one process has no peer to lose
            self.generator.set_state(before)
            raise distributed.PeerLost(f"another process of the group stopped during step "
                                       f"{self.step + 1} (torchrun names it)") from None
        self.stop = bool(self.reduced[-1] > 0) if self.group.many else False
        with torch.inference_mode():
            # clip_grad_norm_: scale the gradient to norm <= grad_clip (its 1e-6 included)
            norm = torch.linalg.vector_norm(self.grad_flat)
            self.grad_flat.mul_((c.train.grad_clip / (norm + 1e-6)).clamp_(max=1.0))
            self.optimizer.step(c.train.lr * lr_factor(c, self.step))
            self.step += 1
            # EMA with the usual warm-up, so early snapshots are not dominated by the init
            decay = min(c.train.ema_decay, (1 + self.step) / (10 + self.step))
            self.ema_flat.lerp_(self.flat, 1.0 - decay)
        return loss

    def _stable(self, x0: torch.Tensor, y: torch.Tensor | None, t: torch.Tensor,
                eps: torch.Tensor, x_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0, eps) of the whole batch, or with ``diffusion.stable_target`` = M > 0 their
        stable-target-field counterparts over M training examples drawn after the batch's
        other draws (:func:`ddpmlab.diffusion.stable_target`); a labelled example's from its
        own class, a dropped label's from all. Every rank computes the whole batch, so that
        the targets do not depend on how the rows are shared."""
        m = self.config.diffusion.stable_target
        if not m:
            return x0, eps
        idx = torch.randint(0, self.x_train.shape[0], (m,), generator=self.generator,
                            device=self.device)
        allowed = None
        if y is not None:
            assert self.labels is not None
            allowed = (self.labels.index_select(0, idx) == y.unsqueeze(1)) | \
                (y == self.classes).unsqueeze(1)
        return self.objective.stable(self.schedule, x0, eps, x_t, t,
                                     self.x_train.index_select(0, idx), allowed)

    def _drop(self, y: torch.Tensor) -> torch.Tensor:
        """Labels y (B,) with each replaced by the "no class" token (``classes``) with
        probability train.cond_drop (Ho & Salimans 2022, Algorithm 1, line 3)."""
        drop = torch.rand(y.shape, generator=self.generator, device=self.device)
        return torch.where(drop < self.config.train.cond_drop, self.classes, y)

    def fit(self, *, on_step: Callable[[int], None] | None = None) -> None:
        """Train until ``train.steps``; call ``on_step(step)`` after every update.

        Ctrl-C or SIGTERM stops the loop between two steps (after ``on_step``), raising
        KeyboardInterrupt with the trainer in the state of a completed step.
        """
        c = self.config.train
        bar = feedback.bar(c.steps, "training", initial=self.step, leave=True)
        try:
            with interrupts_between_steps() as self.caught:
                self._loop(bar, on_step)
        finally:
            self.caught = []
            bar.close()

    def _loop(self, bar: tqdm, on_step: Callable[[int], None] | None) -> None:
        c = self.config.train
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
            # Ctrl-C or SIGTERM during this step (on any rank): stop now that it is complete
            if self.stop if self.group.many else self.caught:
                raise KeyboardInterrupt
