"""Conditional generation with classifier-free guidance (Ho & Salimans 2022): the guided mix
against a hand-computed one, w = 0 against plain conditional sampling, --cond-drop 1, the
class embeddings of every network, labels from the loaders, per-class evaluation, and the
refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import IMAGE_TINY, one_line_error, randomise
from sklearn import datasets

import ddpmlab
from ddpmlab.cli import main
from ddpmlab.config import RunConfig, SeedUNetConfig, UNetConfig, replace
from ddpmlab.data import resolve
from ddpmlab.diffusion import predict_eps_x0, split_output
from ddpmlab.metrics.point_evaluator import CLASS_SETS
from ddpmlab.models import build_model
from ddpmlab.models.mlp import ResMLP, SeedMLP
from ddpmlab.models.unet import SeedUNet, UNet
from ddpmlab.reports import report_for
from ddpmlab.runs.evaluation import evaluator_for
from ddpmlab.samplers import SamplerSpec, ddim_sample, ddpm_sample
from ddpmlab.samplers.guidance import class_labels, guided
from ddpmlab.schedules import make_schedule
from ddpmlab.train import Trainer

TINY = ["--steps", "200", "--timesteps", "20", "--hidden", "16", "--batch-size", "64",
        "--quiet", "--no-figures", "--no-eval"]


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cond") / "g8"
    # trained enough that its chains stay near the data (a poor model's chains amplify float
    # rounding: the two-half path's rows would then drift from the one-half path's)
    assert main(["train", "gaussians8", "--conditional", "--out", str(out), *TINY, "--steps",
                 "1000", "--hidden", "32", "--timesteps", "50"]) == 0
    return out


# --- the guided denoiser ----------------------------------------------------------------

def affine_net(calls: list[int]):
    """A stand-in conditional network whose output depends on x, t and y in known ways."""
    def net(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return x * (1.0 + y[:, None]) + 0.1 * t[:, None] ** 2 - y[:, None].float() ** 2
    return net


@pytest.mark.parametrize("w", [0.5, 1.0, 3.0])
def test_the_guided_mix_is_eq_6_in_one_batched_call(w: float) -> None:
    calls: list[int] = []
    net = affine_net(calls)
    x, t = torch.randn(5, 2), torch.tensor([3, 3, 3, 3, 3])
    y, null = torch.tensor([0, 1, 2, 1, 0]), 3
    out = guided(net, y, w, null)(x, t)
    assert calls == [10]  # one call: conditional and unconditional rows side by side
    cond = x * (1 + y[:, None]) + 0.9 - y[:, None] ** 2
    uncond = x * 4 + 0.9 - 9
    torch.testing.assert_close(out, (1 + w) * cond - w * uncond)


def test_a_learned_variance_mixes_the_mean_half_only() -> None:
    def net(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([x + y[:, None], x - 2 * y[:, None]], dim=1)  # mean part, v

    x, t, y = torch.randn(4, 2), torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 1, 0])
    out = guided(net, y, 2.0, 2, "learned_range")(x, t)
    torch.testing.assert_close(out[:, :2], 3 * (x + y[:, None]) - 2 * (x + 2))
    torch.testing.assert_close(out[:, 2:], x - 2 * y[:, None])  # the conditional call's v


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_mixing_the_raw_output_mixes_eps(prediction: str) -> None:
    """Eq. 6 is on eps; for x0 and v networks the mix of outputs has the mixed eps."""
    schedule = make_schedule("cosine", 50)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 2, generator=g), torch.randint(0, 50, (6,), generator=g)
    out_c, out_u, w = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g), 2.5

    def eps(out: torch.Tensor) -> torch.Tensor:
        return predict_eps_x0(schedule, x, t, out, prediction)[0]

    torch.testing.assert_close(eps((1 + w) * out_c - w * out_u),
                               (1 + w) * eps(out_c) - w * eps(out_u), rtol=1e-4, atol=1e-5)


def test_class_labels_share_the_samples_equally() -> None:
    assert class_labels(7, None, 3).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert class_labels(3, 2, 5).tolist() == [2, 2, 2]


def test_class_labels_follow_the_datas_class_shares() -> None:
    """Shares 0.5, 0.3, 0.2 of 7 samples: 3.5, 2.1, 1.4, floored to 3, 2, 1; the one left
    goes to the largest remainder (class 0's 0.5); of 10, exactly 5, 3, 2."""
    data = np.repeat([0, 1, 2], [50, 30, 20])
    assert class_labels(7, None, 3, data).tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert class_labels(10, None, 3, data).tolist() == [0] * 5 + [1] * 3 + [2] * 2
    assert np.bincount(class_labels(1000, None, 4, np.array([3, 3, 1]))).tolist() == [
        0, 333, 0, 667]  # a class the data lacks gets none


# --- the networks -----------------------------------------------------------------------

NETS = {
    "resmlp": (lambda c: ResMLP(20, hidden=16, depth=2, num_classes=c), (2,)),
    "seed_mlp": (lambda c: SeedMLP(20, hidden=16, num_classes=c), (2,)),
    "unet": (lambda c: UNet(UNetConfig(base_channels=8, channel_mult=(1, 2),
                                       attention_resolutions=()), 20, 1, 1, c), (1, 8, 8)),
    "seed_unet": (lambda c: SeedUNet(SeedUNetConfig(poolings=1, base_width=8), 20, 1, 1, c),
                  (1, 8, 8)),
}


@pytest.mark.parametrize("name", NETS)
def test_every_network_takes_a_class(name: str) -> None:
    build, shape = NETS[name]
    torch.manual_seed(0)
    plain = build(0)
    torch.manual_seed(0)
    cond = build(3)
    extra = set(cond.state_dict()) - set(plain.state_dict())
    assert extra and all("class" in k for k in extra)  # nothing else changes
    assert not any("class" in k for k in plain.state_dict())  # no class table without classes
    x, t = torch.randn(4, *shape), torch.tensor([0, 5, 10, 19])
    randomise(cond).eval()  # zero-initialised output layers would hide every difference
    with torch.no_grad():  # the no-class rows back at zero, as built
        for k in extra:
            cond.state_dict()[k][-1].zero_()
    y = torch.tensor([0, 1, 2, 3])
    out = cond(x, t, y)
    assert out.shape == (4, *shape)
    torch.testing.assert_close(out[3], cond(x, t)[3])  # y = 3 (no class) is no label at all
    assert not torch.allclose(out[:3], cond(x, t)[:3])  # a class changes the output
    with pytest.raises(ValueError, match="without classes"):
        plain(x, t, y)
    out.square().sum().backward()
    for k in extra:  # the no-class row is never trained
        grad = dict(cond.named_parameters())[k].grad
        assert grad is not None and grad[-1].abs().max() == 0 and grad[:-1].abs().max() > 0


def test_an_unconditional_network_is_unchanged_by_the_option() -> None:
    config = RunConfig().model
    torch.manual_seed(0)
    a = build_model(config, 20)
    torch.manual_seed(0)
    b = build_model(config, 20, classes=0)
    assert a.state_dict().keys() == b.state_dict().keys()
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


# --- training and sampling --------------------------------------------------------------

def test_cond_drop_1_learns_one_model_for_every_class() -> None:
    x, y = datasets.make_moons(600, noise=0.05, random_state=0)
    base = replace(RunConfig(), {"model": {"conditional": True, "resmlp": {"hidden": 16}},
                                 "diffusion": {"timesteps": 20},
                                 "train": {"steps": 300, "batch_size": 64}})
    xt = torch.randn(5, 2)
    tt = torch.tensor([0, 5, 10, 15, 19])
    gaps = {}
    for drop in (1.0, 0.1):
        config = replace(base, {"train": {"cond_drop": drop}})
        trainer = Trainer(config, torch.tensor(x, dtype=torch.float32),
                          labels=torch.tensor(y), classes=2)
        trainer.fit()
        with torch.no_grad():
            uncond = trainer.ema(xt, tt)
            gaps[drop] = max(float((trainer.ema(xt, tt, torch.full((5,), k)) - uncond)
                                   .abs().max()) for k in (0, 1))
    assert gaps[1.0] == 0  # every label dropped: the class rows never move
    assert gaps[0.1] > 1e-3  # with labels seen, the classes differ


def test_guidance_0_is_plain_conditional_sampling(cond_run: Path) -> None:
    run = ddpmlab.open_run(cond_run)
    y = torch.full((300,), 3)
    how = {"prediction": run.config.diffusion.prediction, "spacing": run.spacing()}
    variance = run.config.diffusion.variance  # learned_range: conditional points' default
    for sampler, plain in (("ddpm", lambda d, g: ddpm_sample(d, run.schedule, (300, 2),
                                                             generator=g, variance=variance,
                                                             **how)),
                           ("ddim", lambda d, g: ddim_sample(
                               lambda x, t: split_output(d(x, t), variance)[0], run.schedule,
                               (300, 2), steps=10, generator=g, **how))):
        spec = SamplerSpec(sampler, steps=10 if sampler == "ddim" else None)
        net = run.denoiser  # the network as the samplers call it, labels given directly
        want = plain(lambda x, t, net=net: net(x, t, y), torch.Generator().manual_seed(4))
        got = run.sample(300, 4, spec, cls=3, guidance=0.0)
        np.testing.assert_allclose(got, run.kind.to_data(want), rtol=1e-5, atol=1e-5)
        # the batched two-half path at a vanishing weight lands on the same samples
        near = run.sample(300, 4, spec, cls=3, guidance=1e-6)
        np.testing.assert_allclose(near, got, rtol=1e-4, atol=1e-4)
        assert not np.allclose(run.sample(300, 4, spec, cls=3, guidance=2.0), got)


def test_a_conditional_run_samples_the_datas_class_shares_unless_told(cond_run: Path) -> None:
    """cls None: plain conditional sampling with each class in the training labels' shares
    (p(x) = sum_y p(y) p(x | y)); "none": the network without a class, which the ODE solves
    unless told a class (and refuses one)."""
    run = ddpmlab.open_run(cond_run)
    data = np.bincount(run.kind.labels(), minlength=8)
    labels = run.labels(300, None)
    assert labels is not None and np.all(np.diff(labels) >= 0)  # in class order
    assert np.abs(np.bincount(labels, minlength=8) / 300 - data / data.sum()).max() <= 1 / 300
    assert run.labels(5, "none") is None
    how = {"prediction": run.config.diffusion.prediction, "spacing": run.spacing()}
    y, net = torch.from_numpy(labels), run.denoiser
    want = ddpm_sample(lambda x, t: net(x, t, y), run.schedule, (300, 2),
                       generator=torch.Generator().manual_seed(4),
                       variance=run.config.diffusion.variance, **how)
    got = run.sample(300, 4)
    np.testing.assert_allclose(got, run.kind.to_data(want), rtol=1e-5, atol=1e-5)
    assert not np.allclose(run.sample(300, 4, cls="none"), got)
    assert run.sample(10, 0, "ode").shape == (10, 2)
    with pytest.raises(ddpmlab.UserError, match="samples the unconditional model only"):
        run.sample(10, 0, "ode", cls=3)


def test_class_all_samples_each_class_in_turn(cond_run: Path, tmp_path: Path) -> None:
    run = ddpmlab.open_run(cond_run)
    labels = run.labels(20, "all")
    assert labels is not None and np.bincount(labels).tolist() == [3, 3, 3, 3, 2, 2, 2, 2]
    assert run.sample(20, 1, cls="all", guidance=1.0).shape == (20, 2)
    assert run.labels(4, "90 deg").tolist() == run.labels(4, 2).tolist() == [2] * 4
    report_for(run).class_figure(tmp_path / "classes.png", 0, 1.0)  # points coloured by class
    assert (tmp_path / "classes.png").stat().st_size > 0


# --- data -------------------------------------------------------------------------------

def test_built_in_shapes_bring_their_labels() -> None:
    points = resolve("moons", 500, 3, 100)
    assert points.class_names == ("upper", "lower")
    assert points.train_labels is not None and points.heldout_labels is not None
    # the lower moon is the one centred lower (sklearn's label 1)
    assert points.train[points.train_labels == 1, 1].mean() < points.train[
        points.train_labels == 0, 1].mean()
    g8 = resolve("gaussians8", 800, 0, 100)
    assert g8.train_labels is not None
    angle = np.round(np.degrees(np.arctan2(g8.train[:, 1], g8.train[:, 0])) / 45) % 8
    assert np.array_equal(angle.astype(int), g8.train_labels)  # the Gaussian each came from
    assert resolve("swiss_roll", 50, 0, 10).class_names is None
    # labelled and unlabelled draws give the same points (unconditional runs unchanged)
    from ddpmlab.data.toy2d import TOY2D
    rng = np.random.default_rng(np.random.SeedSequence(3).spawn(2)[0])
    assert np.array_equal(TOY2D["moons"](500, rng), points.train)


def test_a_label_column_by_name_or_index(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    rows = [f"{i},{'cat' if i % 3 else 'dog'},{i * 0.5}" for i in range(30)]
    f.write_text("x,kind,y\n" + "\n".join(rows) + "\n")
    for column in ("kind", "1"):
        points = resolve(str(f), 0, 0, 5, column)
        assert points.class_names == ("cat", "dog")
        all_x = np.concatenate([points.train, points.heldout])
        all_y = np.concatenate([points.train_labels, points.heldout_labels])
        np.testing.assert_array_equal(all_y, (all_x[:, 0] % 3 == 0).astype(int))
        np.testing.assert_array_equal(all_x[:, 1], all_x[:, 0] * 0.5)


# --- evaluation -------------------------------------------------------------------------

def test_real_data_scores_its_floor_per_class(cond_run: Path) -> None:
    """Real points of each class in place of samples: all in their class, W1 near 1 x floor."""
    from ddpmlab.data.toy2d import LABELLED
    evaluator = evaluator_for(ddpmlab.open_run(cond_run).kind)
    x, y = LABELLED["gaussians8"](1600, np.random.default_rng(12))  # fresh real points
    result = evaluator.per_class(x, y)
    for row in result["classes"].values():
        assert row["accuracy"] == pytest.approx(1.0, abs=0.01)
        assert row["1nna"] < 0.65 and row["w1_ratio"] < 1.6
    # a sample of class 0 labelled class 1: out of its region, far from class 1's points
    wrong = evaluator.per_class(x, (y + 1) % 8)
    assert wrong["overall"]["accuracy"] < 0.01 and wrong["classes"]["45 deg"]["w1_ratio"] > 20


def test_per_class_scores_each_of_its_independent_sample_sets(cond_run: Path) -> None:
    """draws = 3: each class's samples are three sets in order, repeat i scoring set i
    against the same reference sets and floors as one set scored three times; the run's
    per-class evaluation draws CLASS_SETS sets of n."""
    from ddpmlab.data.toy2d import LABELLED
    run = ddpmlab.open_run(cond_run)
    evaluator = evaluator_for(run.kind)
    x, y = LABELLED["gaussians8"](4000, np.random.default_rng(5))
    sets = [x[y == k][:200] for k in range(8)]
    one = evaluator.per_class(np.concatenate(sets), np.repeat(np.arange(8), 200), 0, 1)
    labels = np.repeat(np.arange(8), 600)
    three = evaluator.per_class(np.concatenate([np.tile(a, (3, 1)) for a in sets]), labels, 0, 3)
    moved = evaluator.per_class(np.concatenate([np.concatenate([a, a, a + 0.3]) for a in sets]),
                                labels, 0, 3)
    for name, row in one["classes"].items():
        assert row["n"] == three["classes"][name]["n"] == 200
        for key in ("w1", "w1_floor", "1nna", "1nna_floor"):
            assert three["classes"][name][key] == pytest.approx(row[key], rel=1e-9)
        assert moved["classes"][name]["w1"] > row["w1"] + 0.05  # the third set is scored
    r = ddpmlab.score_classes(run, 0.0, n=12)
    assert r["n"] == 12 and r["draws"] == evaluator.class_draws == CLASS_SETS
    assert all(c["n"] == 12 for c in r["classes"].values())


def test_conditional_points_default_to_a_learned_variance(cond_run: Path) -> None:
    """A conditional point run learns its variance (sigma^2 = beta~ narrows each class: next
    test); unconditional points and conditional images keep theirs; --variance wins."""
    from ddpmlab.modalities import default_config
    cond = {"model": {"conditional": True}}
    assert default_config("moons").diffusion.variance == "fixed_small"
    assert default_config("moons", cond).diffusion.variance == "learned_range"
    mine = default_config("moons", {**cond, "diffusion": {"variance": "fixed_small"}})
    assert mine.diffusion.variance == "fixed_small"
    assert (default_config("digits", cond).diffusion.variance
            == default_config("digits").diffusion.variance)
    assert ddpmlab.open_run(cond_run).config.diffusion.variance == "learned_range"


@pytest.mark.parametrize(("variance", "lo", "hi"), [("fixed_small", 0.86, 0.92),
                                                    ("fixed_large", 0.98, 1.05)])
def test_sigma_beta_tilde_narrows_a_gaussian_with_the_exact_denoiser(
        variance: str, lo: float, hi: float) -> None:
    """One of gaussians8's classes in model space (std 0.1 / 1.42), sampled by DDPM at the
    point defaults (cosine, T = 200) with its exact denoiser: sigma^2 = beta~ gives 0.89 x
    the std (bench/guidance.py --parts exact), sigma^2 = beta about 1.01 x."""
    from ddpmlab.mixture import GaussianMixture
    std = 0.1 / 1.42
    mix = GaussianMixture.isotropic([1.4, 0.0], std)
    schedule = make_schedule("cosine", 200)
    x = ddpm_sample(mix.denoiser(schedule.alpha_bar), schedule, (4000, 2), variance=variance,
                    generator=torch.Generator().manual_seed(0))
    assert lo < float((x - mix.means).std()) / std < hi


def test_evaluate_and_sweep_write_per_class_results(cond_run: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import shutil
    run = Path(shutil.copytree(cond_run, tmp_path / "run"))
    assert main(["evaluate", str(run), "--guidance", "1", "--n-class", "50", "--n", "200",
                 "--repeats", "1", "--quiet"]) == 0
    saved = json.loads((run / "classes.json").read_text())
    assert saved["guidance"] == 1 and saved["n"] == 50 and len(saved["classes"]) == 8
    assert main(["sweep", str(run), "--guidance", "0", "2", "--n", "40", "--quiet"]) == 0
    out = capsys.readouterr().out
    rows = json.loads((run / "guidance.json").read_text())["rows"]
    assert [r["guidance"] for r in rows] == [0, 2] and "W1/floor" in out
    assert (run / "figures" / "guidance.png").stat().st_size > 0


def test_a_conditional_image_run_samples_and_draws_a_row_per_class(tmp_path: Path) -> None:
    out = tmp_path / "digits"
    assert main(["train", "digits", "--conditional", "--out", str(out), *IMAGE_TINY,
                 "--no-eval", "--no-figures"]) == 0
    assert main(["sample", str(out), "--class", "7", "--guidance", "3", "--n", "5", "--out",
                 str(tmp_path / "sevens.npy"), "--quiet"]) == 0
    assert np.load(tmp_path / "sevens.npy").shape == (5, 1, 8, 8)
    run = ddpmlab.open_run(out)
    result = evaluator_for(run.kind).per_class(run.sample(30, cls="all", guidance=1.0),
                                               run.labels(30, "all"))
    assert set(result["classes"]) == {str(k) for k in range(10)}
    assert {"fd", "fd_floor", "accuracy", "accuracy_real"} <= set(result["overall"])
    report_for(run).class_figure(tmp_path / "classes.png", 0, 1.0)
    assert (tmp_path / "classes.png").stat().st_size > 0


# --- refusals ---------------------------------------------------------------------------

def test_unknown_classes_are_refused(cond_run: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    for cls in ("8", "north"):
        code = main(["sample", str(cond_run), "--class", cls, "--out", str(tmp_path / "a.csv")])
        one_line_error(capsys, code, f"unknown class {cls if cls == 'north' else 8!r}",
                       "0..7", "45 deg")
    code = main(["sample", str(cond_run), "--class", "none", "--guidance", "2", "--out",
                 str(tmp_path / "a.csv")])
    one_line_error(capsys, code, "--guidance needs classes", "other than none")
    assert not (tmp_path / "a.csv").exists()


def test_class_on_an_unconditional_run_is_refused(tiny_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sample", str(tiny_run), "--class", "1", "--out", str(tmp_path / "a.csv")])
    one_line_error(capsys, code, "--class needs a conditional run")
    code = main(["sweep", str(tiny_run), "--guidance", "0", "1"])
    one_line_error(capsys, code, "--guidance needs a conditional run")
    for flag in ("--guidance", "--n-class"):
        code = main(["evaluate", str(tiny_run), flag, "1"])
        one_line_error(capsys, code, "--guidance and --n-class need a conditional run")


def test_data_without_two_classes_is_refused(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.csv"
    one.write_text("x,y,c\n" + "".join(f"{i},{i * i},a\n" for i in range(20)))
    code = main(["train", str(one), "--label-column", "c", "--out", str(tmp_path / "r"), *TINY])
    one_line_error(capsys, code, "holds one class only", "'a'")
    code = main(["train", "swiss_roll", "--conditional", "--out", str(tmp_path / "r"), *TINY])
    one_line_error(capsys, code, "--conditional needs data with two classes", "no labels")
    code = main(["train", str(one), "--label-column", "z", "--out", str(tmp_path / "r"), *TINY])
    one_line_error(capsys, code, "no column named 'z'")
    assert not (tmp_path / "r").exists()
