"""Tests for ddpmlab.viz.images: mosaics pixel for pixel, figures laid out as described, GIFs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpmlab import viz
from ddpmlab.viz import images

RNG = np.random.default_rng(0)


def digits(n: int = 64, c: int = 1, side: int = 8) -> np.ndarray:
    """Random images (n, c, side, side) in [0.1, 0.9]: never white, so they stand out on white."""
    return RNG.uniform(0.1, 0.9, (n, c, side, side))


def chain(n: int = 6, images_per_frame: int = 4, c: int = 1) -> list[tuple[int, np.ndarray]]:
    """A fake reverse chain x_{n-1} ... x_0 of images, noisier (and out of [0, 1]) at high t."""
    x0 = digits(images_per_frame, c)
    return [(t, x0 + (t / n) * RNG.standard_normal(x0.shape)) for t in range(n - 1, -1, -1)]


def assert_file(path: Path, fmt: str) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 0
    img = Image.open(path)
    assert img.format == fmt and img.width > 0 and img.height > 0
    assert not list(path.parent.glob("*.tmp*")), "temporary file left behind"
    return img


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.int64)


def mosaic_region(png: Path) -> np.ndarray:
    """The pixels (H, W, 3) inside the bounding box of the non-white pixels of ``png``."""
    px = np.asarray(Image.open(png).convert("RGB")).astype(np.int64)
    ys, xs = np.nonzero((px < 250).any(axis=2))
    return px[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def test_tile_places_image_k_at_its_offset_with_grey_between() -> None:
    imgs = np.stack([np.full((1, 3, 4), k / 10) for k in range(5)])  # image k is all k/10
    out = viz.tile(imgs, nrow=3, pad=2)
    assert out.shape == (2 * 3 + 2, 3 * 4 + 2 * 2, 1)
    pad = np.ones(out.shape[:2], dtype=bool)
    for k in range(5):
        y, x = (k // 3) * (3 + 2), (k % 3) * (4 + 2)
        assert (out[y : y + 3, x : x + 4, 0] == k / 10).all(), k
        pad[y : y + 3, x : x + 4] = False
    assert (out[pad, 0] == 0.5).all()  # between the images and in the empty sixth cell
    assert out[5:8, 12:16, 0].tolist() == [[0.5] * 4] * 3  # the empty cell itself
    assert viz.tile(imgs, pad=0).shape == (2 * 3, 3 * 4, 1)  # default: ceil(sqrt(5)) = 3 a row
    assert viz.tile(imgs[:4]).shape == (2 * 3 + 1, 2 * 4 + 1, 1)
    assert viz.tile(imgs, nrow=10).shape == (3, 5 * 4 + 4, 1)  # never wider than N images


def test_tile_rgb_keeps_channels_and_clips() -> None:
    rgb = np.zeros((2, 3, 2, 2))
    rgb[0, 0], rgb[0, 1], rgb[0, 2] = 0.2, 0.4, 0.6
    rgb[1] = [[[-0.7, 1.8], [0.5, 2.0]]]  # outside [0, 1]: clipped, per channel
    out = viz.tile(rgb, nrow=2)
    assert out.shape == (2, 5, 3)
    assert out[0, 0].tolist() == [0.2, 0.4, 0.6]
    assert out[:, 2].tolist() == [[0.5, 0.5, 0.5]] * 2
    assert out[0, 3:5, 0].tolist() == [0.0, 1.0] and out.min() == 0.0 and out.max() == 1.0


def test_image_grid_draws_every_pixel_as_an_integer_square(tmp_path: Path) -> None:
    grey = digits(64)
    out = viz.plot_image_grid(grey, tmp_path / "grid.png")
    assert out == tmp_path / "grid.png"
    png = assert_file(out, "PNG")
    expected = to_u8(viz.tile(grey)[:, :, 0])  # 71 x 71: 8 images of 8 and 7 pads a side
    region = mosaic_region(out)
    k = region.shape[0] // expected.shape[0]
    assert region.shape[:2] == (71 * k, 71 * k) and k * 8 >= 0.35 * viz.DPI  # 8x8 readable
    assert png.width >= 71 * k and png.height >= 71 * k
    assert np.abs(region - np.kron(expected, np.ones((k, k), int))[:, :, None]).max() <= 2


def test_image_grid_rgb_and_clipping_and_title(tmp_path: Path) -> None:
    rgb = digits(9, c=3, side=32)
    rgb[0, :, :2, :2] = [[[-5.0]], [[0.5]], [[7.0]]]  # clipped to (0, 0.5, 1)
    out = viz.plot_image_grid(rgb, tmp_path / "rgb.png", nrow=3)
    region = mosaic_region(out)
    expected = to_u8(viz.tile(rgb, nrow=3))  # 98 x 98 x 3
    k = region.shape[0] // expected.shape[0]
    assert k >= 1 and region.shape == (98 * k, 98 * k, 3)
    assert np.abs(region - expected.repeat(k, axis=0).repeat(k, axis=1)).max() <= 2
    assert np.abs(region[0, 0] - [0, 128, 255]).max() <= 1  # matplotlib rounds 0.5 to 127
    titled = viz.plot_image_grid(rgb, tmp_path / "titled.png", title="data")
    assert Image.open(titled).height > Image.open(out).height  # room for the title


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_forward_single_image_is_the_4_by_5_grid(tmp_path: Path) -> None:
    x0 = digits(1)
    frames = [(t, x0 + t / 1000 * RNG.standard_normal(x0.shape)) for t in range(0, 1000, 50)]
    frames[3][1][0, 0, 0, :2] = [-0.4, 1.3]  # a noisy state outside [0, 1]
    fig = images._forward_figure(frames)
    assert len(fig.axes) == 20
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (4, 5)
    assert titles(fig) == [rf"$q(\mathbf{{x}}_{{{t}}})$" for t, _ in frames]
    shown = fig.axes[3].images[0].get_array()
    assert np.array_equal(shown, viz.tile(frames[3][1])[:, :, 0])  # clipped to [0, 1]
    assert shown.min() == 0.0 and shown.max() == 1.0
    assert fig.axes[0].images[0].get_cmap().name == "gray"
    assert_file(viz.plot_image_forward(frames, tmp_path / "forward.png"), "PNG")


def test_forward_many_images_one_row_each(tmp_path: Path) -> None:
    x0 = digits(3, c=3)
    frames = [(t, x0 * (1 - t / 10)) for t in range(0, 10, 2)]
    fig = images._forward_figure(frames)
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (3, 5)
    assert titles(fig)[:5] == [rf"$q(\mathbf{{x}}_{{{t}}})$" for t, _ in frames]
    assert titles(fig)[5:] == [""] * 10  # step titles on the top row only
    # row r is image r: panel (2, 4) shows image 2 of the last frame
    assert np.array_equal(fig.axes[14].images[0].get_array(), frames[4][1][2].transpose(1, 2, 0))
    assert_file(viz.plot_image_forward(frames, tmp_path / "forward_rgb.png"), "PNG")


def test_reverse_is_one_row_of_tiles_wrapped_above_ten(tmp_path: Path) -> None:
    frames = chain(8, images_per_frame=16)
    fig = images._reverse_figure(frames, "reverse")
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (1, 8)
    assert titles(fig) == [rf"$p(\mathbf{{x}}_{{{t}}})$" for t, _ in frames]
    assert np.array_equal(fig.axes[0].images[0].get_array(), viz.tile(frames[0][1])[:, :, 0])
    fig = images._reverse_figure(chain(12, images_per_frame=4), None)
    assert len(fig.axes) == 12
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 10)
    out = viz.plot_image_reverse(frames, tmp_path / "reverse.png", title="after 500 steps")
    assert_file(out, "PNG")


def test_training_has_one_labelled_row_per_step(tmp_path: Path) -> None:
    progress = [(0, chain(4)), (1, chain(4)), (5000, chain(4))]
    fig = images._training_figure(progress)
    assert len(fig.axes) == 12
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (3, 4)
    assert [fig.axes[i].get_ylabel() for i in (0, 4, 8)] == [
        "after 0 steps", "after 1 step", "after 5000 steps"]
    assert titles(fig)[:4] == [rf"$p(\mathbf{{x}}_{{{t}}})$" for t in (3, 2, 1, 0)]
    assert titles(fig)[4:] == [""] * 8
    assert_file(viz.plot_image_training(progress, tmp_path / "training.png"), "PNG")
    with pytest.raises(ValueError, match=r"progress\[1\] frames\[0\]"):
        viz.plot_image_training([(0, chain(2)), (9, chain(2, images_per_frame=9))],
                                tmp_path / "bad.png")
    with pytest.raises(ValueError, match="progress is empty"):
        viz.plot_image_training([], tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training.png"]


def test_samples_beside_real(tmp_path: Path) -> None:
    samples, real = digits(16), digits(16)
    fig = images._beside_figure(samples, real, "digits")
    assert titles(fig) == ["samples", "real"]
    assert np.array_equal(fig.axes[1].images[0].get_array(), viz.tile(real)[:, :, 0])
    out = viz.plot_samples_beside_real(samples, real, tmp_path / "beside.png", title="digits")
    png = assert_file(out, "PNG")
    assert png.width > png.height  # side by side
    for other in (digits(15), digits(16, side=9), digits(16, c=3)):
        with pytest.raises(ValueError, match="same shape"):
            viz.plot_samples_beside_real(samples, other, tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.png"]


def gif_frames(path: Path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame of a GIF as an RGB array, and its duration in ms."""
    img = Image.open(path)
    pixels, durations = [], []
    for i in range(img.n_frames):
        img.seek(i)
        durations.append(img.info["duration"])
        pixels.append(np.asarray(img.convert("RGB")).astype(np.int64))
    return pixels, durations


def test_image_gif_streams_a_generator_once_and_holds_the_last_frame(tmp_path: Path) -> None:
    pulled: list[int] = []
    frames = chain(6)

    def stream():
        for t, x in frames:
            pulled.append(t)
            yield t, x

    gen = stream()
    out = viz.write_image_gif(gen, tmp_path / "chain.gif", fps=20, scale=3)
    assert pulled == [5, 4, 3, 2, 1, 0] and next(gen, None) is None
    img = assert_file(out, "GIF")
    assert img.n_frames == 6
    pixels, durations = gif_frames(out)
    assert durations == [50] * 5 + [50 * 11]  # hold_last = 10 extra frame times on x_0
    mosaic = to_u8(viz.tile(frames[-1][1])[:, :, 0])  # 4 images: 2 a row, 17 x 17
    assert img.width == 17 * 3 and img.height > 17 * 3  # the step label above
    # grey stays exact grey levels (no quantisation), upscaled nearest, below the label strip
    assert np.array_equal(pixels[-1][-17 * 3 :, :, 0], np.kron(mosaic, np.ones((3, 3), int)))
    strip = [p[: img.height - 51] for p in pixels]
    assert all((s < 128).any() for s in strip)  # each frame's step is written
    assert not np.array_equal(strip[0], strip[-1])  # x₅ is not x₀
    default = viz.write_image_gif(iter(chain(2, images_per_frame=64)), tmp_path / "d.gif")
    assert Image.open(default).width == 71 * 6  # about 400 px wide by default (71 x 6)


def test_image_gif_rgb(tmp_path: Path) -> None:
    frames = chain(3, images_per_frame=2, c=3)
    out = viz.write_image_gif(iter(frames), tmp_path / "rgb.gif", nrow=1, scale=2, hold_last=0)
    pixels, durations = gif_frames(out)
    assert len(pixels) == 3 and durations == [50, 50, 50]
    assert pixels[0].shape[:2][1] == 8 * 2 and pixels[0].shape[0] > (8 * 2 + 1) * 2
    expected = to_u8(viz.tile(frames[-1][1], nrow=1)).repeat(2, axis=0).repeat(2, axis=1)
    assert np.abs(pixels[-1][-34:] - expected).mean() < 8  # 256 colours: close, not exact


def test_a_hundred_frame_gif_is_fast(tmp_path: Path) -> None:
    x0 = digits(64)
    start = time.perf_counter()
    viz.write_image_gif(((t, x0 * (t / 100)) for t in range(99, -1, -1)), tmp_path / "f.gif")
    assert time.perf_counter() - start < 2.0  # about 0.2 s here; a generous bound
    assert Image.open(tmp_path / "f.gif").n_frames == 100


def test_image_gif_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "chain.gif"
    target.write_bytes(b"old gif")

    def broken():
        yield 1, digits(4)
        raise RuntimeError("sampler crashed")

    with pytest.raises(RuntimeError, match="sampler crashed"):
        viz.write_image_gif(broken(), target)
    with pytest.raises(ValueError, match=r"frames\[1\] \(t=0\) images have shape"):
        viz.write_image_gif(iter([(1, digits(4)), (0, digits(5))]), target)
    assert target.read_bytes() == b"old gif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.gif"]


BAD = {
    "3-d": np.zeros((4, 8, 8)),
    "two-channels": np.zeros((4, 2, 8, 8)),
    "empty": np.zeros((0, 1, 8, 8)),
    "nan": np.full((2, 1, 8, 8), np.nan),
    "strings": [[[["a"]]]],
}


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
def test_bad_images_raise_value_error_and_write_nothing(tmp_path: Path, bad: object) -> None:
    match = r"\(N, C, H, W\)|C = 1|empty|NaN"
    with pytest.raises(ValueError, match=match):
        viz.tile(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        viz.plot_image_grid(bad, tmp_path / "g.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"frames\[1\] \(t=0\)"):
        viz.plot_image_forward([(1, digits(1)), (0, bad)], tmp_path / "f.png")
    with pytest.raises(ValueError, match=r"frames\[0\] \(t=3\)"):
        viz.plot_image_reverse([(3, bad)], tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"progress\[0\] frames\[0\]"):
        viz.plot_image_training([(10, [(0, bad)])], tmp_path / "t.png")
    with pytest.raises(ValueError, match="samples"):
        viz.plot_samples_beside_real(bad, digits(4), tmp_path / "s.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"frames\[1\] \(t=0\)"):
        viz.write_image_gif(iter([(1, digits(4)), (0, bad)]), tmp_path / "g.gif")
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nrow"):
        viz.tile(digits(4), nrow=0)
    with pytest.raises(ValueError, match="pad"):
        viz.tile(digits(4), pad=-1)
    with pytest.raises(ValueError, match="empty"):
        viz.plot_image_forward([], tmp_path / "f.png")
    with pytest.raises(ValueError, match="empty"):
        viz.write_image_gif(iter([]), tmp_path / "g.gif")
    for kwargs in ({"fps": 0}, {"hold_last": -1}, {"scale": 0}, {"nrow": 0}):
        with pytest.raises(ValueError):
            viz.write_image_gif(iter(chain(2)), tmp_path / "g.gif", **kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    frames = chain(3)
    calls = [
        lambda: viz.plot_image_grid(digits(4), missing / "g.png"),
        lambda: viz.plot_image_forward(frames, missing / "f.png"),
        lambda: viz.plot_image_reverse(frames, missing / "r.png"),
        lambda: viz.plot_image_training([(5, frames)], missing / "t.png"),
        lambda: viz.plot_samples_beside_real(digits(4), digits(4), missing / "s.png"),
    ]
    for call in calls:
        with pytest.raises(FileNotFoundError, match="nope"):
            call()
    pulled: list[int] = []

    def stream():
        for t, x in frames:
            pulled.append(t)
            yield t, x

    with pytest.raises(FileNotFoundError, match="nope"):
        viz.write_image_gif(stream(), missing / "c.gif")
    assert pulled == []  # refused before the (expensive) stream is consumed
    assert not missing.exists()
