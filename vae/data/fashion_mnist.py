"""Fashion-MNIST: IDX files from Debian's dataset-fashion-mnist, else keras.datasets; 28x28 padded to 32x32."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from vae.data.dataset import Dataset
from vae.data.images import center_crop_resize

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "FASHION_MNIST_DIR"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}
INSTALL_HINT = (
    "Install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or point "
    f"{ENV_VAR} at a folder holding the four IDX files (train-images-idx3-ubyte[.gz], ...), or allow "
    "keras.datasets.fashion_mnist to download it once (needs network)."
)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a uint8 array of the shape stored in its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}, found {body.size} values")
    return body.reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def load_raw() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train_x, train_y), (test_x, test_y)) as uint8 (N, 28, 28) and int64 (N,), from the first place found."""
    folder = Path(os.environ.get(ENV_VAR, DEFAULT_DIR))
    paths = {key: _find(folder, stem) for key, stem in FILES.items()}
    if all(paths.values()):
        arr = {key: read_idx(p) for key, p in paths.items()}
        return ((arr["train_images"], arr["train_labels"].astype(np.int64)),
                (arr["test_images"], arr["test_labels"].astype(np.int64)))
    missing = sorted(FILES[k] for k, p in paths.items() if p is None)
    try:
        import keras

        (tx, ty), (vx, vy) = keras.datasets.fashion_mnist.load_data()
    except Exception as e:  # noqa: BLE001 -- any failure (offline, no keras) ends in the same advice
        raise RuntimeError(
            f"Fashion-MNIST not found: {folder} lacks {missing} and keras.datasets.fashion_mnist failed "
            f"({type(e).__name__}: {e}). {INSTALL_HINT}"
        ) from e
    return (tx, ty.astype(np.int64)), (vx, vy.astype(np.int64))


def _shape(images: np.ndarray, image_size: int, channels: int) -> np.ndarray:
    """(N, 28, 28) -> (N, image_size, image_size, channels): pad by 2 to 32 (background is 0), then resize.

    The result is allocated once and filled in place (no padded or stacked intermediate copy of the set)."""
    out = np.zeros((len(images), image_size, image_size, channels), np.uint8)
    if image_size == 32:
        out[:, 2:30, 2:30, :] = images[..., None]
        return out
    padded = np.zeros((32, 32, 1), np.uint8)
    for i, image in enumerate(images):
        padded[2:30, 2:30, 0] = image
        out[i] = center_crop_resize(padded, image_size, channels)
    return out


def load_fashion_mnist(image_size: int, channels: int, limit: int | None, val_fraction: float | None) -> Dataset:
    """The official split: train from the 60,000 training images, val from the 10,000 test images.

    With `limit` N, the first round(N * val_fraction) test images and the first N minus that of the training
    images are used (val_fraction defaults to 1/7, the official 10,000 of 70,000).
    """
    (tx, ty), (vx, vy) = load_raw()
    if limit is not None:
        fraction = 1 / 7 if val_fraction is None else val_fraction
        n_val = min(len(vx), max(1, round(limit * fraction)))
        n_train = min(len(tx), max(1, limit - n_val))
        tx, ty, vx, vy = tx[:n_train], ty[:n_train], vx[:n_val], vy[:n_val]
    elif val_fraction is not None:
        raise ValueError("Fashion-MNIST uses its official 60,000/10,000 split; --val-fraction needs --limit")
    return Dataset("fashion_mnist", _shape(tx, image_size, channels), _shape(vx, image_size, channels), ty, vy,
                   list(CLASS_NAMES))
