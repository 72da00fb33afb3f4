"""The contract every modality and every training objective passes: train, sample, evaluate,
figures and animate through the command line, on a tiny run of each kind of data, trained as a
DDPM and by flow matching. (Resuming: test_resume_contract.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ddpmlab.cli import main
from ddpmlab.runs.evaluation import read_evaluation
from ddpmlab.runs.layout import METRICS

# Tiny runs: a few seconds each, the defaults' structure at a fraction of the size.
TINY = {
    "points": (["moons", "--width", "16", "--batch-size", "64"], (2,)),
    "images": (["digits", "--width", "8", "--batch-size", "32"], (1, 8, 8)),
    "points-flow": (["moons", "--width", "16", "--batch-size", "64", "--objective", "flow"],
                    (2,)),
    "images-flow": (["digits", "--width", "8", "--batch-size", "32", "--objective", "flow"],
                    (1, 8, 8)),
}
COMMON = ["--timesteps", "10", "--checkpoint-every", "5", "--quiet"]
FIGURES = ["data.png", "forward.png", "training.png", "reverse_begin.png", "reverse_middle.png",
           "reverse_end.png", "samples.png", "loss.png", "reverse.gif"]
HEADLINE = {"points": ("w1", "1nna"), "images": ("fd", "confident", "class_tv", "memorised")}


def train(kind: str, out: Path, steps: int) -> None:
    args, _ = TINY[kind]
    assert main(["train", *args, "--steps", str(steps), "--out", str(out), *COMMON]) == 0


@pytest.fixture(scope="module", params=list(TINY))
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[str, Path]:
    kind = request.param
    out = tmp_path_factory.mktemp(kind) / "run"
    train(kind, out, 20)
    return kind, out


def test_train_writes_the_run_its_metrics_and_every_figure(tiny: tuple[str, Path]) -> None:
    kind, out = tiny
    for name in ("config.json", "data.npz", "checkpoint.safetensors", "loss.csv",
                 "snapshots.npz", METRICS):
        assert (out / name).is_file(), name
    for name in FIGURES:
        assert (out / "figures" / name).stat().st_size > 0, name
    evaluation = read_evaluation(out)
    modality = kind.split("-")[0]
    assert evaluation.kind == modality
    for metric in HEADLINE[modality]:
        row = evaluation.metrics[metric]
        assert np.isfinite(row["value"]) and np.isfinite(row["floor"])


def test_the_same_seed_gives_the_same_samples(tiny: tuple[str, Path], tmp_path: Path) -> None:
    kind, out = tiny
    _, shape = TINY[kind]
    files = [tmp_path / f"{name}.npy" for name in ("a", "b", "c")]
    for path, seed in zip(files, ("4", "4", "5"), strict=True):
        assert main(["sample", str(out), "--n", "6", "--seed", seed, "--out", str(path),
                     "--quiet"]) == 0
    a, b, c = (np.load(p) for p in files)
    assert a.shape == (6, *shape) and np.isfinite(a).all()
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    if kind.startswith("images"):
        assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1


def test_evaluate_figures_and_animate_run_on_the_trained_run(tiny: tuple[str, Path],
                                                              tmp_path: Path) -> None:
    _, out = tiny
    assert main(["evaluate", str(out), "--n", "20", "--repeats", "1", "--quiet"]) == 0
    assert read_evaluation(out).n == 20
    assert main(["figures", str(out), "--quiet"]) == 0
    assert main(["animate", str(out), "--n", "9", "--out", str(tmp_path / "a.gif"),
                 "--quiet"]) == 0
    assert (tmp_path / "a.gif").read_bytes()[:6] == b"GIF89a"
