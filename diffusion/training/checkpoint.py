"""Writing training checkpoints: `step_NNNNNNN/` with config.json, model.safetensors, ema_RATE.safetensors,
optimizer.pt, state.pt (RNG + sampler state), meta.json, atomically; and reading back the training state
(`torch.load(weights_only=True)` executes no code). Finding and loading weights: diffusion/checkpoints.py.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from diffusion.checkpoints import ema_filename, list_checkpoints
from runfs import atomic_dir, versions, write_json
from runfs.errors import CorruptFileError


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
                                       "ema_rates": list(ema_states), "versions": versions("torch", "numpy")})
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_torch_state(path: str | os.PathLike) -> Any:
    """Optimizer/RNG state: plain tensors and containers only (weights_only=True executes no code). A damaged file
    raises CorruptFileError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch raises RuntimeError/UnpicklingError/EOFError for a truncated or damaged file
        raise CorruptFileError(f"{path} is damaged ({type(e).__name__}: {str(e).strip()[:200]})") from e


