"""The optional uint8 cache of a streamed source: decoded once into memory-mapped .npy files in RUN/data/.

`--cache on` always caches, `off` never, `auto` only when the cache file is at most CACHE_BUDGET. The cache is a
file read by memory map (a Dataset whose arrays are np.memmap), never a second copy in memory. It is written as
one folder atomically, keyed by what it was made from (the index or tfds splits, image shape, background), and
rebuilt when that changes. Unreadable files are left out of it and listed in its meta.json.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from runfs import atomic_dir, read_json, write_json, write_npy
from runfs.arrays import release_pages, truncate_npy
from vae.data.dataset import Dataset

CACHE_MODES = ("auto", "on", "off")
CACHE_BUDGET = 512 << 20  # bytes: `--cache auto` caches a source whose images take at most this much
WRITE_BATCH = 256


def cache_decision(mode: str, nbytes: int) -> tuple[bool, str]:
    """(cache?, why) for `--cache mode` and a cache of `nbytes`."""
    if mode not in CACHE_MODES:
        raise ValueError(f"--cache must be one of {CACHE_MODES}, got {mode!r}")
    size = f"{nbytes / 2**20:,.1f} MiB"
    if mode == "auto":
        fits = nbytes <= CACHE_BUDGET
        return fits, f"cache auto: {size} {'within' if fits else 'over'} the {CACHE_BUDGET >> 20} MiB budget"
    return mode == "on", f"cache {mode}: {size}"


def cache_key(made_from: dict) -> str:
    return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:16]


def _write_split(stream, split: str, folder: Path, progress: bool) -> int:
    """Decode `split` in order into split_images.npy (and split_labels.npy); returns the images kept."""
    shape = (stream.count(split), *stream.image_shape)
    images = np.lib.format.open_memmap(folder / f"{split}_images.npy", mode="w+", dtype=np.uint8, shape=shape)
    labels = np.empty(shape[0], np.int64)
    kept = 0
    batches = stream.batches(split, WRITE_BATCH, with_labels=True)
    total = stream.num_batches(split, WRITE_BATCH, drop_remainder=False)
    for x, y in tqdm(batches, total=total, desc=f"cache {split}", unit="batch", leave=False, disable=not progress):
        images[kept:kept + len(x)] = x.numpy()
        labels[kept:kept + len(x)] = y.numpy()
        kept += len(x)
        release_pages(images)
    del images
    truncate_npy(folder / f"{split}_images.npy", kept)
    if stream.class_names is not None:
        write_npy(folder / f"{split}_labels.npy", labels[:kept])
    return kept


def open_cache(folder: Path) -> Dataset:
    """A written cache folder as a Dataset of memory-mapped arrays."""
    meta = read_json(folder / "meta.json")

    def labels(split: str) -> np.ndarray | None:
        return np.load(folder / f"{split}_labels.npy") if meta["class_names"] is not None else None

    return Dataset(meta["source"], np.load(folder / "train_images.npy", mmap_mode="r"),
                   np.load(folder / "val_images.npy", mmap_mode="r"), labels("train"), labels("val"),
                   meta["class_names"], dict(meta["skipped"]), origin=f"memory-mapped from the cache {folder}")


def open_current_cache(folder: Path, made_from: dict) -> Dataset | None:
    """The cache in `folder` when it was made from `made_from`; None when there is none or it is stale."""
    meta_path = folder / "meta.json"
    if meta_path.is_file() and read_json(meta_path).get("key") == cache_key(made_from):
        return open_cache(folder)
    return None


def cached(stream, folder: Path, made_from: dict, progress: bool = True) -> Dataset:
    """The cache of `stream` in `folder`: opened when it was made from `made_from`, else (re)built first."""
    found = open_current_cache(folder, made_from)
    if found is not None:
        return found
    key = cache_key(made_from)
    with atomic_dir(folder) as tmp:
        counts = {split: _write_split(stream, split, tmp, progress) for split in ("train", "val")}
        if min(counts.values()) == 0:
            raise ValueError(f"no readable images in the {min(counts, key=counts.get)} split of {stream.source} "
                             f"(unreadable: {len(stream.skipped)} files)")
        write_json(tmp / "meta.json", {"key": key, "made_from": made_from, "source": stream.source,
                                       "image_shape": list(stream.image_shape), "counts": counts,
                                       "class_names": stream.class_names, "skipped": stream.skipped})
    return open_cache(folder)
