"""Each CLI command end to end on a tiny run, and every bad input: one line, exit status 2."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY, contents
from PIL import Image

import ddpmlab
from ddpmlab import checkpoint
from ddpmlab.cli import main
from ddpmlab.cli.parser import build_parser
from ddpmlab.config import replace
from ddpmlab.metrics import METRICS
from ddpmlab.train import Trainer

FIGURES = ["data.png", "forward.png", "training.png", "reverse_begin.png", "reverse_middle.png",
           "reverse_end.png", "samples.png", "loss.png", "reverse.gif", "score.png"]


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


def test_evaluate_prints_the_table_with_floors(tiny_copy: Path, capsys) -> None:
    assert main(["evaluate", str(tiny_copy), "--n", "100"]) == 0
    out = capsys.readouterr().out
    for name in METRICS:
        assert name in out
    assert "n = 100" in out
    assert json.loads((tiny_copy / "metrics.json").read_text())["n"] == 100


def test_figures_and_animate_remake_files(tiny_copy: Path, tmp_path: Path) -> None:
    (tiny_copy / "figures" / "forward.png").unlink()
    assert main(["figures", str(tiny_copy)]) == 0
    assert (tiny_copy / "figures" / "forward.png").is_file()
    gif = tmp_path / "chain.gif"
    assert main(["animate", str(tiny_copy), "--n", "100", "--out", str(gif)]) == 0
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


def _copy_run(tiny_run: Path, to: Path, skip: str = "") -> Path:
    """The files of tiny_run a command reads (figures aside), less ``skip``."""
    to.mkdir()
    for name in ("config.json", "data.npz", "checkpoint.safetensors", "loss.csv"):
        if name != skip:
            shutil.copy(tiny_run / name, to / name)
    return to


def _other_runs_checkpoint(tiny_run: Path, path: Path) -> None:
    """A checkpoint as another run with hidden=32 would write it (self-consistent)."""
    ckpt = checkpoint.load(tiny_run / "checkpoint.safetensors")
    wide = replace(ckpt.config, {"model": {"resmlp": {"hidden": 32}}})
    checkpoint.save(path, Trainer(wide, torch.randn(50, 2)).to_checkpoint(ckpt.meta))


TOMLS = {
    "toml_key": "[train]\nstepz = 3\n",
    "toml_section": "[training]\nsteps = 3\n",
    "toml_type": '[train]\nsteps = "3"\n',
    "toml_float": "[model.resmlp]\nhidden = 16.5\n",
    "toml_T1": "[diffusion]\ntimesteps = 1\n",
    "toml_batch0": "[train]\nbatch_size = 0\n",
}


def _argv(case: str, tmp: Path, tiny_run: Path) -> list[str]:
    """Set up the files of ``case`` and return its command line."""
    out = ["--out", str(tmp / "run"), "--quiet", "--no-figures"]
    if case in TOMLS:
        (tmp / "c.toml").write_text(TOMLS[case])
        return ["train", "moons", "--config", str(tmp / "c.toml"), *out]
    flags = {"steps0": ["--steps", "0"], "steps-": ["--steps", "-5"],
             "batch0": ["--batch-size", "0"], "batch-": ["--batch-size", "-64"],
             "hidden0": ["--hidden", "0"], "hidden-": ["--hidden", "-16"],
             "timesteps0": ["--timesteps", "0"], "timesteps-": ["--timesteps", "-20"],
             "T1": ["--timesteps", "1"], "checkpoint_every-": ["--checkpoint-every", "-1"],
             "model": ["--model", "transformer"], "schedule": ["--schedule", "quadratic"]}
    if case in flags:
        return ["train", "moons", *flags[case], *out]
    if case == "out_is_file":
        (tmp / "file").write_text("mine")
        return ["train", "moons", "--out", str(tmp / "file"), "--quiet", "--no-figures"]
    if case == "sample_out_folder":
        (tmp / "x.npy").mkdir()
        return ["sample", str(tiny_run), "--out", str(tmp / "x.npy")]
    if case == "sample_out_readonly":
        (tmp / "ro").mkdir(mode=0o555)
        if os.geteuid() == 0 and _chattr("+i", tmp / "ro") != 0:  # root ignores the mode
            pytest.skip("root writes into read-only folders and chattr +i is not available")
        return ["sample", str(tiny_run), "--out", str(tmp / "ro" / "x.npy")]
    if case in ("run_no_data", "resume_no_data"):
        run = _copy_run(tiny_run, tmp / "copy", skip="data.npz")
    elif case in ("run_foreign_ckpt", "resume_foreign_ckpt", "resume_flag"):
        run = _copy_run(tiny_run, tmp / "copy")
        if case != "resume_flag":
            _other_runs_checkpoint(tiny_run, run / "checkpoint.safetensors")
    if case.startswith("run_"):
        return ["evaluate", str(run)]
    if case == "resume_flag":
        return ["train", "--resume", "--out", str(run), "--hidden", "32", "--quiet"]
    if case.startswith("resume_"):
        if case == "resume_nothing":
            (run := tmp / "empty").mkdir()
        return ["train", "--resume", "--out", str(run), "--quiet", "--no-figures"]
    files = _bad_files(tmp)
    return {
        "missing": ["train", str(tmp / "nope.csv"), *out],
        "dataset": ["train", "swiss_rol", *out],
        "notarun": ["evaluate", str(tmp)],
        "norun": ["figures", str(tmp / "nothing")],
        "sample_suffix": ["sample", str(tiny_run), "--out", str(tmp / "x.json")],
        "sample_out_missing": ["sample", str(tiny_run), "--out",
                               str(tmp / "missing" / "dir" / "x.npy")],
        "animate_out_missing": ["animate", str(tiny_run), "--n", "10", "--out",
                                str(tmp / "missing" / "dir" / "x.gif")],
    }.get(case) or ["train", str(files[case]), *out]


def _chattr(flag: str, path: Path) -> int:
    """chattr's exit status (an immutable folder refuses writes even from root), or -1."""
    if shutil.which("chattr") is None:
        return -1
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode


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
    ("toml_key", "unknown setting train.stepz; valid in [train]: steps, "),
    ("toml_section", "unknown setting training; valid sections: data, diffusion, model, train"),
    ("toml_type", "train.steps must be int, not str '3'"),
    ("toml_float", "model.resmlp.hidden must be int, not float 16.5"),
    ("toml_T1", "diffusion.timesteps must be at least 2"),
    ("toml_batch0", "train.batch_size must be at least 2"),
    ("batch0", "train.batch_size must be at least 2"),
    ("batch-", "train.batch_size must be at least 2"),
    ("hidden0", "model.resmlp.hidden must be positive"),
    ("hidden-", "model.resmlp.hidden must be positive"),
    ("timesteps0", "diffusion.timesteps must be at least 2"),
    ("timesteps-", "diffusion.timesteps must be at least 2"),
    ("T1", "diffusion.timesteps must be at least 2"),
    ("checkpoint_every-", "train.checkpoint_every must be >= 0"),
    ("out_is_file", "is a file, not a run directory; choose another --out"),
    ("sample_out_missing", "does not exist; create it first"),
    ("sample_out_folder", "is a folder; give a file name"),
    ("sample_out_readonly", "Permission denied" if os.geteuid() else "Operation not permitted"),
    ("animate_out_missing", "does not exist; create it first"),
    ("run_no_data", "data.npz is missing"),
    ("run_foreign_ckpt", "does not belong to this run: its model.resmlp.hidden is 32 but"),
    ("resume_no_data", "data.npz is missing"),
    ("resume_foreign_ckpt", "does not belong to this run: its model.resmlp.hidden is 32 but"),
    ("resume_nothing", "nothing to resume in"),
    ("resume_flag", "only --steps and --checkpoint-every may change"),
])
def test_bad_input_gets_one_line_and_exit_2(case: str, expect: str, tmp_path: Path,
                                            tiny_run: Path, capsys) -> None:
    argv = _argv(case, tmp_path, tiny_run)
    before = contents(tmp_path, tiny_run)
    try:
        assert main(argv) == 2
    finally:
        if (tmp_path / "ro").is_dir():
            if os.geteuid() == 0:
                _chattr("-i", tmp_path / "ro")
            (tmp_path / "ro").chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddpmlab: error:") and expect in err, err
    assert "\n" not in err and "Traceback" not in err and ".tmp" not in err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert contents(tmp_path, tiny_run) == before  # nothing written before is damaged


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


def test_the_gifs_last_frame_is_the_runs_sample(tiny_run: Path, tmp_path: Path) -> None:
    # make_figures draws samples.png from the GIF's end instead of sampling the chain again
    from ddpmlab.reports import report_for
    run = ddpmlab.open_run(tiny_run)
    _, end = report_for(run).animate(50, 3, tmp_path / "a.gif")
    np.testing.assert_array_equal(end, run.sample(50, 3))


def test_score_calls_meanwhile_once_and_gives_the_same_numbers(tiny_run: Path) -> None:
    calls = []
    plain = ddpmlab.score(ddpmlab.open_run(tiny_run), n=40, repeats=2).metrics
    beside = ddpmlab.score(ddpmlab.open_run(tiny_run), n=40, repeats=2,
                           meanwhile=lambda: calls.append(1)).metrics
    assert calls == [1] and beside == plain


# --- nothing a user made is overwritten -------------------------------------------------

@pytest.mark.parametrize("command, name", [
    ("sample", "heart.csv"), ("sample", "points.npy"), ("animate", "chain.gif")])
def test_an_existing_output_file_is_refused_unless_force(command: str, name: str,
                                                         tiny_run: Path, tmp_path: Path,
                                                         capsys) -> None:
    target = tmp_path / name
    target.write_bytes(b"the user's own file")
    argv = [command, str(tiny_run), "--n", "10", "--out", str(target)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{target} exists; choose another --out, or add --force to replace it" in err
    assert "\n" not in err and target.read_bytes() == b"the user's own file"
    assert main([*argv, "--force"]) == 0
    assert target.read_bytes() != b"the user's own file"


@pytest.mark.parametrize("name", ["victim.csv", "x.png", "y.mp4"])
def test_animate_writes_only_gif_files(name: str, tiny_run: Path, tmp_path: Path,
                                       capsys) -> None:
    target = tmp_path / name
    assert main(["animate", str(tiny_run), "--n", "10", "--out", str(target), "--force"]) == 2
    assert "--out must end in .gif" in capsys.readouterr().err
    assert not target.exists()


def test_train_refuses_a_folder_that_is_not_a_run_unless_force(tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    argv = ["train", "moons", "--out", str(out), *TINY, "--steps", "2", "--no-figures"]
    assert main(argv) == 2
    assert ("is a folder that is not a ddpmlab run (it holds notes.txt); choose another --out,"
            " or add --force" in capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "checkpoint.safetensors").is_file()


# --- argparse, seeds, options -----------------------------------------------------------

def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("ddpmlab 0.")


@pytest.mark.parametrize("argv, expect", [
    (["sample", "RUN", "--n", "1e3", "--out", "x.npy"],
     "argument --n/--number: invalid int value: '1e3'"),
    (["sample", "RUN"], "the following arguments are required: --out"),
    (["train", "moons", "--stepz", "3"], "unrecognized arguments: --stepz"),
    (["sample", "RUN", "--out", "x.npy", "--sampler", "rk4"], "invalid choice: 'rk4'"),
    ([], "the following arguments are required: COMMAND"),
    (["sample", "RUN", "--out", "x.npy", "--seed", "-1"], "invalid seed -1: seeds are integers"),
    (["train", "moons", "--seed", "-1"], "invalid seed -1: seeds are integers"),
    (["evaluate", "RUN", "--seed", "x"], "invalid seed 'x': give an integer"),
])
def test_argument_errors_are_one_line_and_exit_2(argv: list[str], expect: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ddpmlab: error:") and expect in err and err.count("\n") == 1, err


def test_a_seed_in_a_config_file_follows_the_same_rule(tmp_path: Path, capsys) -> None:
    (tmp_path / "c.toml").write_text("[train]\nseed = -1\n")
    assert main(["train", "moons", "--config", str(tmp_path / "c.toml"), "--quiet"]) == 2
    assert "train.seed must be an integer from 0 to 2**63 - 1" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["sample", "{run}", "--out", "{tmp}/x.npy", "--eta", "0.5"],
                                  ["evaluate", "{run}", "--eta", "1"],
                                  ["sweep", "{run}", "--samplers", "ddpm", "--eta", "1"]])
def test_eta_without_ddim_is_refused(argv: list[str], tiny_run: Path, tmp_path: Path,
                                     capsys) -> None:
    argv = [a.format(run=tiny_run, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    assert "--eta applies to --sampler ddim only" in capsys.readouterr().err
    assert not (tmp_path / "x.npy").exists()


def test_a_file_given_as_run_is_named_as_such(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert main(["figures", str(tmp_path / "notes.txt")]) == 2
    assert "notes.txt is a file, not a run directory" in capsys.readouterr().err


def test_readme_usage_block_matches_the_parser() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("## Command line\n\n```text\n", 1)[1].split("```", 1)[0]
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    expected = [" ".join(p.format_usage().split()[1:]) for p in sub.choices.values()]
    got = [" ".join(cmd.split()) for cmd in re.split(r"\n(?=ddpmlab )", block.strip())]
    assert got == expected


# --- feedback ---------------------------------------------------------------------------

def test_long_phases_say_what_they_do_and_quiet_silences_them(tiny_copy: Path, tmp_path: Path,
                                                              capsys) -> None:
    assert main(["evaluate", str(tiny_copy), "--n", "50", "--repeats", "1"]) == 0
    err = capsys.readouterr().err
    assert "ddpmlab: evaluating: 1 draw of 50 samples (ddpm, 20 steps)" in err
    assert "ddpmlab: computing the metrics" in err
    assert "\r" not in err  # not a terminal: status lines, no bar redrawn in place
    assert main(["sample", str(tiny_copy), "--n", "20", "--out", str(tmp_path / "s.npy")]) == 0
    assert "ddpmlab: sampling 20 points" in capsys.readouterr().err
    assert main(["figures", str(tiny_copy), "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_no_eval_skips_the_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "moons", "--out", str(out), *TINY, "--no-eval"]) == 0
    assert not (out / "metrics.json").exists() and (out / "figures" / "samples.png").is_file()
