"""Tests for ddpmlab.viz: files are valid images, written atomically, figures are as described."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from ddpmlab import viz

RNG = np.random.default_rng(0)


def cloud(n: int = 200, scale: float = 1.0) -> np.ndarray:
    return scale * RNG.standard_normal((n, 2))


def chain(n: int = 10, points: int = 100) -> list[tuple[int, np.ndarray]]:
    """A fake reverse chain x_T ... x_0 whose spread shrinks towards t = 0."""
    return [(t, cloud(points, 0.3 + t / n)) for t in range(n - 1, -1, -1)]


def assert_image(path: Path, fmt: str) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 0
    img = Image.open(path)
    assert img.format == fmt and img.width > 0 and img.height > 0
    assert not list(path.parent.glob("*.tmp*")), "temporary file left behind"
    return img


def test_plot_points_writes_png(tmp_path: Path) -> None:
    out = viz.plot_points(cloud(), tmp_path / "points.png", title="two moons")
    assert out == tmp_path / "points.png"
    assert_image(out, "PNG")


def test_forward_grid_has_one_titled_panel_per_frame(tmp_path: Path) -> None:
    frames = [(t, cloud(50)) for t in range(0, 1000, 50)]
    fig = viz._forward_grid_figure(frames, title="forward")
    assert isinstance(fig, Figure) and len(fig.axes) == 20
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (4, 5)
    assert [ax.get_title() for ax in fig.axes] == [rf"$q(\mathbf{{x}}_{{{t}}})$" for t, _ in frames]
    assert len({ax.get_xlim() for ax in fig.axes}) == 1  # shared limits
    assert_image(viz.plot_forward_grid(frames, tmp_path / "fwd.png"), "PNG")


def test_forward_grid_any_count_uses_rows_of_five() -> None:
    fig = viz._forward_grid_figure([(t, cloud(20)) for t in range(7)])
    assert len(fig.axes) == 7
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 5)


def test_reverse_process_one_row_same_limits(tmp_path: Path) -> None:
    frames = chain(10)
    fig = viz._progress_figure([(None, frames)], "reverse", None)
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (1, 10)
    assert [ax.get_title() for ax in fig.axes] == [rf"$p(\mathbf{{x}}_{{{t}}})$" for t, _ in frames]
    assert len({(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes}) == 1
    lims = (-3.0, 3.0, -2.0, 2.0)
    out = viz.plot_reverse_process(frames, tmp_path / "rev.png", "end of training", limits=lims)
    assert_image(out, "PNG")
    fig = viz._progress_figure([(None, frames)], "reverse", lims)
    assert fig.axes[4].get_xlim() == (-3.0, 3.0) and fig.axes[4].get_ylim() == (-2.0, 2.0)


def test_training_progress_rows_labelled_by_step(tmp_path: Path) -> None:
    snaps = [(0, chain(4)), (500, chain(4)), (5000, chain(4))]
    out = viz.plot_training_progress(snaps, tmp_path / "progress.png")
    assert_image(out, "PNG")
    rows = [(f"step {s}", fr) for s, fr in snaps]
    fig = viz._progress_figure(rows, None, None)
    assert len(fig.axes) == 12
    assert [fig.axes[i].get_ylabel() for i in (0, 4, 8)] == ["step 0", "step 500", "step 5000"]
    assert len({(ax.get_xlim(), ax.get_ylim()) for ax in fig.axes}) == 1


def test_samples_over_data_and_loss(tmp_path: Path) -> None:
    out = viz.plot_samples_over_data(cloud(), cloud(300), tmp_path / "s.png", title="samples")
    assert_image(out, "PNG")
    steps = np.arange(300)
    losses = 0.5 * np.exp(-steps / 100) + 0.05 + 0.02 * RNG.random(300)
    assert_image(viz.plot_loss(steps, losses, tmp_path / "loss.png"), "PNG")
    with pytest.raises(ValueError, match="equal length"):
        viz.plot_loss(steps, losses[:-1], tmp_path / "bad.png")


def tick_labels(ax: Axes) -> tuple[list[str], list[str]]:
    """The visible, non-empty x and y tick labels inside the limits of ``ax`` (drawn first)."""
    ax.figure.canvas.draw()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    # the locator also places ticks just outside the view; those are never drawn
    xs = [t.get_text() for t in ax.get_xticklabels() if x0 <= t.get_position()[0] <= x1
          and t.get_visible() and t.get_text()]
    ys = [t.get_text() for t in ax.get_yticklabels() if y0 <= t.get_position()[1] <= y1
          and t.get_visible() and t.get_text()]
    return xs, ys


def assert_scale_readable(ax: Axes) -> None:
    """Both axes carry at least two tick labels, numbers in data units."""
    xs, ys = tick_labels(ax)
    assert len(xs) >= 2 and len(ys) >= 2, (xs, ys)
    for v in xs + ys:
        float(v.replace("\u2212", "-"))  # matplotlib writes minus as U+2212


def test_single_point_figures_have_ticks_in_data_units() -> None:
    data = cloud(300, scale=3.0) + np.array([10.0, 0.0])
    ax = viz._points_figure(data, "data").axes[0]
    assert_scale_readable(ax)
    assert any(float(v) >= 10 for v in tick_labels(ax)[0])  # data units, not 0..1 axes units
    assert_scale_readable(viz._samples_figure(cloud(200), data, "samples").axes[0])


def test_grids_label_ticks_on_outer_panels_only() -> None:
    # 7 panels on a 2 x 5 grid: x labels on the lowest panel of each column (row 0 above the
    # gap in columns 2-4), y labels on the left column only, as with sharex / sharey.
    fig = viz._forward_grid_figure([(t, cloud(30, 1 + t)) for t in range(7)])
    for i, ax in enumerate(fig.axes):
        r, c = divmod(i, 5)
        xs, ys = tick_labels(ax)
        assert bool(xs) == (r == 1 or c >= 2), (i, xs)
        assert bool(ys) == (c == 0), (i, ys)
    assert_scale_readable(fig.axes[5])
    fig = viz._progress_figure([("step 0", chain(4)), ("step 9", chain(4))], None, None)
    for i, ax in enumerate(fig.axes):
        xs, ys = tick_labels(ax)
        assert bool(xs) == (i >= 4) and bool(ys) == (i % 4 == 0), (i, xs, ys)
    assert_scale_readable(fig.axes[4])


def standard_normal_chain(n: int = 4000, steps: int = 5) -> list[tuple[int, np.ndarray]]:
    """x_T ~ N(0, I) shrinking linearly onto a small data cloud at t = 0."""
    noise, data = cloud(n), cloud(n, 0.25)
    return [(t, (t / steps) * noise + (1 - t / steps) * data) for t in range(steps, -1, -1)]


def fraction_outside(pts: np.ndarray, lim: tuple[float, float, float, float]) -> float:
    inside = (lim[0] <= pts[:, 0]) & (pts[:, 0] <= lim[1])
    inside &= (lim[2] <= pts[:, 1]) & (pts[:, 1] <= lim[3])
    return float(1.0 - inside.mean())


def test_frame_limits_hold_every_point_of_standard_normal_noise() -> None:
    frames = standard_normal_chain()
    x_T, data = frames[0][1], frames[-1][1]
    assert fraction_outside(x_T, viz.limits_for(data, margin=0.1)) > 0.05  # data limits cut noise
    lim = viz.frame_limits([data, *frames], margin=0.02)  # arrays and frames mixed
    assert all(fraction_outside(p, lim) == 0.0 for _, p in frames)
    assert np.isclose(lim[1] - lim[0], lim[3] - lim[2])  # square, as limits_for
    assert lim == viz.limits_for(*(p for _, p in frames), margin=0.02)  # data lies inside x_T's
    assert viz.frame_limits([x_T]) == viz.frame_limits([(7, x_T)])
    wild = np.vstack([x_T, [[100.0, 0.0]]])
    assert viz.frame_limits([wild], quantile=0.0005)[1] < 10 < viz.frame_limits([wild])[1]
    with pytest.raises(ValueError, match="at least one"):
        viz.frame_limits([])
    with pytest.raises(ValueError, match=r"items\[1\]"):
        viz.frame_limits([x_T, (3, np.zeros((4, 3)))])


def test_reverse_panels_by_default_hold_x_T() -> None:
    frames = standard_normal_chain(steps=4)
    fig = viz._progress_figure([(None, frames)], "reverse", None)
    lim = (*fig.axes[0].get_xlim(), *fig.axes[0].get_ylim())
    assert all(fraction_outside(p, lim) == 0.0 for _, p in frames)


def test_loss_figure_says_what_is_plotted_with_readable_log_ticks() -> None:
    steps = np.arange(50, 4001, 50)
    losses = 0.5 * np.exp(-steps / 500) + 0.15 + 0.03 * RNG.random(steps.size)  # < 1 decade
    fig = viz._loss_figure(steps, losses, 0.8, window=50,
                           ylabel="loss (MSE of the predicted noise)")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "mean loss over 50 steps",
        "smoothed (exponential moving average, weight 0.8 on the past)",
    ]
    assert ax.get_xlabel() == "training step"
    assert ax.get_ylabel() == "loss (MSE of the predicted noise)"
    assert ax.get_yscale() == "log"
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t in ax.yaxis.get_majorticklabels() + ax.yaxis.get_minorticklabels()
             if t.get_visible() and t.get_text() and lo <= t.get_position()[1] <= hi]
    assert len(shown) >= 3, shown
    assert all(float(v) > 0 for v in shown)  # plain numbers, e.g. "0.2", not 2x10^-1
    for wide in (10.0 * np.exp(-steps / 300) + 0.01, 1e4 * np.exp(-steps / 100) + 1e-4):
        fig = viz._loss_figure(steps, wide, 0.98, window=None, ylabel="loss")
        assert len(tick_labels(fig.axes[0])[1]) >= 3
    legend = viz._loss_figure(steps, losses, 0.98, window=None, ylabel="loss").axes[0].get_legend()
    assert legend.get_texts()[0].get_text() == "loss as logged"  # no window: claim nothing


def test_write_gif_streams_generator_once(tmp_path: Path) -> None:
    pulled: list[int] = []

    def stream():
        for t, pts in chain(6, points=150):
            pulled.append(t)
            yield t, pts

    gen = stream()
    out = viz.write_gif(gen, tmp_path / "chain.gif", (-4, 4, -4, 4), fps=20, size_px=120)
    assert pulled == [5, 4, 3, 2, 1, 0] and next(gen, None) is None
    img = assert_image(out, "GIF")
    sizes, durations = set(), []
    for i in range(img.n_frames):
        img.seek(i)
        sizes.add(img.size)
        durations.append(img.info["duration"])
    assert sizes == {(120, 120)}
    # Pillow stores the held last frame as one frame lasting (1 + hold_last) frame times.
    assert img.n_frames == 6 and durations == [50] * 5 + [50 * 11]
    assert sum(durations) == (6 + 10) * 50


def test_write_gif_failure_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "chain.gif"
    target.write_bytes(b"old gif")

    def broken():
        yield 1, cloud(20)
        yield 0, cloud(20)
        raise RuntimeError("sampler crashed")

    with pytest.raises(RuntimeError, match="sampler crashed"):
        viz.write_gif(broken(), target, (-3, 3, -3, 3), size_px=64)
    assert target.read_bytes() == b"old gif"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.gif"]


def test_figure_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "points.png"
    target.write_bytes(b"old png")

    def half_written(self: Figure, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        viz.plot_points(cloud(), target)
    assert target.read_bytes() == b"old png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.png"]


def test_save_frees_the_figure(tmp_path: Path) -> None:
    fig = viz._forward_grid_figure([(0, cloud(20))])
    viz._save(fig, tmp_path / "one.png")
    assert fig.axes == []


def test_missing_folder_raises_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope"):
        viz.plot_points(cloud(), missing / "p.png")
    with pytest.raises(FileNotFoundError, match="nope"):
        viz.write_gif(iter(chain(2)), missing / "c.gif", (-1, 1, -1, 1))
    assert not missing.exists()


def test_limits_for_covers_points_and_is_square() -> None:
    a, b = cloud(300) + np.array([5.0, 0.0]), cloud(100, 0.2)
    xmin, xmax, ymin, ymax = viz.limits_for(a, b, margin=0.1)
    both = np.vstack([a, b])
    assert xmin < both[:, 0].min() and xmax > both[:, 0].max()
    assert ymin < both[:, 1].min() and ymax > both[:, 1].max()
    assert np.isclose(xmax - xmin, ymax - ymin)
    noisy = np.vstack([cloud(1000), [[100.0, -100.0]]])
    assert viz.limits_for(noisy, quantile=0.005)[1] < 10 < viz.limits_for(noisy)[1]
    one = viz.limits_for(np.zeros((1, 2)))
    assert one[0] < 0 < one[1] and one[2] < 0 < one[3]


@pytest.mark.parametrize(
    "bad",
    [np.array([[0.0, np.nan]]), np.zeros((5, 3)), np.zeros(4), np.zeros((0, 2)), [["a", "b"]]],
    ids=["nan", "three-columns", "1-d", "empty", "strings"],
)
def test_invalid_points_raise_value_error(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="x"):
        viz.plot_points(bad, tmp_path / "p.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="point_sets"):
        viz.limits_for(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"frames\[1\]"):
        viz.write_gif([(1, cloud(5)), (0, bad)], tmp_path / "g.gif", (-1, 1, -1, 1), size_px=64)
    with pytest.raises(ValueError, match=r"snapshots\[0\] frames\[0\]"):
        viz.plot_training_progress([(10, [(0, bad)])], tmp_path / "t.png")
    assert list(tmp_path.iterdir()) == []


def test_invalid_limits_and_empty_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="limits"):
        viz.write_gif(iter(chain(2)), tmp_path / "g.gif", (1, -1, 0, 1))
    with pytest.raises(ValueError, match="empty"):
        viz.write_gif(iter([]), tmp_path / "g.gif", (-1, 1, -1, 1), size_px=64)
    with pytest.raises(ValueError, match="empty"):
        viz.plot_forward_grid([], tmp_path / "f.png")
    assert list(tmp_path.iterdir()) == []


def test_plot_curves_one_line_per_curve_log_and_dashed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    t = np.arange(100.0)
    curves = {"beta": np.linspace(1e-4, 0.02, 100), "beta~": np.linspace(1e-5, 0.019, 100)}
    drawn: list[dict] = []
    save = viz.common._save

    def record(fig: Figure, path: Path) -> Path:  # what was drawn, before _save frees it
        ax = fig.axes[0]
        drawn.append({"labels": [ln.get_label() for ln in ax.get_lines()],
                      "styles": [ln.get_linestyle() for ln in ax.get_lines()],
                      "y": ax.get_lines()[1].get_ydata(), "scale": ax.get_yscale(),
                      "xlabel": ax.get_xlabel()})
        return save(fig, path)

    monkeypatch.setattr(viz.common, "_save", record)
    out = viz.plot_curves(t, curves, tmp_path / "var.png", xlabel="t", ylabel="sigma^2",
                          log=True, dashed=("beta~",))
    assert_image(out, "PNG")
    (d,) = drawn
    assert d["labels"] == ["beta", "beta~"] and d["styles"] == ["-", "--"]
    np.testing.assert_array_equal(d["y"], curves["beta~"])
    assert d["scale"] == "log" and d["xlabel"] == "t"
    with pytest.raises(ValueError, match="positive"):  # log of a zero
        viz.plot_curves(t, {"a": np.zeros(100)}, tmp_path / "z.png", xlabel="", ylabel="",
                        log=True)
    with pytest.raises(ValueError, match="shape"):
        viz.plot_curves(t, {"a": np.ones(99)}, tmp_path / "z.png", xlabel="", ylabel="")
    with pytest.raises(ValueError, match="one curve"):
        viz.plot_curves(t, {}, tmp_path / "z.png", xlabel="", ylabel="")
    assert not (tmp_path / "z.png").exists()


def test_trajectories_one_panel_each_every_path_drawn(tmp_path: Path) -> None:
    paths = np.cumsum(RNG.standard_normal((30, 7, 2)) * 0.1, axis=0)  # (steps, N, 2)
    out = viz.plot_trajectories({"a": paths, "b": 2 * paths}, cloud(), tmp_path / "t.png",
                                title="two panels")
    with assert_image(out, "PNG") as img:
        assert img.width > 1.5 * img.height  # the panels side by side
    with pytest.raises(ValueError):
        viz.plot_trajectories({"a": paths}, np.zeros((5, 3)), tmp_path / "bad.png")
