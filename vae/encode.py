"""Encode a dataset with a trained VAE into DIR/latents/ (NCHW float32 .npy files + meta.json with the scale factor).

Latents are written as they are encoded, into memory-mapped .npy files (numpy.lib.format.open_memmap) in
DIR/.latents.partial/, chunk by chunk: after every `chunk_size` images the files are flushed and progress.json
records how far they are complete (with the running moments of the scale factor and the noise generator's state).
An interrupted encode run continues from its last complete chunk when run again with the same settings and gives
the same files as an uninterrupted one; anything else starts afresh. The finished folder replaces DIR/latents/
whole, so DIR/latents/ is always the previous complete set or the new one.
The scale is computed here from data, never a constant, over posterior samples z = mean + exp(logvar / 2) * eps of
the whole train set: 1 / their std (`global`, the default), or per channel their mean and 1 / std (`channel`); the
diffusion stage applies it as (z - shift) * scale (runfs.latent_norm).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from runfs import RunPaths, file_digest, read_json, write_json
from runfs.arrays import release_pages, truncate_npy
from runfs.latent_norm import LATENT_NORMS, LatentNorm
from vae.checkpoint import versions
from vae.model import load_vae, resolve_model_dir
from vae.trainer import images_to_float

LAYOUT = "NCHW"
CHUNK_IMAGES = 4096  # images per resumable chunk
PARTIAL = ".latents.partial"
ARRAYS = ("mean", "logvar", "labels")


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

    def state(self) -> list[list[float]]:
        return [self.count.tolist(), self.total.tolist(), self.total_sq.tolist()]

    def load(self, state: list[list[float]]) -> None:
        self.count, self.total, self.total_sq = (np.array(v, dtype=np.float64) for v in state)


class _Progress:
    """progress.json of DIR/.latents.partial/: per split the batches and rows complete, and what resumes the rest."""

    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.path = folder / "progress.json"
        saved = read_json(self.path) if self.path.is_file() else None
        self.resumed = saved is not None and saved.get("settings") == settings
        if not self.resumed:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            saved = {"settings": settings, "splits": {}, "moments": None, "rng": None, "skipped": {}}
        self.state = saved

    def split(self, name: str) -> dict[str, Any]:
        return self.state["splits"].setdefault(name, {"batches": 0, "rows": 0, "done": False})

    def save(self, stats: _ChannelMoments, rng: np.random.Generator, skipped: dict[str, str]) -> None:
        self.state.update(moments=stats.state(), rng=rng.bit_generator.state, skipped=dict(skipped))
        write_json(self.path, self.state)


def _open_arrays(folder: Path, split: str, n: int, latent_shape: tuple[int, int, int], fresh: bool):
    """split_mean/logvar (n, z, h, w) float32 and split_labels (n,) int64 as writable memory maps."""
    specs = {"mean": (np.float32, (n, *latent_shape)), "logvar": (np.float32, (n, *latent_shape)),
             "labels": (np.int64, (n,))}
    return {key: np.lib.format.open_memmap(folder / f"{split}_{key}.npy", mode="w+" if fresh else "r+",
                                           dtype=dtype, shape=shape) for key, (dtype, shape) in specs.items()}


def _encode_split(encode_fn, data, split: str, folder: Path, latent_shape: tuple[int, int, int], batch_size: int,
                  chunk_batches: int, stats: _ChannelMoments, rng: np.random.Generator, progress: _Progress,
                  show: bool) -> int:
    """Encode `split` into folder/split_*.npy from the last complete chunk on; returns the rows written. Posterior
    samples of the train split update `stats` (the scale factor's moments)."""
    done = progress.split(split)
    if done["done"]:
        return done["rows"]
    arrays = _open_arrays(folder, split, data.count(split), latent_shape, fresh=done["batches"] == 0)
    rows, batch_no = done["rows"], done["batches"]
    total = data.num_batches(split, batch_size, drop_remainder=False)
    batches = data.batches(split, batch_size, start_batch=batch_no, with_labels=True)
    for images, labels in tqdm(batches, total=total, initial=batch_no, desc=f"encode {split}", unit="batch",
                               disable=not show):
        batch_no += 1
        if len(images):
            mean, logvar = (np.transpose(t.numpy(), (0, 3, 1, 2)) for t in encode_fn(images))  # NHWC -> NCHW
            for key, value in (("mean", mean), ("logvar", logvar), ("labels", labels.numpy())):
                arrays[key][rows:rows + len(mean)] = value
            rows += len(mean)
            if split == "train":
                stats.update(mean + np.exp(0.5 * logvar) * rng.standard_normal(mean.shape, dtype=np.float32))
        if batch_no % chunk_batches == 0 or batch_no == total:
            for array in arrays.values():
                release_pages(array)  # flushed to disk before progress.json says so
            done.update(batches=batch_no, rows=rows, done=batch_no == total)
            progress.save(stats, rng, data.skipped)
    del arrays
    for key in ARRAYS:
        truncate_npy(folder / f"{split}_{key}.npy", rows)  # unreadable images leave rows unused at the end
    return rows


def encode_dataset(run_dir: str | os.PathLike, data, batch_size: int = 256, seed: int = 0, latent_norm: str = "global",
                   progress: bool = True, chunk_size: int = CHUNK_IMAGES) -> dict[str, Any]:
    """Encode `data`'s train and val images (vae.data.open_dataset) with the VAE of `run_dir`; write RUN/latents/
    (resuming an interrupted run's RUN/.latents.partial/); return its meta.

    latent_norm: how the diffusion stage's latents are scaled (runfs.latent_norm): `global` (one factor) or
    `channel` (each channel standardised)."""
    if latent_norm not in LATENT_NORMS:
        raise ValueError(f"latent_norm must be one of {LATENT_NORMS}, got {latent_norm!r}")
    run = RunPaths(run_dir)
    cfg, encoder, _ = load_vae(run.vae, tuned_decoder=False)
    if data.image_shape != (cfg.image_size, cfg.image_size, cfg.channels):
        raise ValueError(f"images are {data.image_shape} but the VAE was trained on "
                         f"{(cfg.image_size, cfg.image_size, cfg.channels)}; load the data with the VAE's settings")
    model_dir = resolve_model_dir(run.vae)
    digest = file_digest(model_dir)
    encode_fn = tf.function(lambda x: encoder(images_to_float(x), training=False))
    latent_shape = (cfg.z_channels, cfg.latent_size, cfg.latent_size)
    work = run.root / PARTIAL
    settings = {"vae_checkpoint": digest, "data": data.source, "counts": {s: data.count(s) for s in ("train", "val")},
                "batch_size": batch_size, "chunk_size": chunk_size, "seed": seed, "latent_norm": latent_norm}
    state = _Progress(work, settings)
    stats, rng = _ChannelMoments(cfg.z_channels), np.random.default_rng(seed)
    if state.resumed:
        stats.load(state.state["moments"])
        rng.bit_generator.state = state.state["rng"]
        data.skipped.update(state.state["skipped"])
    chunk_batches = max(1, chunk_size // batch_size)
    counts = {split: _encode_split(encode_fn, data, split, work, latent_shape, batch_size, chunk_batches,
                                   stats, rng, state, progress)
              for split in ("train", "val")}
    if data.num_classes is None:
        for split in counts:
            (work / f"{split}_labels.npy").unlink()
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
        "counts": counts,
        "skipped_files": dict(data.skipped),
        "vae_checkpoint": digest,
        "vae_model_dir": model_dir.name,
        "data": data.source,
        "created": datetime.now(UTC).isoformat(),
        "versions": versions(),
    }
    write_json(work / "meta.json", meta)
    (work / "progress.json").unlink()
    _replace(work, run.latents)
    return meta


def _replace(folder: Path, target: Path) -> None:
    """Rename `folder` to `target`; a previous `target` is moved aside first and removed after."""
    aside = target.with_name(f".{target.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    if target.exists():
        os.replace(target, aside)
    os.replace(folder, target)
    shutil.rmtree(aside, ignore_errors=True)
