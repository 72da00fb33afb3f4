"""Noise-prediction networks: the source text's MLP reproduced exactly, the ResMLP's contract,
the embeddings against their closed forms, and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ddpmlab.config import ModelConfig, ResMLPConfig, SeedMLPConfig
from ddpmlab.errors import UserError
from ddpmlab.models import build_model
from ddpmlab.models.embeddings import fourier_features, fourier_matrix, sinusoidal_table
from ddpmlab.models.mlp import ResMLP, SeedMLP

torch.set_num_threads(1)


# The source text's network (seed/000_075e3210c4315a4e.txt, lines 199-229), verbatim except
# for whitespace-only lines.
class DDPM(nn.Module):
    def __init__(self,n_steps,n_hidden=64):
        super(DDPM,self).__init__()  # noqa: UP008 (verbatim)

        self.linears = nn.ModuleList(
            [
                nn.Linear(2,n_hidden),nn.ReLU(),
                nn.Linear(n_hidden,n_hidden),nn.ReLU(),
                nn.Linear(n_hidden,n_hidden),nn.ReLU(),
                nn.Linear(n_hidden,2),
            ]
        )
        # Gestion des pas de temps
        self.step_embeddings = nn.ModuleList(
            [
                nn.Embedding(n_steps,n_hidden),
                nn.Embedding(n_steps,n_hidden),
                nn.Embedding(n_steps,n_hidden),
            ]
        )

    def forward(self,x,t):
        for idx,embedding_layer in enumerate(self.step_embeddings):
            t_embedding = embedding_layer(t)
            x = self.linears[2*idx](x)
            x += t_embedding
            x = self.linears[2*idx+1](x)

        x = self.linears[-1](x)

        return x


def inputs(n: int, T: int, seed: int = 0, dim: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, T, (n,), generator=g)


# ------------------------------------------------------------------ seed_mlp


def test_seed_mlp_has_the_source_texts_parameters():
    T = 150
    model = build_model(ModelConfig(name="seed_mlp", seed_mlp=SeedMLPConfig(hidden=64)), T)
    assert isinstance(model, SeedMLP)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = {
        "linears.0.weight": (64, 2), "linears.0.bias": (64,),
        "linears.2.weight": (64, 64), "linears.2.bias": (64,),
        "linears.4.weight": (64, 64), "linears.4.bias": (64,),
        "linears.6.weight": (2, 64), "linears.6.bias": (2,),
        "step_embeddings.0.weight": (T, 64),
        "step_embeddings.1.weight": (T, 64),
        "step_embeddings.2.weight": (T, 64),
    }
    assert shapes == want
    assert [type(m) for m in model.linears] == [type(m) for m in DDPM(T).linears]
    assert shapes == {k: tuple(v.shape) for k, v in DDPM(T).state_dict().items()}


@pytest.mark.parametrize("T", [150, 1000])
def test_seed_mlp_forward_is_the_source_texts_forward(T):
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="seed_mlp", seed_mlp=SeedMLPConfig(hidden=64)), T)
    source = DDPM(T, 64)
    source.load_state_dict(model.state_dict(), strict=True)
    x, t = inputs(300, T)
    with torch.no_grad():
        got, want = model(x, t), source(x, t)
    assert got.shape == (300, 2)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ resmlp


@pytest.mark.parametrize(("hidden", "depth", "fourier_scale"), [(128, 3, 4.0), (32, 1, 0.0),
                                                                (33, 2, 1.0)])
def test_resmlp_output_shape_and_zero_at_init(hidden, depth, fourier_scale):
    T = 50
    cfg = ModelConfig(name="resmlp", resmlp=ResMLPConfig(hidden, depth, fourier_scale))
    model = build_model(cfg, T)
    assert isinstance(model, ResMLP)
    x, t = inputs(17, T)
    out = model(x, t)
    assert out.shape == (17, 2) and out.dtype == torch.float32
    # the output layer starts at zero: eps_hat = 0, the best constant guess of N(0, I) noise
    assert torch.equal(out, torch.zeros(17, 2))


def test_resmlp_other_dim():
    model = ResMLP(20, dim=3, hidden=16, depth=2)
    x, t = inputs(5, 20, dim=3)
    assert model(x, t).shape == (5, 3)


def _randomise_output_layer(model: ResMLP) -> None:
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        model.out.weight.copy_(torch.randn(model.out.weight.shape, generator=g))
        model.out.bias.copy_(torch.randn(model.out.bias.shape, generator=g))


def test_resmlp_output_does_not_depend_on_how_the_batch_is_cut():
    # embed() runs the timestep MLP once per distinct t of the batch: a batch holding every t
    # (N > T, repeats) and small batches (few distinct t) must give the same outputs.
    T = 10
    torch.manual_seed(1)
    model = ResMLP(T, hidden=32, depth=2)
    _randomise_output_layer(model)  # otherwise both paths give 0
    x, t = inputs(40, T, seed=2)
    assert x.shape[0] > T
    with torch.no_grad():
        big = model(x, t)
        small = torch.cat([model(x[i:i + 5], t[i:i + 5]) for i in range(0, 40, 5)])
    assert big.abs().max() > 0.1
    torch.testing.assert_close(big, small, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resmlp", "seed_mlp"])
def test_gradients_reach_every_parameter(name):
    T = 30
    torch.manual_seed(3)
    config = ModelConfig(name=name, resmlp=ResMLPConfig(hidden=32, depth=2),
                         seed_mlp=SeedMLPConfig(hidden=32))
    model = build_model(config, T)
    x, t = inputs(64, T, seed=4)
    target = torch.randn(64, 2, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # one step first: ResMLP's zero output layer blocks every gradient below it at init
    for _ in range(2):
        opt.zero_grad()
        loss = (model(x, t) - target).square().mean()
        loss.backward()
        opt.step()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().max() > 0, pname


def test_resmlp_fixed_features_are_buffers_saved_with_the_model():
    model = ResMLP(40, hidden=16, depth=1, fourier_scale=2.0)
    names = {n for n, _ in model.named_parameters()}
    assert "fourier" not in names and "t_table" not in names
    state = model.state_dict()
    assert torch.equal(state["fourier"], fourier_matrix(2, 8, 2.0))
    assert torch.equal(state["t_table"], sinusoidal_table(40, 16))
    # a second model has the same fixed frequencies (drawn from a fixed seed)
    assert torch.equal(ResMLP(40, hidden=16, depth=1, fourier_scale=2.0).fourier, model.fourier)


# ------------------------------------------------------------------ embeddings


@pytest.mark.parametrize(("T", "dim"), [(1000, 64), (150, 16), (7, 5)])
def test_sinusoidal_table_closed_form(T, dim):
    # Vaswani et al. 2017, Sec. 3.5 with position s = t * 1000 / T:
    # [sin(s w_0..w_{h-1}), cos(s w_0..w_{h-1})], w_i = 10000^(-i/h), h = dim // 2 (+ a 0 column)
    table = sinusoidal_table(T, dim)
    assert table.shape == (T, dim) and table.dtype == torch.float32
    h = dim // 2
    for t in (0, 1, T // 2, T - 1):
        s = t * 1000.0 / T
        want = [math.sin(s * 10000 ** (-i / h)) for i in range(h)]
        want += [math.cos(s * 10000 ** (-i / h)) for i in range(h)]
        want += [0.0] * (dim % 2)
        torch.testing.assert_close(table[t], torch.tensor(want, dtype=torch.float32),
                                   rtol=0, atol=1e-6)


def test_fourier_features_closed_form():
    B = fourier_matrix(2, 3, 4.0)
    assert B.shape == (2, 3)
    # N(0, scale^2) from generator seed 0
    assert torch.equal(B, 4.0 * torch.randn(2, 3, generator=torch.Generator().manual_seed(0)))
    x = torch.tensor([[0.25, -1.0], [0.0, 0.5]])
    feats = fourier_features(x, B)
    assert feats.shape == (2, 2 + 6)
    for r in range(2):
        for j in range(3):
            proj = 2 * math.pi * (float(x[r, 0]) * float(B[0, j]) + float(x[r, 1]) * float(B[1, j]))
            assert float(feats[r, 2 + j]) == pytest.approx(math.sin(proj), abs=1e-5)
            assert float(feats[r, 5 + j]) == pytest.approx(math.cos(proj), abs=1e-5)
    assert torch.equal(feats[:, :2], x)


# ------------------------------------------------------------------ registry


def test_build_model_unknown_name_lists_the_valid_names():
    with pytest.raises(UserError) as info:
        build_model(ModelConfig(name="transformer"), 100)
    message = str(info.value)
    assert "transformer" in message and "resmlp" in message and "seed_mlp" in message
    assert "\n" not in message
