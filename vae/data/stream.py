"""A folder source streamed from its file index: files opened, decoded, cropped and resized in parallel by tf.data.

Nothing holds the dataset: each epoch reads the files of its seeded order (the same `batch_positions` as the
in-memory Dataset, so both give the same batches), `num_parallel_calls=AUTOTUNE` decodes several at once
(Pillow releases the GIL while it decodes and resizes) with the order kept, and `prefetch` overlaps it with training.
A file that cannot be read is skipped wherever it is met: its batch comes out one image short and the file is named
in `skipped` (the training loop and encode.py report and count them).
"""

from __future__ import annotations

import numpy as np

from vae.data.dataset import NO_LABEL, batch_positions, count_batches, head_of
from vae.data.images import WHITE, read_image
from vae.data.index import FileIndex


class StreamBase:
    """What every streamed source shares: counts per split, batch counting, and decoded examples to batches."""

    source: str
    image_shape: tuple[int, int, int]
    class_names: list[str] | None
    skipped: dict[str, str]  # unreadable files (or examples) met so far: name -> error type
    cache_note: str = ""  # why the source is not cached (vae.data.cache.cache_decision)
    _counts: dict[str, int]

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def count(self, split: str) -> int:
        return self._counts[split]

    def num_batches(self, split: str, batch_size: int, drop_remainder: bool) -> int:
        return count_batches(self.count(split), batch_size, drop_remainder)

    def head(self, split: str, n: int) -> np.ndarray:
        return head_of(self, split, n)

    def _decoded(self, name: str, read) -> tuple[np.ndarray, bool]:
        """read() -> uint8 image; a zero image and False (the name kept in `skipped`) when it raises."""
        try:
            return read(), True
        except Exception as e:  # noqa: BLE001 -- PIL raises many types for damaged files; skip them all
            self.skipped[name] = type(e).__name__
            return np.zeros(self.image_shape, np.uint8), False

    def _batched(self, examples, batch_size: int, with_labels: bool, drop_remainder: bool = False):
        """tf.data of (image, ok, label) -> batches of the readable images (and labels); unreadable ones leave their
        batch short (even empty: batch b always covers examples [b * batch_size, (b + 1) * batch_size))."""
        import tensorflow as tf

        def keep(images, ok, labels):
            return tf.boolean_mask(images, ok), tf.boolean_mask(labels, ok)

        examples = examples.map(lambda x, ok, y: (tf.ensure_shape(x, self.image_shape), tf.ensure_shape(ok, ()),
                                                  tf.ensure_shape(y, ())))
        ds = examples.batch(batch_size, drop_remainder=drop_remainder).map(keep)
        if not with_labels:
            ds = ds.map(lambda x, y: x)
        return ds.prefetch(tf.data.AUTOTUNE)


class FolderStream(StreamBase):
    """The images of a `FileIndex`, read on demand as uint8 (size, size, channels)."""

    def __init__(self, index: FileIndex, image_size: int, channels: int,
                 background: tuple[int, int, int] = WHITE) -> None:
        self.index, self.background = index, background
        self.source = str(index.root)
        self.image_shape = (image_size, image_size, channels)
        self.class_names = index.class_names
        self._paths = {s: index.paths(s) for s in ("train", "val")}  # relative to index.root
        self._labels = {s: index.split_labels(s) for s in ("train", "val")}
        self._counts = {s: len(p) for s, p in self._paths.items()}
        self.skipped = {}

    def labels(self, split: str) -> np.ndarray | None:
        return self._labels[split]

    @property
    def made_from(self) -> dict:
        """What identifies this stream's images (a cache made from it is keyed on this)."""
        return {"folder": self.source, "index": self.index.digest}

    @property
    def cache_stem(self) -> str:
        return self.index.name

    def describe(self) -> str:
        return (f"{self.count('train')} train / {self.count('val')} val files streamed from {self.source} with "
                f"parallel decode ({self.cache_note or 'no cache'})")

    def read(self, split: str, position: int) -> tuple[np.ndarray, bool]:
        """One image of `split` by position, and whether it could be read (a zero image and False if not)."""
        path = self._paths[split][position]
        size, _, channels = self.image_shape
        return self._decoded(path, lambda: read_image(self.index.root / path, size, channels, self.background))

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                start_batch: int = 0, drop_remainder: bool = False, with_labels: bool = False):
        """The contract of `Dataset.batches`; an unreadable file leaves its batch one image short."""
        import tensorflow as tf

        positions = batch_positions(self.count(split), batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                    drop_remainder=drop_remainder, start_batch=start_batch)
        labels = self._labels[split]
        labels = np.full(self.count(split), NO_LABEL, np.int64) if labels is None else labels

        def decode(position):
            image, ok = self.read(split, int(position))
            return image, ok, labels[position]

        examples = tf.data.Dataset.from_tensor_slices(positions).map(
            lambda p: tf.numpy_function(decode, [p], (tf.uint8, tf.bool, tf.int64), stateful=False),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return self._batched(examples, batch_size, with_labels)
