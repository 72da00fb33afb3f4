"""Runs written by ddpmlab 0.1.0 (tests/data/runs_0.1.0, made with that version's own code:
a point run and an image run, each with samples and a resumed continuation recorded then)
open, sample the same samples and resume to the same weights today."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from ddpmlab.cli import main
from ddpmlab.runs.run import open_run
from ddpmlab.samplers import SamplerSpec

OLD = Path(__file__).parent / "data" / "runs_0.1.0"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(OLD / "expected" / "samples.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize(("kind", "n", "requests"), [
    ("points", 64, {"ddpm": "ddpm", "ddim5": SamplerSpec("ddim", 5),
                    "dpm5": SamplerSpec("dpm_solver", 5)}),
    ("images", 4, {"ddpm": "ddpm", "ddim3": SamplerSpec("ddim", 3)}),
])
def test_an_old_run_samples_what_it_sampled_then(kind, n, requests, expected) -> None:
    run = open_run(OLD / kind)
    # a config saved without diffusion.objective is a DDPM's, sampled by default as then
    assert run.objective == "ddpm" and run.default_sampler == "ddpm"
    np.testing.assert_array_equal(run.sample(n, 3), expected[f"{kind}_ddpm"])
    for key, spec in requests.items():
        np.testing.assert_array_equal(run.sample(n, 3, spec), expected[f"{kind}_{key}"])


def _ema_digest(path: Path) -> str:
    h = hashlib.sha256()
    with safe_open(str(path), "pt") as f:
        for k in sorted(k for k in f.keys() if k.startswith("ema")):
            h.update(k.encode())
            h.update(f.get_tensor(k).numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize(("kind", "steps"), [("points", 60), ("images", 6)])
def test_an_old_run_resumes_to_the_weights_it_resumed_to_then(kind, steps, tmp_path) -> None:
    run = Path(shutil.copytree(OLD / kind, tmp_path / kind))
    assert main(["train", "--out", str(run), "--resume", "--steps", str(steps), "--quiet",
                 "--no-eval", "--no-figures"]) == 0
    want = json.loads((OLD / "expected" / "resumed_ema_sha256.json").read_text())
    assert _ema_digest(run / "checkpoint.safetensors") == want[kind]
    assert (run / "loss.csv").read_text() == \
        (OLD / "expected" / f"{kind}_resumed_loss.csv").read_text()
