"""Reading checkpoint folders (`step_NNNNNNN/`: config.json, meta.json, model.safetensors, ema_RATE.safetensors):
finding the newest complete one and loading its weights. Shared by training (resume) and sampling; torch +
safetensors only, and loading never executes code."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from runfs import read_json
from runfs.errors import CorruptFileError

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


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, with an error that names the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return load_file(path, device=str(device))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
        raise CorruptFileError(f"{path} is not a readable safetensors file ({e}); the checkpoint is corrupt") from e


def read_checkpoint_config(ckpt: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(ckpt) / "config.json")


def find_checkpoint(path: str | os.PathLike, trainer: str) -> Path:
    """A checkpoint folder itself, or the newest complete one below a checkpoint root (`trainer`: the script that
    makes one, named in the error). The errors say what the path is instead (a run folder, a file, nothing)."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    if path.name.startswith("step_") and not path.exists():  # a mistyped checkpoint folder
        there = [p.name for p in list_checkpoints(path.parent)]
        raise FileNotFoundError(f"no checkpoint folder {path}; {path.parent} holds {there or 'none'}")
    found = latest_checkpoint(path)
    if found is not None:
        return found
    if path.is_file():
        raise FileNotFoundError(f"{path} is a file; give the checkpoint folder that holds it ({path.parent}) or its "
                                "root (e.g. RUN/diffusion)")
    roots = [sub for sub in ("diffusion", "guide", "classifier", "pixel_diffusion") if latest_checkpoint(path / sub)]
    if roots:
        raise FileNotFoundError(f"{path} is a run folder, not a checkpoint: give " +
                                " or ".join(str(path / r) for r in roots) + " (its newest checkpoint), or one of "
                                "their step_NNNNNNN folders")
    if path.name in ("diffusion", "guide", "classifier") and path.parent.is_dir():  # a run's own root
        flag = " --guide" if path.name == "guide" else ""
        raise FileNotFoundError(f"no checkpoint in {path}: train one first with `python pipelines/{trainer}.py "
                                f"--run {path.parent}{flag}`")
    what = "it does not exist" if not path.exists() else "no step_NNNNNNN folder with config.json and meta.json"
    raise FileNotFoundError(f"no checkpoint in {path} ({what}): give a checkpoint folder (step_NNNNNNN) or a "
                            "checkpoint root such as RUN/diffusion")


def weights_file(folder: Path, ema: str) -> Path:
    """The weights to load from checkpoint `folder`: `ema` "auto" (the first EMA rate in its meta.json, as training
    listed them; the raw weights when it has none), "none" (the raw weights), or one rate."""
    rates = [str(float(r)) for r in read_json(folder / "meta.json").get("ema_rates", [])]
    rates = [r for r in rates if (folder / ema_filename(float(r))).is_file()]
    if ema == "none":
        return folder / "model.safetensors"
    if ema == "auto":
        return folder / ema_filename(float(rates[0])) if rates else folder / "model.safetensors"
    if ema not in rates and _as_rate(ema) not in rates:
        raise ValueError(f"{folder} has no EMA weights for rate {ema}; available: {rates or 'none'} "
                         "(or --ema none for the raw weights)")
    return folder / ema_filename(float(ema))


def _as_rate(text: str) -> str | None:
    try:
        return str(float(text))
    except ValueError:
        return None
