"""ddpmlab works from an installed wheel, away from the checkout: the wheel is built from a copy
of the sources, installed into a fresh virtual environment (its dependencies taken from this
environment's site-packages, which holds them already), and its command and one tutorial are
run from a temporary folder where no file of the checkout is in reach."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from helpers import TUTORIAL, assert_figures

import ddpmlab

ROOT = Path(__file__).resolve().parents[1]


def run(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, f"{argv}: {done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh environment holding the wheel of these sources."""
    tmp = tmp_path_factory.mktemp("wheel")
    sources = tmp / "sources"  # a copy, so that building leaves no file in the checkout
    shutil.copytree(ROOT / "src", sources / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, sources / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
        "-w", tmp / "dist", sources, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("ddpmlab-*.whl")
    assert "ddpmlab/presets/seed.toml" in zipfile.ZipFile(wheel).namelist()
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel,
        cwd=tmp)
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                    cwd=tmp).stdout.strip())
    # the dependencies: this environment's site-packages, after the wheel's own
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin"


def test_the_wheel_trains_the_packaged_seed_config_and_samples(installed: Path,
                                                                tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run(installed / "python", "-c", "import ddpmlab; print(ddpmlab.__file__)",
                cwd=tmp_path, env=env).stdout
    assert where.startswith(str(installed.parent)), where  # the wheel, not the checkout
    version = run(installed / "ddpmlab", "--version", cwd=tmp_path, env=env).stdout
    assert version.split() == ["ddpmlab", "0.1.0"]
    run(installed / "ddpmlab", "train", "swiss_roll", "--config", "seed", "--steps", "50",
        "--out", "seed", "--no-figures", "--no-eval", "--quiet", cwd=tmp_path, env=env)
    run(installed / "ddpmlab", "sample", "seed", "--n", "100", "--out", "samples.csv",
        "--quiet", cwd=tmp_path, env=env)
    assert len((tmp_path / "samples.csv").read_text().splitlines()) >= 100


def test_a_tutorial_runs_from_any_folder(installed: Path, tmp_path: Path) -> None:
    script = shutil.copy(TUTORIAL / "course_en.py", tmp_path)  # as downloaded from the site
    env = {**{k: v for k, v in os.environ.items()
              if k not in ("PYTHONPATH", "DDPMLAB_TUTORIAL_OUT")}, "DDPMLAB_TUTORIAL_FAST": "1"}
    done = run(installed / "python", script, cwd=tmp_path, env=env)
    assert "whole tutorial:" in done.stdout  # it reached its last cell
    assert_figures(tmp_path / "tutorial_figures")


def test_the_version_is_said_alike_everywhere() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert ddpmlab.__version__ == version
    citation = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: {re.escape(version)}$", citation, re.MULTILINE)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d\d-\d\d$", changelog,
                     re.MULTILINE)
