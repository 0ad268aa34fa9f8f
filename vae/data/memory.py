"""A streamed source read whole into memory (for evaluation, classifiers and the pixel-space baseline).

The arrays are allocated once at the split's size and filled in order, so the images are never held twice;
unreadable files are left out and named in one warning. A folder is read without TensorFlow (its files decoded by
a thread pool through the same `read` as the tf.data stream), so that stage 2 and evaluation stay TensorFlow-free;
a tfds source needs TensorFlow anyway and is read through its batches.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from vae.data.dataset import Dataset

READ_BATCH = 256
SHOW_NAMES = 5


def _folder_batches(stream, split: str):
    """(images, labels) batches of a FolderStream's split in order, decoded by a thread pool (no TensorFlow)."""
    labels = stream.labels(split)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for start in range(0, stream.count(split), READ_BATCH):
            positions = range(start, min(start + READ_BATCH, stream.count(split)))
            read = list(pool.map(lambda p: stream.read(split, p), positions))
            ok = np.array([good for _, good in read], dtype=bool)
            images = np.stack([image for image, _ in read])[ok]
            yield images, (labels[start:start + len(ok)][ok] if labels is not None else np.zeros(ok.sum(), np.int64))


def _tf_batches(stream, split: str):
    for x, y in stream.batches(split, READ_BATCH, with_labels=True):
        yield x.numpy(), y.numpy()


def read_split(stream, split: str, progress: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """All readable images of `split` (N, H, W, C) uint8 in stream order, and their labels (or None)."""
    images = np.empty((stream.count(split), *stream.image_shape), np.uint8)
    labels = np.empty(stream.count(split), np.int64)
    kept = 0
    total = stream.num_batches(split, READ_BATCH, drop_remainder=False)
    batches = _folder_batches(stream, split) if hasattr(stream, "read") else _tf_batches(stream, split)
    for x, y in tqdm(batches, total=total, desc=f"loading {split}", unit="batch", leave=False, disable=not progress):
        images[kept:kept + len(x)] = x
        labels[kept:kept + len(x)] = y
        kept += len(x)
    return images[:kept], (labels[:kept] if stream.class_names is not None else None)


def skipped_message(skipped: dict[str, str], source: str) -> str:
    names = [f"{name} ({reason})" for name, reason in sorted(skipped.items())]
    shown = ", ".join(names[:SHOW_NAMES]) + (", ..." if len(names) > SHOW_NAMES else "")
    return f"skipped {len(names)} unreadable image file(s) in {source}: {shown}"


def materialize(stream, progress: bool = True) -> Dataset:
    """`stream`'s train and val splits as an in-memory Dataset; one warning names the unreadable files."""
    tx, ty = read_split(stream, "train", progress)
    vx, vy = read_split(stream, "val", progress)
    if stream.skipped:
        warnings.warn(skipped_message(stream.skipped, stream.source), stacklevel=2)
    if len(tx) + len(vx) == 0:
        raise ValueError(f"none of the {stream.count('train') + stream.count('val')} image files in "
                         f"{stream.source} could be read")
    for split, kept in (("train", tx), ("val", vx)):
        if len(kept) == 0:
            raise ValueError(f"none of the {stream.count(split)} {split} images of {stream.source} could be read")
    return Dataset(stream.source, tx, vx, ty, vy, stream.class_names, dict(stream.skipped))
