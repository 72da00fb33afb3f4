"""Training: Adam, gradient clipping, a learning-rate schedule, EMA weights, snapshots, resume.

The loop draws its batches from one in-memory tensor (no per-sample DataLoader: for points
that would cost more than the network), and everything random comes from one
``torch.Generator`` seeded by ``train.seed`` and saved in every checkpoint, so a resumed
run continues exactly where it stopped.

A step costs little arithmetic (batch 128-512, width 64), so it is written to dispatch few
operations (bench/README.md has the measurements): the weights, their gradients, the EMA
weights and Adam's two moments each live in one flat buffer (every parameter is a view of
it), so clipping, the fused Adam update and the EMA are one operation each; and the MLPs'
gradients come from their hand-derived backward pass (``ddpmlab.models.fast``), with
autograd only for other models and for the hybrid loss of a learned variance.

A trainer runs on one device (:func:`resolve_device` reads ``--device``): the model, the EMA,
the flat buffers, the training data and the generator live there; checkpoints hold CPU
tensors, so a run saved on one device resumes on another.

Under torchrun the ranks share each step (``ddpmlab.distributed``): every rank draws the whole
batch's random numbers from the one generator, keeps its rows, and one collective of the
flat gradient buffer (with the loss and a stop flag at its end) joins them. The MLPs'
hand-derived gradients come in equal leaves of the batch (:func:`leaves_of`), computed
apart and summed as one fixed tree on one process as on many, so their run is the
one-process run bit for bit; an autograd model's is, up to the order of float additions.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import math
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from tqdm.std import tqdm

from ddpmlab import checkpoint, distributed, feedback
from ddpmlab.config import RunConfig
from ddpmlab.diffusion import (
    check_prediction,
    check_variance,
    diffusion_loss,
    draw_training_inputs,
    stable_target,
    target_for,
)
from ddpmlab.errors import UserError
from ddpmlab.likelihood import hybrid_loss
from ddpmlab.models import build_network, fast
from ddpmlab.schedules import make_schedule

LR_SCHEDULES = ("cosine", "constant")
DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def resolve_device(name: str) -> torch.device:
    """The device ``--device name`` asks for: ``auto`` (CUDA when torch sees one, else the
    CPU), ``cpu``, ``cuda`` (the current CUDA device) or ``cuda:N``.

    UserError, in one line, for a CUDA device torch cannot see, or any other name.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name) if isinstance(name, str) else None
    if match is None:
        raise UserError(f"unknown device {name!r}; choose one of: {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is visible to torch "
                        "(torch.cuda.is_available() is False); use --device cpu or auto")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if match[1] is None else int(match[1])
    if index >= count:
        raise UserError(f"--device {name}: torch sees {count} CUDA device(s), "
                        f"cuda:0..cuda:{count - 1}; choose one of them, or --device auto")
    return torch.device("cuda", index)


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


#: The fewest rows of a leaf (Trainer, fast path): matrix products of fewer rows take MKL
#: kernels that round some rows differently from the same rows in a larger product.
LEAF_ROWS = 16


def leaves_of(batch: int, wanted: int) -> int:
    """The equal parts (leaves) the fast path cuts a batch into, and so the most processes
    that share it exactly: the largest power of two up to ``wanted`` (train.leaves) that
    divides the batch into leaves of at least LEAF_ROWS rows, or 1."""
    leaves = wanted
    while leaves > 1 and (batch % leaves or batch // leaves < LEAF_ROWS):
        leaves //= 2
    return leaves


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


def _with_labels(model: torch.nn.Module, y: torch.Tensor, x: torch.Tensor,
                 t: torch.Tensor) -> torch.Tensor:
    """A conditional network as the losses' denoiser (x_t, t) -> output, for labels y."""
    return model(x, t, y)


class FlatAdam:
    """Adam (Kingma & Ba 2015) on flat buffers: ``torch.optim.Adam(fused=True)``'s update.

    ``weights`` and ``grad`` are the flat buffers the parameters and their gradients are views
    of; both moments are flat buffers too, so one fused kernel updates everything.
    :meth:`state_dict` and :meth:`load_state_dict` use torch.optim.Adam's format (one entry
    per parameter), so checkpoints read the same either way. Not a torch.optim.Optimizer:
    constructing one imports torch._dynamo, a second of start-up for every command.
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
    draws nothing more and trains as before.
    ``resume_from`` continues a checkpoint.
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
                 labels: torch.Tensor | None = None, classes: int = 0) -> None:
        if config.train.lr_schedule not in LR_SCHEDULES:
            raise UserError(f"unknown lr_schedule '{config.train.lr_schedule}'; "
                            f"choose one of: {', '.join(LR_SCHEDULES)}")
        if config.model.conditional and (labels is None or classes < 2):
            raise UserError("--conditional needs data with two classes or more (moons, "
                            "circles, gaussians8, spirals, digits, mnist, a --label-column, an "
                            ".npz with labels or a folder of class folders); this data has "
                            f"{'no labels' if labels is None else f'{classes} class'}")
        self.config = config
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.x_train = x_train.to(self.device)  # itself on the CPU
        self.classes = classes if config.model.conditional else 0
        self.labels = None if not self.classes or labels is None else labels.to(self.device)
        # built on the CPU (float64 maths), its constants moved once; itself on the CPU
        self.schedule = make_schedule(config.diffusion.schedule,
                                      config.diffusion.timesteps).to(self.device)
        check_prediction(config.diffusion.prediction)
        check_variance(config.diffusion.variance)
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
        # what the ranks sum each step: the gradients, then this rank's share of the loss and
        # its stop flag (train_step); one process uses the gradient part only
        numel = self.flat.numel()
        self.reduced = torch.zeros(numel + 2, device=self.device)
        self.grad_flat = self.reduced[:numel]
        grads = views_of(self.grad_flat, self.params)
        self.group = distributed.current()
        if self.group.world > config.train.batch_size:
            raise UserError(f"--batch-size {config.train.batch_size} cannot be shared by "
                            f"{self.group.world} processes; give each at least one example")
        self.fast = (not autograd and fast.supports(self.model)
                     and config.diffusion.variance != "learned_range")
        self.leaves = leaves_of(config.train.batch_size, config.train.leaves)
        # this rank's rows: whole leaves on the fast path, else a near-equal share
        self.rows = (self._share_leaves(numel) if self.fast
                     else distributed.share(config.train.batch_size, self.group))
        self.caught: list[int] = []  # signals that asked to stop (fit), sent to the others
        self.stop = False  # some rank asked to stop during the last step
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g  # autograd accumulates into an existing .grad in place
        self.tensors = self.model.state_dict(keep_vars=True)  # parameters and buffers, by name
        self.optimizer = FlatAdam(self.params, self.flat, self.grad_flat, config.train.lr)
        self.generator = torch.Generator(device=self.device).manual_seed(config.train.seed)
        self.step = 0
        self.history: list[tuple[int, float]] = []  # (step, mean loss since the last entry)
        self.loss_sum, self.loss_count = 0.0, 0  # losses since the last history entry
        if resume_from is not None:
            self._restore(resume_from)

    def _share_leaves(self, numel: int) -> slice:
        """This rank's leaves of the batch and a buffer of a row per leaf: the leaf's
        gradient, its part of the loss and the stop flag (as ``reduced``); returns the
        leaves' rows."""
        B, world = self.config.train.batch_size, self.group.world
        if world > self.leaves:
            wanted = 1 << (world - 1).bit_length()
            raise UserError(
                f"this run cuts its batch of {B} into {self.leaves} equal part(s) (--leaves "
                f"{self.config.train.leaves}, parts of at least {LEAF_ROWS} rows), so at most "
                f"{self.leaves} process(es) can train it; start that many, or train a new run "
                f"with --leaves {wanted} and a --batch-size that is a multiple of "
                f"{LEAF_ROWS * wanted}")
        first, stop = distributed.leaf_share(self.leaves, self.group)
        self.leaf_parts = torch.zeros(stop - first, numel + 2, device=self.device)
        columns = self.leaf_parts[:, :numel].split([p.numel() for p in self.params], dim=1)
        self.leaf_grads = {name: part.view(-1, *p.shape) for (name, p), part
                           in zip(self.model.named_parameters(), columns, strict=True)}
        rows = B // self.leaves
        return slice(first * rows, stop * rows)

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
        if self.device.type != "cpu":  # safetensors writes CPU tensors; the CPU path as it was
            model, ema, optimizer = _on_cpu(model), _on_cpu(ema), _on_cpu(optimizer)
        return checkpoint.Checkpoint(
            config=self.config, step=self.step, model=model, ema=ema, optimizer=optimizer,
            rng=self.generator.get_state(),  # a CPU uint8 tensor for every kind of generator
            meta={**meta, "history": self.history,
                  "loss_partial": [self.loss_sum, self.loss_count]})

    def train_step(self) -> torch.Tensor:
        """One update (Ho et al. 2020, Algorithm 1) on a batch drawn with replacement.

        The draws are those of the whole batch (indices, dropped labels, t, eps, in that
        order); under several processes this rank computes its rows of it, and the ranks'
        gradients and losses are summed (:meth:`_reduce`) before the update.
        """
        c, d = self.config, self.config.diffusion
        before = self.generator.get_state() if self.group.many else None
        idx = torch.randint(0, self.x_train.shape[0], (c.train.batch_size,),
                            generator=self.generator, device=self.device)
        x0 = self.x_train.index_select(0, idx)
        y = None if self.labels is None else self._drop(self.labels.index_select(0, idx))
        rows = self.rows
        if self.fast:  # Ho et al. 2020, Algorithm 1 (with the chosen target), by hand
            with torch.inference_mode():  # no autograd bookkeeping at all
                t, eps, x_t = draw_training_inputs(self.schedule, x0, self.generator,
                                                   d.antithetic)
                x0, eps = self._stable(x0, y, t, eps, x_t)
                target = target_for(self.schedule, d.prediction, x0[rows], eps[rows], t[rows])
                self.leaf_parts[:, -2] = fast.mse_and_grads(
                    self.model, x_t[rows], t[rows], target, self.leaf_grads, self.tensors,
                    None if y is None else y[rows], leaves=len(self.leaf_parts),
                    total=c.train.batch_size)
                loss = self._reduce(before)
        else:
            self.grad_flat.zero_()
            model = (self.model if y is None
                     else functools.partial(_with_labels, self.model, y[rows]))
            t, eps, x_t = draw_training_inputs(self.schedule, x0, self.generator, d.antithetic)
            x0_s, eps_s = self._stable(x0, y, t, eps, x_t)
            if d.variance == "learned_range":  # Nichol & Dhariwal 2021, Sec. 3.1
                # the VLB term on the example's own x0 (hybrid_loss), the MSE on the target
                target = target_for(self.schedule, d.prediction, x0_s[rows], eps_s[rows],
                                    t[rows])
                loss = hybrid_loss(self.schedule, model, x0[rows], prediction=d.prediction,
                                   vlb_weight=d.vlb_weight, target=target,
                                   drawn=(t[rows], eps[rows], x_t[rows]))
            else:  # Ho et al. 2020, Algorithm 1 (with the chosen target)
                loss = diffusion_loss(self.schedule, model, x0_s[rows], prediction=d.prediction,
                                      drawn=(t[rows], eps_s[rows], x_t[rows]))
            loss.backward()  # into the zeroed views of grad_flat
            loss = loss.detach()
            if self.group.many:
                loss = self._reduce(before, loss)
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

    def _reduce(self, before: torch.Tensor | None,
                loss: torch.Tensor | None = None) -> torch.Tensor:
        """Join the ranks' gradients and losses, and their stop flags, in one collective;
        return the batch's loss.

        The fast path's leaves (``leaf_parts``) are summed as one fixed tree, on one process
        too, so that its sums are those of any number of processes; an autograd step's
        gradient and ``loss``, each scaled by the rank's share of the rows, are all-reduced
        (under several processes only). A rank that has gone (PeerLost) leaves this one in
        the state of the last complete step, its generator rewound to ``before`` the step's
        draws, so the checkpoint that rank 0 then writes resumes exactly.
        """
        with torch.inference_mode():
            flag = float(bool(self.caught))
            try:
                if self.fast:
                    self.leaf_parts[:, -1] = 0.0
                    self.leaf_parts[0, -1] = flag
                    distributed.leaf_sum(self.leaf_parts, self.leaves, out=self.reduced)
                else:
                    weight = (self.rows.stop - self.rows.start) / self.config.train.batch_size
                    self.grad_flat.mul_(weight)
                    self.reduced[-2] = loss * weight  # on the device, as the flag after it
                    self.reduced[-1] = flag
                    distributed.all_reduce(self.reduced)
            except distributed.PeerLost:
                assert before is not None  # one process has no peer to lose
                self.generator.set_state(before)
                raise distributed.PeerLost(f"another process of the group stopped during step "
                                           f"{self.step + 1} (torchrun names it)") from None
            self.stop = bool(self.reduced[-1] > 0)
            return self.reduced[-2].clone()

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
        return stable_target(self.schedule, x0, eps, x_t, t, self.x_train.index_select(0, idx),
                             allowed)

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
