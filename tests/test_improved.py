"""Improved DDPM end to end: learned variances, x0/v targets, DDIM and the sweep, the bound."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY
from PIL import Image

from ddpmlab.cli import main
from ddpmlab.diffusion import diffusion_loss
from ddpmlab.likelihood import hybrid_loss
from ddpmlab.schedules import make_schedule


class Constant(torch.nn.Module):
    """A denoiser returning a * 1 as its mean part and b * 1 as its variance part v."""

    def __init__(self, dim: int, learned: bool) -> None:
        super().__init__()
        self.dim, self.learned = dim, learned
        self.a = torch.nn.Parameter(torch.tensor(0.3))
        self.b = torch.nn.Parameter(torch.tensor(-0.2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mean = self.a * torch.ones_like(x)
        return torch.cat([mean, self.b * torch.ones_like(x)], 1) if self.learned else mean


def test_hybrid_loss_trains_the_variance_only_through_the_vlb_term() -> None:
    s = make_schedule("cosine", 50)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    learned, plain = Constant(2, True), Constant(2, False)
    hybrid = hybrid_loss(s, learned, x0, torch.Generator().manual_seed(1), vlb_weight=0.001)
    mse = diffusion_loss(s, plain, x0, torch.Generator().manual_seed(1))
    hybrid.backward()
    mse.backward()
    # the mean part sees only the MSE (stop-gradient in the VLB term, N&D 2021 Sec. 3.1) ...
    assert learned.a.grad == pytest.approx(float(plain.a.grad), rel=1e-6)
    # ... and v only the VLB term, which is positive here
    assert learned.b.grad is not None and float(learned.b.grad) != 0.0
    assert hybrid.item() > mse.item()
    no_vlb = hybrid_loss(s, learned, x0, torch.Generator().manual_seed(1), vlb_weight=0.0)
    assert no_vlb.item() == pytest.approx(mse.item(), rel=1e-6)  # same draws, same MSE


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("improved") / "run"
    config = out.parent / "small.toml"
    config.write_text("[data]\nn_train = 600\nheldout = 400\n")
    assert main(["train", "moons", "--out", str(out), "--config", str(config), *TINY,
                 "--variance", "learned_range", "--prediction", "v", "--no-figures"]) == 0
    return out


def test_learned_variance_v_prediction_run_samples_with_every_sampler(learned_run: Path,
                                                                      tmp_path: Path) -> None:
    saved = json.loads((learned_run / "config.json").read_text())["diffusion"]
    assert saved["variance"] == "learned_range" and saved["prediction"] == "v"
    for args in (["--sampler", "ddpm"], ["--sampler", "ddpm", "--steps", "5"],
                 ["--sampler", "ddim", "--steps", "1"], ["--sampler", "ddim", "--eta", "1"],
                 ["--sampler", "dpm_solver", "--steps", "7"],
                 ["--sampler", "dpm_solver", "--steps", "3", "--spacing", "trailing"],
                 ["--sampler", "dpm_solver", "--steps", "7", "--spacing", "logsnr_official"]):
        out = tmp_path / "x.npy"
        assert main(["sample", str(learned_run), "--n", "40", "--out", str(out), *args,
                     "--force"]) == 0
        x = np.load(out)
        assert x.shape == (40, 2) and np.isfinite(x).all()


def test_evaluate_nll_prints_and_writes_the_bound(learned_run: Path, capsys) -> None:
    assert main(["evaluate", str(learned_run), "--n", "100", "--nll"]) == 0
    out = capsys.readouterr().out
    assert "nats/dim" in out and "bits/dim" in out
    bound = json.loads((learned_run / "nll.json").read_text())
    assert len(bound["terms"]) == 20 and bound["n"] == 100
    assert bound["bits_per_dim"] == pytest.approx(bound["nats_per_dim"] / np.log(2))
    # data units = standardised units + mean log std (change of variables)
    std = np.load(learned_run / "data.npz")["train"].std(0)
    assert bound["nats_per_dim"] == pytest.approx(
        bound["standardised_nats_per_dim"] + np.log(std).mean(), rel=1e-4, abs=1e-6)
    with Image.open(learned_run / "figures" / "nll_terms.png") as im:
        assert im.size[0] > 100


def test_sweep_writes_a_row_per_sampler_and_step_count(learned_run: Path, capsys) -> None:
    assert main(["sweep", str(learned_run), "--steps", "2", "20", "--n", "100"]) == 0
    rows = json.loads((learned_run / "sweep.json").read_text())["rows"]
    assert [(r["sampler"], r["steps"]) for r in rows] == [
        ("ddpm", 2), ("ddpm", 20), ("ddim", 2), ("ddim", 20), ("dpm_solver", 2),
        ("dpm_solver", 20)]
    assert all(0 <= r["1nna"] <= 1 and r["seconds"] > 0 for r in rows)
    assert "dpm_solver" in capsys.readouterr().out
    assert json.loads((learned_run / "sweep.json").read_text())["spacing"] == {
        "ddpm": "linspace", "ddim": "linspace", "dpm_solver": "logsnr"}
    with Image.open(learned_run / "figures" / "sweep.png") as im:
        assert im.size[0] > 100


@pytest.mark.parametrize("argv, expect", [
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--steps", "0"], "1..20"),
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--steps", "21"], "1..20"),
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--sampler", "ddim", "--eta", "-1"], "eta"),
    (["sweep", "{run}", "--samplers", "rk4"], "unknown sampler"),
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--sampler", "dpm_solver", "--eta", "1"],
     "--eta applies to --sampler ddim only"),
    (["sweep", "{run}", "--steps", "500"], "1..20"),
    (["sample", "{run}", "--out", "{tmp}/x.npy", "--sampler", "dpm_solver", "--spacing",
      "logsnr_official"], "--steps 19 or fewer"),
    (["train", "moons", "--out", "{tmp}/r", "--variance", "learned"], "unknown variance"),
    (["train", "moons", "--out", "{tmp}/r", "--prediction", "score"], "unknown prediction"),
])
def test_bad_sampler_options_get_one_line_and_exit_2(argv: list[str], expect: str,
                                                     learned_run: Path, tmp_path: Path,
                                                     capsys) -> None:
    argv = [a.format(run=learned_run, tmp=tmp_path) for a in argv]
    assert main([*argv, "--quiet"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddpmlab: error:") and expect in err and "\n" not in err
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "r").exists()


def test_an_unknown_spacing_is_refused_by_name(learned_run: Path, tmp_path: Path,
                                               capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["sample", str(learned_run), "--out", str(tmp_path / "x.npy"), "--spacing",
              "geometric"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--spacing: invalid choice: 'geometric'" in err and "\n" not in err
    assert not (tmp_path / "x.npy").exists()
