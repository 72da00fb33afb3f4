"""The hand-derived training gradients and the sampling forward pass against autograd and the
modules themselves (ddpmlab.accel.mlp), flat Adam against torch's (ddpmlab.accel.adam), and
the trainer's hand-derived gradient backend against its autograd one."""

from __future__ import annotations

import pytest
import torch
from helpers import randomise, small_config

from ddpmlab.accel import mlp as accel_mlp
from ddpmlab.accel.adam import FlatAdam, flat_views, flatten_parameters
from ddpmlab.config import replace
from ddpmlab.models.mlp import ResMLP, SeedMLP
from ddpmlab.train import Trainer
from ddpmlab.train.gradients import HandDerived

torch.set_num_threads(1)


MODELS = {
    "seed_mlp": lambda T: SeedMLP(T, hidden=32),
    "seed_mlp_wide_out": lambda T: SeedMLP(T, hidden=16, out_dim=4),
    "resmlp": lambda T: ResMLP(T, hidden=32, depth=3),
    "resmlp_no_fourier": lambda T: ResMLP(T, hidden=16, depth=2, fourier_scale=0.0),
    "resmlp_wide_out": lambda T: ResMLP(T, hidden=24, depth=1, out_dim=4),
    "seed_mlp_conditional": lambda T: SeedMLP(T, hidden=16, num_classes=3),
    "resmlp_conditional": lambda T: ResMLP(T, hidden=16, depth=2, num_classes=3),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [7, 64])  # fewer t than T, and every t repeated
def test_gradients_equal_autograd(name: str, batch: int) -> None:
    T = 30
    model = randomise(MODELS[name](T), seed=batch)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, generator=g)
    t = torch.randint(0, T, (batch,), generator=g)
    y = None  # labels 0..3 of a conditional model, 3 the no-class token
    if model.num_classes:
        y = torch.randint(0, 4, (batch,), generator=g)
        y[:4] = torch.arange(4)  # every row seen
    out_dim = model(x[:1], t[:1]).shape[1]
    target = torch.randn(batch, out_dim, generator=g)
    loss = (target - model(x, t, y)).square().mean()
    want = torch.autograd.grad(loss, list(model.parameters()))
    grads = {n: torch.zeros(1, *p.shape) for n, p in model.named_parameters()}
    got = accel_mlp.mse_and_grads(model, x, t, target, grads, y=y)
    torch.testing.assert_close(got, loss.detach().reshape(1), rtol=1e-5, atol=1e-6)
    for (n, _), w in zip(model.named_parameters(), want, strict=True):
        assert w.abs().max() > 0, n
        torch.testing.assert_close(grads[n][0], w, rtol=1e-4, atol=1e-5 * float(w.abs().max()),
                                   msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("name", MODELS)
def test_leaves_are_computed_apart_bit_for_bit(name: str) -> None:
    """A batch in 8 leaves: their parts sum to autograd's gradient, and any run of whole
    leaves computed alone (a process's share of the batch) gives those leaves' parts bit
    for bit, which is what makes a run on N processes the run on one (ddpmlab.train)."""
    T, batch, leaves = 30, 128, 8
    model = randomise(MODELS[name](T), seed=3)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(batch, 2, generator=g)
    t = torch.randint(0, T, (batch,), generator=g)
    y = torch.randint(0, 4, (batch,), generator=g) if model.num_classes else None
    target = torch.randn(batch, model(x[:1], t[:1]).shape[1], generator=g)

    def parts(rows: slice, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        grads = {k: torch.zeros(n, *p.shape) for k, p in model.named_parameters()}
        loss = accel_mlp.mse_and_grads(model, x[rows], t[rows], target[rows], grads,
                                  y=None if y is None else y[rows], leaves=n, total=batch)
        return loss, grads

    loss, grads = parts(slice(None), leaves)
    want = torch.autograd.grad((target - model(x, t, y)).square().mean(),
                               list(model.parameters()))
    for (n, _), w in zip(model.named_parameters(), want, strict=True):
        torch.testing.assert_close(grads[n].sum(0), w, rtol=1e-4,
                                   atol=1e-5 * float(w.abs().max()))
    for first, count in [(0, 4), (4, 4), (2, 3), (7, 1)]:  # shares of 2, 3 and 8 processes
        rows = slice(first * batch // leaves, (first + count) * batch // leaves)
        some_loss, some = parts(rows, count)
        assert torch.equal(some_loss, loss[first:first + count])
        differ = [k for k in grads if not torch.equal(some[k], grads[k][first:first + count])]
        assert not differ, (first, count)


def test_only_the_two_mlps_are_covered() -> None:
    assert accel_mlp.supports(SeedMLP(10)) and accel_mlp.supports(ResMLP(10, hidden=8))

    class Other(SeedMLP):
        pass

    assert not accel_mlp.supports(Other(10))  # a subclass may change forward: autograd for it


@pytest.mark.filterwarnings("ignore:schedule 'sigmoid'")
@pytest.mark.parametrize(("name", "overrides"), [
    ("resmlp", {}),
    ("seed_mlp", {"diffusion": {"antithetic": True, "schedule": "sigmoid"}}),
    ("resmlp", {"diffusion": {"prediction": "v"}}),
    ("seed_mlp", {"diffusion": {"prediction": "x0", "variance": "fixed_large"}}),
    ("resmlp", {"model": {"conditional": True}, "train": {"cond_drop": 0.3}}),
    ("seed_mlp", {"model": {"conditional": True}}),
    ("resmlp", {"diffusion": {"stable_target": 64}}),
    ("resmlp", {"model": {"conditional": True}, "diffusion": {"stable_target": 64}}),
])
def test_trainer_fast_path_follows_the_autograd_path(name: str, overrides: dict) -> None:
    config = replace(small_config(steps=25), {**overrides, "model": {
        "name": name, **overrides.get("model", {})}})
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(2))
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # 3 classes
    runs = {}
    for autograd in (False, True):
        trainer = Trainer(config, x, autograd=autograd, labels=labels, classes=3)
        assert isinstance(trainer.gradients, HandDerived) is not autograd
        losses = [float(trainer.train_step()) for _ in range(config.train.steps)]
        runs[autograd] = (losses, trainer.flat.clone(), trainer.ema_flat.clone(),
                          trainer.optimizer.exp_avg_sq.clone())
    (la, *a), (lb, *b) = runs[False], runs[True]
    torch.testing.assert_close(torch.tensor(la), torch.tensor(lb), rtol=1e-4, atol=1e-6)
    for u, v in zip(a, b, strict=True):  # weights, EMA weights, Adam's second moment
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5 * float(v.abs().max()))


def test_learned_variance_trains_through_autograd() -> None:
    config = replace(small_config(steps=3), {"diffusion": {"variance": "learned_range"}})
    trainer = Trainer(config, torch.randn(100, 2))
    assert not isinstance(trainer.gradients, HandDerived)
    before = trainer.flat.clone()
    trainer.fit()
    assert trainer.step == 3 and not torch.equal(before, trainer.flat)
    assert torch.isfinite(trainer.flat).all()


def test_parameters_and_gradients_are_views_of_flat_buffers() -> None:
    trainer = Trainer(small_config(), torch.randn(100, 2))
    trainer.train_step()
    for p in trainer.params:
        assert p.untyped_storage().data_ptr() == trainer.flat.untyped_storage().data_ptr()
        assert p.grad.untyped_storage().data_ptr() == trainer.grad_flat.untyped_storage().data_ptr()
    with torch.no_grad():
        trainer.params[0].add_(1.0)  # writing a parameter writes the flat buffer
    assert torch.equal(trainer.flat[:trainer.params[0].numel()], trainer.params[0].reshape(-1))


def test_flat_adam_is_torch_adam_and_reads_and_writes_its_state() -> None:
    g = torch.Generator().manual_seed(4)
    shapes = [(5, 3), (5,), (7, 2)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    flat = flatten_parameters(ours)
    grad, grads = flat_views(ours)
    adam = FlatAdam(ours, flat, grad, lr=0.01)
    reference = torch.optim.Adam(theirs, lr=0.01, fused=True)
    for step in range(5):
        for p, q, gv in zip(ours, theirs, grads, strict=True):
            gv.copy_(torch.randn(p.shape, generator=g))
            q.grad = gv.clone()
        adam.step(0.01 / (step + 1))
        reference.param_groups[0]["lr"] = 0.01 / (step + 1)
        reference.step()
    for p, q in zip(ours, theirs, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    # torch's state loads into ours and ours into torch's
    mine, ref = adam.state_dict(), reference.state_dict()
    assert mine["param_groups"] == ref["param_groups"]
    fresh = FlatAdam(ours, flat, torch.zeros_like(grad), lr=0.0)
    fresh.load_state_dict(ref)
    torch.testing.assert_close(fresh.exp_avg_sq, adam.exp_avg_sq, rtol=1e-6, atol=0)
    assert float(fresh.steps) == 5.0 and fresh.lr == ref["param_groups"][0]["lr"]
    reference.load_state_dict(mine)
    with pytest.raises(ValueError, match="parameter states"):
        FlatAdam(ours[:2], flat, grad, lr=0.0).load_state_dict(mine)


@pytest.mark.parametrize("fourier_scale", [4.0, 0.0])
def test_sampling_forward_equals_the_module(fourier_scale: float) -> None:
    T = 40
    model = randomise(ResMLP(T, hidden=32, depth=2, fourier_scale=fourier_scale)).eval()
    denoiser = accel_mlp.sampling_denoiser(model)
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        for t in (0, 17, T - 1):
            tt = torch.full((300,), t, dtype=torch.long)
            want = model(x, tt)
            torch.testing.assert_close(denoiser(x, tt), want, rtol=1e-4,
                                       atol=1e-5 * float(want.abs().max()))
        mixed = torch.arange(300) % T  # rows at different t: the module itself
        assert torch.equal(denoiser(x, mixed), model(x, mixed))
        # in chunks of rows: the same rows, whatever the chunk
        chunked = accel_mlp.sampling_denoiser(model, rows=64)
        tt = torch.full((300,), 5, dtype=torch.long)
        torch.testing.assert_close(chunked(x, tt), denoiser(x, tt), rtol=1e-6, atol=1e-6)
        seed_mlp = randomise(SeedMLP(T))
        assert torch.equal(accel_mlp.sampling_denoiser(seed_mlp, rows=64)(x, mixed),
                           seed_mlp(x, mixed))


def test_conditional_sampling_forward_equals_the_module() -> None:
    """Labels per row through the fast sampling pass and its chunks, as the module takes them."""
    T = 40
    model = randomise(ResMLP(T, hidden=32, depth=2, num_classes=3)).eval()
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(3))
    y = torch.arange(300) % 4  # 3: no class
    tt = torch.full((300,), 11, dtype=torch.long)
    with torch.inference_mode():
        want = model(x, tt, y)
        for rows in (64, 8192):
            got = accel_mlp.sampling_denoiser(model, rows=rows)(x, tt, y)
            torch.testing.assert_close(got, want, rtol=1e-4,
                                       atol=1e-5 * float(want.abs().max()))
        mixed = torch.arange(300) % T
        assert torch.equal(accel_mlp.sampling_denoiser(model)(x, mixed, y), model(x, mixed, y))
