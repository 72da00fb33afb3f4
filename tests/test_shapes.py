"""Points from a picture's dark pixels or a rendered word (data/shapes.py), and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY
from PIL import Image
from scipy import stats

from ddpmlab.cli import main
from ddpmlab.data import resolve
from ddpmlab.data.shapes import SPAN, read_picture, render_text, sample_picture
from ddpmlab.errors import UserError

W, H = 40, 20


def synthetic(path: Path) -> Path:
    """40 x 20 pixels: the left half black, the right half's top rows 50 % grey, the rest
    white. Darkness mass: 400 (black) + 200 x 0.5 (grey), so 80 % of the points fall in the
    left half, 20 % in the top right, none in the bottom right."""
    grey = np.full((H, W), 255, np.uint8)
    grey[:, : W // 2] = 0
    grey[: H // 2, W // 2:] = 127  # darkness 1 - 127/255 = 0.502
    Image.fromarray(grey).save(path)
    return path


def test_points_follow_the_pictures_darkness_y_up_and_uniform_in_each_pixel(tmp_path):
    dark = read_picture(synthetic(tmp_path / "s.png"))
    x = sample_picture(dark, 40_000, np.random.default_rng(0))
    n = len(x)
    scale = SPAN / W  # the longer side (40 pixels) spans SPAN units; y spans [-1, 1]
    assert x[:, 0].min() >= -2 and x[:, 0].max() <= 2 and abs(x[:, 1]).max() <= H / 2 * scale
    grey_mass = (W // 2) * (H // 2) * (1 - 127 / 255)
    p_left = (W // 2) * H / ((W // 2) * H + grey_mass)
    left, top_right = x[:, 0] < 0, (x[:, 0] > 0) & (x[:, 1] > 0)  # grey rows are the top: y > 0
    for share, p in ((left.mean(), p_left), (top_right.mean(), 1 - p_left)):
        assert abs(share - p) < 4 * np.sqrt(p * (1 - p) / n), (share, p)
    assert not ((x[:, 0] > 0) & (x[:, 1] < 0)).any()  # white: no point
    # jittered within the pixels: uniform over the black half, not on a pixel grid
    assert stats.kstest(x[left, 0], stats.uniform(-2, 2).cdf).pvalue > 1e-3
    assert stats.kstest(x[left, 1], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert len(np.unique(np.round(x[left, 0] / scale, 3))) > 1000


def test_transparent_pixels_count_as_white(tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)  # black, but fully transparent
    rgba[5:10, 5:10, 3] = 255  # an opaque black square
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = sample_picture(read_picture(tmp_path / "a.png"), 2000, np.random.default_rng(1))
    col = (x[:, 0] / (SPAN / W) + W / 2)
    assert col.min() >= 5 and col.max() <= 10


def test_a_word_is_rendered_and_drawn_from_as_points():
    dark = render_text("DDPM")
    assert dark.shape[1] > 2 * dark.shape[0] and 0.05 < dark.mean() < 0.6  # wide, part ink
    points = resolve("text:DDPM", 1000, seed=0, heldout=200)
    assert points.name == "text:DDPM" and points.train.shape == (1000, 2)
    assert np.ptp(points.train[:, 0]) > 2 * np.ptp(points.train[:, 1])
    again = resolve("text:DDPM", 1000, seed=0, heldout=200)
    np.testing.assert_array_equal(points.train, again.train)  # the same seed, the same points


def _bad(tmp_path: Path, case: str) -> list[str]:
    white = np.full((H, W), 255, np.uint8)
    if case == "blank":
        Image.fromarray(white).save(tmp_path / "blank.png")
        return [str(tmp_path / "blank.png")]
    if case == "black":
        Image.fromarray(np.zeros_like(white)).save(tmp_path / "black.png")
        return [str(tmp_path / "black.png")]
    if case == "tiny":
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "tiny.png")
        return [str(tmp_path / "tiny.png")]
    if case == "corrupt":
        (tmp_path / "c.png").write_bytes(b"\x89PNG not really")
        return [str(tmp_path / "c.png")]
    if case == "font":
        (tmp_path / "f.ttf").write_text("not a font")
        return ["text:DDPM", "--font", str(tmp_path / "f.ttf")]
    if case == "font_missing":
        return ["text:DDPM", "--font", str(tmp_path / "none.ttf")]
    if case == "font_not_text":
        (tmp_path / "f.ttf").write_text("x")
        return ["moons", "--font", str(tmp_path / "f.ttf")]
    if case == "empty_word":
        return ["text:"]
    assert case == "missing"
    return [str(tmp_path / "nothing.png")]


@pytest.mark.parametrize("case, expect", [
    ("blank", "is blank: no dark pixel"),
    ("black", "is dark all over"),
    ("tiny", "is 5x5 pixels (width x height), smaller than 8"),
    ("corrupt", "cannot read picture"),
    ("font", "cannot read font"),
    ("font_missing", "font not found"),
    ("font_not_text", "--font applies to text:WORD data only"),
    ("empty_word", "text: needs a word after it"),
    ("missing", "picture not found"),
])
def test_bad_pictures_and_fonts_get_one_line(case, expect, tmp_path, capsys):
    argv = ["train", *_bad(tmp_path, case), "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ddpmlab: error:") and expect in err and "\n" not in err, err
    assert not (tmp_path / "run").exists()


def test_read_picture_names_the_file(tmp_path):
    with pytest.raises(UserError, match="blank"):
        read_picture(_bad(tmp_path, "blank")[0])


def test_train_on_a_word_and_a_silhouette_gives_the_usual_run(tmp_path, capsys):
    config = tmp_path / "small.toml"
    config.write_text("[data]\nn_train = 600\nheldout = 400\n")
    silhouette = synthetic(tmp_path / "shape.png")
    for data, out, extra in (("text:DDPM", "word", []), (str(silhouette), "pic", ["--no-figures"])):
        assert main(["train", data, "--out", str(tmp_path / out), "--config", str(config),
                     *TINY, *extra]) == 0
        saved = json.loads((tmp_path / out / "metrics.json").read_text())
        assert saved["metrics"]["w1"]["floor"] > 0
    for name in ("data.png", "samples.png", "forward.png", "reverse.gif"):
        assert (tmp_path / "word" / "figures" / name).is_file()
    with np.load(tmp_path / "pic" / "data.npz") as f:
        assert f["train"].shape == (600, 2) and (f["train"][:, 0] > 0).mean() < 0.3
    assert "1nna" in capsys.readouterr().out
