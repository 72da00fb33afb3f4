"""Each CLI command end to end on a tiny run, and every bad input: one line, exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from ddpmlab.cli import main
from ddpmlab.metrics import METRICS

FIGURES = ["data.png", "forward.png", "training.png", "reverse_begin.png", "reverse_middle.png",
           "reverse_end.png", "samples.png", "loss.png", "reverse.gif"]


def test_train_writes_a_complete_run(tiny_run: Path) -> None:
    for name in ["config.json", "data.npz", "checkpoint.safetensors", "loss.csv",
                 "snapshots.npz", "metrics.json"]:
        assert (tiny_run / name).is_file(), name
    for name in FIGURES:
        with Image.open(tiny_run / "figures" / name) as im:
            assert im.size[0] > 50, name
    saved = json.loads((tiny_run / "metrics.json").read_text())
    assert saved["n"] == 200  # half the 400 held-out points: the floor needs two real sets
    assert list(saved["metrics"]) == list(METRICS)
    for row in saved["metrics"].values():
        assert np.isfinite(row["value"]) and np.isfinite(row["floor"])
    loss = np.loadtxt(tiny_run / "loss.csv", delimiter=",", skiprows=1, ndmin=2)
    assert loss[-1, 0] == 40 and np.all(np.isfinite(loss[:, 1]))


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_sample_writes_points_and_same_seed_same_points(tiny_run: Path, tmp_path: Path,
                                                        suffix: str) -> None:
    paths = [tmp_path / f"{name}{suffix}" for name in ("a", "b", "c")]
    for path, seed in zip(paths, ["1", "1", "2"], strict=True):
        assert main(["sample", str(tiny_run), "--n", "50", "--out", str(path),
                     "--seed", seed]) == 0
    if suffix == ".npy":
        a, b, c = (np.load(p) for p in paths)
    else:
        a, b, c = (np.loadtxt(p, delimiter=",", skiprows=1) for p in paths)
    assert a.shape == (50, 2) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_evaluate_prints_the_table_with_floors(tiny_run: Path, capsys) -> None:
    assert main(["evaluate", str(tiny_run), "--n", "100"]) == 0
    out = capsys.readouterr().out
    for name in METRICS:
        assert name in out
    assert "n = 100" in out
    assert json.loads((tiny_run / "metrics.json").read_text())["n"] == 100


def test_figures_and_animate_remake_files(tiny_run: Path, tmp_path: Path) -> None:
    (tiny_run / "figures" / "forward.png").unlink()
    assert main(["figures", str(tiny_run)]) == 0
    assert (tiny_run / "figures" / "forward.png").is_file()
    gif = tmp_path / "chain.gif"
    assert main(["animate", str(tiny_run), "--n", "100", "--out", str(gif)]) == 0
    with Image.open(gif) as im:
        assert im.n_frames == 21  # x_20 .. x_0: every state of a 20-step chain


def test_seed_config_trains(tmp_path: Path) -> None:
    config = Path(__file__).parents[1] / "configs" / "seed.toml"
    out = tmp_path / "seed"
    assert main(["train", "--config", str(config), "--out", str(out), "--steps", "30",
                 "--quiet", "--no-figures"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["name"] == "seed_mlp" and saved["diffusion"]["timesteps"] == 150
    assert saved["train"]["steps"] == 30  # the flag wins over the file


def test_a_new_run_never_overwrites_an_old_one(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["train", "moons", *TINY, "--steps", "2", "--no-figures"]) == 0
    assert (tmp_path / "runs" / "moons").is_dir() and (tmp_path / "runs" / "moons-2").is_dir()
    before = (tmp_path / "runs" / "moons" / "checkpoint.safetensors").read_bytes()
    assert main(["train", "moons", "--out", "runs/moons", *TINY, "--no-figures"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "runs" / "moons" / "checkpoint.safetensors").read_bytes() == before


def _bad_files(tmp: Path) -> dict[str, Path]:
    files = {
        "empty": ("empty.csv", ""),
        "columns": ("three.csv", "1,2,3\n4,5,6\n" * 10),
        "nan": ("nan.csv", "1,2\n" * 10 + "nan,3\n"),
        "inf": ("inf.txt", "1 2\n" * 10 + "inf 3\n"),
        "text": ("text.csv", "x,y\n" + "1,2\n" * 10 + "1,two\n"),
    }
    out = {}
    for key, (name, content) in files.items():
        out[key] = tmp / name
        out[key].write_text(content)
    return out


@pytest.mark.parametrize("case, expect", [
    ("missing", "not found"),
    ("empty", "empty"),
    ("columns", "expected 2 columns"),
    ("nan", "non-finite"),
    ("inf", "non-finite"),
    ("text", "non-numeric"),
    ("dataset", "unknown dataset"),
    ("model", "unknown model"),
    ("schedule", "unknown schedule"),
    ("steps0", "steps must be positive"),
    ("steps-", "steps must be positive"),
    ("notarun", "not a ddpmlab run"),
    ("norun", "run directory not found"),
    ("sample_suffix", "must end in .npy or .csv"),
])
def test_bad_input_gets_one_line_and_exit_2(case: str, expect: str, tmp_path: Path,
                                            tiny_run: Path, capsys) -> None:
    files = _bad_files(tmp_path)
    out = ["--out", str(tmp_path / "run"), "--quiet", "--no-figures"]
    argv = {
        "missing": ["train", str(tmp_path / "nope.csv"), *out],
        "dataset": ["train", "swiss_rol", *out],
        "model": ["train", "moons", "--model", "transformer", *out],
        "schedule": ["train", "moons", "--schedule", "quadratic", *out],
        "steps0": ["train", "moons", "--steps", "0", *out],
        "steps-": ["train", "moons", "--steps", "-5", *out],
        "notarun": ["evaluate", str(tmp_path)],
        "norun": ["figures", str(tmp_path / "nothing")],
        "sample_suffix": ["sample", str(tiny_run), "--out", str(tmp_path / "x.json")],
    }.get(case) or ["train", str(files[case]), *out]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddpmlab: error:") and expect in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_console_script_exits_2_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ddpmlab.cli", "evaluate", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_help_everywhere() -> None:
    for command in ([], ["train"], ["sample"], ["evaluate"], ["figures"], ["animate"]):
        with pytest.raises(SystemExit) as e:
            main([*command, "--help"])
        assert e.value.code == 0
