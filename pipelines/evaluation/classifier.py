"""The project's own evaluation classifier: a small torch CNN over a dataset's classes, trained once and cached.

It gives the features for FID/KID when no InceptionV3 weights are on disk (its penultimate layer), and judges
whether class-conditional samples show the class they were asked for. The cache folder
(e.g. runs/.cache/eval_classifier_fashion_mnist_32x32x1/) holds config.json, model.safetensors and meta.json
(test accuracy, what it was trained on); it is reused when both match, else retrained and replaced atomically.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from runfs import ConfigMixin, atomic_dir, read_json, write_json
from vae.data import Dataset, to_float


@dataclass
class EvalClassifierConfig(ConfigMixin):
    """Architecture and training of the evaluation CNN (the defaults train in a few minutes on 2 CPU cores)."""

    width: int = 16
    embed_dim: int = 128
    epochs: int = 2
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    max_steps: int | None = None  # stop early (tests)


class EvalCNN(nn.Module):
    """(N, C, S, S) images in [-1, 1] -> (N, num_classes) logits; `embed` gives the (N, embed_dim) features."""

    def __init__(self, channels: int, num_classes: int, width: int = 16, embed_dim: int = 128):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.SiLU()]

        self.body = nn.Sequential(
            *block(channels, width), nn.MaxPool2d(2),                      # S/2
            *block(width, 2 * width), *block(2 * width, 2 * width), nn.MaxPool2d(2),  # S/4
            *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),      # (N, 4 * width)
            # SiLU, not ReLU: no dead units, so the feature covariance used by FID stays full rank.
            nn.Linear(4 * width, embed_dim), nn.SiLU(),
        )
        self.head = nn.Linear(embed_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class TrainedClassifier:
    """A loaded evaluation classifier; `meta` holds test_accuracy, class_names, image_shape, trained_on, ..."""

    model: EvalCNN
    config: EvalClassifierConfig
    meta: dict[str, Any]
    folder: Path
    retrained: bool

    @property
    def name(self) -> str:
        return f"classifier {self.folder.name} (test accuracy {self.meta.get('test_accuracy', float('nan')):.4f})"

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    @torch.no_grad()
    def _map(self, images: np.ndarray, fn, batch_size: int, desc: str | None) -> np.ndarray:
        device = next(self.model.parameters()).device
        self.model.eval()
        starts = range(0, len(images), batch_size)
        chunks = [fn(_to_tensor(images[s:s + batch_size], device)).float().cpu().numpy()
                  for s in tqdm(starts, desc=desc, unit="batch", leave=False, disable=desc is None)]
        return np.concatenate(chunks)

    def features(self, images: np.ndarray, batch_size: int = 500, desc: str | None = None) -> np.ndarray:
        """uint8 (N, S, S, C) -> float64 (N, embed_dim) penultimate-layer features."""
        return self._map(images, self.model.embed, batch_size, desc).astype(np.float64)

    def predict(self, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
        """uint8 (N, S, S, C) -> int64 (N,) predicted classes."""
        return self._map(images, lambda x: self.model(x).argmax(1), batch_size, None).astype(np.int64)


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(to_float(images)).permute(0, 3, 1, 2).contiguous().to(device)


def cache_folder(cache_dir: str | Path, dataset: Dataset) -> Path:
    """cache_dir/eval_classifier_<source>_<H>x<W>x<C>; a folder source is named by its last part + a hash."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", Path(dataset.source).name or dataset.source).strip("_")
    if slug != dataset.source:
        slug += "_" + hashlib.sha256(dataset.source.encode()).hexdigest()[:8]
    h, w, c = dataset.image_shape
    return Path(cache_dir) / f"eval_classifier_{slug}_{h}x{w}x{c}"


def _identity(dataset: Dataset) -> dict[str, Any]:
    return {"source": dataset.source, "image_shape": list(dataset.image_shape), "class_names": dataset.class_names,
            "num_train": len(dataset.train_images), "num_test": len(dataset.val_images)}


def load_or_train(dataset: Dataset, cache_dir: str | Path, config: EvalClassifierConfig | None = None,
                  device: torch.device | str = "cpu", progress: bool = True) -> TrainedClassifier:
    """The cached classifier for `dataset` when its config and training data match, else train it and cache it."""
    config = config or EvalClassifierConfig()
    if dataset.class_names is None or dataset.train_labels is None or dataset.val_labels is None:
        raise ValueError(f"{dataset.source} has no class labels: the evaluation classifier needs them (use "
                         "--feature inception with local InceptionV3 weights, or a labelled dataset)")
    folder = cache_folder(cache_dir, dataset)
    cached = _load_cached(folder, dataset, config)
    if cached is not None:
        cached.model.to(device)
        return cached
    model, meta = train_classifier(dataset, config, device, progress)
    with atomic_dir(folder) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        config.save(tmp / "config.json")
        write_json(tmp / "meta.json", meta)
    return TrainedClassifier(model, config, meta, folder, retrained=True)


def _load_cached(folder: Path, dataset: Dataset, config: EvalClassifierConfig) -> TrainedClassifier | None:
    """The cached classifier when its config and training data match `config` and `dataset`; None when it is
    absent, stale or unreadable (a damaged cache is retrained rather than trusted)."""
    try:
        meta = read_json(folder / "meta.json")
        if read_json(folder / "config.json") != config.to_dict() or meta.get("trained_on") != _identity(dataset):
            return None
        model = _build(dataset, config)
        model.load_state_dict(load_file(folder / "model.safetensors"))
    except (OSError, ValueError, RuntimeError, SafetensorError):
        return None
    return TrainedClassifier(model.eval(), config, meta, folder, retrained=False)


def _build(dataset: Dataset, config: EvalClassifierConfig) -> EvalCNN:
    return EvalCNN(dataset.image_shape[2], len(dataset.class_names or []), config.width, config.embed_dim)


def train_classifier(dataset: Dataset, config: EvalClassifierConfig, device: torch.device | str = "cpu",
                     progress: bool = True) -> tuple[EvalCNN, dict[str, Any]]:
    """AdamW + cosine decay on the training split; returns the model and meta (test accuracy on the val split)."""
    device = torch.device(device)
    torch.manual_seed(config.seed)
    model = _build(dataset, config).to(device)
    images, labels = dataset.train_images, dataset.train_labels
    steps_per_epoch = -(-len(images) // config.batch_size)
    total = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=total, pct_start=0.15)
    rng = np.random.default_rng(config.seed)
    started, step = time.perf_counter(), 0
    bar = tqdm(total=total, desc="training the evaluation classifier", unit="step", disable=not progress)
    model.train()
    while step < total:
        order = rng.permutation(len(images))
        for s in range(0, len(order), config.batch_size):
            idx = np.sort(order[s:s + config.batch_size])
            x = _to_tensor(images[idx], device)
            y = torch.from_numpy(labels[idx]).to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if step >= total:
                break
    bar.close()
    trained = TrainedClassifier(model, config, {}, Path("."), retrained=True)
    accuracy = float((trained.predict(dataset.val_images) == dataset.val_labels).mean())
    meta = {"test_accuracy": accuracy, "steps": step, "train_seconds": round(time.perf_counter() - started, 2),
            "trained_on": _identity(dataset), "device": str(device), "torch": torch.__version__}
    return model.eval(), meta
