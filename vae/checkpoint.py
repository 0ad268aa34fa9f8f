"""Training checkpoints: models + optimizer state + progress, written as one folder atomically.

DIR/vae/checkpoint/ holds encoder.keras, decoder.keras (raw weights), config.json, optimizer.npz (every
optimizer variable, EMA copies included, in the optimizer's own order, with their paths), and
meta.json (step, epoch, batch within the epoch, versions). DIR/vae/model/ holds the final (EMA, if enabled) weights.
"""

from __future__ import annotations

import math
import os
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from runfs import atomic_dir, atomic_path, read_json, write_json
from runfs import versions as software_versions
from runfs.errors import CorruptFileError
from runfs.leftovers import recover
from vae.model import load_models, save_models
from vae.trainer import VAETrainer

CHECKPOINT = "checkpoint"
MODEL = "model"


def versions() -> dict[str, str]:
    """What a stage-1 file's meta.json records: the Keras side's software."""
    return software_versions("keras", "tensorflow", "numpy")


def _write_model_folder(folder: Path, trainer: VAETrainer, state: dict[str, Any]) -> None:
    save_models(folder, *trainer.float32_models())
    write_json(folder / "config.json", trainer.cfg.to_dict())
    write_json(folder / "meta.json", {**state, "created": datetime.now(UTC).isoformat(),
                                      "versions": versions()})


def save_checkpoint(vae_dir: str | os.PathLike, trainer: VAETrainer, state: dict[str, Any]) -> Path:
    """Write DIR/vae/checkpoint/ whole or not at all; `state` holds at least step, epoch, batch_in_epoch."""
    target = Path(vae_dir) / CHECKPOINT
    with atomic_dir(target) as tmp:
        _write_model_folder(tmp, trainer, state)
        opt_vars = trainer.optimizer.variables
        arrays = {f"v{i:04d}": np.asarray(v.numpy()) for i, v in enumerate(opt_vars)}
        arrays["paths"] = np.array([v.path for v in opt_vars])
        arrays["noise_seed"] = np.asarray(trainer.noise_seed.state.numpy())
        with atomic_path(tmp / "optimizer.npz") as f, open(f, "wb") as fh:
            np.savez(fh, **arrays)
    return target


def save_final(vae_dir: str | os.PathLike, trainer: VAETrainer, state: dict[str, Any]) -> Path:
    """Write DIR/vae/model/: the weights to use (the caller swaps EMA weights in first when EMA is on)."""
    target = Path(vae_dir) / MODEL
    with atomic_dir(target) as tmp:
        _write_model_folder(tmp, trainer, {**state, "final": True, "ema": trainer.cfg.ema})
    return target


def has_checkpoint(vae_dir: str | os.PathLike) -> bool:
    """True when DIR/vae/checkpoint/ is complete (put back first if a replace of it was killed halfway)."""
    folder = Path(vae_dir) / CHECKPOINT
    recover(folder)
    return (folder / "meta.json").is_file()


def restore_checkpoint(vae_dir: str | os.PathLike, trainer: VAETrainer) -> dict[str, Any]:
    """Load weights, optimizer variables and the noise seed into `trainer` (compiled); return the saved state."""
    folder = Path(vae_dir) / CHECKPOINT
    if not has_checkpoint(vae_dir):
        raise FileNotFoundError(f"--resume: no complete checkpoint in {folder}; train without --resume first")
    encoder, decoder = load_models(folder)
    trainer.encoder.set_weights(encoder.get_weights())
    trainer.decoder.set_weights(decoder.get_weights())
    trainer.optimizer.build(trainer.trainable_variables)
    with _open_npz(folder / "optimizer.npz") as saved:
        # Compare shapes, not paths: Keras uniquifies object names (adamw_1/...) within one process.
        saved_shapes = [saved[f"v{i:04d}"].shape for i in range(len(saved["paths"]))]
        opt_vars = trainer.optimizer.variables
        if saved_shapes != [tuple(v.shape) for v in opt_vars]:
            raise ValueError(
                f"{folder}/optimizer.npz does not match this model's optimizer ({len(saved_shapes)} saved variables, "
                f"{len(opt_vars)} now); was the architecture or --ema changed? Resume with the saved config."
            )
        for i, v in enumerate(opt_vars):
            v.assign(saved[f"v{i:04d}"])
        trainer.noise_seed.state.assign(saved["noise_seed"])
    return read_json(folder / "meta.json")


def _open_npz(path: Path):
    """np.load of the optimizer state, with an error that names the file and the way out when it is damaged."""
    try:
        return np.load(path)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CorruptFileError(
            f"{path} is damaged ({type(e).__name__}: {e}): the checkpoint cannot be resumed. Start again with "
            f"`--overwrite` (or delete {path.parent} and rerun: the final model in {path.parent.parent / MODEL}, "
            "if any, is not affected)") from e


def training_complete(vae_dir: str | os.PathLike, state: dict[str, Any], steps_left: bool) -> bool:
    """True when a resumed run has nothing left to do: no step left in its budget and DIR/vae/model/ already holds
    the final model of this very checkpoint (its step), so rerunning the same command rewrites nothing."""
    meta = Path(vae_dir) / MODEL / "meta.json"
    return not steps_left and meta.is_file() and read_json(meta).get("step") == state["step"]


class CheckpointClock:
    """Says when a mid-epoch checkpoint is due: every `minutes` of wall time (0 or None: never)."""

    def __init__(self, minutes: float | None) -> None:
        self.seconds = 60.0 * minutes if minutes else None
        self.last = time.monotonic()

    def due(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.last >= self.seconds

    def reset(self) -> None:
        self.last = time.monotonic()


class TrainingDiverged(RuntimeError):
    """The VAE's loss became NaN or infinite; the last checkpoint on disk is the last good one."""


def check_finite(loss: float, step: int, vae_dir: str | os.PathLike) -> None:
    """TrainingDiverged (naming the checkpoint kept) when `loss` is NaN or infinite."""
    if math.isfinite(loss):
        return
    folder = Path(vae_dir) / CHECKPOINT
    kept = (f"the last good checkpoint {folder} (step {read_json(folder / 'meta.json')['step']}) is kept"
            if (folder / "meta.json").is_file() else "no checkpoint was written")
    raise TrainingDiverged(f"the VAE's loss became {loss} at step {step}; {kept}. Start again with a lower --lr and "
                           "--overwrite (resuming would repeat the same steps)")
