"""The in-memory Dataset (uint8 arrays, or memory-mapped cache files) and the batch order every source shares.

Every source, in memory or streamed (vae.data.stream, vae.data.tfds_source), offers the same reading interface:
`count(split)`, `labels(split)`, `num_batches(...)`, `batches(...)` (a tf.data pipeline of uint8 batches, optionally
with labels), `head(split, n)`, `skipped` (unreadable files found so far: name -> reason) and `describe()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from runfs.arrays import RowReader
from runfs.images import to_float  # noqa: F401  (vae.data.to_float: the one conversion, re-exported)

NO_LABEL = -1  # the label that unlabelled sources put beside each image in `batches(..., with_labels=True)`
PREFETCH_BATCHES = 2  # batches gathered ahead of the training step (a gather is far shorter than a step)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded permutation of range(n) used for epoch `epoch` (same seed + epoch -> same order)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_positions(n: int, batch_size: int, *, shuffle: bool, seed: int, epoch: int, drop_remainder: bool,
                    start_batch: int = 0) -> np.ndarray:
    """Positions 0..n-1 in reading order: batch b is [b * batch_size, (b + 1) * batch_size) of the result.

    Shuffled: the seeded permutation of epoch `epoch`; each batch's positions sorted (files and memory maps are
    then read forward). `drop_remainder` leaves out the last partial batch; `start_batch` skips batches already seen.
    """
    order = epoch_order(n, seed, epoch) if shuffle else np.arange(n)
    n_batches = n // batch_size if drop_remainder else math.ceil(n / batch_size)
    order = order[: n_batches * batch_size] if drop_remainder else order
    if shuffle:
        order = np.concatenate([np.sort(order[b:b + batch_size]) for b in range(0, len(order), batch_size)] or [order])
    return order[start_batch * batch_size:]


def count_batches(n: int, batch_size: int, drop_remainder: bool) -> int:
    return n // batch_size if drop_remainder else -(-n // batch_size)


def head_of(data, split: str, n: int) -> np.ndarray:
    """The first `n` images of `split` (fewer if the split is smaller), uint8 (n, H, W, C), read through `batches`."""
    parts, have = [], 0
    for batch in data.batches(split, min(n, 256)):
        parts.append(batch.numpy())
        have += len(parts[-1])
        if have >= n:
            break
    return np.concatenate(parts)[:n] if parts else np.zeros((0, *data.image_shape), np.uint8)


@dataclass
class Dataset:
    """Images (N, H, W, C) uint8 in [0, 255] for train and val, optional int64 labels, and class names.

    The arrays are held once: in memory (Fashion-MNIST, small sources), or memory-mapped from a cache file
    (vae.data.cache), read batch by batch. `to_float` or the model scales them to [-1, 1] per batch.
    """

    source: str
    train_images: np.ndarray
    val_images: np.ndarray
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    class_names: list[str] | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable files met when the arrays were made
    origin: str = "in memory"

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    def images(self, split: str) -> np.ndarray:
        return {"train": self.train_images, "val": self.val_images}[split]

    def labels(self, split: str) -> np.ndarray | None:
        return {"train": self.train_labels, "val": self.val_labels}[split]

    def count(self, split: str) -> int:
        return len(self.images(split))

    def num_batches(self, split: str, batch_size: int, drop_remainder: bool) -> int:
        return count_batches(self.count(split), batch_size, drop_remainder)

    def head(self, split: str, n: int) -> np.ndarray:
        return np.asarray(self.images(split)[:n])

    def describe(self) -> str:
        return f"{self.count('train')} train / {self.count('val')} val images {self.origin}"

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                start_batch: int = 0, drop_remainder: bool = False, with_labels: bool = False):
        """A tf.data pipeline of uint8 image batches (B, H, W, C), with `with_labels` (images, int64 labels (B,)).

        Shuffling permutes indices only (`batch_positions`); batches are gathered from the array by index and
        prefetched. `start_batch` skips batches already seen (mid-epoch resume). tf.data's autotuning is off: a
        gather takes well under a millisecond, so there is nothing to tune, and its optimisation thread (woken
        10 ms, 20 ms, ... up to every 60 s after the pipeline starts) is the suspect for epochs that ended exactly
        on its wake times, 141.9 and 201.9 s (docs/benchmarks.md, "Stage-1 throughput at 64x64 RGB").
        """
        import tensorflow as tf

        images, labels = self.images(split), self.labels(split)
        positions = batch_positions(len(images), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                    drop_remainder=drop_remainder, start_batch=start_batch)
        reader = RowReader()  # a memory-mapped cache is read row by row from its file

        def gather(b):
            idx = positions[b * batch_size:(b + 1) * batch_size]
            return reader.take(images, idx), (labels[idx] if labels is not None else np.full(len(idx), NO_LABEL,
                                                                                                np.int64))

        ds = tf.data.Dataset.range(count_batches(len(positions), batch_size, False))
        ds = ds.map(lambda b: tf.numpy_function(gather, [b], (tf.uint8, tf.int64), stateful=False))
        ds = ds.map(lambda x, y: (tf.ensure_shape(x, (None, *images.shape[1:])), tf.ensure_shape(y, (None,))))
        if not with_labels:
            ds = ds.map(lambda x, y: x)
        options = tf.data.Options()
        options.autotune.enabled = False
        return ds.prefetch(PREFETCH_BATCHES).with_options(options)
