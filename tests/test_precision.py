"""Mixed precision (``ddpmlab.precision``) and the Min-SNR-gamma loss weight: what each
precision resolves to, that only the network's passes change (float32 state, float32 maths,
the ODE in float32), bf16 gradients and samples beside float32's, and the weight against its
definition in x0 space (Hang et al. 2023)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from helpers import IMAGE_TINY, TINY, one_line_error

import ddpmlab
from ddpmlab import precision
from ddpmlab.cli import main
from ddpmlab.config import RunConfig, replace
from ddpmlab.diffusion import min_snr_weight, predict_eps_x0, q_sample, target_for
from ddpmlab.errors import UserError
from ddpmlab.modalities import default_config, modality_for
from ddpmlab.models import build_network
from ddpmlab.schedules import make_schedule
from ddpmlab.train.trainer import Trainer

CPU = torch.device("cpu")
#: a digits U-Net small enough for a few steps (the IMAGE_TINY run as a configuration)
DIGITS = {"model": {"conditional": False, "unet": {"base_channels": 8}},
          "diffusion": {"timesteps": 10},
          "train": {"batch_size": 32, "steps": 4}}


def digits_trainer(precision_name: str) -> Trainer:
    config = default_config("digits", DIGITS)
    config = replace(config, {"train": {"precision": precision_name}})
    kind = modality_for("digits").prepare(config)
    return Trainer(config, torch.from_numpy(kind.model_input()))


def test_native_bf16_is_what_the_cpu_reports() -> None:
    """Detected from torch's CPU capability probes, checked against the kernel's own flags."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.fail("this check reads /proc/cpuinfo (Linux)")
    flags = set(re.findall(r"\b(amx_tile|avx512_bf16)\b", cpuinfo.read_text()))
    assert precision.native_bf16(CPU) == bool(flags)


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_for_a_unet_only_where_the_hardware_has_it(native: bool,
                                                                monkeypatch) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    unet = build_network(default_config("digits", DIGITS), (1, 8, 8))
    mlp = build_network(RunConfig(), (2,))
    assert precision.autocast_dtype("auto", CPU, unet) == (torch.bfloat16 if native else None)
    assert precision.autocast_dtype("auto", CPU, mlp) is None
    assert precision.autocast_dtype("fp32", CPU, unet) is None
    assert precision.autocast_dtype("bf16", CPU, unet) is torch.bfloat16
    with pytest.raises(UserError, match="point MLP"):
        precision.autocast_dtype("bf16", CPU, mlp)
    with pytest.raises(UserError, match="auto, fp32, bf16"):
        precision.autocast_dtype("fp16", CPU, unet)


def test_bf16_rounds_the_passes_and_nothing_else() -> None:
    """One step from the same draws: the gradient in bf16 points where float32's does, and
    the weights, EMA, gradient buffer and Adam's moments stay float32."""
    steps = {p: digits_trainer(p) for p in ("fp32", "bf16")}
    assert steps["bf16"].autocast is torch.bfloat16 and steps["fp32"].autocast is None
    losses = {p: float(t.train_step()) for p, t in steps.items()}
    g32, g16 = steps["fp32"].grad_flat, steps["bf16"].grad_flat
    cosine = float(torch.dot(g32, g16) / (g32.norm() * g16.norm()))
    assert cosine > 0.99, cosine
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
    t = steps["bf16"]
    state = [t.flat, t.ema_flat, t.grad_flat, *t.optimizer.state_dict()["state"].values()]
    assert all(s.dtype == torch.float32 for s in state if isinstance(s, torch.Tensor))


def test_cli_records_the_precision_and_samples_with_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["train", "digits", "--out", str(out), "--precision", "bf16", "--no-figures",
                 "--no-eval", *IMAGE_TINY]) == 0
    run = ddpmlab.open_run(out)
    assert run.config.train.precision == "bf16" and run.autocast is torch.bfloat16
    # bfloat16 convolutions sample faster in contiguous memory (bench/precision.py)
    assert all(p.is_contiguous() for p in run.model.parameters())
    x = torch.randn(6, 1, 8, 8)
    t = torch.full((6,), 5)
    out16 = run.denoiser(x, t)
    run.autocast = None
    out32 = run.denoiser(x, t)
    assert out16.dtype == torch.float32
    assert not torch.equal(out16, out32)  # the passes were rounded ...
    assert float((out16 - out32).norm() / out32.norm()) < 3e-2  # ... and only rounded


def test_the_ode_sampler_integrates_in_float32(tmp_path: Path) -> None:
    """The adaptive solver's error control needs float32 passes: the same samples with the
    run's precision bf16 or fp32."""
    out = tmp_path / "run"
    assert main(["train", "digits", "--out", str(out), "--precision", "bf16", "--no-figures",
                 "--no-eval", *IMAGE_TINY]) == 0
    run = ddpmlab.open_run(out)
    spec = ddpmlab.SamplerSpec("ode", rtol=1e-3, atol=1e-3)
    a = run.sample(4, seed=1, sampler=spec)
    run.autocast = None
    assert (a == run.sample(4, seed=1, sampler=spec)).all()


def test_bf16_on_points_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    code = main(["train", "moons", "--out", str(tmp_path / "run"), "--precision", "bf16",
                 *TINY])
    one_line_error(capsys, code, "--precision bf16", "point MLP")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_min_snr_weight_is_min_snr_gamma_on_the_x0_error(prediction: str,
                                                         schedule: str) -> None:
    """Hang et al. 2023, Eq. 7: the weighted loss in the target's space equals
    min(SNR_t, gamma) ||x0 - x0_hat||^2, with x0_hat read from any output by the
    parameterisation (not by the weight's own algebra)."""
    s = make_schedule(schedule, 200)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(200)
    x0, eps = torch.randn(200, 3, generator=g), torch.randn(200, 3, generator=g)
    x_t = q_sample(s, x0, t, eps)
    target = target_for(s, prediction, x0, eps, t)
    output = target + 0.1 * torch.randn(200, 3, generator=g, dtype=torch.float32)
    x0_hat = predict_eps_x0(s, x_t, t, output, prediction)[1]
    ab = torch.from_numpy(s.alpha_bar64)
    want = torch.minimum(ab / (1 - ab), torch.tensor(5.0, dtype=torch.float64))
    weighted = min_snr_weight(s, prediction, t, 5.0) * (output - target).square().sum(1)
    expected = want * (x0 - x0_hat).double().square().sum(1)
    torch.testing.assert_close(weighted.double(), expected, rtol=2e-3, atol=1e-6)


def test_min_snr_trains_points_through_autograd_and_its_loss_is_weighted() -> None:
    config = replace(RunConfig(), {"data": {"n_train": 200, "heldout": 50},
                                   "diffusion": {"timesteps": 20, "min_snr_gamma": 5.0},
                                   "model": {"resmlp": {"hidden": 16}},
                                   "train": {"steps": 2, "batch_size": 32}})
    kind = modality_for("moons").prepare(config)
    trainer = Trainer(config, torch.from_numpy(kind.model_input()))
    assert type(trainer.gradients).__name__ == "Autograd"
    assert torch.isfinite(trainer.train_step())


@pytest.mark.parametrize(("flags", "needle"), [
    (["--objective", "flow"], "flow objective"),
    (["--variance", "learned_range"], "learned_range"),
    (["--min-snr", "-1"], "min_snr_gamma must be >= 0"),
])
def test_min_snr_where_it_does_not_apply_is_refused(flags: list[str], needle: str,
                                                     tmp_path: Path, capsys) -> None:
    extra = [] if "--min-snr" in flags else ["--min-snr", "5"]
    code = main(["train", "moons", "--out", str(tmp_path / "run"), *extra, *flags, *TINY])
    one_line_error(capsys, code, needle)
    assert not (tmp_path / "run").exists()


def test_compile_trains_through_torch_compile_on_the_same_parameters(monkeypatch) -> None:
    """--compile hands the network to torch.compile (measured in bench/precision.py, too slow
    to compile here), and the compiled module's parameters are the trainer's flat buffer."""
    compiled: list[torch.nn.Module] = []

    def record(model: torch.nn.Module) -> torch.nn.Module:
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", record)
    t = digits_trainer("fp32")
    assert not compiled
    config = replace(t.config, {"train": {"compile": True}})
    kind = modality_for("digits").prepare(config)
    t = Trainer(config, torch.from_numpy(kind.model_input()))
    assert compiled == [t.model]
    before = t.flat.clone()
    t.train_step()
    assert not torch.equal(before, t.flat)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_on_cuda_is_bf16_where_the_gpu_supports_it() -> None:
    unet = build_network(default_config("digits", DIGITS), (1, 8, 8))
    cuda = torch.device("cuda")
    want = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert precision.autocast_dtype("auto", cuda, unet) is want
    config = default_config("digits", DIGITS)
    kind = modality_for("digits").prepare(config)
    t = Trainer(config, torch.from_numpy(kind.model_input()), device="cuda")
    assert t.autocast is want and torch.isfinite(t.train_step())
