"""A tiny class-conditional UNet for 1×8×8 digits.

Layout for the default config (channels 64 → 128, one downsampling, 8×8 → 4×4)::

    x_t (B,1,8,8) ─ conv_in ─ [Res(64)]×2 ─┬─ down ─ [Res(128)]×2 ─ mid: Res, Attn, Res
                                          skips                          │
    ε̂  (B,1,8,8) ─ conv_out ─ [Res(64)]×3 ─┴─ up ─── [Res(128)]×3 ◄──────┘

Each residual block receives the conditioning vector e = emb(t) + emb(y),
where y ∈ {0, …, K−1} is a class and y = K (``null_label``) means "no class",
the token classifier-free guidance (Ho & Salimans 2022) contrasts against.
The model follows the library's convention ``model(x_t, t, labels=None) -> ε̂``
with ``labels=None`` meaning the null label for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import TimestepMLP, check_inputs, resolve_labels


@dataclass
class UNetConfig:
    """Architecture of :class:`UNet`.

    Attributes:
        image_channels: channels of x_t (1 for digits).
        image_size: height = width of x_t; must be divisible by 2^(levels − 1).
        channels: width at each resolution level, e.g. (64, 128) for 8×8 and 4×4.
        num_res_blocks: residual blocks per level on the way down (one more on
            the way up, as in DDPM).
        attention: put a self-attention block in the middle (lowest resolution).
        num_classes: K; the null label is K. 0 makes the model unconditional.
        groups: GroupNorm groups.
        dropout: dropout inside the residual blocks.
    """

    image_channels: int = 1
    image_size: int = 8
    channels: tuple[int, ...] = (64, 128)
    num_res_blocks: int = 2
    attention: bool = True
    num_classes: int = 10
    groups: int = 8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if not self.channels or any(c % self.groups for c in self.channels):
            raise ValueError(
                f"channels must be non-empty multiples of groups={self.groups}, got {self.channels}"
            )
        if self.image_size % 2 ** (len(self.channels) - 1):
            raise ValueError(
                f"image_size={self.image_size} must be divisible by "
                f"2^(levels-1) = {2 ** (len(self.channels) - 1)} for channels={self.channels}"
            )
        if self.num_classes < 0 or self.num_res_blocks < 1:
            raise ValueError(
                f"num_classes must be >= 0 and num_res_blocks >= 1, got "
                f"{self.num_classes} and {self.num_res_blocks}"
            )


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, + Linear(e) shift, GroupNorm → SiLU → conv, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # the block starts as the identity
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # + e, broadcast over H, W
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the H·W positions, with a residual."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H·W, C)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """Class-conditional ε-prediction UNet, ``forward(x_t, t, labels=None) -> ε̂``.

    Attributes:
        num_classes: K, the number of real classes.
        null_label: K, the label that means "unconditional"; None if K = 0.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else UNetConfig()
        self.config = cfg
        self.num_classes = cfg.num_classes
        self.null_label = cfg.num_classes if cfg.num_classes > 0 else None
        ch = cfg.channels
        emb_dim = 4 * ch[0]

        self.time_embed = TimestepMLP(ch[0], emb_dim)
        # K class rows plus one row for the null label ∅ (index K).
        self.label_embed = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None

        def res(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, emb_dim, cfg.groups, cfg.dropout)

        self.conv_in = nn.Conv2d(cfg.image_channels, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        skip_channels = [ch[0]]
        c = ch[0]
        for level, c_level in enumerate(ch):
            for _ in range(cfg.num_res_blocks):
                self.down.append(res(c, c_level))
                c = c_level
                skip_channels.append(c)
            if level < len(ch) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))  # H → H/2
                skip_channels.append(c)

        attention = [SelfAttention(c, cfg.groups)] if cfg.attention else []
        self.mid = nn.ModuleList([res(c, c), *attention, res(c, c)])

        self.up = nn.ModuleList()
        for level, c_level in reversed(list(enumerate(ch))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(res(c + skip_channels.pop(), c_level))
                c = c_level
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(c, c, 3, padding=1))

        self.norm_out = nn.GroupNorm(cfg.groups, c)
        self.conv_out = nn.Conv2d(c, cfg.image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # ε̂ = 0 at initialisation
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        """Predict the noise ε in x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε.

        Args:
            x: x_t, shape (B, C, H, W).
            t: original training timesteps, shape (B,), integer.
            labels: classes, shape (B,), in 0…K−1, or K (the null label) per
                sample; None means the null label for every sample.

        Returns:
            ε̂, shape (B, C, H, W).
        """
        cfg = self.config
        check_inputs(x, t, (cfg.image_channels, cfg.image_size, cfg.image_size), "UNet")
        emb = self.time_embed(t.to(x.device))  # (B, E)
        if self.label_embed is not None:
            y = resolve_labels(labels, x.shape[0], cfg.num_classes, x.device)  # (B,)
            emb = emb + self.label_embed(y)  # (B, E)
        elif labels is not None:
            raise ValueError("this UNet is unconditional (num_classes=0); pass labels=None")

        h = self.conv_in(x)  # (B, C0, H, W)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)  # concat skip on C
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)
