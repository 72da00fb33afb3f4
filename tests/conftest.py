"""Shared fixtures: one thread (the suite's runtimes are measured that way) and tiny runs."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

# A run small enough to train, sample, evaluate and draw in a few seconds.
TINY = ["--steps", "40", "--timesteps", "20", "--hidden", "16", "--batch-size", "64",
        "--quiet"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """A trained tiny run directory (shared by the read-only tests)."""
    from ddpmlab.cli import main

    out = tmp_path_factory.mktemp("runs") / "tiny"
    config = out.parent / "tiny.toml"
    config.write_text("[data]\nn_train = 600\nheldout = 400\n")
    assert main(["train", "moons", "--out", str(out), "--config", str(config), *TINY]) == 0
    return out
