"""Crash safety: periodic checkpoints, SIGKILL at random moments, interrupts, safe loading.

The kill test trains a tiny run in a subprocess, kills it with SIGKILL at seeded random
moments (some of them while a checkpoint is being written), resumes it each time, and then
checks that every file of the run loads and that the final weights equal those of a run
that was never interrupted, bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    DATA_TOML,
    SMALL,
    assert_same_run,
    checkpoint_step,
    contents,
    poll,
    small_config,
    temps,
)
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ddpmlab import checkpoint, open_run, train_run
from ddpmlab.cli import main
from ddpmlab.cli.parser import build_parser
from ddpmlab.cli.settings import overrides
from ddpmlab.config import RunConfig, from_dict, load_toml, replace
from ddpmlab.errors import UserError
from ddpmlab.fileio import remove_stale_temps, write_json
from ddpmlab.runs.layout import CKPT, CONFIG, DATA, LOSS, SNAPSHOTS
from ddpmlab.train import Trainer

STEPS = 400
KILL_ARGS = ["--steps", str(STEPS), "--timesteps", "20", "--hidden", "16", "--batch-size", "64",
             "--checkpoint-every", "7", "--quiet", "--no-figures"]
N_KILLS = 10  # SIGKILLs; each relaunch costs ~2 s, mostly importing torch and torch._dynamo


def _dead_pid() -> int:
    """The id of a process that has just ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def check_files(folder: Path) -> int:
    """Load every file of a run directory (temporary files aside); return how many."""
    n, skip = 0, temps(folder)
    for p in sorted(folder.iterdir()):
        if p in skip or p.is_dir():
            continue
        if p.suffix == ".safetensors":
            checkpoint.load(p)
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                for k in f.files:
                    f[k]
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".csv":
            np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2)
        else:
            raise AssertionError(f"unexpected file {p.name}")
        n += 1
    return n


# --- periodic checkpoints ---------------------------------------------------------------

def test_checkpoint_every_flag_and_toml_set_the_same_field(tmp_path: Path) -> None:
    args = build_parser().parse_args(["train", "moons", "--checkpoint-every", "5"])
    assert overrides(args) == {"train": {"checkpoint_every": 5}}
    toml = tmp_path / "c.toml"
    toml.write_text("[train]\ncheckpoint_every = 5\n")
    assert (from_dict(RunConfig, load_toml(toml))
            == replace(RunConfig(), overrides(args)))
    # by default a run checkpoints while it trains, not only at its end
    assert 0 < RunConfig().train.checkpoint_every < RunConfig().train.steps


@pytest.mark.parametrize("every, saved", [(7, [7, 14, 21, 28, 30]), (0, [30])])
def test_checkpoints_and_losses_are_written_every_n_steps(
        every: int, saved: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run directory watched after every step and at the end: a checkpoint is written at
    each multiple of ``every`` and at the end, and only then, each with loss.csv beside it
    holding the losses of the same logged steps."""
    out = tmp_path / "run"
    seen: list[int] = []
    last: list[tuple[int, int]] = []  # the checkpoint file last seen (inode, mtime)

    def look() -> None:
        if not (out / CKPT).exists():
            return
        stat = (out / CKPT).stat()
        if last and last[-1] == (stat.st_ino, stat.st_mtime_ns):
            return
        last.append((stat.st_ino, stat.st_mtime_ns))
        ckpt = checkpoint.load(out / CKPT)
        loss = np.loadtxt(out / LOSS, delimiter=",", skiprows=1, ndmin=2)
        assert [int(s) for s in loss[:, 0]] == [s for s, _ in ckpt.meta["history"]]
        seen.append(ckpt.step)

    fit = Trainer.fit

    def watched(self: Trainer, *, on_step=None, **kw) -> None:
        def hook(step: int) -> None:
            on_step(step)
            look()
        fit(self, on_step=hook, **kw)

    monkeypatch.setattr(Trainer, "fit", watched)
    train_run(small_config(checkpoint_every=every), out, progress=False, figures=False)
    look()
    assert seen == saved


def test_resume_after_a_kill_retakes_later_snapshots_and_removes_temps(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of the run directory taken at step 24 is what a SIGKILL there leaves behind."""
    config = small_config(snapshots=[10, 23], checkpoint_every=7)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    original = Trainer.fit

    def fit(self: Trainer, *, progress: bool = True, on_step=None) -> None:
        def hook(step: int) -> None:
            on_step(step)
            if step == 24:
                shutil.copytree(straight, killed)
        original(self, on_step=hook)

    monkeypatch.setattr(Trainer, "fit", fit)
    train_run(config, straight, progress=False, figures=False)
    monkeypatch.undo()
    assert checkpoint.load(killed / CKPT).step == 21
    with np.load(killed / SNAPSHOTS) as f:
        assert sorted(f.files) == ["labels", "step10", "step23"]  # newer than the checkpoint
    stale = [killed / f"checkpoint.{_dead_pid()}-0123abcd.tmp.safetensors",
             killed / f"loss.{_dead_pid()}-89abcdef.tmp.csv"]
    for path in stale:
        path.write_bytes(b"half written")

    train_run(config, killed, resume=True, progress=False, figures=False)
    assert not any(p.exists() for p in stale) and temps(killed) == []
    with np.load(killed / SNAPSHOTS) as f:
        assert sorted(f.files) == ["labels", "step10", "step23"]  # step 23 taken again
    assert_same_run(straight, killed, steps=30)


def test_remove_stale_temps_keeps_live_writers_and_other_files(tmp_path: Path) -> None:
    dead = tmp_path / f"checkpoint.{_dead_pid()}-0123abcd.tmp.safetensors"
    live = tmp_path / f"snapshots.{os.getpid()}-0123abcd.tmp.npz"  # a write in progress
    other = tmp_path / "notes.tmpl"
    for p in (dead, live, other):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_resume_of_a_run_without_checkpoint_starts_from_step_0(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    write_json(run / CONFIG, json.loads(json.dumps(
        {**SMALL, "train": {**SMALL["train"], "steps": 10}})))  # killed before step 7
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert f"ddpmlab: note: {run} holds no checkpoint yet; training it from step 0" in err
    assert checkpoint.load(run / CKPT).step == 10


# --- SIGKILL at random moments ----------------------------------------------------------

def launch(args: list[str]) -> subprocess.Popen[str]:
    def default_sigint() -> None:  # a shell may start background jobs with SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-m", "ddpmlab.cli", "train", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)


def wait_for_training(proc: subprocess.Popen[str]) -> list[str]:
    """stderr lines up to the one announcing training (all of them if the process ends)."""
    lines = []
    while line := proc.stderr.readline():
        lines.append(line)
        if line.startswith("training "):
            break
    return lines


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(
        tmp_path: Path) -> None:
    toml = tmp_path / "data.toml"
    toml.write_text(DATA_TOML)
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(["train", "moons", "--out", str(reference), "--config", str(toml),
                 *KILL_ARGS]) == 0
    fresh = ["moons", "--out", str(run), "--config", str(toml), *KILL_ARGS]
    resume = ["--resume", "--out", str(run), "--quiet", "--no-figures"]
    rng = random.Random(1234)
    counts = dict.fromkeys(["kills", "during a checkpoint write", "during any write",
                            "resumes", "nothing to resume", "restarts from step 0",
                            "files checked"], 0)
    args, left = fresh, []  # left: the temporary files the last kill left behind
    while True:
        proc = launch(args)
        counts["resumes"] += args is resume
        i = counts["kills"]
        if i > 0:  # kill 0 lands at once, before Python is even up
            lines = wait_for_training(proc)
            if not lines or not lines[-1].startswith("training "):
                assert proc.wait(timeout=60) == 2, lines
                proc.stderr.close()
                assert "nothing to resume" in "".join(lines), lines  # no run directory yet
                counts["nothing to resume"] += 1
                args = fresh
                continue
            assert not any(p.exists() for p in left), "the resume kept stale temporary files"
            counts["restarts from step 0"] += any("no checkpoint yet" in x for x in lines)
            if i == N_KILLS:
                break
            if i > 1:  # kill 1 lands as training starts, before the first checkpoint
                # a point spread over the run (in steps, so any machine gets all the kills),
                # then a random moment: within the next checkpoint interval, or during a write
                target = STEPS * (i - 1) // (N_KILLS - 1) + rng.randrange(21)
                poll(lambda t=target: checkpoint_step(run) >= t, proc)
                if i % 3 == 2:
                    poll(lambda: any(p.name.startswith("checkpoint.") for p in temps(run)),
                         proc)
                else:
                    time.sleep(rng.uniform(0.0, 0.01))
            assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        proc.stderr.close()
        counts["kills"] += 1
        left = temps(run)
        counts["during any write"] += bool(left)
        counts["during a checkpoint write"] += any(p.name.startswith("checkpoint.") for p in left)
        if run.is_dir():
            counts["files checked"] += check_files(run)
        args = resume
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    proc.stderr.close()

    assert temps(run) == []
    counts["files checked"] += check_files(run)
    assert_same_run(reference, run, steps=STEPS)
    print("kill test:", ", ".join(f"{k} {v}" for k, v in counts.items()), "; corrupt files 0")
    assert counts["kills"] == N_KILLS and counts["nothing to resume"] >= 1
    assert counts["during a checkpoint write"] >= 1


# --- interrupts -------------------------------------------------------------------------

def training_past_step_50(run: Path, steps: int) -> subprocess.Popen[str]:
    """A tiny training of ``steps`` steps into ``run``, in a subprocess, once it has written
    the checkpoint of step 50 (well inside training)."""
    toml = run.parent / "data.toml"
    toml.write_text(DATA_TOML)
    proc = launch(["moons", "--out", str(run), "--config", str(toml), "--steps", str(steps),
                   "--timesteps", "20", "--hidden", "16", "--batch-size", "64",
                   "--checkpoint-every", "50", "--quiet", "--no-figures"])
    lines = wait_for_training(proc)
    assert lines and lines[-1].startswith("training "), lines
    poll(lambda: checkpoint_step(run) >= 50, proc)
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_saves_a_checkpoint_exits_130_and_resume_completes(
        sig: signal.Signals, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = training_past_step_50(run, steps=600)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 130
    rest = proc.stderr.read()
    proc.stderr.close()
    assert rest.startswith("ddpmlab: interrupted") and rest.count("\n") == 1, rest
    step = checkpoint.load(run / CKPT).step
    assert 50 <= step < 600
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--no-figures"]) == 0
    assert checkpoint.load(run / CKPT).step == 600 and temps(run) == []


def test_sigint_and_sigterm_at_random_steps_then_resume_equals_an_uninterrupted_run(
        tmp_path: Path) -> None:
    """An interrupt stops training at the end of the step in progress: the checkpoint it
    writes is a state an uninterrupted run passes through, so the resume is exact."""
    toml = tmp_path / "data.toml"
    toml.write_text(DATA_TOML)
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(["train", "moons", "--out", str(reference), "--config", str(toml),
                 *KILL_ARGS]) == 0
    fresh = ["moons", "--out", str(run), "--config", str(toml), *KILL_ARGS]
    rng = random.Random(99)
    signals = [signal.SIGINT, signal.SIGTERM] * 3
    for i, sig in enumerate(signals):
        proc = launch(fresh + ["--resume"] * (i > 0))  # the same command, --resume appended
        lines = wait_for_training(proc)
        assert lines and lines[-1].startswith("training "), lines
        target = STEPS * (i + 1) // (len(signals) + 1) + rng.randrange(7)
        poll(lambda t=target: checkpoint_step(run) >= t, proc)
        time.sleep(rng.uniform(0.0, 0.02))  # a random moment within a step or a write
        assert proc.poll() is None, "the run ended before it was interrupted"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130
        assert proc.stderr.read().startswith("ddpmlab: interrupted")
        proc.stderr.close()
        assert temps(run) == []
    assert main(["train", *fresh, "--resume"]) == 0
    assert_same_run(reference, run, steps=STEPS)


# --- the command that started the run, --resume appended --------------------------------

def _small_run(tmp_path: Path) -> tuple[list[str], Path]:
    """A 30-step run and the command line that made it."""
    toml = tmp_path / "data.toml"
    toml.write_text(DATA_TOML)
    run = tmp_path / "run"
    argv = ["train", "moons", "--out", str(run), "--config", str(toml), "--steps", "30",
            "--timesteps", "20", "--hidden", "16", "--batch-size", "64", "--seed", "3",
            "--quiet", "--no-figures", "--no-eval"]
    assert main(argv) == 0
    return argv, run


def test_resume_accepts_the_flags_of_the_command_that_started_the_run(tmp_path: Path) -> None:
    argv, run = _small_run(tmp_path)
    assert main([*argv, "--resume", "--steps", "40"]) == 0  # every flag as saved, steps more
    assert checkpoint.load(run / CKPT).step == 40
    config = json.loads((run / CONFIG).read_text())
    assert config["train"]["steps"] == 40 and config["train"]["seed"] == 3


@pytest.mark.parametrize("change, expect", [
    (["--seed", "4"], "--seed differs from the run's train.seed = 3"),
    (["--hidden", "32"], "--width differs from the run's model.resmlp.hidden = 16"),
    (["circles"], "DATA 'circles' differs from the run's data.source = 'moons'"),
    (["--lr", "0.01"], "--lr differs from the run's train.lr = 0.004"),
])
def test_resume_refuses_a_setting_that_contradicts_the_run(change: list[str], expect: str,
                                                           tmp_path: Path, capsys) -> None:
    argv, run = _small_run(tmp_path)
    before = contents(run)
    capsys.readouterr()
    if change == ["circles"]:
        argv = [a if a != "moons" else "circles" for a in argv]
        change = []
    assert main([*argv, *change, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddpmlab: error:") and expect in err and "\n" not in err, err
    assert contents(run) == before


def test_resume_refuses_a_config_file_that_contradicts_the_run(tmp_path: Path, capsys) -> None:
    argv, _ = _small_run(tmp_path)
    capsys.readouterr()
    (tmp_path / "data.toml").write_text(DATA_TOML.replace("600", "700"))
    assert main([*argv, "--resume"]) == 2
    assert "(data.n_train) differs from the run's data.n_train = 600" in capsys.readouterr().err


def test_resume_honours_steps_edited_in_config_json_and_refuses_other_edits(
        tmp_path: Path, capsys) -> None:
    _, run = _small_run(tmp_path)
    capsys.readouterr()
    config = json.loads((run / CONFIG).read_text())
    write_json(run / CONFIG, {**config, "train": {**config["train"], "lr": 0.1}})
    assert main(["train", "--resume", "--out", str(run), "--quiet"]) == 2
    assert "sets train.lr = 0.1 but the run was trained with 0.004" in capsys.readouterr().err
    write_json(run / CONFIG, {**config, "train": {**config["train"], "steps": 45}})
    assert main(["train", "--resume", "--out", str(run), "--quiet", "--no-eval",
                 "--no-figures"]) == 0
    assert checkpoint.load(run / CKPT).step == 45
    assert "from step 30 to 45" in capsys.readouterr().err


# --- two processes on one run -----------------------------------------------------------

def test_a_second_process_on_a_run_in_use_is_refused_and_a_kill_frees_it(
        tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    proc = training_past_step_50(run, steps=100_000)
    for argv in (["train", "--resume", "--out", str(run), "--quiet"], ["figures", str(run)],
                 ["evaluate", str(run), "--n", "50"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "is in use by another ddpmlab process" in err and "\n" not in err, err
    assert not (run / "figures").exists() and not (run / "metrics.json").exists()
    proc.send_signal(signal.SIGKILL)  # the kernel drops a dead process's lock
    assert proc.wait(timeout=60) == -signal.SIGKILL
    proc.stderr.close()
    steps = checkpoint_step(run) + 10
    assert main(["train", "--resume", "--out", str(run), "--steps", str(steps), "--quiet",
                 "--no-eval", "--no-figures"]) == 0
    assert checkpoint.load(run / CKPT).step == steps


# --- safe loading -----------------------------------------------------------------------

def _write_bad_checkpoint(kind: str, good: Path, path: Path, marker: Path) -> None:
    if kind == "pickle":
        class Evil:
            def __reduce__(self):
                return (Path.touch, (marker,))

        torch.save({"model": Evil()}, path)
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "other_model":  # tensors of a hidden=32 network, config says hidden=16
        ckpt = checkpoint.load(good)
        wide = replace(ckpt.config, {"model": {"resmlp": {"hidden": 32}}})
        bad = Trainer(wide, torch.randn(50, 2)).to_checkpoint(ckpt.meta)
        bad.config = ckpt.config
        checkpoint.save(path, bad)
    elif kind == "version":
        with safe_open(good, "pt") as f:
            metadata = f.metadata()
        save_file(load_file(good), path, metadata={**metadata, "version": "999"})
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind, expect", [
    ("pickle", "is not a ddpmlab checkpoint (not a safetensors file, or truncated)"),
    ("truncated", "is damaged"),
    ("other_model", "does not match its configuration (size mismatch for "),
    ("version", "has checkpoint format version 999; this ddpmlab reads version 1"),
])
def test_unsafe_or_foreign_checkpoints_are_refused_with_one_line(
        kind: str, expect: str, tiny_run: Path, tmp_path: Path, capsys) -> None:
    run, marker = tmp_path / "run", tmp_path / "pwned"
    run.mkdir()
    for name in (CONFIG, DATA):
        shutil.copy(tiny_run / name, run / name)
    _write_bad_checkpoint(kind, tiny_run / CKPT, run / CKPT, marker)
    with pytest.raises(UserError, match=re.escape(expect)):
        open_run(run)
    before = contents(tmp_path)
    commands = [["evaluate", str(run)], ["sample", str(run), "--out", str(tmp_path / "x.npy")],
                ["train", "--resume", "--out", str(run), "--quiet", "--no-figures"]]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("ddpmlab: error: ") and expect in err, err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert contents(tmp_path) == before  # nothing written, nothing damaged
    assert not marker.exists()  # the pickle never ran
