"""Training: determinism, checkpoints, divergence. (Resuming: test_resume_contract.py;
configuration: test_config.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import small_config

from ddpmlab import checkpoint, open_run, train_run
from ddpmlab.errors import UserError
from ddpmlab.runs.layout import CKPT
from ddpmlab.train import Diverged, Trainer


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    x = torch.randn(200, 2)
    runs = []
    for seed in (0, 0, 1):
        trainer = Trainer(small_config(seed=seed), x)
        trainer.fit()
        runs.append(weights(trainer.ema))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_checkpoint_round_trip_keeps_every_tensor_and_the_config(tmp_path: Path) -> None:
    config = small_config()
    trainer = Trainer(config, torch.randn(100, 2))
    for _ in range(3):
        trainer.train_step()
    saved = trainer.to_checkpoint({"name": "x", "standardizer": {"mean": [0, 0], "std": [1, 1]}})
    checkpoint.save(tmp_path / "c.safetensors", saved)
    loaded = checkpoint.load(tmp_path / "c.safetensors")
    assert loaded.config == config and loaded.step == 3 and loaded.meta == saved.meta
    assert all(torch.equal(saved.model[k], loaded.model[k]) for k in saved.model)
    assert torch.equal(saved.rng, loaded.rng)
    restored = Trainer(config, torch.randn(100, 2), resume_from=loaded)
    a, b = trainer.optimizer.state_dict(), restored.optimizer.state_dict()
    for i, state in a["state"].items():
        assert all(torch.equal(v, b["state"][i][k]) for k, v in state.items())


def test_checkpoint_refuses_pickle_truncation_and_foreign_files(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.safetensors"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(UserError, match="not a ddpmlab checkpoint"):
        checkpoint.load(evil)
    assert not marker.exists()

    good = tmp_path / "good.safetensors"
    trainer = Trainer(small_config(), torch.randn(100, 2))
    checkpoint.save(good, trainer.to_checkpoint({}))
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(UserError, match="damaged|truncated"):
        checkpoint.load(truncated)
    with pytest.raises(UserError, match="not found"):
        checkpoint.load(tmp_path / "none.safetensors")


def test_divergence_stops_with_the_step_and_keeps_no_nan_checkpoint(tmp_path: Path) -> None:
    config = small_config(lr=1e3, warmup=0, steps=200)  # checkpoint_every 1000: none before
    with pytest.raises(UserError, match=r"the loss became (nan|inf) at step \d+; lower.*"
                       "no checkpoint was written"):
        train_run(config, tmp_path / "run", progress=False, figures=False)
    assert not (tmp_path / "run" / CKPT).exists()  # no checkpoint holding NaN weights


def test_divergence_keeps_the_last_periodic_checkpoint(tmp_path: Path) -> None:
    every = 2
    config = small_config(lr=1e3, warmup=0, steps=200, checkpoint_every=every)
    with pytest.raises(UserError) as e:
        train_run(config, tmp_path / "run", progress=False, figures=False)
    message = str(e.value)
    m = re.search(r"became (nan|inf|non-finite) at step (\d+); lower the learning rate .*"
                  r"keeps step (\d+)$", message)
    assert m and "\n" not in message, message
    diverged, kept = int(m[2]), int(m[3])
    saved = checkpoint.load(tmp_path / "run" / CKPT)
    assert saved.step == kept == (diverged - 1) // every * every > 0
    for part in (saved.model, saved.ema):
        assert all(torch.isfinite(v).all() for v in part.values())
    assert open_run(tmp_path / "run").step == kept  # the run opens (its weights are huge)


def test_to_checkpoint_refuses_non_finite_weights() -> None:
    trainer = Trainer(small_config(), torch.randn(100, 2))
    trainer.train_step()
    with torch.no_grad():
        trainer.params[0][0, 0] = float("nan")  # an update that overflowed, loss still finite
    with pytest.raises(Diverged, match="weights became non-finite at step 1"):
        trainer.to_checkpoint({})
