"""A flow run through the command line and the API: what it refuses (one line, exit 2, nothing
written), what it samples by default, its sweep and its exact likelihood; a DDPM run sampled
by the flow samplers in the flow's time. (Training, sampling, evaluating, drawing and resuming
bit for bit: tests/test_contract.py and tests/test_resume_contract.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import DATA_TOML, TINY, contents, one_line_error

import ddpmlab
from ddpmlab.cli import main
from ddpmlab.config import RunConfig, replace, validate
from ddpmlab.errors import UserError
from ddpmlab.runs.run import open_run


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flow") / "run"
    config = out.parent / "data.toml"
    config.write_text(DATA_TOML)
    assert main(["train", "moons", "--out", str(out), "--config", str(config),
                 "--objective", "flow", "--no-figures", *TINY]) == 0
    return out


#: a flow run's command -> what its one-line refusal names
REFUSED = {
    "ancestral": (["sample", "{run}", "--out", "{tmp}/s.npy", "--sampler", "ddpm"],
                  ("ancestral sampling", "euler, heun or ode")),
    "ddim": (["sample", "{run}", "--out", "{tmp}/s.npy", "--sampler", "ddim"],
             ("--sampler ddim", "noising chain")),
    "dpm_solver": (["evaluate", "{run}", "--sampler", "dpm_solver", "--n", "20"],
                   ("--sampler dpm_solver", "noising chain")),
    "bound": (["evaluate", "{run}", "--nll", "--n", "20"], ("variational bound", "--exact-nll")),
    "ddpm spacing": (["sample", "{run}", "--out", "{tmp}/s.npy", "--sampler", "heun",
                      "--spacing", "logsnr"], ("unknown spacing 'logsnr'", "uniform, shifted")),
    "eta": (["sample", "{run}", "--out", "{tmp}/s.npy", "--eta", "1"], ("--eta",)),
    "sweep of ddpm": (["sweep", "{run}", "--samplers", "ddpm", "--steps", "2"],
                      ("ancestral sampling",)),
    "steps above T": (["sample", "{run}", "--out", "{tmp}/s.npy", "--steps", "21"],
                      ("--steps must lie in 1..20",)),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_does_not_apply_to_a_flow_run_is_refused_in_one_line(
        case: str, flow_run: Path, tmp_path: Path, capsys) -> None:
    argv, needles = REFUSED[case]
    before = contents(flow_run)
    code = main([a.format(run=flow_run, tmp=tmp_path) for a in argv] + ["--quiet"])
    one_line_error(capsys, code, *needles)
    assert contents(flow_run) == before and not (tmp_path / "s.npy").exists()


@pytest.mark.parametrize(("flags", "needles"), [
    (["--variance", "learned_range"], ("no reverse variance", "learned_range")),
    (["--prediction", "eps"], ("--prediction", "velocity")),
    (["--objective", "score"], ("unknown objective 'score'", "ddpm, flow")),
])
def test_training_settings_that_a_flow_has_no_use_for_are_refused(
        flags: list[str], needles: tuple[str, ...], tmp_path: Path, capsys) -> None:
    objective = [] if "--objective" in flags else ["--objective", "flow"]
    code = main(["train", "moons", "--out", str(tmp_path / "run"), *objective, *flags,
                 *TINY])
    one_line_error(capsys, code, *needles)
    assert not (tmp_path / "run").exists()


def test_a_conditional_flow_run_leaves_the_points_learned_variance_default(
        tmp_path: Path) -> None:
    from ddpmlab.modalities import default_config

    assert default_config("moons", {"model": {"conditional": True}}).diffusion.variance \
        == "learned_range"
    flow = default_config("moons", {"model": {"conditional": True},
                                    "diffusion": {"objective": "flow"}})
    assert flow.diffusion.variance == "fixed_small" and validate(flow) == flow
    with pytest.raises(UserError, match="no reverse variance"):
        validate(replace(RunConfig(), {"diffusion": {"objective": "flow",
                                                     "variance": "learned_range"}}))


def test_a_flow_run_samples_with_euler_by_default_and_heun_and_ode_on_request(
        flow_run: Path) -> None:
    run = open_run(flow_run)
    assert run.objective == "flow" and run.default_sampler == "euler"
    assert run.samplers == ("euler", "heun")
    euler = run.sample(40, 1)
    np.testing.assert_array_equal(euler, run.sample(40, 1, ddpmlab.SamplerSpec("euler")))
    heun = run.sample(40, 1, ddpmlab.SamplerSpec("heun", 5, "shifted"))
    ode = run.sample(40, 1, "ode")
    for x in (euler, heun, ode):
        assert x.shape == (40, 2) and np.isfinite(x).all()
    # the same noise through three solvers of one ODE lands near the same points
    assert np.abs(ode - euler).mean() < 0.5 * np.abs(euler).mean()


def test_a_flow_runs_sweep_and_exact_likelihood(flow_run: Path, tmp_path: Path,
                                               capsys) -> None:
    import shutil

    run = Path(shutil.copytree(flow_run, tmp_path / "run"))
    assert main(["sweep", str(run), "--steps", "2", "4", "--n", "30", "--quiet"]) == 0
    rows = json.loads((run / "sweep.json").read_text())["rows"]
    assert [(r["sampler"], r["steps"], r["nfe"]) for r in rows] == [
        ("euler", 2, 2), ("euler", 4, 4), ("heun", 2, 4), ("heun", 4, 8)]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--exact-nll", "--n", "20", "--repeats", "1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "probability-flow ODE" in out and "variational bound" not in out
    exact = json.loads((run / "exact_nll.json").read_text())
    assert np.isfinite(exact["nats_per_dim"]) and not (run / "nll.json").exists()


def test_the_flow_samplers_sample_a_ddpm_run_in_the_flows_time(tiny_run: Path) -> None:
    """Euler and Heun step a DDPM's probability-flow ODE; with enough steps they land where
    its adaptive solution does, from the same noise."""
    run = open_run(tiny_run)
    assert run.objective == "ddpm" and "euler" not in run.samplers
    ode = run.sample(40, 2, "ode")
    heun = run.sample(40, 2, ddpmlab.SamplerSpec("heun", 20))
    assert np.isfinite(heun).all()
    assert np.abs(heun - ode).max() < 0.1 * np.abs(ode).max()
