"""The Python API as the README shows it: its snippet runs as written, paths may be str or
Path, and the results are documented objects."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import small_config

import ddpmlab

README = Path(__file__).parents[1] / "README.md"


def test_the_readme_python_snippet_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python snippet"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "1nna" in out and "floor" in out  # it prints the quality table


def test_paths_may_be_str_or_path_and_sample_defaults_to_seed_0(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    run = ddpmlab.train_run(small_config(), out, progress=False, figures=False, evaluate=False)
    assert run.path == Path(out) and not (Path(out) / "metrics.json").exists()
    again = ddpmlab.open_run(out)
    np.testing.assert_array_equal(again.sample(30), again.sample(30, seed=0))
    assert ddpmlab.animate(again, n=20, path=str(tmp_path / "a.gif")).is_file()
    assert ddpmlab.make_figures(again) == Path(out) / "figures"


def test_evaluate_run_returns_a_documented_dataclass(tiny_copy: Path) -> None:
    result = ddpmlab.evaluate_run(ddpmlab.open_run(tiny_copy), n=50, repeats=2)
    assert isinstance(result, ddpmlab.Evaluation)
    assert (result.n, result.repeats, result.seed) == (50, 2, 0)
    assert set(result.metrics["w1"]) >= {"value", "floor"}
    assert str(result).startswith("sample quality at n = 50 points per set, mean of 2 draws")


def test_a_new_run_refuses_someone_elses_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ddpmlab.UserError, match="not a ddpmlab run"):
        ddpmlab.train_run(small_config(), tmp_path, progress=False)
    assert os.listdir(tmp_path) == ["notes.txt"]
