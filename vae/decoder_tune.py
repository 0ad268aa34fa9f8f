"""Stage 1b: fine-tune the VAE's decoder alone on the run's encoded latents, the learning rate annealed to 0.

The encoder stays frozen, so RUN/latents/ (and any diffusion model trained on them) stays valid. The learning rate
decays from `lr` to 0 (cosine, over the step or time budget), which settles the weights that a constant-rate VAE run
leaves noisy; decoder-only steps skip the encoder entirely (the latents are read from RUN/latents/train_mean.npy), so
they run ~1.5x faster than joint VAE steps. Optionally, Gaussian noise of std `latent_noise` (in the diffusion
model's units, i.e. after the latent norm) is added to each latent, so that the decoder maps a latent slightly off
the encoder's manifold (what a diffusion sampler returns) to an image of the data; it costs sharpness on exact
latents. Measured on the Fashion-MNIST demo (docs/benchmarks.md, "Decoder fine-tuning"), on the same sampled latents:
2.5-3 minutes without noise took the VAE floor FID 0.248 -> 0.174 and 0.366 -> 0.284 and the samples' FID 0.562 ->
0.557 and 0.600 -> 0.522; noise 0.1 helped one model's samples (0.562 -> 0.475) and hurt another's (0.600 -> 0.691).

Writes RUN/vae/decoder/ (decoder.keras, config.json, meta.json) atomically; `vae.model.load_vae` then returns this
decoder with the run's encoder, and export.py puts it in the bridge. meta.json names the VAE model it was tuned from
(its digest), so a decoder left over from another VAE is refused instead of silently used.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from runfs import ConfigMixin, RunPaths, atomic_dir, file_digest, read_json, write_json
from runfs.latent_norm import LatentNorm
from vae.checkpoint import versions
from vae.data import Dataset
from vae.losses import reconstruction_loss
from vae.metrics import mean_finite, psnr_ssim
from vae.model import DECODER_FILE, TUNED_DECODER, load_model_file, model_config, resolve_model_dir, save_decoder
from vae.train import learning_rate, setup_tensorflow
from vae.trainer import images_to_float

EVAL_BATCH = 256


@dataclass
class DecoderTuneConfig(ConfigMixin):
    """What `tune_decoder` does; stops at `max_train_minutes` or `max_steps`, whichever comes first."""

    max_train_minutes: float | None = 3.0
    max_steps: int | None = None
    latent_noise: float = 0.0  # std of the noise added to the latents, in the diffusion model's (normed) units
    lr: float = 1e-3  # start of the cosine decay to 0
    batch_size: int | None = None  # None: the VAE's
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_train_minutes is None and self.max_steps is None:
            raise ValueError("give a budget: max_train_minutes or max_steps")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"max_train_minutes must be > 0, got {self.max_train_minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not (math.isfinite(self.latent_noise) and self.latent_noise >= 0):
            raise ValueError(f"latent_noise must be >= 0, got {self.latent_noise}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def noise_std(meta: dict[str, Any], channels: int, latent_noise: float) -> np.ndarray:
    """(channels,) std of the noise in the VAE's own latent units: `latent_noise` in the diffusion model's units
    (z - shift) * scale divided by each channel's scale."""
    return (latent_noise / np.asarray(LatentNorm.from_meta(meta, channels).scale, np.float64)).astype(np.float32)


def score(decoder: keras.Model, latents: np.ndarray, images: np.ndarray) -> dict[str, float]:
    """Mean PSNR/SSIM of decoding NHWC `latents` against uint8 `images` (the encoder's own latents: no noise)."""
    psnrs, ssims = [], []
    for start in range(0, len(images), EVAL_BATCH):
        recon = decoder(latents[start:start + EVAL_BATCH], training=False)
        psnr, ssim = psnr_ssim(images_to_float(images[start:start + EVAL_BATCH]), recon)
        psnrs.append(psnr.numpy())
        ssims.append(ssim.numpy())
    return {"psnr": mean_finite(psnrs), "ssim": mean_finite(ssims), "images": int(len(images))}


def _read_latents(run: RunPaths, split: str) -> np.ndarray:
    """RUN/latents/{split}_mean.npy (N, z, h, w) -> float32 NHWC in memory."""
    return np.ascontiguousarray(np.load(run.latents / f"{split}_mean.npy").transpose(0, 2, 3, 1), np.float32)


def tune_decoder(run_dir: str | os.PathLike, data: Dataset, tcfg: DecoderTuneConfig,
                 progress: bool = True) -> dict[str, Any]:
    """Fine-tune RUN's decoder on RUN/latents/ (see the module doc); write RUN/vae/decoder/; return its meta."""
    setup_tensorflow()
    run = RunPaths(run_dir)
    model_dir = resolve_model_dir(run.vae)
    meta_path = run.latents / "meta.json"
    encode_hint = f"python pipelines/encode.py --run {run.root}"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} is missing: encode the dataset first: {encode_hint}")
    meta = read_json(meta_path)
    base = file_digest(model_dir)
    if meta.get("vae_checkpoint") != base:
        raise ValueError(f"{run.latents} was encoded by another VAE than {model_dir} (digest "
                         f"{meta.get('vae_checkpoint')} vs {base}): rerun {encode_hint}")
    cfg, decoder = model_config(model_dir), load_model_file(model_dir / DECODER_FILE)  # the encoder is not needed
    train_latents = _read_latents(run, "train")
    if len(train_latents) != len(data.train_images):
        raise ValueError(f"{run.latents} holds {len(train_latents)} train latents but the data has "
                         f"{len(data.train_images)} images: load the data the VAE was trained on, or rerun "
                         f"{encode_hint}")
    has_val = (run.latents / "val_mean.npy").is_file() and len(data.val_images) > 0
    # Scored before and after on the VAE's per-epoch validation share (its eval_images): seconds, not a minute.
    val_latents = _read_latents(run, "val")[:cfg.eval_images] if has_val else None
    val_images = data.val_images[:cfg.eval_images]
    sigma = tf.constant(noise_std(meta, cfg.z_channels, tcfg.latent_noise))
    batch_size = tcfg.batch_size or cfg.batch_size
    steps_per_epoch = len(train_latents) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {batch_size} exceeds the {len(train_latents)} training latents")
    before = score(decoder, val_latents, val_images) if has_val else None

    keras.utils.set_random_seed(tcfg.seed)
    noise_seed = keras.random.SeedGenerator(tcfg.seed, name="decoder_tune_noise")
    optimizer = keras.optimizers.AdamW(learning_rate=tcfg.lr, weight_decay=cfg.weight_decay)
    optimizer.build(decoder.trainable_variables)
    schedule = cfg.replace(lr=tcfg.lr, lr_schedule="cosine", max_train_minutes=tcfg.max_train_minutes)
    total_steps = tcfg.max_steps or math.inf

    def train_step(latents, images):
        images = images_to_float(images)
        if tcfg.latent_noise:  # decided when traced: no noise drawn per step without it
            latents = latents + sigma * keras.random.normal(tf.shape(latents), seed=noise_seed)
        with tf.GradientTape() as tape:
            recon = decoder(latents, training=True)
            loss = tf.reduce_mean(reconstruction_loss(images, recon, cfg.recon_loss, cfg.ssim_weight))
        grads = tape.gradient(loss, decoder.trainable_variables)
        optimizer.apply(grads, decoder.trainable_variables)
        return loss

    step_fn = tf.function(train_step, jit_compile=cfg.jit_compile)
    rng = np.random.default_rng(tcfg.seed)

    def batches():
        """Index batches of seeded per-epoch permutations, sorted (contiguous-ish reads of the arrays), forever."""
        while True:
            order = rng.permutation(len(train_latents))
            for start in range(0, steps_per_epoch * batch_size, batch_size):
                yield np.sort(order[start:start + batch_size])

    step, started = 0, time.perf_counter()
    budget_s = 60.0 * tcfg.max_train_minutes if tcfg.max_train_minutes else math.inf
    with tqdm(total=None if total_steps == math.inf else total_steps, desc="tune decoder", unit="step",
              disable=not progress) as bar:
        for idx in batches():
            elapsed = time.perf_counter() - started
            if step >= total_steps or elapsed >= budget_s:
                break
            optimizer.learning_rate.assign(learning_rate(schedule, step, total_steps, elapsed))
            loss = step_fn(train_latents[idx], data.train_images[idx])
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix({"loss": f"{float(loss):.4g}"})
    seconds = time.perf_counter() - started
    after = score(decoder, val_latents, val_images) if has_val else None
    info = {"base_model": base, "base_model_dir": str(model_dir), "steps": step, "train_seconds": round(seconds, 2),
            "images_per_s": round(step * batch_size / max(seconds, 1e-9), 1), "batch_size": batch_size,
            "latent_noise": tcfg.latent_noise, "latent_noise_vae_units": [float(s) for s in sigma.numpy()],
            "val_before": before, "val_after": after, "created": datetime.now(UTC).isoformat(),
            "versions": versions()}
    with atomic_dir(run.vae / TUNED_DECODER) as tmp:
        save_decoder(tmp, decoder)
        write_json(tmp / "config.json", tcfg.to_dict())
        write_json(tmp / "meta.json", info)
    return info

