"""TensorFlow Datasets by name (`tfds:NAME`): all official splits pooled, re-split 80%/20%, center crops."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from vae.data.dataset import Dataset, split_by_seed
from vae.data.images import WHITE, center_crop_resize

IMAGE_KEYS = ("image", "img")


def load_tfds(name: str, image_size: int, channels: int, limit: int | None, val_fraction: float | None,
              seed: int, background: tuple[int, int, int] = WHITE) -> Dataset:
    """Every split of `name` pooled ("all"), first `limit` examples, seeded 80/20 split (the Keras DDIM recipe)."""
    if not name:
        raise ValueError("tfds source needs a dataset name, e.g. --data tfds:oxford_flowers102")
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise RuntimeError("--data tfds:NAME needs tensorflow-datasets: pip install 'keras-torch-ldm[tfds]'") from e
    split = "all" if limit is None else f"all[:{int(limit)}]"
    try:
        ds, info = tfds.load(name, split=split, with_info=True)
    except tfds.core.registered.DatasetNotFoundError as e:
        raise ValueError(f"TensorFlow Datasets has no dataset named {name!r}; see tfds.list_builders()") from e
    except Exception as e:  # noqa: BLE001 -- offline/download failures come in many types
        raise RuntimeError(
            f"could not get TFDS dataset {name!r} ({type(e).__name__}: {e}). The first use downloads it: run once "
            f"with network access (it is cached under ~/tensorflow_datasets or $TFDS_DATA_DIR), or use a folder "
            f"of images with --data PATH"
        ) from e
    features = info.features
    image_key = next((k for k in IMAGE_KEYS if k in features), None)
    if image_key is None:
        raise ValueError(f"TFDS dataset {name!r} has no image feature (features: {sorted(features)})")
    label_feature = features["label"] if "label" in features else None
    class_names = list(label_feature.names) if hasattr(label_feature, "names") else None
    images, labels = [], []
    for example in tqdm(tfds.as_numpy(ds), desc=f"loading tfds:{name}", unit="img", leave=False):
        images.append(center_crop_resize(example[image_key], image_size, channels, background))
        if class_names is not None:
            labels.append(int(example["label"]))
    if not images:
        raise ValueError(f"TFDS dataset {name!r} (split {split!r}) has no examples")
    label_array = np.asarray(labels, dtype=np.int64) if class_names is not None else None
    tx, vx, ty, vy = split_by_seed(np.stack(images), label_array, 0.2 if val_fraction is None else val_fraction, seed)
    return Dataset(f"tfds:{name}", tx, vx, ty, vy, class_names)
