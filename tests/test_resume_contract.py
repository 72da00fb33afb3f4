"""The resume contract: a run stopped part-way (Ctrl-C between two steps) and resumed with
``--resume`` ends as the uninterrupted run, bit for bit: every checkpoint tensor, the
losses, the snapshots, the files and the samples (``helpers.assert_same_run``).

One case per kind of run whose training state differs: each modality, the two gradient
backends (hand-derived for the point MLPs, autograd for a learned variance and the
U-Nets), labels with dropped classes, the stable target field on and off, each target and
reverse variance, each training objective (DDPM, flow matching), and the Python API beside
the command line. Killed runs (SIGKILL, a lost
process) are tests/test_reliability.py's and tests/test_distributed.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import DATA_TOML, assert_same_run, checkpoint_step, ctrl_c_after, small_config

import ddpmlab
from ddpmlab.cli import main

STEPS, STOP = 20, 12  # the run's steps; the interrupt comes after step STOP
COMMON = ["--steps", str(STEPS), "--timesteps", "10", "--checkpoint-every", "5", "--quiet",
          "--no-eval", "--no-figures"]
POINTS = ["--width", "16", "--batch-size", "64"]
IMAGES = ["--width", "8", "--batch-size", "32"]

#: name -> the DATA and flags of `ddpmlab train`
CASES = {
    # the defaults of points: v target, stable target field, hand-derived gradients
    "points": ["moons", *POINTS],
    # the source text's MLP on its own target, without the stable target field
    "points-seed-mlp-eps": ["moons", *POINTS, "--model", "seed_mlp", "--prediction", "eps",
                            "--stable-target", "0"],
    # x0 target, sigma^2 = beta, t and T-1-t drawn together (the config file sets the rest)
    "points-x0-fixed-large-antithetic": ["circles", *POINTS, "--prediction", "x0",
                                         "--variance", "fixed_large", "--config", "{x0}"],
    # the hybrid loss through autograd
    "points-learned-variance": ["moons", *POINTS, "--variance", "learned_range"],
    # labels, dropped classes, classes within the stable target (learned variance by default)
    "points-conditional": ["gaussians8", *POINTS, "--conditional"],
    # the U-Net on digits: eps target, dropout, clipping
    "images": ["digits", *IMAGES],
    "images-conditional": ["digits", *IMAGES, "--conditional"],
    # flow matching: the velocity target on the flow's stable target field, hand-derived
    "points-flow": ["moons", *POINTS, "--objective", "flow"],
    # flow matching with labels (no learned variance: a flow has none)
    "points-flow-conditional": ["gaussians8", *POINTS, "--conditional", "--objective", "flow"],
    # flow matching on the U-Net through autograd, with clipping
    "images-flow": ["digits", *IMAGES, "--objective", "flow"],
}


def _argv(case: str, tmp_path: Path) -> list[str]:
    data = tmp_path / "data.toml"
    data.write_text(DATA_TOML)
    x0 = tmp_path / "x0.toml"
    x0.write_text(DATA_TOML + "[diffusion]\nantithetic = true\n")
    args = [a.format(x0=x0) for a in CASES[case]]
    if args[0] != "digits" and "--config" not in args:
        args += ["--config", str(data)]
    return [*args, *COMMON]


@pytest.mark.parametrize("case", CASES)
def test_a_run_interrupted_and_resumed_is_the_uninterrupted_run(case: str,
                                                                tmp_path: Path) -> None:
    argv = _argv(case, tmp_path)
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main(["train", *argv, "--out", str(straight)]) == 0
    with ctrl_c_after(STOP):
        assert main(["train", *argv, "--out", str(stopped)]) == 130  # Ctrl-C's exit status
    assert checkpoint_step(stopped) == STOP  # the interrupt saved the step it ended
    assert main(["train", *argv, "--out", str(stopped), "--resume"]) == 0  # the same command
    assert_same_run(straight, stopped, steps=STEPS)


def test_the_api_resumes_as_the_command_line_does(tmp_path: Path) -> None:
    """``train_run(..., resume=True)``: the same contract through the Python API."""
    config = small_config()
    straight = ddpmlab.train_run(config, tmp_path / "straight", progress=False, figures=False,
                                 evaluate=False)
    with ctrl_c_after(13), pytest.raises(KeyboardInterrupt):
        ddpmlab.train_run(config, tmp_path / "stopped", progress=False, figures=False,
                          evaluate=False)
    assert checkpoint_step(tmp_path / "stopped") == 13
    resumed = ddpmlab.train_run(config, tmp_path / "stopped", resume=True, progress=False,
                                figures=False, evaluate=False)
    assert resumed.step == straight.step == config.train.steps
    assert_same_run(straight.path, resumed.path, steps=config.train.steps)
