"""Self-attention of the U-Net: guided-diffusion's two QKV layouts, computed with fused SDPA.

The reference computes softmax((q / d^1/4)(k / d^1/4)^T) v with einsums; `scaled_dot_product_attention`
computes softmax(q k^T / sqrt(d)) v, the same function, without materialising the [T, T] weights on backends
with a fused kernel. The two QKV classes only differ in how the 3 * H * d channels of `qkv` are split.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffusion.nn import checkpoint, conv_nd, normalization, zero_module


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[N, H, d, T] q, k, v -> [N, H * d, T]: softmax(q^T k / sqrt(d)) over keys, per head."""
    n, heads, d, length = q.shape
    out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))  # [N,H,T,d]
    return out.transpose(-1, -2).reshape(n, heads * d, length)  # [N, H * d, T]


def _head_dim(width: int, n_heads: int) -> int:
    if width % (3 * n_heads):
        raise ValueError(f"qkv width {width} is not divisible by 3 * n_heads = {3 * n_heads}")
    return width // (3 * n_heads)


class QKVAttentionLegacy(nn.Module):
    """Split heads first, then q/k/v: `qkv` is [N, H * (3 * d), T] (the reference's default order)."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def split(self, qkv: torch.Tensor, d: int) -> tuple[torch.Tensor, ...]:
        """[N, H * 3 * d, T] -> 3 x [N, H, d, T]."""
        n, _, length = qkv.shape
        return qkv.reshape(n, self.n_heads, 3 * d, length).split(d, dim=2)

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        """[N, 3 * H * d, T] -> [N, H * d, T]."""
        q, k, v = self.split(qkv, _head_dim(qkv.shape[1], self.n_heads))
        return _attend(q, k, v)


class QKVAttention(QKVAttentionLegacy):
    """Split q/k/v first, then heads: `qkv` is [N, 3 * (H * d), T] (use_new_attention_order=True)."""

    def split(self, qkv: torch.Tensor, d: int) -> tuple[torch.Tensor, ...]:
        """[N, 3 * H * d, T] -> 3 x [N, H, d, T]."""
        n, _, length = qkv.shape
        return tuple(t.reshape(n, self.n_heads, d, length) for t in qkv.chunk(3, dim=1))


def heads_for(channels: int, num_heads: int, num_head_channels: int) -> int:
    """The reference's rule: `num_head_channels` (if not -1) fixes the head width, else `num_heads` is used."""
    if num_head_channels == -1:
        if channels % num_heads:
            raise ValueError(f"attention channels {channels} are not divisible by num_heads {num_heads}")
        return num_heads
    if channels % num_head_channels:
        raise ValueError(f"attention channels {channels} are not divisible by num_head_channels {num_head_channels}")
    return channels // num_head_channels


class AttentionBlock(nn.Module):
    """Residual self-attention over all positions of an [N, C, ...] feature map (parameters norm/qkv/proj_out).

    `use_checkpoint` is honoured as given; the reference always checkpoints this block, which changes memory
    and time but not results.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1, use_checkpoint: bool = False,
                 use_new_attention_order: bool = False):
        super().__init__()
        self.channels = channels
        self.num_heads = heads_for(channels, num_heads, num_head_channels)
        self.use_checkpoint = use_checkpoint
        self.norm = normalization(channels)
        self.qkv = conv_nd(1, channels, channels * 3, 1)
        qkv_attention = QKVAttention if use_new_attention_order else QKVAttentionLegacy
        self.attention = qkv_attention(self.num_heads)
        self.proj_out = zero_module(conv_nd(1, channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, *spatial] -> [N, C, *spatial]."""
        return checkpoint(self._forward, (x,), self.use_checkpoint)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *spatial = x.shape
        x = x.reshape(n, c, -1)  # [N, C, T]
        qkv = self.qkv(self.norm(x))  # [N, 3C, T]
        h = self.proj_out(self.attention(qkv))  # [N, C, T]
        return (x + h).reshape(n, c, *spatial)  # [N, C, *spatial]


class AttentionPool2d(nn.Module):
    """CLIP-style attention pooling (the reference's classifier head): [N, C, H, W] -> [N, output_dim].

    The mean over positions is prepended as a query token; its attended value is the pooled feature.
    """

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads_channels: int, output_dim: int | None = None):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(embed_dim, spacial_dim**2 + 1) / embed_dim**0.5)
        self.qkv_proj = conv_nd(1, embed_dim, 3 * embed_dim, 1)
        self.c_proj = conv_nd(1, embed_dim, output_dim or embed_dim, 1)
        self.num_heads = heads_for(embed_dim, 1, num_heads_channels)
        self.attention = QKVAttention(self.num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *_ = x.shape
        x = x.reshape(n, c, -1)  # [N, C, HW]
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)  # [N, C, HW + 1]
        x = x + self.positional_embedding[None].to(x.dtype)  # [N, C, HW + 1]
        x = self.c_proj(self.attention(self.qkv_proj(x)))  # [N, output_dim, HW + 1]
        return x[:, :, 0]  # [N, output_dim]
