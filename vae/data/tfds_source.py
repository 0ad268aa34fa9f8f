"""TensorFlow Datasets by name (`tfds:NAME`), streamed from tfds itself: the 80/20 re-split by the slicing API.

Every official split s of n_s examples (the first `limit` examples, taken split by split, with --limit) gives its
first n_s - round(n_s * val_fraction) examples to train and the rest to validation, as one slicing string per side
("train[:816]+test[:4919]+..."), so nothing is pooled in memory. Images stay encoded until decoded in parallel by
the project's own reader (vae.data.images: alpha, 16-bit, EXIF as for folders). Training order: tfds's file shuffle
and a shuffle buffer of SHUFFLE_BUFFER encoded examples, both seeded by (seed, epoch); mid-epoch resume reads past
the batches already seen. With `--cache` the images are decoded once into RUN/data/ and read in exact random order.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from runfs import read_json, write_json
from vae.data.images import WHITE, center_crop_resize
from vae.data.stream import StreamBase

IMAGE_KEYS = ("image", "img")
SHUFFLE_BUFFER = 2048


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise RuntimeError("--data tfds:NAME needs tensorflow-datasets: pip install 'keras-torch-ldm[tfds]'") from e
    return tfds


def split_specs(sizes: dict[str, int], val_fraction: float, limit: int | None) -> dict[str, str]:
    """{"train": slicing string, "val": slicing string} of the per-split re-split (see the module docstring)."""
    parts: dict[str, list[str]] = {"train": [], "val": []}
    remaining = limit if limit is not None else sum(sizes.values())
    for name in sorted(sizes):
        n = min(sizes[name], remaining)
        remaining -= n
        n_val = round(n * val_fraction)
        if n - n_val > 0:
            parts["train"].append(f"{name}[:{n - n_val}]")
        if n_val > 0:
            parts["val"].append(f"{name}[{n - n_val}:{n}]")
    if not parts["train"] or not parts["val"]:
        raise ValueError(f"{sum(sizes.values()) if limit is None else limit} examples give no "
                         f"{'validation' if parts['train'] else 'training'} images at val_fraction {val_fraction}")
    return {side: "+".join(p) for side, p in parts.items()}


def slice_count(spec: str) -> int:
    """Examples named by a slicing string of absolute bounds: "train[:8]+test[4:5]" -> 9."""
    total = 0
    for part in spec.split("+"):
        lo, hi = part[part.index("[") + 1:-1].split(":")
        total += int(hi) - int(lo or 0)
    return total


class TfdsStream(StreamBase):
    """A prepared tfds dataset read split by split; `prepare` downloads it the first time (needs network)."""

    def __init__(self, name: str, image_size: int, channels: int, limit: int | None, val_fraction: float,
                 background: tuple[int, int, int] = WHITE) -> None:
        if not name:
            raise ValueError("tfds source needs a dataset name, e.g. --data tfds:oxford_flowers102")
        tfds = _tfds()
        try:
            self.builder = tfds.builder(name)
        except tfds.core.registered.DatasetNotFoundError as e:
            raise ValueError(f"TensorFlow Datasets has no dataset named {name!r}; see tfds.list_builders()") from e
        try:
            self.builder.download_and_prepare()
        except Exception as e:  # noqa: BLE001 -- offline/download failures come in many types
            raise RuntimeError(
                f"could not get TFDS dataset {name!r} ({type(e).__name__}: {e}). The first use downloads it: run once "
                f"with network access (it is cached under ~/tensorflow_datasets or $TFDS_DATA_DIR), or use a folder "
                f"of images with --data PATH"
            ) from e
        features = self.builder.info.features
        self.image_key = next((k for k in IMAGE_KEYS if k in features), None)
        if self.image_key is None:
            raise ValueError(f"TFDS dataset {name!r} has no image feature (features: {sorted(features)})")
        label = features["label"] if "label" in features else None
        self.class_names = list(label.names) if hasattr(label, "names") else None
        sizes = {s: info.num_examples for s, info in self.builder.info.splits.items()}
        self.specs = split_specs(sizes, val_fraction, limit)
        self._counts = {side: slice_count(spec) for side, spec in self.specs.items()}
        self.source, self.name = f"tfds:{name}", name
        self.settings = {"limit": limit, "val_fraction": val_fraction}
        self.image_shape = (image_size, image_size, channels)
        self.background, self.skipped = background, {}

    @property
    def made_from(self) -> dict:
        """What identifies this stream's examples (the cache key)."""
        return {"tfds": self.name, "version": str(self.builder.info.version), "splits": self.specs}

    @property
    def cache_stem(self) -> str:
        """File stem in RUN/data/: the dataset's name and a digest of --limit and --val-fraction."""
        key = hashlib.sha256(repr(sorted(self.settings.items())).encode()).hexdigest()[:8]
        return f"tfds-{self.name.replace('/', '-')}-{key}"

    def describe(self) -> str:
        return (f"{self.count('train')} train / {self.count('val')} val examples streamed from {self.source} "
                f"({self.cache_note or 'no cache'})")

    def record_index(self, folder: Path, rebuild: bool) -> None:
        """Write this stream's splits and counts into folder/; refuse a recorded one they no longer match."""
        path = folder / f"{self.cache_stem}.index.json"
        index = {"kind": "tfds", **self.made_from, "counts": self._counts, "class_names": self.class_names}
        if path.is_file() and not rebuild and read_json(path) != index:
            raise ValueError(f"the index {path} no longer matches TFDS dataset {self.name!r} (recorded "
                             f"{read_json(path).get('splits')}, now {self.specs}): the dataset's version changed. "
                             f"Rebuild it with --rebuild-index (a new split: retrain the VAE with train_vae.py "
                             f"--overwrite --rebuild-index)")
        if not path.is_file() or rebuild:
            write_json(path, index)

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
                start_batch: int = 0, drop_remainder: bool = False, with_labels: bool = False):
        """The contract of `Dataset.batches`, in tfds order (or its seeded shuffle); an unreadable example leaves its
        batch one image short."""
        import tensorflow as tf

        tfds = _tfds()
        order_seed = int(np.random.default_rng([seed, epoch]).integers(2**31))
        read_config = tfds.ReadConfig(try_autocache=False, shuffle_seed=order_seed if shuffle else None)
        ds = self.builder.as_dataset(split=self.specs[split], shuffle_files=shuffle, read_config=read_config,
                                     decoders={self.image_key: tfds.decode.SkipDecoding()})
        if shuffle:
            ds = ds.shuffle(SHUFFLE_BUFFER, seed=order_seed, reshuffle_each_iteration=False)
        ds = ds.enumerate()
        size, _, channels = self.image_shape
        has_labels = self.class_names is not None

        def decode(number, encoded, label):
            image, ok = self._decoded(f"tfds:{self.name} {split} example {int(number)}", lambda: center_crop_resize(
                _open(encoded), size, channels, self.background))
            return image, ok, np.int64(label)

        examples = ds.map(lambda i, ex: tf.numpy_function(
            decode, [i, ex[self.image_key], ex["label"] if has_labels else tf.constant(-1, tf.int64)],
            (tf.uint8, tf.bool, tf.int64), stateful=False), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return self._batched(examples, batch_size, with_labels, drop_remainder).skip(start_batch)


def _open(encoded: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(encoded))
    image.load()
    return image
