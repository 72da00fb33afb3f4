"""What a new user met: images of their own, timings, runs in use, messages, help and figures
that explain themselves; one test (or more) per finding."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY, contents
from PIL import Image

from ddpmlab import checkpoint, viz
from ddpmlab.cli import main
from ddpmlab.cli.parser import build_parser
from ddpmlab.data.images import ImageSet
from ddpmlab.metrics.image_evaluator import ImageEvaluator
from ddpmlab.metrics.images import format_image_table
from ddpmlab.metrics.point_evaluator import PointEvaluator
from ddpmlab.modalities import default_config
from ddpmlab.runs.run import open_run
from ddpmlab.viz import points as viz_points
from ddpmlab.viz import score as viz_score

OLD = Path(__file__).parent / "data" / "runs_0.1.0"


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


# --- your own images --------------------------------------------------------------------


def test_a_small_folder_is_scored_on_what_its_held_out_images_support() -> None:
    held = np.zeros((40, 1, 16, 16), np.float32)
    data = ImageSet(name="folder", train=np.zeros((160, 1, 16, 16), np.float32), heldout=held,
                    levels=256, train_labels=None, heldout_labels=None, classes=None)
    n, repeats = ImageEvaluator(data, default_config("digits")).eval_size
    assert (n, n * repeats) == (20, 200)  # five samples per held-out image, not 1,000
    big = ImageSet(name="digits", train=held, heldout=np.zeros((500, 1, 8, 8), np.float32),
                   levels=17, train_labels=None, heldout_labels=None, classes=None)
    assert ImageEvaluator(big, default_config("digits")).eval_size == (250, 4)


def test_sampling_moves_a_bar_over_the_samples(tiny_run: Path) -> None:
    class Counter:
        n = 0

        def update(self, k: int = 1) -> None:
            self.n += k

    bar = Counter()
    open_run(tiny_run).sample(37, 0, "ddim", bar=bar)  # type: ignore[arg-type]
    assert bar.n == 37


def test_a_png_grid_is_upscaled_as_the_figures_and_says_what_it_holds(tmp_path: Path,
                                                                       capsys) -> None:
    out = tmp_path / "grid.png"
    assert main(["sample", str(OLD / "images"), "--n", "4", "--out", str(out), "--quiet"]) == 0
    image = Image.open(out)
    assert image.size == (5 * 17, 5 * 17)  # 2 x 2 images of 8 x 8 with a 1-pixel gap, x 5
    assert image.text["ddpmlab-step"] == "4 of 4" and image.text["ddpmlab-seed"] == "0"


# --- timings the user can trust -------------------------------------------------------


def test_sweep_seconds_count_the_sampling_not_the_metrics(tiny_copy: Path, monkeypatch,
                                                         capsys) -> None:
    slow = PointEvaluator.evaluate

    def evaluate(self, samples, real, floor):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        return slow(self, samples, real, floor)

    monkeypatch.setattr(PointEvaluator, "evaluate", evaluate)
    assert main(["sweep", str(tiny_copy), "--n", "100", "--steps", "5", "--samplers", "ddim",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = json.loads((tiny_copy / "sweep.json").read_text())["rows"]
    assert rows[0]["seconds"] < 0.5
    assert "after a warm-up of every sampler (the metrics are not counted)" in out


# --- runs in use, finished or incomplete ------------------------------------------------


def test_sample_says_which_step_of_how_many_it_samples(tmp_path: Path, capsys) -> None:
    run = Path(shutil.copytree(OLD / "points", tmp_path / "run"))
    ckpt = checkpoint.load(run / "checkpoint.safetensors")
    checkpoint.save(run / "checkpoint.safetensors", dataclasses.replace(ckpt, step=20))
    assert main(["sample", str(run), "--n", "5", "--out", str(tmp_path / "x.csv"),
                 "--quiet"]) == 0
    assert "has trained 20 of its 40 steps" in capsys.readouterr().err


def _without_checkpoint(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(OLD / "points" / "config.json", run)
    return run


@pytest.mark.parametrize("command", ["figures", "evaluate", "animate", "sweep"])
def test_a_run_before_its_first_checkpoint_gets_one_answer(command, tmp_path: Path,
                                                           capsys) -> None:
    run = _without_checkpoint(tmp_path)
    assert main([command, str(run), "--quiet"]) == 2
    assert _error(capsys) == (f"ddpmlab: error: {run} has no checkpoint: its training stopped "
                              f"before the first one; continue it with `ddpmlab train --out "
                              f"{run} --resume`")
    holder = subprocess.Popen(  # a training in progress holds the run's lock
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
         "time.sleep(60)", str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert main([command, str(run), "--quiet"]) == 2
        assert "is in use by another ddpmlab process" in _error(capsys)
    finally:
        holder.kill()
        holder.wait()


def test_resume_on_a_complete_run_changes_nothing(tmp_path: Path, capsys) -> None:
    run = Path(shutil.copytree(OLD / "points", tmp_path / "run"))
    before = contents(run)
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert "is complete: it has trained 40 of 40 steps; nothing to do" in capsys.readouterr().err
    assert contents(run) == before


def test_a_run_without_its_config_is_refused(tmp_path: Path, capsys) -> None:
    run = Path(shutil.copytree(OLD / "points", tmp_path / "run"))
    (run / "config.json").unlink()
    assert main(["evaluate", str(run), "--n", "50", "--quiet"]) == 2
    assert "config.json is missing: the run is damaged" in _error(capsys)
    assert not (run / "metrics.json").exists()


def test_the_docs_say_a_runs_own_figures_are_redrawn_freely() -> None:
    page = Path(__file__).parents[1] / "docs" / "reference" / "formats.md"
    assert "A run's own figures (RUN/figures/) are derived files" in " ".join(
        page.read_text().split())


# --- messages, help and flags -------------------------------------------------------------


def test_a_csv_with_a_label_column_names_the_flag(tmp_path: Path, capsys) -> None:
    data = tmp_path / "pts.csv"
    rows = "".join(f"{i * 0.1:.2f},{i * 0.2:.2f},{i % 2}\n" for i in range(40))
    data.write_text("x,y,kind\n" + rows)
    assert main(["train", str(data), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert _error(capsys).endswith("if a column holds each point's class, name it with "
                                   "--label-column kind (and add --conditional to learn each "
                                   "class)")


def test_an_abbreviated_flag_is_refused_and_every_spelling_works(tmp_path: Path,
                                                                 capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "moons", "--step", "10", "--out", str(tmp_path / "a")])
    assert exit_.value.code == 2 and "unrecognized arguments: --step" in _error(capsys)
    args = build_parser().parse_args(["train", "moons", "--hidden", "8"])
    assert args.width == 8
    args = build_parser().parse_args(["sample", "R", "--number", "7", "--out", "x.npy"])
    assert args.n == 7


def test_help_shows_each_default_for_points_and_images(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(, for points)" not in text
    assert "--label-column COL class column of a .csv/.txt file of points: a header name or " \
           "a 0-based index (default: none)" in text
    assert "(default: 4000 for points; 1000 for digits and image folders; 3000 for mnist)" in text
    assert "--conditional, --no-conditional" in text
    assert "(default: off for points and image folders; on for digits and mnist)" in text
    with pytest.raises(SystemExit):
        build_parser().parse_args(["figures", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: 1; classes.png shows guidance at work, where sample and evaluate " \
           "default to 0" in text


def test_an_upper_case_suffix_is_a_suffix(tmp_path: Path) -> None:
    out = tmp_path / "x.NPY"
    assert main(["sample", str(OLD / "points"), "--n", "6", "--out", str(out),
                 "--quiet"]) == 0
    assert np.load(out).shape == (6, 2) and not (tmp_path / "x.NPY.npy").exists()


def test_the_per_class_table_says_what_n_is(tmp_path: Path, capsys) -> None:
    run = tmp_path / "cond"
    assert main(["train", "moons", "--conditional", "--out", str(run), "--no-eval",
                 "--no-figures", *TINY]) == 0
    assert main(["evaluate", str(run), "--n", "60", "--repeats", "1", "--n-class", "30",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "per class, guidance w = 0: 12 independent sets of 30 samples of each class" in out
    assert "n: the items of each set scored, samples and real data alike" in out


# --- figures a student reads without the code ---------------------------------------------


def _figures_of(run: Path, monkeypatch) -> dict[str, object]:
    """The Figure objects ``figures`` draws, by file name (the write is skipped)."""
    drawn: dict[str, object] = {}

    def keep(fig, path):  # type: ignore[no-untyped-def]
        drawn[Path(path).name] = fig
        return Path(path)

    for module in (viz_points, viz_score, viz.common):
        monkeypatch.setattr(module, "_save", keep)
    assert main(["figures", str(run), "--quiet"]) == 0
    return drawn


def test_the_point_figures_say_what_they_show(tiny_copy: Path, monkeypatch) -> None:
    drawn = _figures_of(tiny_copy, monkeypatch)
    training, forward, score = drawn["training.png"], drawn["forward.png"], drawn["score.png"]
    labels = [ax.get_ylabel() for ax in training.axes if ax.get_ylabel()]  # type: ignore[attr-defined]
    assert labels == [f"after {s}\ntraining steps" for s in (2, 20, 40)]
    assert "training steps (rows)" in training._suptitle.get_text()  # type: ignore[attr-defined]
    assert forward._suptitle.get_text().startswith("forward process q(x_t | x_0)")  # type: ignore[attr-defined]
    legend = score.legends[0]  # type: ignore[attr-defined]
    assert [t.get_text() for t in legend.get_texts()] == ["held-out data noised to this t"]
    assert "no exact row" in score._suptitle.get_text()  # type: ignore[attr-defined]


def test_the_image_table_explains_every_column_it_prints() -> None:
    row = {"value": 0.1, "floor": 0.2, "ratio": None}
    text = format_image_table({"kid_px": row, "1nna_px": row, "memorised": row}, 20, 10)
    notes = [line.strip() for line in text.splitlines() if line.startswith("  ")]
    assert [note.split(":")[0] for note in notes] == ["kid_px", "1nna_px", "memorised"]
    assert "floor: the share of held-out real images the same test flags" in notes[-1]
    assert "kid:" not in text  # no column the table does not print
