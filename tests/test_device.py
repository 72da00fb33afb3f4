"""Devices: the CPU path of an explicit device is today's default bit for bit, nothing is made
on torch's default device behind the inputs' backs, --device is read strictly, and (where a
GPU exists) a run trains, saves, resumes and samples on CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import final

from ddpmlab import checkpoint
from ddpmlab.accel.mlp import sampling_denoiser
from ddpmlab.config import RunConfig, replace
from ddpmlab.devices import resolve_device
from ddpmlab.errors import UserError
from ddpmlab.likelihood import nll_bound, prior_kl
from ddpmlab.samplers import ddim_chain, ddpm_chain
from ddpmlab.schedules import make_schedule
from ddpmlab.train import Trainer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

POINTS = {"data": {"source": "moons", "n_train": 200, "heldout": 50},
          "diffusion": {"timesteps": 20},
          "model": {"resmlp": {"hidden": 16}, "seed_mlp": {"hidden": 16}},
          "train": {"steps": 6, "batch_size": 32, "log_every": 2, "snapshots": [3]}}
UNET = {"model": {"name": "unet", "unet": {"base_channels": 8, "channel_mult": [1, 2],
                                           "num_res_blocks": 1, "attention_resolutions": [2],
                                           "groups": 4, "dropout": 0.0}}}
# (changes, autograd): the hand-derived gradients of both MLPs, autograd, the hybrid loss
TRAINERS = [({}, False), ({"model": {"name": "seed_mlp"}}, False), ({}, True),
            ({"diffusion": {"variance": "learned_range", "prediction": "v",
                            "antithetic": True}}, False)]
NO_CUDA = ("--device cuda: no CUDA device is visible to torch (torch.cuda.is_available() is "
           "False); use --device cpu or auto")


def config(changes: dict | None = None) -> RunConfig:
    merged = {**POINTS, **{k: {**POINTS.get(k, {}), **v} for k, v in (changes or {}).items()}}
    return replace(RunConfig(), merged)


def points(n: int = 200) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(7))


def trained(cfg: RunConfig, x: torch.Tensor, steps: int = 4, **kw: object) -> Trainer:
    trainer = Trainer(cfg, x, **kw)
    for _ in range(steps):
        trainer.train_step()
    return trainer


def state(trainer: Trainer) -> list[torch.Tensor]:
    o = trainer.optimizer
    return [trainer.flat, trainer.ema_flat, trainer.grad_flat, o.exp_avg, o.exp_avg_sq, o.steps,
            trainer.generator.get_state()]


def assert_identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b) and all(x.device == y.device and torch.equal(x, y)
                                    for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------ the CPU path, unchanged


def test_a_schedule_on_its_own_device_is_itself_and_other_devices_get_one_cached_copy() -> None:
    s = make_schedule("cosine", 20)
    assert s.device == torch.device("cpu")
    assert s.to("cpu") is s and s.to(torch.device("cpu")) is s  # the CPU path copies nothing
    meta = s.to("meta")  # a device every machine has, standing in for cuda
    assert meta is not s and meta.to("meta") is meta and s.to("meta") is meta
    assert meta.to("cpu") is s  # every copy shares one cache
    assert meta.T == s.T and meta.beta.device.type == "meta" and meta.beta.dtype == torch.float32
    assert s.respaced(np.arange(20)) is s
    respaced = s.respaced(np.array([15, 10, 5, 0]))
    assert respaced.device == torch.device("cpu") and respaced.T == 4


@pytest.mark.parametrize(("changes", "autograd"), TRAINERS)
def test_training_on_an_explicit_cpu_is_the_default_bit_for_bit(changes, autograd) -> None:
    cfg, x = config(changes), points()
    default = trained(cfg, x, autograd=autograd)
    for device in ("cpu", torch.device("cpu"), "auto" if not torch.cuda.is_available() else "cpu"):
        explicit = trained(cfg, x, autograd=autograd, device=device)
        assert_identical(state(default), state(explicit))
        assert explicit.device == torch.device("cpu") and explicit.generator.device.type == "cpu"
    assert explicit.x_train is x  # moved to the CPU: itself, not a copy
    assert explicit.schedule.to("cpu") is explicit.schedule


def test_checkpoint_tensors_of_a_cpu_run_are_its_own_cpu_tensors() -> None:
    trainer = trained(config(), points())
    saved = trainer.to_checkpoint({})
    tensors = [*saved.model.values(), *saved.ema.values(), saved.rng,
               *(v for s in saved.optimizer["state"].values() for v in s.values())]
    assert all(t.device.type == "cpu" for t in tensors)
    assert saved.optimizer["param_groups"][0]["betas"] == (0.9, 0.999)
    flat = trainer.model.state_dict()
    assert all(torch.equal(saved.model[k], v) for k, v in flat.items())


@pytest.fixture(scope="module")
def denoiser_and_schedule():
    trainer = trained(config(), points(), steps=10)
    return sampling_denoiser(trainer.ema), trainer.schedule, trainer.ema


@pytest.mark.parametrize("sampler", ["ddpm", "ddpm_K5", "ddim", "ddim_eta1", "ddim_K5"])
def test_sampling_with_a_cpu_generator_named_or_not_is_the_same_bit_for_bit(
        denoiser_and_schedule, sampler) -> None:
    den, schedule, _ = denoiser_and_schedule
    kind, *rest = sampler.split("_")
    kw = {"steps": 5} if rest == ["K5"] else {"eta": 1.0} if rest == ["eta1"] else {}
    chain = ddpm_chain if kind == "ddpm" else ddim_chain

    def run(generator=None, x_T=None):
        return final(chain(den, schedule, (64, 2), generator=generator, x_T=x_T, **kw))

    plain = run(torch.Generator().manual_seed(3))
    named = run(torch.Generator(device="cpu").manual_seed(3))
    device = run(torch.Generator(device=torch.device("cpu")).manual_seed(3))
    assert plain.device.type == "cpu" and torch.equal(plain, named) and torch.equal(plain, device)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(3))
    if kind == "ddim" and rest != ["eta1"]:  # deterministic: no generator needed
        assert torch.equal(run(x_T=x_T), plain)
    torch.manual_seed(0)
    no_generator = run(x_T=x_T)  # noise from the global CPU generator
    assert no_generator.device.type == "cpu" and torch.isfinite(no_generator).all()


def test_the_bound_with_a_named_cpu_generator_is_the_default_bit_for_bit(
        denoiser_and_schedule) -> None:
    _, schedule, model = denoiser_and_schedule
    x = points(32)
    a = nll_bound(schedule, model, x, generator=torch.Generator().manual_seed(1))
    b = nll_bound(schedule, model, x, generator=torch.Generator(device="cpu").manual_seed(1))
    assert np.array_equal(a.terms, b.terms) and a.prior == b.prior


# ------------------------------------------------------------------ nothing on the default device


@pytest.mark.parametrize(("changes", "autograd"), TRAINERS)
def test_a_training_step_makes_nothing_on_the_default_device(changes, autograd) -> None:
    """Under ``with torch.device("meta")`` every tensor made without a device is a meta
    tensor, which cannot meet the CPU inputs: a step that passes made all of its tensors on
    its inputs' device, as it must on CUDA."""
    cfg, x = config(changes), points()
    reference = trained(cfg, x, steps=3, autograd=autograd)
    trainer = Trainer(cfg, x, autograd=autograd)
    with torch.device("meta"):
        for _ in range(3):
            trainer.train_step()
    assert_identical(state(reference), state(trainer))


def test_a_unet_training_step_makes_nothing_on_the_default_device() -> None:
    cfg = config(UNET)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    reference = trained(cfg, x, steps=2)
    trainer = Trainer(cfg, x)
    with torch.device("meta"):
        for _ in range(2):
            trainer.train_step()
    assert_identical(state(reference), state(trainer))


@pytest.mark.parametrize("sampler", ["ddpm", "ddpm_K5", "ddpm_learned", "ddim_eta1", "bound"])
def test_sampling_and_the_bound_make_nothing_on_the_default_device(sampler) -> None:
    learned = sampler == "ddpm_learned"
    trainer = Trainer(config({"diffusion": {"variance": "learned_range"}} if learned else {}),
                      points())
    schedule = trainer.schedule
    variance = {"variance": "learned_range"} if learned else {}
    x0 = points(16)

    def run():
        g = torch.Generator().manual_seed(5)
        den = sampling_denoiser(trainer.ema)  # its buffers made inside too
        if sampler == "bound":
            b = nll_bound(schedule, trainer.ema, x0, generator=g, **variance)
            return torch.cat([torch.from_numpy(b.terms).float(), prior_kl(schedule, x0)])
        if sampler.startswith("ddim"):
            return final(ddim_chain(den, schedule, (40, 2), generator=g, eta=1.0))
        steps = {"steps": 5} if sampler == "ddpm_K5" else {}
        return final(ddpm_chain(den, schedule, (40, 2), generator=g, **variance, **steps))

    reference = run()
    with torch.device("meta"):
        result = run()
    assert result.device.type == "cpu" and torch.equal(reference, result)


def test_a_chain_refuses_a_generator_and_an_x_T_on_different_devices() -> None:
    schedule = make_schedule("cosine", 20)
    x_T = torch.zeros(4, 2, device="meta")
    with pytest.raises(ValueError, match="generator is on cpu but x_T on meta"):
        next(ddpm_chain(lambda x, t: x, schedule, (4, 2), generator=torch.Generator(), x_T=x_T))


# ------------------------------------------------------------------ --device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_auto_is_the_cpu_and_cuda_is_refused_in_one_line_without_a_gpu() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError) as e:
        resolve_device("cuda")
    assert str(e.value) == NO_CUDA
    with pytest.raises(UserError, match=r"^--device cuda:1: no CUDA device is visible"):
        resolve_device("cuda:1")
    with pytest.raises(UserError, match="no CUDA device is visible"):
        Trainer(config(), points(), device="cuda")


def test_unknown_devices_are_refused_naming_the_choices() -> None:
    for name in ("tpu", "CPU", "cuda:", "cuda:x", "gpu", ""):
        with pytest.raises(UserError) as e:
            resolve_device(name)
        assert str(e.value) == (f"unknown device {name!r}; choose one of: auto, cpu, cuda, "
                                "cuda:N")


@needs_cuda
def test_auto_is_cuda_where_torch_sees_one() -> None:
    assert resolve_device("auto").type == "cuda" and resolve_device("cuda").index is not None
    n = torch.cuda.device_count()
    with pytest.raises(UserError, match=f"torch sees {n} CUDA device"):
        resolve_device(f"cuda:{n}")


# ------------------------------------------------------------------ resuming across devices


def test_a_checkpoint_from_another_kind_of_generator_resumes_reproducibly(tmp_path: Path) -> None:
    """A CUDA generator's state (16 bytes: seed and offset) cannot be set on a CPU one: the
    resume reseeds from it instead, the same way every time."""
    cfg, x = config(), points()
    saved = trained(cfg, x).to_checkpoint({})
    saved.rng = torch.Generator(device="cpu").manual_seed(0).get_state()[:16].clone()
    path = tmp_path / "c.safetensors"
    checkpoint.save(path, saved)
    runs = []
    for _ in range(2):
        resumed = Trainer(cfg, x, resume_from=checkpoint.load(path))
        assert resumed.step == 4
        resumed.fit()
        runs.append(state(resumed))
    assert_identical(*runs)
    assert all(torch.isfinite(t.float()).all() for t in runs[0])


# ------------------------------------------------------------------ on a GPU


@needs_cuda
@pytest.mark.parametrize(("changes", "autograd"), TRAINERS)
def test_training_on_cuda_keeps_everything_there_and_saves_cpu_tensors(changes, autograd) -> None:
    cfg, x = config(changes), points()
    trainer = trained(cfg, x, autograd=autograd, device="cuda")
    assert all(t.device.type == "cuda" for t in [*state(trainer)[:-1], trainer.x_train,
                                                 *trainer.model.parameters(),
                                                 *trainer.ema.parameters()])
    assert trainer.generator.device.type == "cuda"
    assert trainer.schedule.beta.device.type == "cuda"
    saved = trainer.to_checkpoint({})
    tensors = [*saved.model.values(), *saved.ema.values(), saved.rng,
               *(v for s in saved.optimizer["state"].values() for v in s.values())]
    assert all(t.device.type == "cpu" and torch.isfinite(t.float()).all() for t in tensors)
    # the CPU run starts from the same weights: the initial draw is made on the CPU
    cpu = Trainer(cfg, x, autograd=autograd)
    assert torch.equal(Trainer(cfg, x, device="cuda").flat.cpu(), cpu.flat)


@needs_cuda
def test_the_hand_derived_gradients_on_cuda_match_autograd() -> None:
    cfg, x = config(), points()
    fast, slow = (trained(cfg, x, steps=1, device="cuda", autograd=a) for a in (False, True))
    torch.testing.assert_close(fast.grad_flat, slow.grad_flat, rtol=1e-4,
                               atol=1e-5 * float(slow.grad_flat.abs().max()))


@needs_cuda
def test_a_cuda_checkpoint_resumes_on_the_cpu_and_on_cuda(tmp_path: Path) -> None:
    cfg, x = config(), points()
    path = tmp_path / "c.safetensors"
    trainer = trained(cfg, x, device="cuda")
    checkpoint.save(path, trainer.to_checkpoint({}))
    for device in ("cpu", "cuda"):
        resumed = Trainer(cfg, x, resume_from=checkpoint.load(path), device=device)
        assert resumed.step == 4 and resumed.flat.device.type == device
        assert torch.equal(resumed.flat.cpu(), trainer.flat.cpu())
        assert torch.equal(resumed.optimizer.exp_avg.cpu(), trainer.optimizer.exp_avg.cpu())
        resumed.fit()
        assert resumed.step == cfg.train.steps
        assert all(torch.isfinite(t.float()).all() for t in state(resumed))
    again = Trainer(cfg, x, resume_from=checkpoint.load(path), device="cuda")
    assert torch.equal(again.generator.get_state(), trainer.generator.get_state())


@needs_cuda
@pytest.mark.parametrize("sampler", ["ddpm", "ddpm_K5", "ddim", "ddim_eta1"])
def test_sampling_on_cuda_twice_with_one_seed_gives_the_same_samples(sampler) -> None:
    trainer = trained(config(), points(), steps=10, device="cuda")
    den, schedule = sampling_denoiser(trainer.ema), make_schedule("cosine", 20)  # a CPU one
    kind, *rest = sampler.split("_")
    kw = {"steps": 5} if rest == ["K5"] else {"eta": 1.0} if rest == ["eta1"] else {}
    chain = ddpm_chain if kind == "ddpm" else ddim_chain
    runs = [final(chain(den, schedule, (300, 2), generator=torch.Generator("cuda").manual_seed(4),
                       **kw)) for _ in range(2)]
    assert runs[0].device.type == "cuda" and torch.isfinite(runs[0]).all()
    assert torch.equal(runs[0], runs[1])
    b = nll_bound(schedule, trainer.ema, points(32).cuda(),
                  generator=torch.Generator("cuda").manual_seed(1))
    assert np.isfinite(b.nats)


@needs_cuda
def test_images_train_and_sample_on_cuda() -> None:
    cfg = config(UNET)
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    trainer = trained(cfg, x, steps=2, device="cuda")
    g = [torch.Generator("cuda").manual_seed(2) for _ in range(2)]
    runs = [final(ddim_chain(trainer.ema, trainer.schedule, (4, 1, 8, 8), steps=4, generator=r,
                            clip=True)) for r in g]
    assert runs[0].device.type == "cuda" and torch.equal(runs[0], runs[1])
