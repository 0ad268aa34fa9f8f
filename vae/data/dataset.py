"""The Dataset every source returns: uint8 images in memory once, a seeded split, and batched input pipelines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    """Images (N, H, W, C) uint8 in [0, 255] for train and val, optional int64 labels, and class names.

    Images stay uint8 (a quarter of float32's memory); `to_float` or the tf.data pipelines of `batches`
    scale them to float32 in [-1, 1] batch by batch, so the data is never held twice.
    """

    source: str
    train_images: np.ndarray
    val_images: np.ndarray
    train_labels: np.ndarray | None = None
    val_labels: np.ndarray | None = None
    class_names: list[str] | None = None

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

    def num_batches(self, split: str, batch_size: int, drop_remainder: bool) -> int:
        n = len(self.images(split))
        return n // batch_size if drop_remainder else -(-n // batch_size)

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                start_batch: int = 0, drop_remainder: bool = False):
        """A tf.data pipeline of uint8 image batches (B, H, W, C); scale them with `to_float` (or in the model).

        Shuffling permutes indices only (the seeded permutation of epoch `epoch`), batches are gathered from the
        in-memory array by index and prefetched. `start_batch` skips batches already seen (mid-epoch resume).
        """
        import tensorflow as tf

        images = self.images(split)
        order = epoch_order(len(images), seed, epoch) if shuffle else np.arange(len(images))
        n_batches = self.num_batches(split, batch_size, drop_remainder)
        order = order[: n_batches * batch_size] if drop_remainder else order

        def gather(b):
            return images[np.sort(order[b * batch_size:(b + 1) * batch_size])]

        ds = tf.data.Dataset.range(start_batch, n_batches)
        ds = ds.map(lambda b: tf.numpy_function(gather, [b], tf.uint8, stateful=False))
        ds = ds.map(lambda x: tf.ensure_shape(x, (None, *images.shape[1:])))
        return ds.prefetch(tf.data.AUTOTUNE)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The seeded permutation of range(n) used for epoch `epoch` (same seed + epoch -> same order)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (..., C) in [0, 255] -> float32 in [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


def split_by_seed(images: np.ndarray, labels: np.ndarray | None, val_fraction: float, seed: int):
    """Deterministic train/val split: a permutation seeded by `seed`; at least one image on each side."""
    n = len(images)
    if n < 2:
        raise ValueError(f"need at least 2 images to make a train/validation split, got {n}")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    if labels is None:
        return images[train_idx], images[val_idx], None, None
    return images[train_idx], images[val_idx], labels[train_idx], labels[val_idx]
