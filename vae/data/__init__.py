"""Image data for every stage, over Fashion-MNIST, a folder, or TensorFlow Datasets.

- `open_dataset(...)`: stage 1's input (training, validation, encoding). Nothing is held whole: Fashion-MNIST (the
  embedded default, 70,000 small images) stays in memory once; a folder or tfds source streams through its index
  in RUN/data/ with parallel decode (vae.data.stream, vae.data.tfds_source), or reads its uint8 cache file there
  by memory map (vae.data.cache, `--cache auto|on|off`).
- `load_dataset(...)`: the same images as in-memory arrays, for the later stages that want them so (evaluation,
  classifiers, the pixel-space baseline).
"""

from __future__ import annotations

import os
from pathlib import Path

from vae.data.cache import cache_decision, cached, open_current_cache
from vae.data.dataset import Dataset, epoch_order, to_float
from vae.data.fashion_mnist import load_fashion_mnist
from vae.data.images import parse_background
from vae.data.index import open_index
from vae.data.memory import materialize, skipped_message
from vae.data.named import resolve_named
from vae.data.stream import FolderStream
from vae.data.tfds_source import TfdsStream

__all__ = ["Dataset", "load_dataset", "open_dataset", "to_float", "epoch_order", "skipped_message"]

DEFAULT_VAL_FRACTION = {"folder": 0.1, "tfds": 0.2}


def _check(limit: int | None, val_fraction: float | None) -> None:
    if limit is not None and limit < 2:
        raise ValueError(f"--limit must be at least 2 (one train and one validation image), got {limit}")
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")


def _stream(source: str, image_size: int, channels: int, limit: int | None, seed: int, val_fraction: float | None,
            folder_labels: str, background: tuple[int, int, int], data_dir: Path | None, rebuild_index: bool):
    if source.startswith("tfds:"):
        stream = TfdsStream(source[len("tfds:"):], image_size, channels, limit,
                            DEFAULT_VAL_FRACTION["tfds"] if val_fraction is None else val_fraction, background)
        if data_dir is not None:
            stream.record_index(data_dir, rebuild_index)
        return stream
    index = open_index(resolve_named(source), data_dir, seed=seed, folder_labels=folder_labels, limit=limit,
                       rebuild=rebuild_index,
                       val_fraction=DEFAULT_VAL_FRACTION["folder"] if val_fraction is None else val_fraction)
    return FolderStream(index, image_size, channels, background)


def load_dataset(source: str = "fashion_mnist", image_size: int = 32, channels: int = 1, limit: int | None = None,
                 seed: int = 0, val_fraction: float | None = None, folder_labels: str = "auto",
                 background: str = "white", run_dir: str | os.PathLike | None = None) -> Dataset:
    """Load `source` as uint8 (N, image_size, image_size, channels) train/val images with labels if it has them.

    source: "fashion_mnist" (official 60k/10k split; $FASHION_MNIST_DIR overrides the IDX folder), "openclipart"
    (Debian's openclipart-png: 8,121 clip-art PNGs, 22 category labels; vae.data.named), "tfds:NAME"
    (every official split re-split by the slicing API, val_fraction default 0.2), or a folder path (recursive
    JPEG/PNG/WebP, val_fraction default 0.1, split by `seed`; labels from sub-folders or "prefix_" filenames, see
    `folder_labels`). `limit` keeps the first N images; transparent pixels are composited onto `background`.
    run_dir: a run folder; when its data/ holds stage 1's cache of this source made with these same settings, that
    cache is opened (memory-mapped, the same split) instead of decoding every image again.
    """
    _check(limit, val_fraction)
    if source == "fashion_mnist":
        return load_fashion_mnist(image_size, channels, limit, val_fraction)
    data_dir = Path(run_dir) / "data" if run_dir is not None and (Path(run_dir) / "data").is_dir() else None
    background_rgb = parse_background(background)
    stream = _stream(source, image_size, channels, limit, seed, val_fraction, folder_labels, background_rgb,
                     data_dir, False)
    found = open_current_cache(*_cache_place(stream, data_dir, background_rgb)) if data_dir is not None else None
    return found if found is not None else materialize(stream)


def open_dataset(source: str = "fashion_mnist", image_size: int = 32, channels: int = 1, *, limit: int | None = None,
                 seed: int = 0, val_fraction: float | None = None, folder_labels: str = "auto",
                 background: str = "white", run_dir: str | os.PathLike | None = None, cache: str = "auto",
                 rebuild_index: bool = False, progress: bool = True):
    """Stage 1's input (arguments as `load_dataset`): an in-memory Dataset for Fashion-MNIST, else the source
    streamed through its index in RUN/data/ (written by the first run, checked by the later ones; `rebuild_index`
    makes it anew), or its uint8 cache there when `cache` says so (vae.data.cache.cache_decision).

    The result has `describe()`, `count`, `num_batches`, `batches`, `head` and `skipped` (vae.data.dataset).
    """
    _check(limit, val_fraction)
    if source == "fashion_mnist":
        return load_fashion_mnist(image_size, channels, limit, val_fraction)
    data_dir = Path(run_dir) / "data" if run_dir is not None else None
    background_rgb = parse_background(background)
    stream = _stream(source, image_size, channels, limit, seed, val_fraction, folder_labels, background_rgb,
                     data_dir, rebuild_index)
    nbytes = (stream.count("train") + stream.count("val")) * image_size * image_size * channels
    use_cache, why = cache_decision(cache, nbytes)
    if data_dir is None:
        if cache == "on":
            raise ValueError("--cache on needs a run folder to keep the cache file in")
        use_cache, why = False, "no cache: no run folder"
    if not use_cache:
        stream.cache_note = why
        return stream
    data = cached(stream, *_cache_place(stream, data_dir, background_rgb), progress)
    data.origin += f" ({why})"
    return data


def _cache_place(stream, data_dir: Path, background_rgb: tuple[int, int, int]) -> tuple[Path, dict]:
    """(the cache folder of `stream` in RUN/data, what it is made from: the key it is checked against)."""
    made_from = {**stream.made_from, "image_shape": list(stream.image_shape), "background": list(background_rgb)}
    shape = "x".join(map(str, stream.image_shape))
    name = f"{stream.cache_stem}-{shape}-{''.join(f'{v:02x}' for v in background_rgb)}.cache"
    return data_dir / name, made_from
