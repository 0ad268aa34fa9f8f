"""The U-Net's downsampling half (shared torso builder) and EncoderUNetModel, the noisy-image classifier.

`build_torso` creates `input_blocks` and `middle_block` exactly as guided-diffusion's UNetModel and
EncoderUNetModel both do, so the two models share one implementation and the reference's parameter names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import NamedTuple

import torch
import torch.nn as nn

from diffusion.attention import AttentionBlock, AttentionPool2d
from diffusion.blocks import Downsample, ResBlock, TimestepEmbedSequential
from diffusion.nn import (
    conv_nd,
    convert_module_to_f16,
    convert_module_to_f32,
    normalization,
    timestep_embedding,
    zero_module,
)

POOLS = ("adaptive", "attention", "spatial", "spatial_v2")


class Torso(NamedTuple):
    input_blocks: nn.ModuleList
    middle_block: TimestepEmbedSequential
    input_block_chans: list[int]  # channels of every skip connection, in push order
    ch: int  # channels after the middle block
    ds: int  # total downsampling factor reached
    feature_size: int  # sum of block widths (the reference's `_feature_size`, for the spatial pools)


def time_embed_mlp(model_channels: int, in_dims: int | None = None) -> nn.Sequential:
    """Sinusoid [N, in_dims (default model_channels)] -> [N, 4 * model_channels] (linear, SiLU, linear:
    `time_embed.0/.2`)."""
    dim = 4 * model_channels
    return nn.Sequential(nn.Linear(in_dims or model_channels, dim), nn.SiLU(), nn.Linear(dim, dim))


def resblock_factory(model_channels: int, dropout: float, dims: int, use_checkpoint: bool,
                     use_scale_shift_norm: bool) -> Callable[..., ResBlock]:
    """`res(channels, out_channels=None, up=False, down=False)` with the options shared by every block."""
    return partial(ResBlock, emb_channels=4 * model_channels, dropout=dropout, dims=dims,
                   use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm)


def build_torso(*, in_channels: int, model_channels: int, num_res_blocks: int, attention_resolutions: Collection[int],
                dropout: float, channel_mult: Sequence[float], conv_resample: bool, dims: int, use_checkpoint: bool,
                num_heads: int, num_head_channels: int, use_scale_shift_norm: bool, resblock_updown: bool,
                use_new_attention_order: bool) -> Torso:
    """Input blocks (conv, then per level `num_res_blocks` ResBlocks [+ attention] and a downsample) + middle."""
    res = resblock_factory(model_channels, dropout, dims, use_checkpoint, use_scale_shift_norm)

    def attn(ch_in: int) -> AttentionBlock:
        return AttentionBlock(ch_in, num_heads=num_heads, num_head_channels=num_head_channels,
                              use_checkpoint=use_checkpoint, use_new_attention_order=use_new_attention_order)

    ch = int(channel_mult[0] * model_channels)
    input_blocks = nn.ModuleList([TimestepEmbedSequential(conv_nd(dims, in_channels, ch, 3, padding=1))])
    chans, ds, feature_size = [ch], 1, ch
    for level, mult in enumerate(channel_mult):
        for _ in range(num_res_blocks):
            layers: list[nn.Module] = [res(ch, out_channels=int(mult * model_channels))]
            ch = int(mult * model_channels)
            if ds in attention_resolutions:
                layers.append(attn(ch))
            input_blocks.append(TimestepEmbedSequential(*layers))
            chans.append(ch)
            feature_size += ch
        if level != len(channel_mult) - 1:
            down = res(ch, down=True) if resblock_updown else Downsample(ch, conv_resample, dims=dims)
            input_blocks.append(TimestepEmbedSequential(down))
            chans.append(ch)
            ds *= 2
            feature_size += ch
    middle_block = TimestepEmbedSequential(res(ch), attn(ch), res(ch))
    return Torso(input_blocks, middle_block, chans, ch, ds, feature_size + ch)


def torso_arguments(constructor_args: dict) -> dict:
    """The subset of a model constructor's arguments (its `locals()`) that `build_torso` takes."""
    return {name: constructor_args[name] for name in inspect.signature(build_torso).parameters}


class TorsoPrecisionMixin:
    """The reference's fp16 mode: cast the torso's convolutions (the parts in `_torso()`) to float16."""

    def _torso(self) -> tuple[nn.Module, ...]:
        return (self.input_blocks, self.middle_block)  # type: ignore[attr-defined]

    @property
    def dtype(self) -> torch.dtype:
        """The torso's dtype (float16 after `convert_to_fp16`, else float32); inputs are cast to it."""
        return self.input_blocks[0][0].weight.dtype  # type: ignore[attr-defined]

    def convert_to_fp16(self) -> None:
        for part in self._torso():
            part.apply(convert_module_to_f16)

    def convert_to_fp32(self) -> None:
        for part in self._torso():
            part.apply(convert_module_to_f32)


class EncoderUNetModel(TorsoPrecisionMixin, nn.Module):
    """Half U-Net + pooling head: x [N, C, H, W], timesteps [N] -> logits [N, out_channels].

    Constructor arguments are the reference's; `pool` is one of adaptive, attention, spatial, spatial_v2.
    `use_fp16` casts the torso's convolutions to float16 at construction (the reference leaves that to the
    trainer); prefer float32 weights under `torch.autocast(dtype=torch.bfloat16)`.
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Collection[int], dropout: float = 0.0,
                 channel_mult: Sequence[float] = (1, 2, 4, 8), conv_resample: bool = True, dims: int = 2,
                 use_checkpoint: bool = False, use_fp16: bool = False, num_heads: int = 1, num_head_channels: int = -1,
                 num_heads_upsample: int = -1, use_scale_shift_norm: bool = False, resblock_updown: bool = False,
                 use_new_attention_order: bool = False, pool: str = "adaptive"):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; use one of {POOLS}")
        if pool == "attention" and num_head_channels == -1:
            raise ValueError("pool='attention' needs num_head_channels (the width of each pooling head), not -1")
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_res_blocks, self.channel_mult = model_channels, num_res_blocks, channel_mult
        self.attention_resolutions, self.use_checkpoint, self.use_fp16 = attention_resolutions, use_checkpoint, use_fp16
        self.num_heads_upsample = num_heads if num_heads_upsample == -1 else num_heads_upsample  # unused: no up path
        self.pool = pool
        self.time_embed = time_embed_mlp(model_channels)
        torso = build_torso(**torso_arguments(locals()))  # the constructor arguments the torso shares
        self.input_blocks, self.middle_block = torso.input_blocks, torso.middle_block
        ch, self._feature_size = torso.ch, torso.feature_size
        if pool == "adaptive":
            self.out = nn.Sequential(normalization(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)),
                                     zero_module(conv_nd(dims, ch, out_channels, 1)), nn.Flatten())
        elif pool == "attention":
            self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                     AttentionPool2d(image_size // torso.ds, ch, num_head_channels, out_channels))
        elif pool == "spatial":
            self.out = nn.Sequential(nn.Linear(self._feature_size, 2048), nn.ReLU(), nn.Linear(2048, out_channels))
        else:
            self.out = nn.Sequential(nn.Linear(self._feature_size, 2048), normalization(2048), nn.SiLU(),
                                     nn.Linear(2048, out_channels))
        if use_fp16:
            self.convert_to_fp16()

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W], timesteps [N] (possibly fractional) -> logits [N, out_channels]."""
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))  # [N, 4 * model_channels]
        spatial_means = []
        space = tuple(range(2, x.dim()))
        h = x.type(self.dtype)  # [N, C, H, W]
        for module in self.input_blocks:
            h = module(h, emb)  # [N, ch_i, H_i, W_i]
            if self.pool.startswith("spatial"):
                spatial_means.append(h.type(x.dtype).mean(dim=space))  # [N, ch_i]
        h = self.middle_block(h, emb)  # [N, ch, H / ds, W / ds]
        if self.pool.startswith("spatial"):
            spatial_means.append(h.type(x.dtype).mean(dim=space))  # [N, ch]
            return self.out(torch.cat(spatial_means, dim=-1))  # [N, out_channels]
        return self.out(h.type(x.dtype))  # [N, out_channels]
