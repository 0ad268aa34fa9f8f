"""Checkpoint folders: `step_NNNNNNN/` with config.json, model.safetensors, ema_RATE.safetensors, optimizer.pt,
state.pt (RNG + sampler state), meta.json. Written atomically; loading never executes code (safetensors, and
`torch.load(weights_only=True)` for the optimizer and RNG state).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from runfs import atomic_dir, read_json, write_json

_STEP_DIR = re.compile(r"^step_(\d{7,})$")


def ema_filename(rate: float) -> str:
    return f"ema_{rate}.safetensors"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoint folders below `root`, oldest first (folders appear whole: config.json and meta.json
    mark one; a packed run may hold only EMA weights)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found) if (p / "meta.json").is_file() and (p / "config.json").is_file()]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def save_checkpoint(
    root: str | os.PathLike,
    step: int,
    config: dict[str, Any],
    model_state: dict[str, torch.Tensor],
    ema_states: dict[float, dict[str, torch.Tensor]],
    optimizer_state: dict[str, Any] | None,
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    """Write `root/step_{step:07d}/` atomically, then drop all but the newest `keep` folders."""
    target = Path(root) / f"step_{step:07d}"
    with atomic_dir(target) as tmp:
        write_json(tmp / "config.json", config)
        save_file(_contiguous(model_state), tmp / "model.safetensors")
        for rate, state in ema_states.items():
            save_file(_contiguous(state), tmp / ema_filename(rate))
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(trainer_state, tmp / "state.pt")
        write_json(tmp / "meta.json", {"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                       "ema_rates": list(ema_states), "versions": versions()})
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, with an error that names the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return load_file(path, device=str(device))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise ValueError(f"{path} is not a readable safetensors file ({e}); the checkpoint is corrupt") from e


def load_torch_state(path: str | os.PathLike) -> Any:
    """Optimizer/RNG state: plain tensors and containers only (weights_only=True executes no code)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint_config(ckpt: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(ckpt) / "config.json")
