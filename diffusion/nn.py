"""Small layers and helpers of the U-Net, with openai/guided-diffusion's semantics (its `nn.py`).

Only what changes numbers follows the reference exactly (GroupNorm in float32, the sinusoidal embedding);
gradient checkpointing uses `torch.utils.checkpoint` instead of a hand-written autograd function.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint as _torch_checkpoint

# The memory format the U-Net runs fastest in, per device type (pipelines/bench/unet_modes.py, docs/bench/unet.md).
# CPU: channels_last makes no-grad forwards (sampling) 1.8-10x faster and training steps at batch 128 7-10%
# faster; contiguous no-grad convolutions hit a slow oneDNN path. Unmeasured devices stay contiguous.
DEFAULT_MEMORY_FORMAT: dict[str, torch.memory_format] = {"cpu": torch.channels_last}


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back, so fp16/bf16 activations normalise without overflow."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> GroupNorm32:
    """The reference's normalisation layer: 32 groups (so `channels` must be a multiple of 32)."""
    if channels % 32:
        raise ValueError(f"GroupNorm with 32 groups needs a channel count divisible by 32, got {channels}; "
                         "choose num_channels (model_channels) and channel_mult so every width is a multiple of 32")
    return GroupNorm32(32, channels)


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D, 2D or 3D convolution (arguments as for `nn.Conv{dims}d`)."""
    layers = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    if dims not in layers:
        raise ValueError(f"unsupported dimensions: {dims} (use 1, 2 or 3)")
    return layers[dims](*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1D, 2D or 3D average pooling (arguments as for `nn.AvgPool{dims}d`)."""
    layers = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
    if dims not in layers:
        raise ValueError(f"unsupported dimensions: {dims} (use 1, 2 or 3)")
    return layers[dims](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters in place: residual branches start as the identity (the reference's init)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embeddings [N] -> [N, dim]: cos half then sin half, frequencies max_period^(-i/half).

    Timesteps may be fractional (rescale_timesteps). The frequency table is built in float32 on the CPU and
    moved, as in the reference, so the numbers match it bit for bit on every device.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs.to(timesteps.device)[None]  # [N, half]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # [N, 2 * half]
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)  # [N, dim]
    return embedding


def keras_ddim_embedding(values: torch.Tensor, dim: int = 32, max_frequency: float = 1000.0) -> torch.Tensor:
    """The Keras DDIM example's sinusoidal embedding [N] -> [N, dim]: sin half then cos half of 2 pi f x, with dim / 2
    frequencies f spaced geometrically from 1 to max_frequency (it embeds the noise variance)."""
    freqs = torch.exp(torch.linspace(0.0, math.log(max_frequency), dim // 2, dtype=torch.float32))
    args = 2.0 * math.pi * freqs.to(values.device)[None] * values[:, None].float()  # [N, dim / 2]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # [N, dim]


def checkpoint(func: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...], flag: bool) -> torch.Tensor:
    """`func(*inputs)`, recomputed in the backward pass instead of storing activations when `flag` is set.

    Non-reentrant checkpointing reaches the parameters through autograd itself, so unlike the reference no
    parameter list is passed, and it works with torch.compile and with inputs that need no gradient.
    """
    if flag and torch.is_grad_enabled():
        return _torch_checkpoint(func, *inputs, use_reentrant=False)
    return func(*inputs)


def convert_module_to_f16(module: nn.Module) -> None:
    """Cast a convolution's weights to float16 (the reference's fp16 torso; other layers stay float32)."""
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        module.weight.data = module.weight.data.half()
        if module.bias is not None:
            module.bias.data = module.bias.data.half()


def convert_module_to_f32(module: nn.Module) -> None:
    """Undo `convert_module_to_f16`."""
    if isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d):
        module.weight.data = module.weight.data.float()
        if module.bias is not None:
            module.bias.data = module.bias.data.float()


def preferred_memory_format(device: torch.device | str) -> torch.memory_format:
    """The memory format that runs the U-Net fastest on `device` (benchmarked; contiguous where unmeasured)."""
    return DEFAULT_MEMORY_FORMAT.get(torch.device(device).type, torch.contiguous_format)


def to_preferred_format(module_or_tensor, device: torch.device | str | None = None):
    """Move a 4-D tensor or a model to the preferred memory format of its device (no-op for other ranks)."""
    if isinstance(module_or_tensor, torch.Tensor):
        if module_or_tensor.dim() != 4:
            return module_or_tensor
        fmt = preferred_memory_format(device or module_or_tensor.device)
        return module_or_tensor.contiguous(memory_format=fmt)
    fmt = preferred_memory_format(device or next(module_or_tensor.parameters()).device)
    return module_or_tensor.to(memory_format=fmt)
