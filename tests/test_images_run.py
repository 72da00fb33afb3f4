"""Image runs: defaults, x0 clipping, the decoder's levels, sample writers, bad input, and
runs written before the modalities (old checkpoints still open)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import IMAGE_TINY, one_line_error
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from ddpmlab import SAMPLERS, SamplerSpec, open_run, run_bound, run_exact_nll
from ddpmlab.cli import main
from ddpmlab.config import RunConfig, replace
from ddpmlab.modalities import default_config
from ddpmlab.modalities.images import Images
from ddpmlab.runs import likelihood
from ddpmlab.runs.layout import CKPT


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "digits"
    assert main(["train", "digits", "--out", str(out), *IMAGE_TINY, "--no-eval",
                 "--no-figures"]) == 0
    return out


def test_defaults_follow_the_data() -> None:
    points, digits = default_config("moons"), default_config("digits")
    # points take RunConfig's own defaults (bench/quality.py measured them), data aside
    assert points == replace(RunConfig(), {"data": {"source": "moons"}})
    assert digits.model.name == "unet" and digits.data.heldout == 500
    assert default_config("mnist").data.heldout == 1000
    # the built-in sets learn their classes; a folder or an array may have none
    assert digits.model.conditional and default_config("mnist").model.conditional
    assert Images.defaults("my/images")["model"]["conditional"] is False
    # the user's settings go over the measured ones, nested tables merged key by key
    mine = default_config("digits", {"model": {"unet": {"dropout": 0.2}}})
    assert mine.model.unet.dropout == 0.2
    assert mine.model.unet.base_channels == digits.model.unet.base_channels


def test_width_sets_the_networks_own_setting(image_run: Path) -> None:
    saved = json.loads((image_run / "config.json").read_text())
    assert saved["model"]["name"] == "unet" and saved["model"]["unet"]["base_channels"] == 8
    assert saved["model"]["resmlp"]["hidden"] == 64  # untouched


def test_x0_is_clipped_for_images_only(image_run: Path, tiny_run: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    for name in ("ddpm", "ddim"):  # each sampler of the registry, spied on
        original = SAMPLERS[name].chain

        def spy(*args, _original=original, **kwargs):
            seen.append(kwargs["clip"])
            return _original(*args, **kwargs)

        monkeypatch.setitem(SAMPLERS, name, dataclasses.replace(SAMPLERS[name], chain=spy))
    for path, expected in ((image_run, True), (tiny_run, False)):
        run = open_run(path)
        seen.clear()
        run.sample(3, sampler="ddpm")
        run.sample(3, sampler=SamplerSpec("ddim", steps=4))
        assert seen == [expected, expected]


def test_every_sampler_is_finite_at_every_step_count(image_run: Path) -> None:
    run = open_run(image_run)
    for sampler in ("ddpm", "ddim"):
        for k in range(1, run.schedule.T + 1):
            x = run.sample(4, sampler=SamplerSpec(sampler, steps=k))
            assert x.shape == (4, 1, 8, 8) and np.isfinite(x).all()
            assert x.min() >= 0 and x.max() <= 1


def test_the_bound_uses_the_datas_levels(image_run: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    original = likelihood.nll_bound

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(likelihood, "nll_bound", spy)
    run = open_run(shutil.copytree(image_run, tmp_path / "run"))
    result = run_bound(run, n=20)
    assert seen["decoder"] == "discretized" and seen["levels"] == 17  # digits: 17 grey levels
    assert result["decoder_kind"] == "discretized" and 0 < result["bits_per_dim"] < math.inf
    # x0_hat clipped by default, as the image samplers and improved-diffusion's calc_bpd_loop
    assert seen["clip"] is True and result["clip"] is True
    raw = run_bound(run, n=20, clip=False)
    assert seen["clip"] is False and raw["clip"] is False
    assert raw["bits_per_dim"] != result["bits_per_dim"]  # a 12-step network leaves [-1, 1]
    assert "x0_hat clipped" in likelihood.format_bound(result)
    assert "x0_hat clipped" not in likelihood.format_bound(raw)


def test_unclipped_bound_needs_nll(image_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in image_run.iterdir())
    code = main(["evaluate", str(image_run), "--unclipped-bound", "--n", "8"])
    one_line_error(capsys, code, "--unclipped-bound", "--nll")
    assert sorted(p.name for p in image_run.iterdir()) == before


@pytest.mark.parametrize("data, decoder", [("digits", {"decoder": "discretized", "levels": 17}),
                                           ("moons", {"decoder": "gaussian"})])
def test_a_learned_variance_trains_its_t0_term_on_the_datas_decoder(
        data: str, decoder: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # improved-diffusion's _vb_terms_bpd: the discretised decoder on images, as the bound
    from ddpmlab.train import gradients
    seen: list[dict] = []
    original = gradients.hybrid_loss

    def spy(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("decoder", "levels") if k in kwargs})
        return original(*args, **kwargs)

    monkeypatch.setattr(gradients, "hybrid_loss", spy)
    size = IMAGE_TINY if data == "digits" else ["--hidden", "16", "--batch-size", "64",
                                                "--quiet"]
    assert main(["train", data, "--out", str(tmp_path / "r"), *size, "--steps", "2",
                 "--variance", "learned_range", "--no-eval", "--no-figures"]) == 0
    assert seen == [decoder, decoder]


def test_sample_writes_an_array_a_grid_and_a_folder(image_run: Path, tmp_path: Path) -> None:
    assert main(["sample", str(image_run), "--n", "6", "--out", str(tmp_path / "x.npy"),
                 "--quiet"]) == 0
    x = np.load(tmp_path / "x.npy")
    assert main(["sample", str(image_run), "--n", "6", "--out", str(tmp_path / "g.png"),
                 "--quiet"]) == 0
    with Image.open(tmp_path / "g.png") as grid:
        # 3 columns, 2 rows, 1-pixel gaps, each pixel a 5 x 5 square as in the figures
        assert grid.size == (5 * (3 * 8 + 2), 5 * (2 * 8 + 1))
    folder = tmp_path / "each"
    assert main(["sample", str(image_run), "--n", "6", "--out", str(folder), "--quiet"]) == 0
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(6)]
    with Image.open(files[2]) as one:
        assert one.size == (8, 8) and one.mode == "L"
        assert np.abs(np.asarray(one) / 255 - x[2, 0]).max() <= 0.5 / 255 + 1e-6


def test_a_sample_folder_is_not_overwritten(image_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "each"
    folder.mkdir()
    (folder / "000002.png").write_bytes(b"mine")
    code = main(["sample", str(image_run), "--n", "4", "--out", str(folder), "--quiet"])
    one_line_error(capsys, code, "000002.png exists", "--force")
    assert sorted(p.name for p in folder.iterdir()) == ["000002.png"]
    assert (folder / "000002.png").read_bytes() == b"mine"
    assert main(["sample", str(image_run), "--n", "4", "--out", str(folder), "--force",
                 "--quiet"]) == 0
    assert len(list(folder.iterdir())) == 4
    code = main(["sample", str(image_run), "--n", "4", "--out", str(tmp_path / "x.csv")])
    one_line_error(capsys, code, ".npy or .png or / (a folder)")


def _bad_sources(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (DATA, what the error names)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(corrupt / "a.png")
    (corrupt / "b.png").write_bytes(b"\x89PNG not really")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(mixed / "b.png")
    odd = tmp_path / "odd"
    odd.mkdir()
    for i in range(12):
        Image.fromarray(np.full((7, 7), 20 * i, np.uint8)).save(odd / f"{i}.png")
    np.save(tmp_path / "five.npy", np.zeros((4, 1, 1, 8, 8), np.float32))
    nan = np.zeros((12, 8, 8), np.float32)
    nan[3, 2, 2] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "range.npy", np.full((12, 8, 8), 1.5, np.float32))
    return {"empty": (str(empty), "empty"), "corrupt": (str(corrupt), "b.png"),
            "mixed": (str(mixed), "size"), "odd": (str(odd), "cannot be halved"),
            "five": (str(tmp_path / "five.npy"), "5-D"), "nan": (str(tmp_path / "nan.npy"), "NaN"),
            "range": (str(tmp_path / "range.npy"), "outside [0, 1]")}


@pytest.mark.parametrize("name", ["empty", "corrupt", "mixed", "odd", "five", "nan", "range"])
def test_bad_image_data_ends_with_one_line_and_no_run(name: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    source, needle = _bad_sources(tmp_path)[name]
    out = tmp_path / "run"
    code = main(["train", source, "--out", str(out), *IMAGE_TINY])
    one_line_error(capsys, code, needle)
    assert not out.exists()


@pytest.mark.parametrize(("data", "model", "needle"), [
    ("digits", "resmlp", "model resmlp takes points (N, dim), not images (N, C, H, W); choose "
     "one of: unet, seed_unet"),
    ("moons", "unet", "model unet takes images (N, C, H, W), not points (N, dim)"),
])
def test_a_network_for_the_other_kind_of_data_is_refused(
        data: str, model: str, needle: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", data, "--model", model, "--out", str(tmp_path / "r"), *IMAGE_TINY])
    one_line_error(capsys, code, needle)
    assert not (tmp_path / "r").exists()


def test_a_run_written_before_the_modalities_still_opens(tiny_copy: Path) -> None:
    """Checkpoints before images had model.hidden/depth/fourier_scale and a 'standardizer'
    in their metadata, no modality, shape or scaler: rewrite one in that form."""
    path = tiny_copy / CKPT
    with safe_open(path, "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    header = json.loads(metadata["header"])
    model = header["config"]["model"]
    header["config"]["model"] = {"name": model["name"], **model["resmlp"]}
    meta = header["meta"]
    meta["standardizer"] = meta.pop("scaler")
    for key in ("modality", "shape"):
        del meta[key]
    save_file(tensors, path, metadata={**metadata, "header": json.dumps(header)})
    config = json.loads((tiny_copy / "config.json").read_text())
    config["model"] = header["config"]["model"]
    (tiny_copy / "config.json").write_text(json.dumps(config))
    before = open_run(tiny_copy)
    assert before.kind.name == "points" and before.config.model.resmlp.hidden == 16
    assert np.isfinite(before.sample(5)).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is")
@pytest.mark.parametrize("command", ["train", "sample", "evaluate"])
def test_device_cuda_without_a_gpu_is_one_line(command: str, image_run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    args = {"train": ["digits", "--out", str(tmp_path / "r"), *IMAGE_TINY],
            "sample": [str(image_run), "--out", str(tmp_path / "x.npy")],
            "evaluate": [str(image_run)]}[command]
    code = main([command, *args, "--device", "cuda"])
    one_line_error(capsys, code, "no CUDA device is visible", "--device cpu or auto")
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.npy").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_image_run_trains_and_samples_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "cuda"
    assert main(["train", "digits", "--out", str(out), *IMAGE_TINY, "--device", "cuda"]) == 0
    files = [tmp_path / "a.npy", tmp_path / "b.npy"]
    for path in files:
        assert main(["sample", str(out), "--n", "8", "--seed", "3", "--out", str(path),
                     "--device", "cuda", "--quiet"]) == 0
    a, b = (np.load(p) for p in files)
    assert np.array_equal(a, b) and np.isfinite(a).all()
    assert main(["sample", str(out), "--n", "8", "--out", str(tmp_path / "c.npy"),
                 "--device", "cpu", "--quiet"]) == 0  # a CUDA run opens on the CPU too


def test_the_ode_samples_images_and_their_exact_nll_is_dequantised(image_run: Path,
                                                                   tmp_path: Path) -> None:
    run = open_run(shutil.copytree(image_run, tmp_path / "run"))
    x = run.sample(4, sampler=SamplerSpec("ode", rtol=1e-3, atol=1e-3))
    assert x.shape == (4, 1, 8, 8) and np.isfinite(x).all() and 0 <= x.min() <= x.max() <= 1
    result = run_exact_nll(run, n=8, rtol=1e-3, atol=1e-3)
    assert result["divergence"] == "hutchinson" and result["dequantised_levels"] == 17
    assert math.isfinite(result["bits_per_dim"]) and result["stderr_bits_per_dim"] > 0
    # a bound on the -log of a probability mass (not a density): positive
    assert result["bits_per_dim"] > 3 * result["stderr_bits_per_dim"]
    saved = json.loads((run.path / likelihood.EXACT_NLL).read_text())
    assert saved["bits_per_dim"] == result["bits_per_dim"]
