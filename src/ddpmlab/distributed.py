"""Many processes on torch.distributed, launched by torchrun: one run from N of them.

ddpmlab adds no launcher or transport of its own. ``torchrun --nproc-per-node N -m ddpmlab
train ...`` (``--nnodes``, ``--rdzv-backend c10d``, ``--rdzv-endpoint`` for several
machines) starts N copies of the command; each finds its place in the environment torchrun
sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and
:func:`setup` joins the process group: gloo on the CPU, NCCL with one GPU per process
(``cuda:LOCAL_RANK``). Without torchrun (or with one process) nothing is initialised and
every command runs in this one process.

How the work is shared, so that a run does not depend on N (``Trainer``, ``Run.sample``):

* training: every rank draws the global batch's random numbers (indices, labels dropped,
  t, eps) from the run's one generator, exactly as one process would, and keeps its own
  contiguous share of the rows; one collective a step joins the ranks' gradients in a flat
  buffer that also carries the loss and a stop flag, so all ranks see the same loss (a NaN
  anywhere is a NaN everywhere) and stop at the same step (Ctrl-C or SIGTERM on any rank).
  The point MLPs' hand-derived gradients come in equal leaves of the batch summed as one
  fixed tree (:func:`leaf_sum`), so their run is the one-process run bit for bit; an
  autograd model's gradients, each scaled by its share of the rows (:func:`share`), are
  summed by an all-reduce, and differ from the one-process run's by the order of float
  additions, which a long training can amplify (README, "Many processes").
* sampling: the n samples are cut into blocks of ``Modality.sample_block`` rows, each with
  its own generator derived from (seed, block); rank r draws blocks r, r + N, ... and the
  blocks are gathered in order, so the samples do not depend on N.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ddpmlab.errors import UserError

#: How long a collective waits for the others before it fails: a backstop only, as a rank
#: that dies closes its sockets and the others fail at once (minutes cover a snapshot or a
#: checkpoint written by rank 0 meanwhile).
TIMEOUT = timedelta(minutes=10)
T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """Where this process stands: rank 0..world-1, and its rank on this machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    @property
    def many(self) -> bool:
        return self.world > 1


_group = [Group()]


def current() -> Group:
    """The group :func:`setup` joined (one process of one when it was not called)."""
    return _group[0]


def launched() -> Group:
    """The place torchrun's environment gives this process (one of one without torchrun)."""
    env = os.environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        return Group(int(env.get("RANK", "0")), world, int(env.get("LOCAL_RANK", "0")),
                     int(env.get("LOCAL_WORLD_SIZE", str(world))))
    except ValueError:
        raise UserError("RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers "
                        "(torchrun sets them); unset them to run one process") from None


def setup(device: str) -> str:
    """Join the process group torchrun describes, once; return the device this rank uses.

    ``device`` is the --device asked for: under several processes ``cuda`` (or ``auto`` with
    a GPU) becomes ``cuda:LOCAL_RANK`` with the NCCL backend, anything else gloo on the CPU.
    One process (no torchrun) initialises nothing and returns ``device`` unchanged.
    """
    group = launched()
    if not group.many:
        return device
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        if device not in ("cuda", "auto"):
            raise UserError(f"--device {device}: under torchrun each process takes the GPU "
                            "of its LOCAL_RANK; give --device cuda")
        if torch.cuda.device_count() < group.local_world:
            raise UserError(f"{group.local_world} processes on this machine but torch sees "
                            f"{torch.cuda.device_count()} GPU(s); start at most one process "
                            "per GPU (--nproc-per-node)")
        device = f"cuda:{group.local_rank}"
        torch.cuda.set_device(group.local_rank)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        except (RuntimeError, ValueError) as e:  # no rendezvous, a bad address, ...
            raise UserError(f"cannot join the process group torchrun describes "
                            f"({str(e).splitlines()[0]})") from None
        _group[0] = Group(dist.get_rank(), dist.get_world_size(), group.local_rank,
                          group.local_world)
    return device


def teardown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    _group[0] = Group()


class PeerLost(UserError):
    """Another process of the group stopped (killed, or failed) while this one waited."""


def all_reduce(buffer: torch.Tensor) -> None:
    """Sum ``buffer`` over the ranks, in place; PeerLost if a rank has gone."""
    try:
        dist.all_reduce(buffer)
    except RuntimeError:  # gloo and NCCL report a closed peer as DistBackendError
        raise PeerLost("another process of the group stopped (torchrun names it)") from None


def leaf_share(leaves: int, group: Group) -> tuple[int, int]:
    """The leaves first..stop-1 of a batch cut into ``leaves`` equal parts that rank
    ``group.rank`` computes: contiguous, as equal as they can be."""
    return group.rank * leaves // group.world, (group.rank + 1) * leaves // group.world


def _blocks(first: int, stop: int) -> list[tuple[int, int]]:
    """Leaves first..stop-1 as the aligned blocks (start, size) of a binary tree over the
    leaves (size a power of two, start a multiple of it), in order: the tree's nodes whose
    sums a rank holding exactly those leaves can form alone."""
    out = []
    while first < stop:
        size = first & -first or 1 << (stop - first).bit_length()  # the alignment of first
        while first + size > stop:
            size //= 2
        out.append((first, size))
        first += size
    return out


def _tree_sum(rows: torch.Tensor) -> torch.Tensor:
    """rows (2^k, W) summed in place as a balanced binary tree, ((r0 + r1) + (r2 + r3)) +
    ...; returns the root (rows[0])."""
    n, step = rows.shape[0], 1
    while step < n:
        pairs = rows.view(n // (2 * step), 2 * step, -1)
        pairs[:, 0].add_(pairs[:, step])
        step *= 2
    return rows[0]


def leaf_sum(parts: torch.Tensor, leaves: int, out: torch.Tensor) -> None:
    """out = the sum of every rank's leaf ``parts`` (this rank's: (stop - first, W), its
    :func:`leaf_share`; consumed), added as one fixed binary tree over the ``leaves``
    (a power of two).

    Float addition is not associative, so a sum split among ranks is usually not the sum
    one process would form. Here every node of the tree is the same pair added in the same
    order whatever the number of ranks: a rank sums its aligned blocks alone, the ranks
    exchange those sums (one all-gather), and each adds the rest of the tree, so the result
    is bit for bit the one-process sum (tests/test_distributed.py).
    """
    group = current()
    first, stop = leaf_share(leaves, group)
    mine = [_tree_sum(parts[start - first:start - first + size])
            for start, size in _blocks(first, stop)]
    if not group.many:
        out.copy_(mine[0])
        return
    every = [_blocks(*leaf_share(leaves, Group(r, group.world))) for r in range(group.world)]
    width = max(len(b) for b in every)
    send = torch.zeros(width, parts.shape[1], device=parts.device)
    send[:len(mine)] = torch.stack(mine)
    received = torch.empty(group.world, *send.shape, device=parts.device)
    try:
        dist.all_gather(list(received.unbind(0)), send)
    except RuntimeError:  # gloo and NCCL report a closed peer as DistBackendError
        raise PeerLost("another process of the group stopped (torchrun names it)") from None
    nodes = {block: received[r, j] for r, blocks in enumerate(every)
             for j, block in enumerate(blocks)}
    size = 1
    while (0, leaves) not in nodes:  # join siblings, the smallest first
        for start in range(0, leaves, 2 * size):
            if (start, size) in nodes:
                nodes[start, 2 * size] = nodes.pop((start, size)) + nodes.pop((start + size,
                                                                               size))
        size *= 2
    out.copy_(nodes[0, leaves])


def first_failed(ok: bool) -> int | None:
    """The lowest rank that is not ``ok``, or None when all are (one all-reduce)."""
    group = current()
    if not group.many:
        return None if ok else 0
    flags = torch.zeros(group.world, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    flags[group.rank] = 0.0 if ok else 1.0
    all_reduce(flags)
    failed = flags.nonzero()
    return int(failed[0]) if len(failed) else None


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank ([obj] for one process)."""
    group = current()
    if not group.many:
        return [obj]
    out: list[Any] = [None] * group.world
    try:
        dist.all_gather_object(out, obj)
    except RuntimeError:
        raise PeerLost("another process of the group stopped (torchrun names it)") from None
    return out


def from_main(obj: T) -> T:
    """Rank 0's ``obj`` on every rank (``obj`` itself for one process)."""
    return gather(obj)[0]


def share(rows: int, group: Group) -> slice:
    """The contiguous rows of a batch of ``rows`` that rank ``group.rank`` computes: equal
    shares, the first ``rows % world`` ranks one row more."""
    base, extra = divmod(rows, group.world)
    start = group.rank * base + min(group.rank, extra)
    return slice(start, start + base + (group.rank < extra))


class ElsewhereFailed(UserError):
    """Another rank failed, and says why; this one stops without a word."""


def together(work: Callable[[], T]) -> T:
    """``work()`` on every rank, going on only if it succeeded on all of them, so that no
    rank is left waiting in a collective for one that gave up (one all-reduce). The lowest
    rank that failed raises its own error; every other rank raises ElsewhereFailed, so a
    mistake that all ranks make (a bad --out) is reported once, not N times."""
    try:
        result = work()
    except BaseException:
        if current().many and first_failed(False) != current().rank:
            raise ElsewhereFailed("another process of the group failed") from None
        raise
    if first_failed(True) is not None:
        raise ElsewhereFailed("another process of the group failed")
    return result


def threads(wanted: int) -> int:
    """Threads for this rank: ``wanted`` (train.threads), but no more than this machine's
    cores shared by its processes, since torch's threads collapse when they outnumber the
    cores (the threads table of bench/README.md, "Performance"; torchrun's own choice is
    OMP_NUM_THREADS=1)."""
    if not current().many:
        return wanted
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(wanted, (cores or 1) // current().local_world))


@contextmanager
def alone() -> Iterator[None]:
    """Inside the block this process counts as one of one: rank 0 drawing figures, which
    the others do not wait for, samples without any collective."""
    before = _group[0]
    _group[0] = Group()
    try:
        yield
    finally:
        _group[0] = before
