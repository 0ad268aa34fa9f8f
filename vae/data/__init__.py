"""Image data for every stage: `load_dataset(source, ...)` over Fashion-MNIST, a folder, or TensorFlow Datasets.

Usable without training (later stages reuse it for pixel-space baselines and evaluation).
"""

from __future__ import annotations

from vae.data.dataset import Dataset, epoch_order, to_float
from vae.data.fashion_mnist import load_fashion_mnist
from vae.data.folder import load_folder
from vae.data.images import parse_background
from vae.data.tfds_source import load_tfds

__all__ = ["Dataset", "load_dataset", "to_float", "epoch_order"]


def load_dataset(source: str = "fashion_mnist", image_size: int = 32, channels: int = 1, limit: int | None = None,
                 seed: int = 0, val_fraction: float | None = None, folder_labels: str = "auto",
                 background: str = "white") -> Dataset:
    """Load `source` as uint8 (N, image_size, image_size, channels) train/val images with labels if it has them.

    source: "fashion_mnist" (official 60k/10k split; $FASHION_MNIST_DIR overrides the IDX folder), "tfds:NAME"
    (all splits pooled, seeded split, val_fraction default 0.2), or a folder path (recursive JPEG/PNG/WebP,
    val_fraction default 0.1; labels from sub-folders or "prefix_" filenames, see `folder_labels`).
    `limit` keeps the first N images; `seed` fixes the train/val split of folder and tfds sources; transparent
    pixels are composited onto `background` (vae.data.images).
    """
    if limit is not None and limit < 2:
        raise ValueError(f"--limit must be at least 2 (one train and one validation image), got {limit}")
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    bg = parse_background(background)
    if source == "fashion_mnist":
        return load_fashion_mnist(image_size, channels, limit, val_fraction)
    if source.startswith("tfds:"):
        return load_tfds(source[len("tfds:"):], image_size, channels, limit, val_fraction, seed, bg)
    return load_folder(source, image_size, channels, limit, val_fraction, seed, folder_labels, bg)
