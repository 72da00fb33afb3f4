"""Image noise predictors: shapes, size refusals, the source text's 23 convolutions, the
timestep's effect, the zero initialisation, gradients, config checks and determinism."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import torch
from torch import nn

from ddpmlab.config import from_dict, to_dict
from ddpmlab.errors import UserError
from ddpmlab.models.unet import (
    Attention,
    ResBlock,
    SeedUNet,
    SeedUNetConfig,
    UNet,
    UNetConfig,
    check_size,
)

torch.set_num_threads(1)
T = 50
SMALL_SEED = SeedUNetConfig(poolings=2, base_width=8)
SMALL_UNET = UNetConfig(base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1,
                        attention_resolutions=(2,), groups=4, dropout=0.0)


def build(kind: str, channels: int = 1, out: int | None = None, **changes) -> nn.Module:
    if kind == "seed_unet":
        return SeedUNet(dataclasses.replace(SMALL_SEED, **changes), T, channels, out or channels)
    return UNet(dataclasses.replace(SMALL_UNET, **changes), T, channels, out or channels)


def perturb_zero_init(net: nn.Module) -> nn.Module:
    """Give the zero-initialised layers (last convs, attention projections) random weights."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("kind", ["seed_unet", "unet"])
@pytest.mark.parametrize("size", [8, 28, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("factor", [1, 2])
def test_output_has_the_input_shape_or_twice_its_channels(kind, size, channels, factor):
    net = build(kind, channels, factor * channels)
    x = torch.randn(2, channels, size, size)
    out = net(x, torch.tensor([0, T - 1]))
    assert out.shape == (2, factor * channels, size, size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_default_configs_run_at_8_and_28_pixels():
    for net in (SeedUNet(SeedUNetConfig(), T, 1, 1), UNet(UNetConfig(), T, 1, 2)):
        for size in (8, 28):
            assert net(torch.randn(1, 1, size, size), torch.tensor([3])).shape[-1] == size


@pytest.mark.parametrize(("config", "size", "words"), [
    (UNetConfig(channel_mult=(1, 2, 2, 2)), 28, ["28", "3.5", "4 levels", "divisible by 8"]),
    (SeedUNetConfig(poolings=4), 28, ["28", "4 poolings", "poolings <= 2"]),
    (SeedUNetConfig(poolings=1), 9, ["9", "4.5", "poolings <= 0"]),
])
def test_sizes_the_levels_cannot_halve_are_refused_in_one_line(config, size, words):
    with pytest.raises(UserError) as err:
        check_size(size, config)
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message
    net = (SeedUNet if isinstance(config, SeedUNetConfig) else UNet)(config, T, 1, 1)
    with pytest.raises(UserError, match=f"image size {size} "):
        net(torch.randn(1, 1, size, size), torch.tensor([0]))


def test_sizes_that_halve_are_accepted_and_width_is_checked_too():
    check_size(32, UNetConfig(channel_mult=(1, 2, 2, 2)))
    check_size(16, SeedUNetConfig(poolings=4))
    check_size(7, SeedUNetConfig(poolings=0))
    with pytest.raises(UserError, match="image size 30"):
        build("unet")(torch.randn(1, 1, 8, 30), torch.tensor([0]))


def test_seed_unet_at_4_poolings_and_width_64_has_the_texts_23_convolutions():
    # Ronneberger et al. 2015: 4 poolings (5 resolutions, 64 to 1024 channels), 23 convs.
    with torch.device("meta"):  # no memory, no initialisation: only the structure
        net = SeedUNet(SeedUNetConfig(poolings=4, base_width=64), 1000, 1, 1)
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 23
        assert max(c.out_channels for c in convs) == 1024
        assert sorted({c.kernel_size for c in convs}) == [(1, 1), (2, 2), (3, 3)]
        for p in range(4):
            small = SeedUNet(SeedUNetConfig(poolings=p, base_width=4), 10, 1, 1)
            assert sum(isinstance(m, nn.Conv2d) for m in small.modules()) == 5 * p + 3


@pytest.mark.parametrize(("kind", "changes"), [
    ("seed_unet", {}), ("unet", {}), ("unet", {"scale_shift_norm": True}),
])
def test_the_timestep_changes_the_output(kind, changes):
    net = perturb_zero_init(build(kind, **changes)).eval()
    x = torch.randn(1, 1, 8, 8).expand(2, 1, 8, 8)
    out = net(x, torch.tensor([0, T - 1]))
    assert (out[0] - out[1]).abs().max() > 1e-4


def test_unet_predicts_zero_at_init_and_its_residual_branches_start_as_identity():
    # Zero-initialised last conv (improved-diffusion): eps_hat = 0, the best constant guess.
    net = build("unet", 3, 6).eval()
    assert torch.equal(net(torch.randn(2, 3, 8, 8), torch.tensor([1, 2])),
                       torch.zeros(2, 6, 8, 8))
    emb = torch.randn(2, 32)
    blocks = [m for m in net.modules() if isinstance(m, ResBlock | Attention)]
    assert len(blocks) == 15  # 11 ResBlocks (3 down, 2 middle, 6 up), 4 attention blocks
    for block in blocks:
        x = torch.randn(2, block.out_norm.num_channels if isinstance(block, ResBlock)
                        else block.norm.num_channels, 4, 4)
        if isinstance(block, Attention) or isinstance(block.skip, nn.Identity):
            assert torch.allclose(block(x, emb), x)  # zero conv / projection: skip path only


def test_attention_matches_a_written_out_softmax():
    config = dataclasses.replace(SMALL_UNET, num_heads=2)
    attention = perturb_zero_init(Attention(8, config))
    x = torch.randn(2, 8, 4, 4)
    qkv = attention.qkv(attention.norm(x).reshape(2, 8, 16)).reshape(2, 3, 2, 4, 16)
    q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # (B, heads, d, HW)
    weights = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(4), dim=-1)  # (B, heads, HW, HW)
    h = (v @ weights.transpose(-1, -2)).reshape(2, 8, 16)
    expected = x + attention.proj(h).reshape(2, 8, 4, 4)
    assert torch.allclose(attention(x), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["seed_unet", "unet"])
def test_gradients_reach_every_parameter(kind):
    net = perturb_zero_init(build(kind, 3, 6, **({"num_heads": 2} if kind == "unet" else {})))
    t = torch.arange(4) * 7
    net(torch.randn(4, 3, 8, 8), t).square().mean().backward()
    missing = [name for name, p in net.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize(("changes", "words"), [
    ({"base_channels": 12, "groups": 8}, "groups=8 must divide every width"),
    ({"channel_mult": (2, 3), "groups": 16, "base_channels": 4}, "use groups=4"),
    ({"num_heads": 3}, "num_heads=3"),
    ({"attention_resolutions": (8,)}, r"choose among \[1, 2, 4\]"),
    ({"groups": 0}, "groups >= 1"),
    ({"channel_mult": ()}, "non-empty channel_mult"),
])
def test_impossible_unet_settings_are_refused(changes, words):
    with pytest.raises(UserError, match=words):
        UNet(dataclasses.replace(SMALL_UNET, **changes), T, 1, 1)


def test_groupnorm_message_names_a_divisor_that_fits():
    with pytest.raises(UserError, match="use groups=6 or a base_channels that is a multiple of 8"):
        UNet(UNetConfig(base_channels=12, groups=8), T, 1, 1)


@pytest.mark.parametrize("kind", ["seed_unet", "unet"])
def test_same_seed_same_network_and_output(kind):
    def run() -> torch.Tensor:
        torch.manual_seed(0)
        net = build(kind, dropout=0.5) if kind == "unet" else build(kind)
        net.train()  # dropout draws from the global generator too
        return net(torch.randn(2, 1, 8, 8), torch.tensor([0, 9]))

    assert torch.equal(run(), run())


@pytest.mark.parametrize("cls", [SeedUNetConfig, UNetConfig])
def test_configs_are_frozen_plain_and_round_trip(cls):
    plain = {int, float, bool, str, tuple[int, ...]}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        assert hints[f.name] in plain and f.default is not dataclasses.MISSING, f.name
    config = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.poolings = 3  # type: ignore[misc]
    assert from_dict(cls, to_dict(config)) == config
