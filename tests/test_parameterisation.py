"""The eps / x0 / v parameterisations (Ho et al. 2020 Eq. 4; Salimans & Ho 2022 Sec. 4) against
diffusers 0.42.1 (tests/data) and each other; the generalised training loss."""

from __future__ import annotations

import pytest
import torch
from helpers import err

from ddpmlab.diffusion import (
    PREDICTIONS,
    diffusion_loss,
    eps_from_v,
    eps_loss,
    mean_from_eps,
    predict_eps_x0,
    q_sample,
    reverse_mean,
    target_for,
    v_from,
    x0_from_v,
)
from ddpmlab.schedules import make_schedule

torch.set_num_threads(1)

DIFFUSERS_NAMES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}


def full_t(t: int, n: int) -> torch.Tensor:
    return torch.full((n,), t, dtype=torch.long)


# ------------------------------------------------------------------ against diffusers


def test_v_from_matches_diffusers_get_velocity(ref):
    key = "add_noise__T1000_squaredcos_cap_v2__"
    s = make_schedule("cosine", 1000)
    v = v_from(s, torch.from_numpy(ref[key + "x0"]), torch.from_numpy(ref[key + "noise"]),
               torch.from_numpy(ref[key + "timesteps"]))
    assert v.dtype == torch.float32
    assert err(v, ref[key + "velocity"]) <= 2e-5


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddpm_step_of_each_prediction_matches_diffusers(ref, prediction):
    s = make_schedule("linear", 1000)
    key = f"ddpm_step__T1000_linear_{DIFFUSERS_NAMES[prediction]}_clip0__"
    x_t = torch.from_numpy(ref["ddpm_step__inputs__x_t"])
    output = torch.from_numpy(ref["ddpm_step__inputs__model_output"])
    for i, t in enumerate(ref["ddpm_step__timesteps"].tolist()):
        tt = full_t(t, x_t.shape[1])
        _, x0_hat = predict_eps_x0(s, x_t[i], tt, output[i], prediction)
        mean = reverse_mean(s, x_t[i], tt, output[i], prediction)
        # README: 5e-4 for DDPM means at small t (diffusers' float32 beta_t = 1 - ab_t/ab_{t-1})
        assert err(mean, ref[key + "mean"][i]) <= (5e-4 if t < 100 else 2e-5), t
        assert err(x0_hat, ref[key + "pred_x0"][i]) <= 2e-5, t


# ------------------------------------------------------------------ conversions


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_conversions_round_trip(name):
    s = make_schedule(name, 1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(16, 2, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(16, 2, 3, generator=g, dtype=torch.float64)
    for t in [0, 1, 10, 100, 500, 900, 999]:
        tt = full_t(t, 16)
        x_t = q_sample(s, x0, tt, eps)
        v = v_from(s, x0, eps, tt)
        # float64 maths on float32 coefficients: sqrt(ab)^2 + sqrt(1 - ab)^2 = 1 to ~1e-7
        torch.testing.assert_close(x0_from_v(s, x_t, tt, v), x0, rtol=0, atol=1e-6)
        torch.testing.assert_close(eps_from_v(s, x_t, tt, v), eps, rtol=0, atol=1e-6)
        for prediction in PREDICTIONS:
            output = target_for(s, prediction, x0, eps, tt)
            eps_hat, x0_hat = predict_eps_x0(s, x_t, tt, output, prediction)
            # x0 from eps divides by sqrt(ab), eps from x0 by sqrt(1 - ab): both ill-posed at
            # one end, so compare in the well-posed direction and through x_t elsewhere
            ab = float(s.alpha_bar[t])
            tol = 1e-6 / min(ab, 1 - ab) ** 0.5
            torch.testing.assert_close(eps_hat, eps, rtol=0, atol=tol)
            torch.testing.assert_close(x0_hat, x0, rtol=0, atol=tol)
            back = target_for(s, prediction, x0_hat, eps_hat, tt)
            torch.testing.assert_close(back, output, rtol=0, atol=tol)


def test_the_output_itself_is_returned_in_its_own_slot():
    s = make_schedule("cosine", 100)
    x_t, out = torch.randn(4, 2), torch.randn(4, 2)
    tt = full_t(50, 4)
    assert predict_eps_x0(s, x_t, tt, out, "eps")[0] is out
    assert predict_eps_x0(s, x_t, tt, out, "x0")[1] is out
    assert torch.equal(reverse_mean(s, x_t, tt, out, "eps"), mean_from_eps(s, x_t, tt, out))


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_reverse_mean_is_one_mean_whatever_the_prediction(name):
    # One network written three ways gives one reverse mean (Ho Eq. 11 = Eq. 7 at x0_hat).
    s = make_schedule(name, 1000)
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(32, 5, generator=g, dtype=torch.float64)
    eps_hat = torch.randn(32, 5, generator=g, dtype=torch.float64)
    for t in [0, 1, 2, 10, 100, 500, 998, 999]:
        tt = full_t(t, 32)
        want = mean_from_eps(s, x_t, tt, eps_hat)
        _, x0_hat = predict_eps_x0(s, x_t, tt, eps_hat, "eps")
        v_hat = v_from(s, x0_hat, eps_hat, tt)
        assert err(reverse_mean(s, x_t, tt, x0_hat, "x0"), want) <= 1e-6, t
        assert err(reverse_mean(s, x_t, tt, v_hat, "v"), want) <= 1e-6, t


T_TAKERS = {
    "v_from": lambda s, x, t: v_from(s, x, x, t),
    "x0_from_v": lambda s, x, t: x0_from_v(s, x, t, x),
    "eps_from_v": lambda s, x, t: eps_from_v(s, x, t, x),
    "predict_eps_x0": lambda s, x, t: predict_eps_x0(s, x, t, x, "v"),
    "reverse_mean": lambda s, x, t: reverse_mean(s, x, t, x, "x0"),
    "target_for": lambda s, x, t: target_for(s, "v", x, x, t),
}


@pytest.mark.parametrize("fn", list(T_TAKERS))
@pytest.mark.parametrize("bad", [-1, 20])
def test_every_function_taking_t_refuses_one_out_of_range(fn, bad):
    s = make_schedule("cosine", 20)
    with pytest.raises(IndexError):  # the coefficient lookup refuses it
        T_TAKERS[fn](s, torch.zeros(2, 2), torch.tensor([0, bad]))


def test_unknown_prediction_lists_the_valid_ones():
    s = make_schedule("cosine", 20)
    x, t = torch.zeros(2, 2), full_t(3, 2)
    calls = [lambda: predict_eps_x0(s, x, t, x, "score"),
             lambda: reverse_mean(s, x, t, x, "score"),
             lambda: target_for(s, "score", x, x, t),
             lambda: diffusion_loss(s, lambda a, b: a, x, prediction="score")]
    for call in calls:
        with pytest.raises(ValueError) as info:  # the config refuses it first (UserError)
            call()
        assert all(p in str(info.value) for p in ("score", *PREDICTIONS))


# ------------------------------------------------------------------ the loss


@pytest.mark.parametrize("antithetic", [False, True])
def test_diffusion_loss_eps_is_eps_loss_bit_for_bit(antithetic):
    s = make_schedule("linear", 1000)
    x0 = torch.randn(9, 2, 3, generator=torch.Generator().manual_seed(0))

    def net(x_t, t):
        return 0.5 * x_t + t[:, None, None] / 1000

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = eps_loss(s, net, x0, generator=g1, antithetic=antithetic)
    b = diffusion_loss(s, net, x0, generator=g2, antithetic=antithetic, prediction="eps")
    assert torch.equal(a, b)
    assert torch.equal(torch.randn(3, generator=g1), torch.randn(3, generator=g2))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_diffusion_loss_recomputed_by_hand(prediction):
    # The same draws in the same order (t, then eps) whatever the prediction.
    T, B, seed = 1000, 9, 5
    s = make_schedule("cosine", T)
    ab = s.alpha_bar.double()
    x0 = torch.randn(B, 3, generator=torch.Generator().manual_seed(0))
    c = 0.2
    g = torch.Generator().manual_seed(seed)
    loss = diffusion_loss(s, lambda x_t, t: torch.full_like(x_t, c), x0, generator=g,
                          prediction=prediction)
    g_ref = torch.Generator().manual_seed(seed)
    t = torch.randint(0, T, (B,), generator=g_ref)
    eps = torch.randn(x0.shape, generator=g_ref).double()
    a = ab[t][:, None]
    target = {"eps": eps, "x0": x0.double(),
              "v": a.sqrt() * eps - (1 - a).sqrt() * x0.double()}[prediction]  # S&H Sec. 4
    assert float(loss) == pytest.approx(float(((target - c) ** 2).mean()), rel=1e-5)
    assert torch.equal(torch.randn(3, generator=g), torch.randn(3, generator=g_ref))


def test_x0_and_v_losses_are_snr_weighted_eps_losses():
    # Per sample: ||x0 - x0_hat||^2 = ||eps - eps_hat||^2 / SNR and ||v - v_hat||^2 =
    # (1 + SNR) ||x0 - x0_hat||^2, SNR = ab / (1 - ab) (Salimans & Ho 2022, Sec. 4).
    s = make_schedule("cosine", 1000)
    x0 = torch.randn(1, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seen = []

    def eps_net(x_t, t):
        seen.append(int(t[0]))
        return torch.tanh(x_t)

    def as_(prediction):
        def net(x_t, t):
            eps_hat, x0_hat = predict_eps_x0(s, x_t, t, eps_net(x_t, t), "eps")
            return target_for(s, prediction, x0_hat, eps_hat, t)
        return net

    losses = {p: float(diffusion_loss(s, as_(p), x0, torch.Generator().manual_seed(4),
                                      prediction=p)) for p in PREDICTIONS}
    assert len(set(seen)) == 1  # one sample, one t, the same for the three losses
    ab = float(s.alpha_bar[seen[0]])
    snr = ab / (1 - ab)
    assert losses["x0"] == pytest.approx(losses["eps"] / snr, rel=1e-6)
    assert losses["v"] == pytest.approx((1 + snr) * losses["x0"], rel=1e-6)
