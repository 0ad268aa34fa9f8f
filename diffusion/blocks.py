"""U-Net building blocks with the reference's parameter names: ResBlock, Upsample (.conv), Downsample (.op).

ResBlock keeps guided-diffusion's layout `in_layers` (norm, SiLU, conv), `emb_layers` (SiLU, linear),
`out_layers` (norm, SiLU, dropout, zero-initialised conv), `skip_connection`, so checkpoints load by name.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffusion.nn import avg_pool_nd, checkpoint, conv_nd, normalization, zero_module


class TimestepBlock(nn.Module):
    """A module whose forward takes the timestep embedding as a second argument."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class TimestepEmbedSequential(nn.Sequential):
    """nn.Sequential that hands `emb` to the children that are TimestepBlocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Upsample(nn.Module):
    """Nearest x2 upsampling, then an optional 3x3 conv; for dims=3 only the inner two axes grow."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        if use_conv:
            self.conv = conv_nd(dims, self.channels, self.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, *S] -> [N, C_out, *2S]."""
        if self.dims == 3:
            x = F.interpolate(x, (x.shape[2], x.shape[3] * 2, x.shape[4] * 2), mode="nearest")
        else:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Stride-2 3x3 conv (`use_conv`) or 2x average pooling; for dims=3 only the inner two axes shrink."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        stride = 2 if dims != 3 else (1, 2, 2)
        if use_conv:
            self.op = conv_nd(dims, self.channels, self.out_channels, 3, stride=stride, padding=1)
        elif self.channels != self.out_channels:
            raise ValueError("Downsample without a convolution cannot change the channel count")
        else:
            self.op = avg_pool_nd(dims, kernel_size=stride, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, *S] -> [N, C_out, *S/2]."""
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding, optionally changing channels or resolution.

    With `use_scale_shift_norm` the embedding gives (scale, shift) applied after the second norm (FiLM),
    else it is added before it. `up`/`down` resample inside the block (resblock_updown).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_conv: bool = False, use_scale_shift_norm: bool = False, dims: int = 2,
                 use_checkpoint: bool = False, up: bool = False, down: bool = False):
        super().__init__()
        self.channels = channels
        self.out_channels = out_channels or channels
        self.use_checkpoint = use_checkpoint
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), conv_nd(dims, channels, self.out_channels, 3, padding=1)
        )
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False, dims), Upsample(channels, False, dims)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False, dims), Downsample(channels, False, dims)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        emb_out = 2 * self.out_channels if use_scale_shift_norm else self.out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            normalization(self.out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, self.out_channels, self.out_channels, 3, padding=1)),
        )
        if self.out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 3, padding=1)
        else:
            self.skip_connection = conv_nd(dims, channels, self.out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x [N, C, *S], emb [N, E] -> [N, C_out, *S'] (S' = S, 2S or S/2)."""
        return checkpoint(self._forward, (x, emb), self.use_checkpoint)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            # Resample between the activation and the conv, on both branches, as the reference does.
            h = self.h_upd(self.in_layers[:-1](x))  # [N, C, *S']
            x = self.x_upd(x)  # [N, C, *S']
            h = self.in_layers[-1](h)  # [N, C_out, *S']
        else:
            h = self.in_layers(x)  # [N, C_out, *S]
        emb_out = self.emb_layers(emb).type(h.dtype)  # [N, C_out] or [N, 2 C_out]
        emb_out = emb_out.reshape(*emb_out.shape, *([1] * (h.dim() - 2)))  # broadcast over space
        if self.use_scale_shift_norm:
            scale, shift = torch.chunk(emb_out, 2, dim=1)  # 2 x [N, C_out, 1...]
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)  # [N, C_out, *S']
        else:
            h = self.out_layers(h + emb_out)  # [N, C_out, *S']
        return self.skip_connection(x) + h
