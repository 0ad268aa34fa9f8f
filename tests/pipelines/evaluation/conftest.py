"""Synthetic labelled images for the evaluation tests: class c is a bright horizontal band at height c, plus noise."""

import numpy as np
import pytest
from PIL import Image

from vae.data import Dataset


def banded_images(per_class: int, size: int = 16, classes: int = 3, seed: int = 0):
    """uint8 (classes * per_class, size, size, 1) images and int64 labels, easy to tell apart by eye or by a CNN."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    images = rng.integers(0, 60, size=(len(labels), size, size, 1))
    band = size // classes
    for i, c in enumerate(labels):
        images[i, c * band:(c + 1) * band] += 180
    return images.astype(np.uint8), labels.astype(np.int64)


@pytest.fixture
def banded_dataset():
    train, train_labels = banded_images(40, seed=0)
    val, val_labels = banded_images(10, seed=1)
    return Dataset("banded", train, val, train_labels, val_labels, ["a", "b", "c"])


@pytest.fixture(scope="module")
def banded_folder(tmp_path_factory):
    """A folder dataset a/, b/, c/ of 16x16 grayscale PNGs (labels from the sub-folders), 100 per class."""
    root = tmp_path_factory.mktemp("banded")
    images, labels = banded_images(100, seed=2)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / "abc"[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(image[..., 0]).save(folder / f"{i:04d}.png")
    return root
