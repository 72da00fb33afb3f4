"""Many processes under torchrun (ddpmlab.distributed): the same run whatever the number of
processes, ranks that stop together, a lost rank that hangs nothing, and sampling shared by
the ranks. Every test launches torchrun itself (``python -m torch.distributed.run``) on
gloo, on this machine's CPU."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA_TOML, assert_same_run, checkpoint_step, poll, temps

from ddpmlab import checkpoint, distributed
from ddpmlab.accel.mlp import leaves_of
from ddpmlab.cli import main
from ddpmlab.runs.layout import CKPT
from ddpmlab.runs.run import block_seed

TINY = ["--timesteps", "20", "--hidden", "16", "--batch-size", "64", "--quiet", "--no-eval",
        "--no-figures"]


def torchrun(args: list[str], nproc: int = 2, *launcher: str, wait: bool = True,
             ) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node nproc -m ddpmlab ARGS``, run to its end
    (``wait``) or started."""
    command = [sys.executable, "-m", "torch.distributed.run", *(launcher or ["--standalone"]),
               "--nproc-per-node", str(nproc), "-m", "ddpmlab", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if wait:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)


def ours(stderr: str) -> list[str]:
    """ddpmlab's own lines on stderr (not torchrun's warnings and report)."""
    return [line for line in stderr.splitlines() if line.startswith("ddpmlab:")]


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = checkpoint.load(run / CKPT)
    return {**{f"model.{k}": v for k, v in ckpt.model.items()},
            **{f"ema.{k}": v for k, v in ckpt.ema.items()}}


def largest_difference(a: Path, b: Path) -> float:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def workers(launcher: subprocess.Popen[str]) -> dict[int, int]:
    """The launcher's worker processes by RANK (Linux /proc)."""
    found: dict[int, int] = {}
    for pid in (Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text()
                .split()):
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        rank = next(e for e in env if e.startswith(b"RANK=")).split(b"=")[1]
        found[int(rank)] = int(pid)
    return found


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "data.toml"
    path.write_text(DATA_TOML)
    return path


def reference(tmp_path: Path, toml: Path, steps: int, *more: str) -> Path:
    """The one-process run, trained in this process."""
    out = tmp_path / "one"
    assert main(["train", "moons", "--out", str(out), "--config", str(toml), "--steps",
                 str(steps), *TINY, *more]) == 0
    return out


LONG = 2000  # steps of the runs that are interrupted


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted one-process run of LONG steps the interrupted ones must end at
    (checkpointed as often as they are, so that its configuration is theirs)."""
    folder = tmp_path_factory.mktemp("long")
    (folder / "data.toml").write_text(DATA_TOML)
    return reference(folder, folder / "data.toml", LONG, "--checkpoint-every", "50")


# --- the rules ---------------------------------------------------------------------------

def test_a_batch_is_shared_in_contiguous_near_equal_parts() -> None:
    for rows, world in [(64, 2), (64, 3), (7, 7), (10, 4), (5, 1)]:
        parts = [distributed.share(rows, distributed.Group(r, world)) for r in range(world)]
        assert [p.start for p in parts] == [0] + [p.stop for p in parts[:-1]]
        assert parts[-1].stop == rows
        sizes = [p.stop - p.start for p in parts]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_leaves_are_shared_in_aligned_blocks_of_one_tree() -> None:
    assert [leaves_of(b, 8) for b in (512, 128, 100, 64, 30, 7)] == [8, 8, 4, 4, 1, 1]
    assert leaves_of(512, 2) == 2
    for leaves in (1, 2, 4, 8):
        for world in range(1, leaves + 1):
            shares = [distributed.leaf_share(leaves, distributed.Group(r, world))
                      for r in range(world)]
            assert shares[0][0] == 0 and shares[-1][1] == leaves
            assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(shares))
            for first, stop in shares:  # a partition of the share into aligned blocks
                blocks = distributed._blocks(first, stop)
                assert [b[0] for b in blocks] == [first] + [a + z for a, z in blocks[:-1]]
                assert sum(z for _, z in blocks) == stop - first
                assert all(a % z == 0 and z & (z - 1) == 0 for a, z in blocks)
    assert distributed._blocks(3, 8) == [(3, 1), (4, 4)]
    rows = torch.tensor([[1.0], [2.0], [4.0], [8.0]])
    assert float(distributed._tree_sum(rows)) == 15.0


def test_the_first_sample_block_keeps_the_seed_and_the_others_differ() -> None:
    assert block_seed(7, 0) == 7
    seeds = {block_seed(s, b) for s in range(5) for b in range(1, 50)}
    assert len(seeds) == 5 * 49 and all(0 <= x < 2 ** 63 for x in seeds)


def test_one_process_is_a_group_of_one() -> None:
    assert not distributed.current().many and distributed.current().main
    assert distributed.setup("cpu") == "cpu"  # no torchrun: nothing to join
    assert distributed.together(lambda: 3) == 3


# --- training ------------------------------------------------------------------------------

def test_two_and_three_processes_train_the_one_process_run(tmp_path: Path, toml: Path) -> None:
    """The global batch of 64 in 4 leaves of 16 rows, shared by 2 (2 + 2 leaves) or 3 (1 + 1
    + 2) processes: the point MLP's weights, EMA and losses bit for bit those of one
    process, since every leaf's gradient and every sum of them is formed alike."""
    one = reference(tmp_path, toml, 150, "--leaves", "4")
    runs = {}
    for name, nproc in [("two", 2), ("three", 3)]:
        runs[name] = tmp_path / name
        done = torchrun(["train", "moons", "--out", str(runs[name]), "--config", str(toml),
                         "--steps", "150", *TINY, "--leaves", "4"], nproc)
        assert done.returncode == 0, done.stderr
        assert ours(done.stderr) == [], done.stderr  # --quiet: nothing from any rank
    for name in ("two", "three"):  # weights, EMA, optimiser, losses, snapshots, samples
        assert_same_run(one, runs[name], steps=150)


def test_more_processes_than_leaves_are_refused_in_one_line(tmp_path: Path,
                                                           toml: Path) -> None:
    done = torchrun(["train", "moons", "--out", str(tmp_path / "run"), "--config", str(toml),
                     "--steps", "5", *TINY], 3)
    assert done.returncode != 0
    assert ours(done.stderr) == [
        "ddpmlab: error: this run cuts its batch of 64 into 2 equal part(s) (--leaves 2, "
        "parts of at least 16 rows), so at most 2 process(es) can train it; start that many, "
        "or train a new run with --leaves 4 and a --batch-size that is a multiple of 64"]
    assert not (tmp_path / "run").exists()


def test_an_autograd_model_on_two_processes_follows_the_one_process_run(
        tmp_path: Path, toml: Path) -> None:
    """An autograd model (a learned variance) sums its ranks' gradients by all-reduce: the
    weights within 1e-5 of one process's (float additions ordered differently), two
    2-process runs bit-identical."""
    learned = ["--variance", "learned_range"]
    one = reference(tmp_path, toml, 150, *learned)
    runs = {}
    for name in ("two", "two_again"):
        runs[name] = tmp_path / name
        done = torchrun(["train", "moons", "--out", str(runs[name]), "--config", str(toml),
                         "--steps", "150", *TINY, *learned], 2)
        assert done.returncode == 0, done.stderr
    difference = largest_difference(one, runs["two"])
    print(f"two processes against one: largest weight difference {difference:.2e}")
    assert difference < 1e-5
    assert_same_run(runs["two"], runs["two_again"], steps=150)


def test_the_default_train_command_evaluates_and_draws_once(tmp_path: Path, toml: Path) -> None:
    """Evaluation and figures after training: the ranks share the sampling, rank 0 alone
    scores, draws and prints; the metrics are one process's (to float rounding: the weights
    differ in the order of the gradient's additions)."""
    out = tmp_path / "full"
    args = ["train", "moons", "--out", str(out), "--config", str(toml), "--steps", "60",
            "--timesteps", "20", "--hidden", "16", "--batch-size", "64"]
    done = torchrun(args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("run saved in") == 1 and done.stdout.count("1nna") == 1
    assert (out / "figures" / "samples.png").is_file()
    assert (out / "figures" / "reverse.gif").is_file()
    alone = tmp_path / "alone"
    assert main([*args[:3], str(alone), *args[4:], "--quiet"]) == 0
    metrics = [json.loads((r / "metrics.json").read_text())["metrics"] for r in (alone, out)]
    for name, cell in metrics[0].items():
        assert cell["value"] == pytest.approx(metrics[1][name]["value"], rel=1e-5), name


def test_two_nodes_of_one_process_train_one_run(tmp_path: Path, toml: Path) -> None:
    """Two torchrun launchers (--nnodes 2) meeting at a c10d rendezvous on 127.0.0.1: the
    path to several machines."""
    one = reference(tmp_path, toml, 100)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "nodes"
    launcher = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-id", "test",
                "--rdzv-endpoint", f"127.0.0.1:{port}"]
    args = ["train", "moons", "--out", str(out), "--config", str(toml), "--steps", "100", *TINY]
    nodes = [torchrun(args, 1, *launcher, wait=False) for _ in range(2)]
    for node in nodes:
        assert isinstance(node, subprocess.Popen)
        assert node.wait(timeout=300) == 0, node.stderr.read() if node.stderr else ""
        if node.stderr:
            node.stderr.close()
    assert_same_run(one, out, steps=100)


def start_long_run(tmp_path: Path, toml: Path, name: str, steps: int
                   ) -> tuple[subprocess.Popen[str], Path, list[str]]:
    out = tmp_path / name
    args = ["train", "moons", "--out", str(out), "--config", str(toml), "--steps", str(steps),
            "--checkpoint-every", "50", *TINY]
    proc = torchrun(args, wait=False)
    assert isinstance(proc, subprocess.Popen)
    return proc, out, args


def ended_within(proc: subprocess.Popen[str], seconds: float) -> tuple[int, str]:
    start = time.monotonic()
    code = proc.wait(timeout=60)
    took = time.monotonic() - start
    stderr = proc.stderr.read() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    print(f"the group ended {took:.2f} s after the signal")
    assert took < seconds, stderr
    return code, stderr


def test_a_rank_killed_ends_the_group_and_the_run_resumes_on_one_or_two_processes(
        tmp_path: Path, toml: Path, long_reference: Path) -> None:
    """SIGKILL to rank 1: rank 0 saves the last complete step, says so in one line, and
    torchrun ends within seconds; resumed on 2 processes and SIGKILL to rank 0 (the writer):
    the last periodic checkpoint stays intact; resumed on 1 process, the run ends with the
    uninterrupted run's weights bit for bit."""
    steps, one = LONG, long_reference
    proc, out, args = start_long_run(tmp_path, toml, "killed", steps)
    poll(lambda: checkpoint_step(out) >= 100, proc, timeout=120)
    assert proc.poll() is None, "the run ended before the kill"
    os.kill(workers(proc)[1], signal.SIGKILL)
    code, stderr = ended_within(proc, 10)
    assert code != 0
    lines = ours(stderr)
    saved = checkpoint_step(out)
    # rank 0 hears of the loss from its next collective, or, when torchrun's SIGTERM (sent
    # to the survivors on seeing rank 1 die) comes first, stops between two steps
    assert len(lines) == 1 and (f"keeps step {saved}" in lines[0] or lines[0] == (
        "ddpmlab: interrupted (a checkpoint of the training so far was saved)")), stderr
    assert temps(out) == []

    again = torchrun([*args, "--resume"], wait=False)  # the same command, --resume appended
    assert isinstance(again, subprocess.Popen)
    poll(lambda: checkpoint_step(out) >= saved + 100, again, timeout=120)
    assert again.poll() is None, "the resumed run ended before the kill"
    os.kill(workers(again)[0], signal.SIGKILL)
    ended_within(again, 10)
    # the writer killed, perhaps mid-write (a temporary file, which the resume deletes)
    assert checkpoint.load(out / CKPT).step % 50 == 0

    assert main([*args, "--resume"]) == 0  # one process, to the end
    assert temps(out) == []
    assert_same_run(one, out, steps=steps)


def test_sigterm_to_torchrun_writes_one_checkpoint_and_the_run_resumes(
        tmp_path: Path, toml: Path, long_reference: Path) -> None:
    steps, one = LONG, long_reference
    proc, out, args = start_long_run(tmp_path, toml, "stopped", steps)
    poll(lambda: checkpoint_step(out) >= 100, proc, timeout=120)
    assert proc.poll() is None, "the run ended before the signal"
    signalled = time.time()
    os.kill(proc.pid, signal.SIGTERM)
    code, stderr = ended_within(proc, 10)
    assert code != 0
    assert ours(stderr) == ["ddpmlab: interrupted (a checkpoint of the training so far was "
                            "saved)"], stderr
    assert (out / CKPT).stat().st_mtime > signalled and temps(out) == []  # written at the stop
    assert 100 <= checkpoint_step(out) < steps
    done = torchrun([*args, "--resume"])
    assert done.returncode == 0, done.stderr
    assert_same_run(one, out, steps=steps)


# --- sampling and evaluation --------------------------------------------------------------

def test_samples_and_metrics_do_not_depend_on_the_number_of_processes(
        tiny_copy: Path, tmp_path: Path) -> None:
    """70,000 points: blocks of 32,768, 32,768 and 4,464, the first and third drawn by rank
    0, the second by rank 1; the same bytes as one process's; evaluation likewise."""
    one, two = tmp_path / "one.npy", tmp_path / "two.npy"
    args = ["sample", str(tiny_copy), "--number", "70000", "--quiet", "--out"]
    assert main([*args, str(one)]) == 0
    done = torchrun([*args, str(two)])
    assert done.returncode == 0, done.stderr
    assert ours(done.stderr) == [] and done.stdout.count("wrote") == 1, done.stdout
    np.testing.assert_array_equal(np.load(one), np.load(two))

    assert main(["evaluate", str(tiny_copy), "--number", "300", "--quiet"]) == 0
    alone = (tiny_copy / "metrics.json").read_text()
    done = torchrun(["evaluate", str(tiny_copy), "--number", "300", "--quiet"])
    assert done.returncode == 0, done.stderr
    assert (tiny_copy / "metrics.json").read_text() == alone
    assert done.stdout.count("written to") == 1


def test_refusals_under_torchrun_are_said_once(tiny_run: Path) -> None:
    done = torchrun(["figures", str(tiny_run)])
    assert done.returncode != 0
    assert ours(done.stderr) == ["ddpmlab: error: `figures` runs in one process; only train, "
                                 "sample, evaluate share their work under torchrun"]
    done = torchrun(["train", "moons", "--out", str(tiny_run), *TINY])  # a run is there
    assert done.returncode != 0
    lines = ours(done.stderr)
    assert len(lines) == 1 and "already holds a run" in lines[0], done.stderr


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices (NCCL)")
def test_two_gpus_with_nccl_train_the_one_gpu_run(tmp_path: Path, toml: Path) -> None:
    """--device cuda under torchrun: one GPU per process (cuda:LOCAL_RANK), NCCL. The CUDA
    generator draws another stream than the CPU's, so the reference is one GPU."""
    one = tmp_path / "one"
    assert main(["train", "moons", "--out", str(one), "--config", str(toml), "--steps", "100",
                 "--device", "cuda", *TINY]) == 0
    two = tmp_path / "two"
    done = torchrun(["train", "moons", "--out", str(two), "--config", str(toml), "--steps",
                     "100", "--device", "cuda", *TINY])
    assert done.returncode == 0, done.stderr
    assert largest_difference(one, two) < 1e-5
