"""Configuration: from_dict and TOML files refuse unknown keys and wrong types, the named
choices (``Literal`` types) are exactly what the registries implement, a bad name is one
line however the config is built, and the learning-rate schedules."""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from pathlib import Path

import pytest
import torch
from helpers import small_config

from ddpmlab import diffusion, models, objectives, schedules
from ddpmlab.config import (
    DiffusionConfig,
    LrSchedule,
    ModelConfig,
    ModelName,
    Objective,
    Prediction,
    RunConfig,
    Schedule,
    TrainConfig,
    Variance,
    from_dict,
    load_toml,
    replace,
    to_dict,
    validate,
)
from ddpmlab.errors import UserError
from ddpmlab.train import Trainer, lr_factor

# --- keys and types -----------------------------------------------------------------------


def test_config_from_dict_refuses_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(UserError, match="unknown setting train.stepz; valid in \\[train\\]"):
        from_dict(RunConfig, {"train": {"stepz": 3}})
    with pytest.raises(UserError, match="train.steps must be int"):
        from_dict(RunConfig, {"train": {"steps": "3"}})
    assert from_dict(RunConfig, {"train": {"lr": 1}}).train.lr == 1.0  # int -> float is exact
    assert from_dict(RunConfig, to_dict(small_config())) == small_config()
    with pytest.raises(UserError, match="timesteps must be at least 2"):
        validate(replace(RunConfig(), {"diffusion": {"timesteps": 1}}))


def test_toml_file_sets_the_same_fields(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[model]\nname = "seed_mlp"\n[train]\nsteps = 7\nsnapshots = [1, 2]\n')
    config = from_dict(RunConfig, load_toml(path))
    assert config.model.name == "seed_mlp" and config.train.steps == 7
    assert config.train.snapshots == (1, 2)
    path.write_text("[train\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_toml(path)


# --- named choices ------------------------------------------------------------------------

#: (the Literal, the names its implementation offers)
REGISTRIES = {
    "schedule": (Schedule, schedules.SCHEDULES),
    "variance": (Variance, diffusion.VARIANCES),
    "prediction": (Prediction, diffusion.PREDICTIONS),
    "model": (ModelName, models.MODELS),
    "objective": (Objective, objectives.OBJECTIVES),
}


@pytest.mark.parametrize("setting", REGISTRIES)
def test_the_choices_are_exactly_the_names_the_registries_implement(setting: str) -> None:
    choices, registry = REGISTRIES[setting]
    assert set(typing.get_args(choices)) == set(registry)
    assert len(typing.get_args(choices)) == len(set(typing.get_args(choices)))


def test_every_choice_builds_and_runs() -> None:
    """A config naming any choice is accepted, and what it names does its job: a schedule,
    a network of the right kind, a training step with each variance and target."""
    for name in typing.get_args(Schedule):
        s = schedules.make_schedule(name, 200, warn=False)
        assert s.T == 200 and torch.isfinite(s.alpha_bar).all()
    for name in typing.get_args(ModelName):
        shape = (2,) if name.endswith("mlp") else (1, 8, 8)
        net = models.build_model(from_dict(ModelConfig, {"name": name}), 20, shape)
        out = net(torch.zeros(3, *shape), torch.zeros(3, dtype=torch.long))
        assert out.shape == (3, *shape)
    for variance, prediction in itertools.product(typing.get_args(Variance),
                                                  typing.get_args(Prediction)):
        config = small_config(steps=2)
        config = replace(config, {"diffusion": {"variance": variance,
                                                "prediction": prediction}})
        trainer = Trainer(config, torch.randn(64, 2, generator=torch.Generator().manual_seed(0)))
        assert all(torch.isfinite(trainer.train_step()).reshape(-1))


#: (section, dataclass, field, the word the message uses)
NAMED = [("diffusion", DiffusionConfig, "schedule", "schedule"),
         ("diffusion", DiffusionConfig, "variance", "variance"),
         ("diffusion", DiffusionConfig, "prediction", "prediction"),
         ("diffusion", DiffusionConfig, "objective", "objective"),
         ("model", ModelConfig, "name", "model"),
         ("train", TrainConfig, "lr_schedule", "lr schedule")]


@pytest.mark.parametrize(("section", "cls", "field", "word"), NAMED,
                         ids=[f"{s}.{f}" for s, _, f, _ in NAMED])
def test_a_bad_name_is_one_line_from_a_dict_and_from_the_dataclass(
        section: str, cls: type, field: str, word: str) -> None:
    hints = typing.get_type_hints(cls)
    choices = typing.get_args(hints[field])
    want = f"unknown {word} 'bogus'; choose one of: {', '.join(choices)}"
    with pytest.raises(UserError) as from_a_dict:
        from_dict(RunConfig, {section: {field: "bogus"}})
    with pytest.raises(UserError) as direct:
        cls(**{field: "bogus"})
    with pytest.raises(UserError) as replaced:
        dataclasses.replace(cls(), **{field: "bogus"})
    for e in (from_a_dict, direct, replaced):
        assert str(e.value) == want
    for choice in choices:  # and every choice is accepted both ways
        assert getattr(cls(**{field: choice}), field) == choice
        built = from_dict(RunConfig, {section: {field: choice}})
        assert getattr(getattr(built, section), field) == choice


# --- learning-rate schedules ----------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    config = small_config(steps=100, warmup=10)
    factors = [lr_factor(config, s) for s in range(101)]
    assert factors[0] == pytest.approx(0.1, rel=0.01) and max(factors) <= 1.0
    assert factors[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_lr_factor_follows_each_lr_schedule() -> None:
    """Both schedules share the linear warm-up; cosine then decays to 0 at the last step,
    constant stays at the peak. Every choice of LrSchedule has its expected shape here."""
    expected = {
        "cosine": lambda s: 0.5 * (1 + math.cos(math.pi * s / 100)),
        "constant": lambda s: 1.0,
    }
    assert set(expected) == set(typing.get_args(LrSchedule))
    curves = {}
    for name, after in expected.items():
        config = small_config(steps=100, warmup=10, lr_schedule=name)
        factors = [lr_factor(config, s) for s in range(101)]
        for s in range(10):
            assert factors[s] == pytest.approx((s + 1) / 10 * after(s), rel=1e-6), (name, s)
        for s in range(10, 101):
            assert factors[s] == pytest.approx(after(s), rel=1e-6, abs=1e-12), (name, s)
        curves[name] = factors
    assert curves["constant"][100] == 1.0 and curves["cosine"][100] == pytest.approx(0.0,
                                                                                  abs=1e-12)
