"""Encode a dataset with a trained VAE into DIR/latents/ (NCHW float32 memmaps + meta.json with the scale factor).

Written as one folder atomically (runfs.atomic_dir): a killed run leaves the previous latents/ or none.
The scale is computed here from data, never a constant, over posterior samples z = mean + exp(logvar / 2) * eps of
the whole train set: 1 / their std (`global`, the default), or per channel their mean and 1 / std (`channel`); the
diffusion stage applies it as (z - shift) * scale (runfs.latent_norm).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from runfs import RunPaths, atomic_dir, file_digest, write_json, write_npy
from runfs.latent_norm import LATENT_NORMS, LatentNorm
from vae.checkpoint import versions
from vae.data import Dataset
from vae.model import load_vae, resolve_model_dir
from vae.trainer import images_to_float

LAYOUT = "NCHW"


class _ChannelMoments:
    """Streaming per-channel count / sum / sum of squares of NCHW latents (float64: exact enough for millions)."""

    def __init__(self, channels: int) -> None:
        self.count, self.total, self.total_sq = (np.zeros(channels) for _ in range(3))

    def update(self, x: np.ndarray) -> None:
        x = x.astype(np.float64)
        self.count += x.size // x.shape[1]
        self.total += x.sum(axis=(0, 2, 3))
        self.total_sq += np.square(x).sum(axis=(0, 2, 3))

    def norm(self, mode: str) -> LatentNorm:
        return LatentNorm.from_moments(mode, self.count, self.total, self.total_sq)


def _encode_split(encode_fn, images: np.ndarray, folder: Path, split: str, latent_shape: tuple[int, int, int],
                  batch_size: int, stats: _ChannelMoments | None, rng: np.random.Generator,
                  progress: bool = True) -> None:
    """Stream one split through the encoder into split_mean.npy / split_logvar.npy (N, z, h, w) memmaps."""
    shape = (len(images), *latent_shape)
    means = np.lib.format.open_memmap(folder / f"{split}_mean.npy", mode="w+", dtype=np.float32, shape=shape)
    logvars = np.lib.format.open_memmap(folder / f"{split}_logvar.npy", mode="w+", dtype=np.float32, shape=shape)
    for start in tqdm(range(0, len(images), batch_size), desc=f"encode {split}", unit="batch", disable=not progress):
        mean, logvar = encode_fn(images[start:start + batch_size])
        mean = np.transpose(mean.numpy(), (0, 3, 1, 2))  # NHWC (Keras) -> NCHW (torch)
        logvar = np.transpose(logvar.numpy(), (0, 3, 1, 2))
        means[start:start + len(mean)] = mean
        logvars[start:start + len(mean)] = logvar
        if stats is not None:
            stats.update(mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape, dtype=np.float32))
    means.flush()
    logvars.flush()
    del means, logvars


def encode_dataset(run_dir: str | os.PathLike, data: Dataset, batch_size: int = 256, seed: int = 0,
                   latent_norm: str = "global", progress: bool = True) -> dict[str, Any]:
    """Encode `data`'s train and val images with the VAE of `run_dir`; write RUN/latents/; return its meta.

    latent_norm: how the diffusion stage's latents are scaled (runfs.latent_norm): `global` (one factor) or
    `channel` (each channel standardised)."""
    if latent_norm not in LATENT_NORMS:
        raise ValueError(f"latent_norm must be one of {LATENT_NORMS}, got {latent_norm!r}")
    cfg, encoder, _ = load_vae(RunPaths(run_dir).vae, tuned_decoder=False)
    if data.image_shape != (cfg.image_size, cfg.image_size, cfg.channels):
        raise ValueError(f"images are {data.image_shape} but the VAE was trained on "
                         f"{(cfg.image_size, cfg.image_size, cfg.channels)}; load the data with the VAE's settings")
    model_dir = resolve_model_dir(RunPaths(run_dir).vae)
    encode_fn = tf.function(lambda x: encoder(images_to_float(x), training=False))
    latent_shape = (cfg.z_channels, cfg.latent_size, cfg.latent_size)
    stats, rng = _ChannelMoments(cfg.z_channels), np.random.default_rng(seed)
    with atomic_dir(RunPaths(run_dir).latents) as tmp:
        for split in ("train", "val"):
            _encode_split(encode_fn, data.images(split), tmp, split, latent_shape, batch_size,
                          stats if split == "train" else None, rng, progress)
            if data.labels(split) is not None:
                write_npy(tmp / f"{split}_labels.npy", data.labels(split).astype(np.int64))
        meta = {
            "layout": LAYOUT,
            "latent_shape": list(latent_shape),
            **stats.norm(latent_norm).to_meta(),
            "posterior_sample_std": 1.0 / stats.norm("global").scale[0],
            "num_classes": data.num_classes,
            "class_names": data.class_names,
            "image_size": cfg.image_size,
            "channels": cfg.channels,
            "downsample_factor": cfg.downsample_factor,
            "counts": {"train": len(data.train_images), "val": len(data.val_images)},
            "vae_checkpoint": file_digest(model_dir),
            "vae_model_dir": model_dir.name,
            "data": data.source,
            "created": datetime.now(UTC).isoformat(),
            "versions": versions(),
        }
        write_json(tmp / "meta.json", meta)
    return meta
