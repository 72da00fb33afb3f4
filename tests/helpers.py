"""What several test modules share: plain constants and functions (fixtures live in
conftest.py). Test modules import from here, never from one another."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ddpmlab
from ddpmlab import checkpoint
from ddpmlab.config import RunConfig, replace
from ddpmlab.diffusion import mean_from_eps, reverse_variance
from ddpmlab.runs.layout import CKPT, CONFIG, DATA, LOSS, SNAPSHOTS
from ddpmlab.schedules import NoiseSchedule
from ddpmlab.train import Trainer

# --- runs -------------------------------------------------------------------------------

#: a point run small enough to train, sample, evaluate and draw in a few seconds (CLI flags)
TINY = ["--steps", "40", "--timesteps", "20", "--hidden", "16", "--batch-size", "64",
        "--quiet"]
#: an image run likewise (digits, 8x8)
IMAGE_TINY = ["--width", "8", "--batch-size", "32", "--timesteps", "10", "--steps", "12",
              "--quiet"]
#: the data of the tiny point runs, as a --config file
DATA_TOML = "[data]\nn_train = 600\nheldout = 400\n"

#: a small point run as a configuration (Python API)
SMALL = {"data": {"source": "moons", "n_train": 500, "heldout": 100},
         "diffusion": {"timesteps": 30},
         "model": {"resmlp": {"hidden": 16}},
         "train": {"steps": 30, "batch_size": 32, "log_every": 5, "snapshots": [10]}}


def small_config(**train: object) -> RunConfig:
    """SMALL with ``train`` settings changed."""
    return replace(RunConfig(), {**SMALL, "train": {**SMALL["train"], **train}})


def contents(*folders: Path) -> dict[Path, bytes]:
    """Every file under ``folders`` and its bytes."""
    return {p: p.read_bytes() for f in folders for p in sorted(f.rglob("*")) if p.is_file()}


def same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def temps(folder: Path) -> list[Path]:
    """The temporary files a write in progress (or a killed one) leaves in ``folder``."""
    return sorted(p for p in folder.glob("*.tmp*")) if folder.is_dir() else []


def checkpoint_step(run: Path) -> int:
    """The step of RUN's checkpoint from its header alone (cheap enough to poll), or -1.

    One open file handle reads the header: safetensors' ``safe_open`` opens the path a second
    time for torch's storage, so a checkpoint renamed in between fails its size check."""
    try:
        with open(run / CKPT, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
    except FileNotFoundError:
        return -1
    return json.loads(header["__metadata__"]["header"])["step"]


def poll(until: Callable[[], bool], proc: Any, timeout: float = 60) -> None:
    """Wait until ``until()`` or the end of ``proc`` (a subprocess.Popen)."""
    deadline = time.monotonic() + timeout
    while not until() and proc.poll() is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    """A command's refusal: exit status 2 and one line on stderr naming every needle."""
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("ddpmlab: error: "), err
    for needle in needles:
        assert needle in err, err
    return err


@contextlib.contextmanager
def ctrl_c_after(step: int) -> Iterator[None]:
    """Within the block, training stops as Ctrl-C stops it, between two steps: right after
    step ``step`` (and its on_step work: snapshots, periodic checkpoints)."""
    fit = Trainer.fit

    def interrupted(self: Trainer, *, on_step: Callable[[int], None] | None = None,
                    **kw: Any) -> None:
        def stop(s: int) -> None:
            if on_step is not None:
                on_step(s)
            if s == step:
                raise KeyboardInterrupt
        fit(self, on_step=stop, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "fit", interrupted)
        yield


def assert_same_run(reference: Path, run: Path, steps: int | None = None,
                    sample_n: int = 50) -> None:
    """Two run directories hold the same run bit for bit: every checkpoint tensor (model,
    EMA, optimiser state, generator), the checkpoint's step, configuration and metadata
    (losses, modality), loss.csv, data.npz, config.json, every snapshot, and the samples the
    two runs draw (each sampler kind: ancestral, deterministic; a flow run's Euler and Heun; a
    conditional run's classes with guidance too). ``steps``: the step both must have
    reached."""
    ta, tb = load_file(reference / CKPT), load_file(run / CKPT)
    assert ta.keys() == tb.keys()
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not differ, f"checkpoint tensors differ: {differ[:5]}"
    a, b = checkpoint.load(reference / CKPT), checkpoint.load(run / CKPT)
    assert a.step == b.step, (a.step, b.step)
    if steps is not None:
        assert a.step == steps
    assert a.rng is not None and b.rng is not None and torch.equal(a.rng, b.rng)
    assert a.config == b.config
    assert a.meta == b.meta  # losses (history, partial sums), modality, shape, scaler
    for name in (LOSS, DATA, CONFIG):
        assert (reference / name).read_bytes() == (run / name).read_bytes(), name
    assert (reference / SNAPSHOTS).exists() == (run / SNAPSHOTS).exists()
    if (reference / SNAPSHOTS).exists():
        with np.load(reference / SNAPSHOTS) as fa, np.load(run / SNAPSHOTS) as fb:
            assert sorted(fa.files) == sorted(fb.files)
            assert all(np.array_equal(fa[k], fb[k]) for k in fa.files)
    ra, rb = ddpmlab.open_run(reference), ddpmlab.open_run(run)
    other = "heun" if ra.objective == "flow" else "ddim"  # a deterministic few-step sampler
    requests: list[dict[str, Any]] = [
        {"sampler": None}, {"sampler": ddpmlab.SamplerSpec(other, steps=5)}]
    if ra.classes is not None:
        requests.append({"sampler": None, "cls": "all", "guidance": 1.0})
    for request in requests:
        np.testing.assert_array_equal(ra.sample(sample_n, 3, **request),
                                      rb.sample(sample_n, 3, **request))


# --- maths --------------------------------------------------------------------------------


def err(a: Any, b: Any) -> float:
    """The diffusers reference's error measure, max |a - b| / (1 + |b|), in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b))))


#: 2-D Gaussian data N(MU, diag(STD^2)), whose exact denoiser is known (gaussian_eps)
MU = (0.5, -0.25)
STD = (0.3, 0.6)
N_STAT = 20_000  # samples for the moment checks (~0.8 s per 1000-step chain)


def gaussian_eps(alpha_bar: torch.Tensor, mu: Any = MU, std: Any = STD
                 ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The exact eps-prediction of N(mu, diag(std^2)) data, evaluated in float64:
    eps*(x_t, t) = sqrt(1 - abar_t) (x_t - sqrt(abar_t) mu) / (abar_t std^2 + 1 - abar_t)."""
    ab = alpha_bar.double()
    mu_t = torch.tensor(mu, dtype=torch.float64)
    var = torch.tensor(std, dtype=torch.float64) ** 2

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = ab[t][:, None]
        eps = (1 - a).sqrt() * (x_t.double() - a.sqrt() * mu_t) / (a * var + 1 - a)
        return eps.to(x_t.dtype)

    return denoiser


def assert_gaussian_moments(x: torch.Tensor, want_mean: Any, want_std: Any,
                            z: float = 5.0) -> None:
    """Sample mean/std/correlation of x (n, 2) within z standard errors."""
    n = x.shape[0]
    x = x.double().numpy()
    want_mean, want_std = np.asarray(want_mean), np.asarray(want_std)
    mean, std = x.mean(0), x.std(0, ddof=1)
    # standard errors: of a mean std/sqrt(n); of a Gaussian sample std std/sqrt(2(n-1))
    assert np.all(np.abs(mean - want_mean) <= z * want_std / math.sqrt(n)), (mean, want_mean)
    assert np.all(np.abs(std - want_std) <= z * want_std / math.sqrt(2 * (n - 1))), (std, want_std)
    corr = np.corrcoef(x.T)[0, 1]  # independent coordinates: se of r ~ 1/sqrt(n)
    assert abs(corr) <= z / math.sqrt(n), corr


def replay(schedule: NoiseSchedule, x_T: np.ndarray, noises: np.ndarray) -> torch.Tensor:
    """diffusers' ancestral loop with its recorded z: x <- mu(x, t) + sigma_t z, no z at t = 0."""
    eps = gaussian_eps(schedule.alpha_bar)
    sigma = reverse_variance(schedule, "fixed_small").sqrt()
    x = torch.from_numpy(x_T).clone()
    T = schedule.T
    assert noises.shape == (T - 1, *x.shape)
    for k, t in enumerate(reversed(range(T))):
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        x = mean_from_eps(schedule, x, tt, eps(x, tt))  # Ho Eq. 11
        if t > 0:
            x = x + sigma[t] * torch.from_numpy(noises[k])
    return x


def dummy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A stand-in network: bounded, depends on x and t, wrong on purpose."""
    return torch.tanh(1.5 * x) + 0.3 * torch.cos(t.to(x.dtype))[:, None]


def final(chain: Iterator[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """The last state of a chain (the others are dropped as they come)."""
    return deque(chain, maxlen=1)[0][1]


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere (ResMLP's output layer starts at zero, which hides errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return model


TUTORIAL = Path(__file__).parents[1] / "docs" / "tutorial"
# Every figure of the course, under its name there where it has one (curve, q, curve_150_*,
# reversediffusion*), and those the tutorial adds.
FIGURES = {
    "curve.png", "q.png", "schedules.png",
    "curve_150_1.png", "curve_150_2.png", "curve_150_3.png",
    "training_defaults.png", "samples_course.png", "samples_defaults.png",
    "reversediffusion.gif", "reversediffusioncircles.gif", "reversediffusionmoons.gif",
    "nll_terms.png", "nll_terms_learned.png", "variances.png",
    "digits_data.png", "digits_forward.png",
    *(f"digits_{net}_{kind}" for net in ("seed_unet", "unet")
      for kind in ("training.png", "samples.png")),
    "digits_seed_unet.gif", "digits_unet.gif",
    "flow_paths.png",
}


def assert_figures(folder: Path) -> None:
    """Every promised figure is in ``folder`` and is a valid PNG or (animated) GIF."""
    written = {p.name for p in folder.iterdir()}
    assert written == FIGURES, (f"missing {sorted(FIGURES - written)}, "
                                f"unexpected {sorted(written - FIGURES)}")
    for name in sorted(FIGURES):
        with Image.open(folder / name) as img:
            assert img.format == Path(name).suffix[1:].upper(), name
            assert img.width > 100 and img.height > 100, name
            if img.format == "GIF":
                assert img.n_frames > 10, name
            img.verify()
