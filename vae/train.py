"""The stage-1 training loop: epochs of VAETrainer steps, per-epoch validation, grids, checkpoints, Ctrl-C, resume.

Writes into DIR/vae/: config.json, metrics.json, recon_epochNNN.png, checkpoint/ (every epoch and on Ctrl-C),
model/ (the final weights). Every file is written atomically.
"""

from __future__ import annotations

import math
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from tqdm import tqdm

from runfs import RunPaths, read_json, write_json
from runfs.images import save_pair_grid
from vae.checkpoint import (
    CHECKPOINT,
    CheckpointClock,
    check_finite,
    restore_checkpoint,
    save_checkpoint,
    save_final,
    training_complete,
)
from vae.config import VAEConfig
from vae.data import skipped_message
from vae.distribute import make_train_fn
from vae.metrics import mean_finite
from vae.trainer import VAETrainer, images_to_float

GRID_IMAGES = 8
EVAL_PIXELS = 256 * 32 * 32  # validation batches hold this many pixels: 256 images of 32x32, 64 of 64x64, 4 of 256x256


def learning_rate(cfg: VAEConfig, step: int, total_steps: float, train_seconds: float) -> float:
    """The learning rate of the next step: cfg.lr, or with the cosine schedule cfg.lr * (1 + cos(pi * p)) / 2 where
    p in [0, 1] is the larger share used so far of the step budget and of the time budget (max_train_minutes)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    progress = step / total_steps if math.isfinite(total_steps) and total_steps > 0 else 0.0
    if cfg.max_train_minutes:
        progress = max(progress, train_seconds / (60.0 * cfg.max_train_minutes))
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once the checkpoint is safely on disk."""


def setup_tensorflow() -> None:
    """Grow GPU memory on demand instead of grabbing it all (the torch stage may share the GPU later)."""
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # the GPUs are initialised already (setup ran before, or TensorFlow was used first)
            pass


def eval_batch_size(image_size: int) -> int:
    """Images per validation batch: EVAL_PIXELS worth, so that scoring needs no more memory at a larger image size."""
    return max(1, min(256, EVAL_PIXELS // (image_size * image_size)))


def evaluate(eval_fn, data, limit: int | None = None) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of reconstructions (from the posterior mean) of the first `limit` validation images
    of `data` (all when None), read batch by batch."""
    psnrs, ssims, seen = [], [], 0
    for batch in data.batches("val", eval_batch_size(data.image_shape[0])):
        batch = batch[: None if limit is None else limit - seen]
        if len(batch) == 0:
            continue
        psnr, ssim = eval_fn(batch)
        psnrs.append(psnr.numpy())
        ssims.append(ssim.numpy())
        seen += len(batch)
        if limit is not None and seen >= limit:
            break
    return {"val_psnr": mean_finite(psnrs), "val_ssim": mean_finite(ssims), "val_images": seen}


def report_skipped(data, reported: set[str], bar) -> None:
    """Warn once about each unreadable file the input pipeline has met since the last call."""
    found = dict(data.skipped)  # a copy: decode threads may still add to it
    new = {name: reason for name, reason in found.items() if name not in reported}
    if new:
        warnings.warn(skipped_message(new, data.source), stacklevel=2)
        reported.update(new)


class _SigintFlag:
    """First Ctrl-C asks the loop to save and stop after the current step; a second one aborts at once."""

    def __init__(self) -> None:
        self.raised = False

    def __enter__(self) -> _SigintFlag:
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)


def _start(cfg: VAEConfig, vae_dir: Path, resume: bool) -> tuple[VAETrainer, dict[str, Any], list[dict]]:
    if not resume and (vae_dir / CHECKPOINT).exists():
        raise FileExistsError(
            f"{vae_dir} already holds a VAE checkpoint; pass --resume to continue it, --overwrite to start "
            f"again, or choose a new --run folder"
        )
    keras.utils.set_random_seed(cfg.seed)
    trainer = VAETrainer(cfg)
    trainer.compile(optimizer=trainer.make_optimizer())
    trainer.optimizer.build(trainer.trainable_variables)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "train_seconds": 0.0}
    history: list[dict] = []
    if resume:
        state = restore_checkpoint(vae_dir, trainer)
        if (vae_dir / "metrics.json").is_file():
            history = [e for e in read_json(vae_dir / "metrics.json")["epochs"] if e["step"] <= state["step"]]
    return trainer, state, history


def train_vae(cfg: VAEConfig, data, run_dir: str | os.PathLike, resume: bool = False,
              progress: bool = True, strategy: tf.distribute.Strategy | None = None,
              checkpoint_minutes: float | None = 2.0) -> dict[str, Any]:
    """Train (or with `resume`, continue) the VAE of `cfg` on `data` (vae.data.open_dataset: in memory, streamed or
    cached); returns the final metrics. Unreadable files met on the way are skipped, named and counted.
    `strategy` (vae.distribute.make_strategy) splits every batch across its replicas; default: one device.

    DIR/vae/checkpoint/ is written at each epoch's end and every `checkpoint_minutes` within an epoch (None or 0:
    epoch ends only). A NaN or infinite loss raises TrainingDiverged before anything else is saved.

    Raises TrainingInterrupted after Ctrl-C, once DIR/vae/checkpoint/ holds the state at the last step.
    """
    setup_tensorflow()
    vae_dir = RunPaths(run_dir).vae
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        trainer, state, history = _start(cfg, vae_dir, resume)
    write_json(vae_dir / "config.json", cfg.to_dict())
    steps_per_epoch = data.num_batches("train", cfg.batch_size, drop_remainder=True)
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {cfg.batch_size} exceeds the {data.count('train')} training images")
    total_steps = min(cfg.epochs * steps_per_epoch, cfg.max_steps or math.inf)
    # XLA compiles the one-device step; a MirroredStrategy step cannot be compiled as one XLA cluster
    train_fn = make_train_fn(trainer, strategy, cfg.jit_compile and strategy.num_replicas_in_sync == 1)
    eval_fn = tf.function(trainer.eval_step)
    grid_images = data.head("val", GRID_IMAGES)
    reported: set[str] = set()

    def record() -> dict[str, Any]:
        scored = evaluate(eval_fn, data, cfg.eval_images)
        recon = trainer(images_to_float(grid_images)).numpy()
        save_pair_grid(vae_dir / f"recon_epoch{state['epoch']:03d}.png", images_to_float(grid_images).numpy(), recon)
        return scored

    def out_of_time(epoch_seconds: float) -> bool:
        limit = cfg.max_train_minutes
        return limit is not None and state["train_seconds"] + epoch_seconds >= 60 * limit

    if resume and training_complete(vae_dir, state, state["step"] < total_steps and not out_of_time(0.0)):
        return read_json(vae_dir / "metrics.json")["final"]  # nothing left to train: model/ is kept as it is
    clock = CheckpointClock(checkpoint_minutes)

    with _SigintFlag() as sigint, tqdm(total=total_steps, initial=state["step"], desc="train VAE", unit="step",
                                          disable=not progress) as bar:
        while state["step"] < total_steps:
            trainer.reset_metrics()
            t0, start_step = time.perf_counter(), state["step"]
            batches = data.batches("train", cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=state["epoch"],
                                   start_batch=state["batch_in_epoch"], drop_remainder=True)
            t_first = None  # images/s leaves out the first step of each epoch (it holds XLA/graph compilation)
            for batch in batches:
                if batch.shape[0] == 0:  # every file of this batch was unreadable
                    state["batch_in_epoch"] += 1
                    continue
                if cfg.lr_schedule != "constant":
                    elapsed = state["train_seconds"] + time.perf_counter() - t0
                    trainer.optimizer.learning_rate.assign(learning_rate(cfg, state["step"], total_steps, elapsed))
                loss = train_fn(batch)
                if t_first is None:
                    float(loss)
                    t_first = time.perf_counter()
                state["step"] += 1
                state["batch_in_epoch"] += 1
                bar.update(1)
                if state["step"] % 25 == 0:
                    bar.set_postfix({m.name: f"{float(m.result()):.4g}" for m in trainer.metrics})
                if state["step"] % 25 == 0 or clock.due():
                    check_finite(float(loss), state["step"], vae_dir)
                if clock.due():
                    elapsed = state["train_seconds"] + time.perf_counter() - t0
                    save_checkpoint(vae_dir, trainer, {**state, "train_seconds": elapsed})
                    clock.reset()
                if sigint.raised or state["step"] >= total_steps or out_of_time(time.perf_counter() - t0):
                    break
            t_end = time.perf_counter()
            seconds = t_end - t0
            steady = max(t_end - (t_first or t0), 1e-9)
            state["train_seconds"] += seconds
            if t_first is not None:  # a batch ran: never save a checkpoint after a NaN loss
                check_finite(float(loss), state["step"], vae_dir)
            if sigint.raised:
                save_checkpoint(vae_dir, trainer, state)
                raise TrainingInterrupted(
                    f"interrupted at step {state['step']}; checkpoint saved in {vae_dir / CHECKPOINT}; "
                    f"rerun the same command to continue"
                )
            report_skipped(data, reported, bar)
            entry = {"epoch": state["epoch"], "step": state["step"],
                     **{m.name: float(m.result()) for m in trainer.metrics},
                     **record(), "skipped_files": len(data.skipped), "wall_s": round(seconds, 2),
                     "images_per_s": round(max(state["step"] - start_step - 1, 0) * cfg.batch_size / steady, 1),
                     "train_seconds": round(state["train_seconds"], 2)}
            history.append(entry)
            bar.write(f"epoch {entry['epoch']}: " + ", ".join(f"{k}={v:.4g}" for k, v in entry.items()
                                                               if k not in ("epoch", "step")))
            if state["batch_in_epoch"] >= steps_per_epoch:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
            save_checkpoint(vae_dir, trainer, state)
            write_json(vae_dir / "metrics.json", {"epochs": history})
            if out_of_time(0.0):
                bar.write(f"stopping: {cfg.max_train_minutes} minutes of training reached (--max-train-minutes)")
                break

    def score_float32() -> dict[str, float]:
        """The final scores are those of the float32 models that are saved, whichever precision trained them."""
        if trainer.precision == "fp32":
            return evaluate(eval_fn, data)
        return evaluate(tf.function(VAETrainer(cfg, *trainer.float32_models(), precision="fp32").eval_step), data)

    raw = None
    if cfg.ema:
        # Keras' AdamW kept the moving averages; copy them into the model before the final score and save. The raw
        # weights' score goes beside it, so that one run shows what the EMA is worth.
        raw = score_float32()
        trainer.optimizer.finalize_variable_values(trainer.trainable_variables)
    final = {"step": state["step"], "epochs_run": len(history), "train_seconds": round(state["train_seconds"], 2),
             **score_float32(), "ema": cfg.ema, "precision": trainer.precision,
             "skipped_files": {"count": len(data.skipped), "files": dict(data.skipped)}}
    if raw is not None:
        final["raw_weights"] = raw
    write_json(vae_dir / "metrics.json", {"epochs": history, "final": final})
    save_final(vae_dir, trainer, state)
    return final
