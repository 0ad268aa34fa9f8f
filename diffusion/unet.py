"""UNetModel: guided-diffusion's U-Net with its constructor and parameter names, so its checkpoints load.

The network maps (x_t, t, y) to an output of the input's spatial shape; what the output means (eps, x0, v,
and the variance channels when learn_sigma doubles out_channels) is the diffusion process's business.

Precision: `use_fp16` is kept for checkpoint/flag compatibility (it casts the torso's convolutions to
float16, as the reference's trainer does); the recommended path is float32 weights under
`torch.autocast(device_type, dtype=torch.bfloat16)`, which needs no loss scaling.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
import torch.nn as nn
from torch._subclasses.fake_tensor import is_fake

from diffusion.attention import AttentionBlock
from diffusion.blocks import TimestepEmbedSequential, Upsample
from diffusion.encoder_unet import (
    EncoderUNetModel,
    TorsoPrecisionMixin,
    build_torso,
    resblock_factory,
    time_embed_mlp,
    torso_arguments,
)
from diffusion.nn import conv_nd, keras_ddim_embedding, normalization, timestep_embedding, zero_module

__all__ = ["UNetModel", "EncoderUNetModel"]


class UNetModel(TorsoPrecisionMixin, nn.Module):
    """U-Net with timestep embedding, optional class embedding and attention at chosen downsampling rates.

    image_size: spatial size (kept for reference compatibility). in_channels / out_channels: channels of the
    input / output. model_channels: base width. num_res_blocks: ResBlocks per level. attention_resolutions:
    downsampling rates ds (1, 2, 4, ...) with attention. channel_mult: width multiplier per level.
    num_classes: number of label-embedding rows (None = unconditional); with classifier-free guidance the
    factory passes classes + 1 and the last row is the null label. num_heads / num_head_channels /
    num_heads_upsample: attention heads (num_head_channels, if not -1, fixes the head width instead).
    use_scale_shift_norm: FiLM conditioning. resblock_updown: resample with ResBlocks. use_new_attention_order:
    QKVAttention instead of QKVAttentionLegacy. use_checkpoint: gradient checkpointing of every block.
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Collection[int], dropout: float = 0.0,
                 channel_mult: Sequence[float] = (1, 2, 4, 8), conv_resample: bool = True, dims: int = 2,
                 num_classes: int | None = None, use_checkpoint: bool = False, use_fp16: bool = False,
                 num_heads: int = 1, num_head_channels: int = -1, num_heads_upsample: int = -1,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False,
                 use_new_attention_order: bool = False,
                 time_embedding: tuple[str, int, float] = ("timestep", 32, 1000.0)):
        super().__init__()
        num_heads_upsample = num_heads if num_heads_upsample == -1 else num_heads_upsample
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_res_blocks, self.channel_mult = model_channels, num_res_blocks, channel_mult
        self.attention_resolutions, self.dropout, self.conv_resample = attention_resolutions, dropout, conv_resample
        self.num_classes, self.use_checkpoint, self.use_fp16 = num_classes, use_checkpoint, use_fp16
        self.num_heads, self.num_head_channels = num_heads, num_head_channels
        self.num_heads_upsample = num_heads_upsample

        emb_dim = 4 * model_channels
        # (kind, dims, max frequency): the reference's sinusoid of width model_channels, or the Keras DDIM example's.
        self.time_embedding = time_embedding
        self.time_embed = time_embed_mlp(model_channels, None if time_embedding[0] == "timestep" else time_embedding[1])
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)
        torso = build_torso(**torso_arguments(locals()))  # the constructor arguments the torso shares
        self.input_blocks, self.middle_block = torso.input_blocks, torso.middle_block
        chans, ch, ds = list(torso.input_block_chans), torso.ch, torso.ds

        res = resblock_factory(model_channels, dropout, dims, use_checkpoint, use_scale_shift_norm)
        # Mirror of the input path: num_res_blocks + 1 ResBlocks per level, each eating one skip connection.
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks + 1):
                layers: list[nn.Module] = [res(ch + chans.pop(), out_channels=int(model_channels * mult))]
                ch = int(model_channels * mult)
                if ds in attention_resolutions:
                    layers.append(AttentionBlock(ch, num_heads=num_heads_upsample, num_head_channels=num_head_channels,
                                                 use_checkpoint=use_checkpoint,
                                                 use_new_attention_order=use_new_attention_order))
                if level and i == num_res_blocks:
                    layers.append(res(ch, up=True) if resblock_updown else Upsample(ch, conv_resample, dims=dims))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        input_ch = int(channel_mult[0] * model_channels)
        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 zero_module(conv_nd(dims, input_ch, out_channels, 3, padding=1)))
        if use_fp16:
            self.convert_to_fp16()

    def _torso(self) -> tuple[nn.Module, ...]:
        return (self.input_blocks, self.middle_block, self.output_blocks)

    def _check_labels(self, x: torch.Tensor, y: torch.Tensor | None) -> None:
        if self.num_classes is None:
            if y is not None:
                raise ValueError("this UNetModel is unconditional (num_classes=None) but y was given; "
                                 "pass y=None or build the model with class_cond=True")
            return
        if y is None:
            raise ValueError(f"this UNetModel is class-conditional (num_classes={self.num_classes}) and needs "
                             f"y: an int64 tensor of shape [{x.shape[0]}] with labels in [0, {self.num_classes - 1}]")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape [{x.shape[0]}] (one label per sample), got {list(y.shape)}")
        if y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"y must hold integer class labels, got dtype {y.dtype}")
        if torch.compiler.is_compiling() or is_fake(y):
            # The range check below reads the labels' values: a compiled graph would split on it, and the fake
            # tensors of a memory simulation (pipelines/bench/estimate.py) have no values to read.
            return
        # One host sync per call; an out-of-range index would otherwise be an opaque device-side assert.
        if bool(((y < 0) | (y >= self.num_classes)).any()):
            bad = y[(y < 0) | (y >= self.num_classes)].unique().tolist()
            raise ValueError(f"labels {bad} are out of range: valid labels are 0..{self.num_classes - 1} "
                             f"(num_classes={self.num_classes} embedding rows)")

    def _embed_time(self, timesteps: torch.Tensor) -> torch.Tensor:
        """[N] timesteps (or noise variances) -> [N, model_channels or time_embedding dims] sinusoid."""
        kind, dims, max_frequency = self.time_embedding
        if kind == "timestep":
            return timestep_embedding(timesteps, self.model_channels)
        return keras_ddim_embedding(timesteps, dims, max_frequency)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x [N, C_in, *S], timesteps [N] (possibly fractional), y [N] labels or None -> [N, C_out, *S]."""
        self._check_labels(x, y)
        emb = self.time_embed(self._embed_time(timesteps))  # [N, 4 * model_channels]
        if y is not None:
            emb = emb + self.label_emb(y)  # [N, 4 * model_channels]
        skips = []
        h = x.type(self.dtype)  # [N, C_in, *S]
        for module in self.input_blocks:
            h = module(h, emb)  # [N, ch_i, *S / ds_i]
            skips.append(h)
        h = self.middle_block(h, emb)  # [N, ch, *S / ds]
        for module in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)  # [N, ch + ch_skip, *S / ds_i]
            h = module(h, emb)  # [N, ch_i, *S / ds_i'] (upsampled at the end of a level)
        return self.out(h.type(x.dtype))  # [N, C_out, *S]
