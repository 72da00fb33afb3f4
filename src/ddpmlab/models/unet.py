"""U-Net noise predictors for images: eps_theta(x_t, t), (B, C, H, W) and (B,) -> (B, out, H, W).

``SeedUNet`` is the source text's U-Net (Ronneberger et al. 2015) with padded convolutions;
``UNet`` (the default for images) is Ho et al. 2020's network (Appendix B) as
improved-diffusion's ``unet.py`` writes it (Nichol & Dhariwal 2021). Both are fully
convolutional: any size that their levels can halve works (8x8 digits, 28x28 MNIST, 32x32).
``out_channels`` may be 2 * C (a learned variance, Nichol & Dhariwal 2021 Sec. 3.1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ddpmlab.config import SeedUNetConfig, UNetConfig
from ddpmlab.errors import UserError
from ddpmlab.models.embeddings import add_class, class_table, sinusoidal_table


def halvings(config: SeedUNetConfig | UNetConfig) -> int:
    """How many times the network halves the image size."""
    if isinstance(config, SeedUNetConfig):
        return config.poolings
    return len(config.channel_mult) - 1


def check_size(size: int, config: SeedUNetConfig | UNetConfig) -> None:
    """Refuse (UserError, one line) an image side that the network's levels cannot halve."""
    n = halvings(config)
    if size >= 1 and size % 2**n == 0:
        return
    sizes = [str(size / 2**k).removesuffix(".0") for k in range(n + 1)]
    most = next(k for k in range(n, -1, -1) if size % 2**k == 0)
    if isinstance(config, SeedUNetConfig):
        levels, fix = f"seed_unet's {n} poolings", f"model.poolings <= {most}"
    else:
        levels = f"unet's {n + 1} levels (channel_mult={config.channel_mult})"
        fix = f"a channel_mult of at most {most + 1} entries"
    raise UserError(f"image size {size} cannot be halved {n} times ({' -> '.join(sizes)}) "
                    f"for {levels}; use a size divisible by {2**n} or {fix}")


def _zero(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters: residual branches start as the identity (Ho et al. 2020)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


# --- The source text's U-Net (Ronneberger et al. 2015) ----------------------------------


class SeedBlock(nn.Module):
    """Two 3x3 convolutions with ReLU; the learned embedding of t is added after the first,
    before its ReLU, as the source text's MLP adds it to every hidden layer (the text does not
    say how t enters its U-Net). (B, cin, H, W) -> (B, cout, H, W)."""

    def __init__(self, cin: int, cout: int, timesteps: int, num_classes: int = 0) -> None:
        super().__init__()
        # Padded ("same") convolutions: the 2015 paper's are unpadded and its skip maps are
        # cropped (Ronneberger et al. 2015, Fig. 1), so its output is smaller than its input,
        # while a noise predictor must return the input's shape.
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.step_embedding = nn.Embedding(timesteps, cout)
        # beside the timestep's, as the class enters SeedMLP (embeddings.class_table)
        self.class_embedding = class_table(num_classes, cout) if num_classes else None

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        e = add_class(self.step_embedding(t), self.class_embedding, y)
        h = F.relu(self.conv1(x) + e[:, :, None, None])  # over H, W
        return F.relu(self.conv2(h))


class SeedUNet(nn.Module):
    """Ronneberger et al. 2015: contracting path (blocks, 2x2 max-pooling, channels doubled),
    expansive path (up-sampling, a 2x2 convolution halving the channels, concatenation with
    the contracting map, a block), a final 1x1 convolution. 5 * poolings + 3 convolutions.
    ``num_classes`` > 0: a class embedding beside each block's timestep embedding."""

    def __init__(self, config: SeedUNetConfig, timesteps: int, channels: int,
                 out_channels: int, num_classes: int = 0) -> None:
        super().__init__()
        if config.poolings < 0 or config.base_width < 1:
            raise UserError("seed_unet needs poolings >= 0 and base_width >= 1")
        self.config = config
        widths = [config.base_width * 2**i for i in range(config.poolings + 1)]
        ins = [channels, *widths[:-1]]  # each block's input width on the way down
        self.num_classes = num_classes
        self.down = nn.ModuleList(SeedBlock(cin, cout, timesteps, num_classes)
                                  for cin, cout in zip(ins[:-1], widths[:-1], strict=True))
        self.bottom = SeedBlock(ins[-1], widths[-1], timesteps, num_classes)
        # The "up-convolution": nearest up-sampling then a 2x2 convolution halving the
        # channels, padded one pixel right and below to keep the size.
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                          nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(w, w // 2, 2))
            for w in reversed(widths[1:]))
        self.up_blocks = nn.ModuleList(  # (w skip + w up-sampled) -> w channels
            SeedBlock(2 * w, w, timesteps, num_classes) for w in reversed(widths[:-1]))
        self.out = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) float32, t: (B,) int64 in 0..T-1, y: (B,) int64 labels or None
        -> (B, out_channels, H, W)."""
        check_size(x.shape[-2], self.config)
        check_size(x.shape[-1], self.config)
        skips = []
        h = x
        for block in self.down:
            h = block(h, t, y)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.bottom(h, t, y)
        for up, block in zip(self.up, self.up_blocks, strict=True):
            h = block(torch.cat([skips.pop(), up(h)], dim=1), t, y)
        return self.out(h)


# --- Ho et al. 2020 / improved-diffusion -------------------------------------------------


class ResBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, + projected timestep embedding, GroupNorm, SiLU, dropout,
    zero-initialised 3x3 conv; skip through a 1x1 conv when the width changes (Ho et al. 2020
    Appendix B; improved-diffusion ``ResBlock``). (B, cin, H, W), (B, E) -> (B, cout, H, W)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, c: UNetConfig) -> None:
        super().__init__()
        self.scale_shift = c.scale_shift_norm
        self.in_layers = nn.Sequential(nn.GroupNorm(c.groups, cin), nn.SiLU(),
                                       nn.Conv2d(cin, cout, 3, padding=1))
        self.emb = nn.Linear(emb_dim, 2 * cout if c.scale_shift_norm else cout)
        self.out_norm = nn.GroupNorm(c.groups, cout)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(c.dropout),
                                        _zero(nn.Conv2d(cout, cout, 3, padding=1)))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """emb: SiLU of the shared timestep embedding, (B, E)."""
        h = self.in_layers(x)
        e = self.emb(emb)[:, :, None, None]  # (B, cout or 2 cout, 1, 1)
        if self.scale_shift:  # Nichol & Dhariwal 2021: GroupNorm(h) * (1 + scale) + shift
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_layers(h)


class Attention(nn.Module):
    """Self-attention over the H * W positions, with a residual and a zero-initialised output
    projection (Ho et al. 2020 Appendix B; improved-diffusion ``AttentionBlock``)."""

    def __init__(self, ch: int, c: UNetConfig) -> None:
        super().__init__()
        self.heads = c.num_heads
        self.norm = nn.GroupNorm(c.groups, ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv1d(ch, ch, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x).reshape(B, C, H * W))  # (B, 3C, HW)
        q, k, v = qkv.reshape(B, 3, self.heads, C // self.heads, H * W).transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C / heads)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H * W)).reshape(B, C, H, W)


class Resample(nn.Module):
    """Stride-2 3x3 conv (down) or nearest up-sampling then a 3x3 conv (up), width kept."""

    def __init__(self, ch: int, up: bool) -> None:
        super().__init__()
        self.up = up
        self.conv = nn.Conv2d(ch, ch, 3, stride=1 if up else 2, padding=1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest") if self.up else x)


def _check(c: UNetConfig) -> None:
    """Refuse settings no network can be built from, with one line naming the fix."""
    widths = sorted({c.base_channels * m for m in (1, *c.channel_mult)})
    rates = [2**i for i in range(len(c.channel_mult))]
    if c.base_channels < 1 or not c.channel_mult or min(c.channel_mult) < 1:
        raise UserError("unet needs base_channels >= 1 and a non-empty channel_mult of "
                        "positive integers")
    if min(c.num_res_blocks, c.num_heads, c.groups) < 1 or not 0 <= c.dropout < 1:
        raise UserError("unet needs num_res_blocks, num_heads and groups >= 1 and "
                        "0 <= dropout < 1")
    if any(w % c.groups for w in widths):
        g = math.gcd(*widths)
        fit = max(d for d in range(1, min(g, c.groups) + 1) if g % d == 0)
        raise UserError(f"unet groups={c.groups} must divide every width (base_channels x "
                        f"channel_mult: {', '.join(map(str, widths))}); use groups={fit} or a "
                        f"base_channels that is a multiple of {c.groups}")
    if any(w % c.num_heads for w in widths):
        raise UserError(f"unet num_heads={c.num_heads} must divide every width "
                        f"({', '.join(map(str, widths))})")
    bad = [r for r in c.attention_resolutions if r not in rates]
    if bad:
        raise UserError(f"unet attention_resolutions {bad} are not downsampling rates of "
                        f"channel_mult={c.channel_mult}; choose among {rates}")


class UNet(nn.Module):
    """Ho et al. 2020's U-Net (Appendix B) as improved-diffusion's ``UNetModel`` builds it.

    Sinusoidal embedding of t -> Linear, SiLU, Linear (4 x base_channels), fed to every
    ResBlock; per level num_res_blocks ResBlocks (+ attention) then a stride-2 conv; a middle
    ResBlock, attention, ResBlock; per level num_res_blocks + 1 ResBlocks on the concatenated
    skips, then up-sampling; GroupNorm, SiLU and a zero-initialised 3x3 conv, so the network
    predicts eps_hat = 0 at initialisation. ``num_classes`` > 0 adds a class embedding to
    the timestep MLP's output (improved-diffusion's ``label_emb``; ``embeddings.class_table``).
    """

    def __init__(self, config: UNetConfig, timesteps: int, channels: int,
                 out_channels: int, num_classes: int = 0) -> None:
        super().__init__()
        _check(config)
        self.config = c = config
        base, emb_dim = c.base_channels, 4 * c.base_channels
        self.register_buffer("t_table", sinusoidal_table(timesteps, base))  # (T, base)
        self.t_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))

        def stage(cin: int, cout: int, rate: int) -> nn.ModuleList:
            layers = [ResBlock(cin, cout, emb_dim, c)]
            return nn.ModuleList(layers + ([Attention(cout, c)] if rate in
                                           c.attention_resolutions else []))

        self.inp = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList()
        skip_widths, ch, rate = [base], base, 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                self.down.append(stage(ch, base * mult, rate))
                ch = base * mult
                skip_widths.append(ch)
            if level < len(c.channel_mult) - 1:
                self.down.append(nn.ModuleList([Resample(ch, up=False)]))
                skip_widths.append(ch)
                rate *= 2
        self.middle = nn.ModuleList([ResBlock(ch, ch, emb_dim, c),
                                     *([Attention(ch, c)] if c.middle_attention else []),
                                     ResBlock(ch, ch, emb_dim, c)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                layers = stage(ch + skip_widths.pop(), base * mult, rate)
                ch = base * mult
                if level and i == c.num_res_blocks:
                    layers.append(Resample(ch, up=True))
                    rate //= 2
                self.up.append(layers)
        self.out = nn.Sequential(nn.GroupNorm(c.groups, ch), nn.SiLU(),
                                 _zero(nn.Conv2d(ch, out_channels, 3, padding=1)))
        self.num_classes = num_classes
        self.class_emb = class_table(num_classes, emb_dim) if num_classes else None

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) float32, t: (B,) int64 in 0..T-1, y: (B,) int64 labels or None
        -> (B, out_channels, H, W)."""
        check_size(x.shape[-2], self.config)
        check_size(x.shape[-1], self.config)
        t_emb = self.t_mlp(self.t_table[t])  # type: ignore[index]  # (B, 4 base)
        emb = F.silu(add_class(t_emb, self.class_emb, y))  # SiLU shared by all blocks
        h = self.inp(x)
        skips = [h]
        for layers in self.down:
            for layer in layers:  # type: ignore[attr-defined]
                h = layer(h, emb)
            skips.append(h)
        for layer in self.middle:
            h = layer(h, emb)
        for layers in self.up:
            h = torch.cat([h, skips.pop()], dim=1)
            for layer in layers:  # type: ignore[attr-defined]
                h = layer(h, emb)
        return self.out(h)
