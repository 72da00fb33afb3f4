"""The stable target field (Xu, Tong & Jaakkola 2023) against the posterior it is defined by:
float64 Gaussian weights over a reference set, and the exact posterior mean of Gaussian data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import err

from ddpmlab.config import RunConfig, from_dict, replace, to_dict, upgrade
from ddpmlab.diffusion import q_sample, stable_target
from ddpmlab.schedules import make_schedule
from ddpmlab.train import Trainer

torch.set_num_threads(1)


def drawn(schedule, x0, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(x0.shape, generator=g)
    return eps, q_sample(schedule, x0, t, eps)


def case(batch: int, m: int, t: int, seed: int):
    """Standard-normal x0 (batch, 2) and reference (m, 2), all at timestep t of cosine T = 200:
    (schedule, x0, reference, t, eps, x_t)."""
    s = make_schedule("cosine", 200)
    g = torch.Generator().manual_seed(seed)
    x0, ref = torch.randn(batch, 2, generator=g), torch.randn(m, 2, generator=g)
    tt = torch.full((batch,), t)
    return (s, x0, ref, tt, *drawn(s, x0, tt))


@pytest.mark.parametrize("t", [0, 3, 100, 150, 199])
def test_stable_target_is_the_posterior_mean_over_the_reference(t: int) -> None:
    # x_0 uniform on {x0_i} and the reference: weights N(x_t; sqrt(ab) x_0, (1 - ab) I),
    # in float64 from alpha_bar, and eps~ such that x_t = q_sample(x0~, t, eps~)
    s, x0, ref, tt, eps, x_t = case(6, 9, t, seed=1)
    x0_hat, eps_hat = stable_target(s, x0, eps, x_t, tt, ref)
    ab = s.alpha_bar64[t]
    for i in range(6):
        support = np.vstack([x0[i].double().numpy(), ref.double().numpy()])
        d2 = ((x_t[i].double().numpy() - np.sqrt(ab) * support) ** 2).sum(1)
        logw = -d2 / (2 * (1 - ab))
        w = np.exp(logw - logw.max())
        assert err(x0_hat[i], (w / w.sum()) @ support) < 2e-5
    assert err(q_sample(s, x0_hat, tt, eps_hat), x_t) < 1e-5


def test_at_low_noise_the_target_is_the_example_and_at_high_noise_the_reference_mean() -> None:
    for t in (0, 199):
        s, x0, ref, tt, eps, x_t = case(8, 64, t, seed=2)
        x0_hat, eps_hat = stable_target(s, x0, eps, x_t, tt, ref)
        mix = torch.cat([x0[:, None], ref.expand(8, -1, -1)], 1).mean(1)
        # at t = T-1 the weights differ from equal by about sqrt(ab) |x_t| |r| ~ 2.5e-4
        assert err(x0_hat, x0 if t == 0 else mix) < 1e-3, t
        if t == 0:  # the usual target: the example's own noise, up to float32 rounding
            assert err(eps_hat, eps) < 1e-4


@pytest.mark.parametrize("t", [100, 140, 170])
def test_with_gaussian_data_it_approaches_the_exact_posterior_mean(t: int) -> None:
    # x_0 ~ N(0, I): E[x_0 | x_t] = sqrt(ab) x_t exactly; the stable target estimates it from
    # 8,192 draws, where the example's own x_0 misses it by sqrt(1 - ab) per coordinate
    s, x0, ref, tt, eps, x_t = case(512, 8192, t, seed=3)
    x0_hat, _ = stable_target(s, x0, eps, x_t, tt, ref)
    exact = s.alpha_bar64[t] ** 0.5 * x_t
    own, stable = (x0 - exact).square().mean(), (x0_hat - exact).square().mean()
    assert abs(float(own) - (1 - s.alpha_bar64[t])) < 0.1  # the usual target's variance
    assert float(stable) < 0.02 * float(own)


def test_allowed_keeps_each_example_to_its_own_class() -> None:
    # two classes, each a point mass far from the other: a labelled example's target is its
    # class's point at any noise; a dropped label's is the mix of both at high noise
    x = torch.tensor([[-3.0, 0.0], [3.0, 0.0]]).repeat(50, 1)
    labels = torch.tensor([0, 1]).repeat(50)
    config = replace(RunConfig(), {"data": {"source": "moons"},
                                   "model": {"conditional": True, "resmlp": {"hidden": 8}},
                                   "diffusion": {"stable_target": 32}})
    trainer = Trainer(config, x, labels=labels, classes=2)
    x0 = x[:4]
    y = torch.tensor([0, 1, 2, 2])  # 2: no class
    t = torch.full((4,), 199)
    eps, x_t = drawn(trainer.schedule, x0, t)
    x0_hat, _ = trainer._stable(x0, y, t, eps, x_t)
    assert torch.allclose(x0_hat[:2], x0[:2], atol=1e-6)
    assert (x0_hat[2:, 0].abs() < 2.0).all()  # near the mean 0 of +-3, not at +-3


def test_hybrid_loss_takes_the_target_for_its_mse_and_keeps_x0_for_its_vlb() -> None:
    # the learned variance is taught by the spread of x0 about E[x0 | x_t]: the VLB term must
    # see the example's x0, whatever target the mean is trained on
    from ddpmlab.diffusion import target_for
    from ddpmlab.likelihood import hybrid_loss

    s = make_schedule("cosine", 50)
    g = torch.Generator().manual_seed(4)
    x0, out = torch.randn(16, 2, generator=g), torch.randn(16, 4, generator=g)
    t = torch.randint(0, 50, (16,), generator=g)
    eps, x_t = drawn(s, x0, t)
    net = lambda x, tt: out  # noqa: E731
    own = hybrid_loss(s, net, x0, prediction="v", drawn=(t, eps, x_t))
    assert torch.equal(own, hybrid_loss(s, net, x0, prediction="v", drawn=(t, eps, x_t),
                                        target=target_for(s, "v", x0, eps, t)))
    other = torch.randn(16, 2, generator=g)
    moved = hybrid_loss(s, net, x0, prediction="v", drawn=(t, eps, x_t), target=other)
    mse = lambda a: (a - out[:, :2]).square().mean()  # noqa: E731
    torch.testing.assert_close(moved - own, mse(other) - mse(target_for(s, "v", x0, eps, t)))


def test_a_run_saved_before_the_field_resumes_without_it() -> None:
    # a saved config has every key of its day: no diffusion.stable_target means trained on
    # the example's own target, and a resume must go on that way
    saved = to_dict(RunConfig())
    del saved["diffusion"]["stable_target"]
    assert from_dict(RunConfig, upgrade(saved)).diffusion.stable_target == 0
    assert from_dict(RunConfig, upgrade(to_dict(RunConfig()))).diffusion.stable_target == 512
