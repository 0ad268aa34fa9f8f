"""Feature networks for FID/KID: InceptionV3 when its weights are on this disk, else the project's own classifier.

Nothing is ever downloaded. InceptionV3 runs in Keras (importing TensorFlow, only on that path); the classifier
fallback is torch only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pipelines.evaluation.classifier import EvalClassifierConfig, load_or_train
from vae.data import Dataset

INCEPTION_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_SIZE = 299
KINDS = ("auto", "inception", "classifier")


class FeatureNet(Protocol):
    """uint8 (N, S, S, C) images -> float64 (N, dim) features; `name` says which network in the report."""

    name: str
    dim: int

    def features(self, images: np.ndarray, batch_size: int = ..., desc: str | None = None) -> np.ndarray: ...


def inception_candidates() -> list[Path]:
    """Where Keras keeps InceptionV3's no-top ImageNet weights once downloaded ($KERAS_HOME or ~/.keras)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return [home / "models" / INCEPTION_FILE]


def find_inception_weights(explicit: str | os.PathLike | None = None) -> Path | None:
    """The weights file given, or the first one found in the Keras cache; None when there is none."""
    if explicit is not None:
        return Path(explicit) if Path(explicit).is_file() else None
    return next((p for p in inception_candidates() if p.is_file()), None)


class InceptionFeatures:
    """Keras InceptionV3 without its top, average-pooled: (N, 2048); images upscaled to 299 and made RGB."""

    dim = 2048

    def __init__(self, weights: Path):
        import keras

        self.weights = weights
        self.name = f"InceptionV3 pool3 (Keras, {weights})"
        self.model = keras.applications.InceptionV3(include_top=False, weights=str(weights), pooling="avg",
                                                    input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))

    def features(self, images: np.ndarray, batch_size: int = 50, desc: str | None = None) -> np.ndarray:
        import keras
        from tqdm import tqdm

        out = []
        for s in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False, disable=desc is None):
            x = images[s:s + batch_size].astype(np.float32)
            x = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
            x = keras.ops.image.resize(x, (INCEPTION_SIZE, INCEPTION_SIZE), interpolation="bilinear")
            x = keras.applications.inception_v3.preprocess_input(keras.ops.convert_to_numpy(x))  # [0,255] -> [-1,1]
            out.append(np.asarray(self.model.predict_on_batch(x), dtype=np.float64))
        return np.concatenate(out)


def select_feature_net(kind: str, dataset: Dataset, cache_dir: str | os.PathLike, device: torch.device | str = "cpu",
                       inception_weights: str | os.PathLike | None = None, progress: bool = True,
                       classifier_config: EvalClassifierConfig | None = None) -> FeatureNet:
    """`kind` auto: InceptionV3 when its weights are on disk, else the dataset classifier (trained once, cached)."""
    if kind not in KINDS:
        raise ValueError(f"--feature must be one of {KINDS}, got {kind!r}")
    weights = find_inception_weights(inception_weights) if kind != "classifier" else None
    if kind == "inception" and weights is None:
        looked = [str(inception_weights)] if inception_weights is not None else [str(p) for p in inception_candidates()]
        raise FileNotFoundError(
            f"InceptionV3 weights were asked for (--feature inception) but no weights file is on this disk (looked "
            f"at {', '.join(looked)}); this project never downloads them. Copy {INCEPTION_FILE} there or pass "
            "--inception-weights PATH, or use --feature classifier (the project's own dataset classifier)")
    if weights is not None:
        return InceptionFeatures(weights)
    return load_or_train(dataset, cache_dir, classifier_config, device, progress)

