"""figures/score.png's fields: the learned score beside the exact one (reports/points.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ddpmlab import viz
from ddpmlab.config import RunConfig, replace
from ddpmlab.data.toy2d import GAUSSIANS8_CENTRES, GAUSSIANS8_STD, gaussians8
from ddpmlab.modalities import Points
from ddpmlab.reports.points import SCORE_FRACTIONS, PointReport
from ddpmlab.schedules import make_schedule


@pytest.fixture(scope="module")
def kind() -> Points:
    # the exact denoisers below give eps: the config says so (the point default is v)
    config = replace(RunConfig(), {"data": {"source": "gaussians8", "n_train": 2000,
                                            "heldout": 2000}, "diffusion": {"prediction": "eps"}})
    return Points.prepare(config)


def _report(kind: Points, denoiser=None) -> PointReport:
    """The points' report of a stand-in run: the schedule, and ``denoiser(schedule)`` as its
    network."""
    s = make_schedule("cosine", 100)
    run = SimpleNamespace(schedule=s, config=kind.config, device=torch.device("cpu"),
                          kind=kind, denoiser=denoiser(s) if denoiser else None)
    return PointReport(run)


def test_the_exact_mixture_is_the_standardised_gaussians8(kind: Points):
    mix = _report(kind).exact_mixture()
    assert mix is not None
    z = kind.scaler.transform(gaussians8(20_000, np.random.default_rng(0)))
    means = (GAUSSIANS8_CENTRES - np.asarray(kind.scaler.mean)) / np.asarray(kind.scaler.std)
    np.testing.assert_allclose(mix.means.numpy(), means)
    np.testing.assert_allclose(np.sqrt(np.diagonal(mix.covs.numpy(), axis1=1, axis2=2)),
                               GAUSSIANS8_STD / np.broadcast_to(kind.scaler.std, (8, 2)))
    assert abs(mix.log_prob(torch.from_numpy(z)).mean() - mix.log_prob(
        mix.sample(20_000, torch.Generator().manual_seed(0))).mean()) < 0.05


def test_a_perfect_network_scores_zero_cosine_error_and_a_reversed_one_two(kind, tmp_path):
    mix = _report(kind).exact_mixture()
    assert mix is not None
    levels, errors = _report(kind, lambda s: mix.denoiser(s.alpha_bar)).score_field(seed=0)
    assert len(levels) == len(errors) == len(SCORE_FRACTIONS)
    assert max(errors.values()) < 1e-4, errors
    for level in levels:
        np.testing.assert_allclose(level.fields["learned"], level.fields["exact"], rtol=1e-4,
                                   atol=1e-5)

    def reversed_(s):
        exact = mix.denoiser(s.alpha_bar)
        return lambda x, t: -exact(x, t)
    _, errors = _report(kind, reversed_).score_field(seed=0)
    assert min(errors.values()) > 1.999, errors
    path = viz.plot_score_field(levels, tmp_path / "score.png",
                                viz.frame_limits([lv.grid for lv in levels]),
                                rows=["learned", "exact"])
    assert path.stat().st_size > 10_000


def test_data_without_a_closed_form_gets_the_learned_field_only():
    config = replace(RunConfig(), {"data": {"source": "moons", "n_train": 500, "heldout": 500}})
    moons = Points.prepare(config)
    report = _report(moons, lambda s: lambda x, t: x)
    assert report.exact_mixture() is None
    levels, errors = report.score_field(seed=0)
    assert errors == {} and all(list(lv.fields) == ["learned"] for lv in levels)
