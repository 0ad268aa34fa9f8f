"""Checkpoint sizes by arithmetic over a model's parameter shapes (no weights needed): what
`diffusion.training.checkpoint.save_checkpoint` writes per save, and what guided-diffusion's trainer writes.

Ours: model.safetensors + one ema_RATE.safetensors per EMA rate (each: an 8-byte length, a JSON header, the raw
tensors) + optimizer.pt (AdamW's exp_avg and exp_avg_sq in fp32, and a step count per parameter) + state.pt (RNG
state, a few KiB). The reference: model.pt, ema_RATE.pt per rate and opt.pt, the same tensors in torch.save files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from diffusion.config import UNetConfig
from diffusion.factory import create_model

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64"}
TORCH_SAVE_RECORD_BYTES = 384  # per tensor record in a torch.save zip (alignment, zip headers, pickle): measured ~360
STATE_PT_BYTES = 8 * 1024  # state.pt: step, torch RNG state (5 KiB), sampler state


def safetensors_bytes(state: dict[str, torch.Tensor]) -> int:
    """Size of the safetensors file of `state` (the format: u64 header length, JSON header padded to 8, data)."""
    header, offset = {}, 0
    for name, t in state.items():
        size = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = len(json.dumps(header, separators=(",", ":")).encode())
    return 8 + text + (-text) % 8 + offset


@dataclass(frozen=True)
class CheckpointSize:
    """Bytes of one save: each file of ours, and the reference trainer's files."""

    params: int
    model: int
    ema_each: int
    ema_copies: int
    optimizer: int

    @property
    def total(self) -> int:
        """Our checkpoint folder: model + EMA copies + optimizer + state.pt."""
        return self.model + self.ema_each * self.ema_copies + self.optimizer + STATE_PT_BYTES

    @property
    def reference_files(self) -> dict[str, int]:
        """guided-diffusion's files per save (fp32 master weights even with use_fp16): model, EMA, opt."""
        return {"model.pt": 4 * self.params, **{f"ema_{i}.pt": 4 * self.params for i in range(self.ema_copies)},
                "opt.pt": 8 * self.params}


def checkpoint_size(unet: UNetConfig, ema_copies: int = 1, dtype: torch.dtype = torch.float32) -> CheckpointSize:
    """What one save of `unet` trained with AdamW and `ema_copies` EMA rates writes (weights in `dtype`)."""
    with torch.device("meta"):
        model = create_model(unet).to(dtype)
    state = {k: v for k, v in model.state_dict().items()}
    params = sum(p.numel() for p in model.parameters())
    weights = safetensors_bytes(state)
    moments = 2 * 4 * params  # exp_avg, exp_avg_sq in fp32
    steps = sum(1 for _ in model.parameters())  # one scalar step tensor per parameter
    optimizer = moments + (2 + 1) * steps * TORCH_SAVE_RECORD_BYTES
    return CheckpointSize(params=params, model=weights, ema_each=weights, ema_copies=ema_copies, optimizer=optimizer)
