"""Training data for the diffuser: stage-1 latents (sampled afresh from the stored posterior) or raw pixels.

Batches are a pure function of (seed, step): the sample order is a per-epoch permutation seeded by the epoch
number, so resuming at step k reproduces exactly the batches an uninterrupted run would have seen, and every
DDP rank can compute the same global batch and take its own shard.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runfs import read_json
from runfs.arrays import load_npy
from runfs.latent_norm import LatentNorm


@dataclass
class TrainData:
    """Examples held in memory as torch tensors. `draw` turns indices into a batch (N, C, H, W)."""

    labels: torch.Tensor | None  # (N,) int64, or None for unlabelled data
    num_classes: int | None
    meta: dict[str, Any] = field(default_factory=dict)  # travels into the checkpoint's config.json

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example."""
        raise NotImplementedError

    def draw(self, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def epoch_indices(self, seed: int, step: int, batch_size: int) -> torch.Tensor:
        """The global batch of example indices for `step`: samples k = step*B .. step*B+B-1 of the stream."""
        n = len(self)
        ks = torch.arange(step * batch_size, (step + 1) * batch_size)
        epochs, positions = ks // n, ks % n
        out = torch.empty(batch_size, dtype=torch.long)
        for epoch in epochs.unique().tolist():
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            sel = epochs == epoch
            out[sel] = perm[positions[sel]]
        return out


@dataclass
class LatentData(TrainData):
    """Posterior mean and std per example (N, C, H, W); a draw is (mean + std * noise - shift) * scale, with the
    per-channel shift and scale of `norm` (runfs.latent_norm; identity when None)."""

    mean: torch.Tensor = None  # type: ignore[assignment]
    std: torch.Tensor = None  # type: ignore[assignment]
    norm: LatentNorm | None = None

    def __post_init__(self) -> None:
        norm = self.norm or LatentNorm.identity(self.mean.shape[1])
        if norm.channels != self.mean.shape[1]:
            raise ValueError(f"latent_norm has {norm.channels} channels, the latents {self.mean.shape[1]}")
        self._shift, self._scale = (torch.from_numpy(a) for a in norm.arrays())

    def __len__(self) -> int:
        return self.mean.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.mean.shape[1:])  # type: ignore[return-value]

    def draw(self, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = self.mean[indices]
        noise = torch.randn(mean.shape, generator=generator)
        return (mean + self.std[indices] * noise - self._shift) * self._scale

    @classmethod
    def from_run(cls, latents_dir: str | os.PathLike, split: str = "train") -> LatentData:
        """Read DIR/latents/ as stage 1's encode.py wrote it (NCHW float32 mean/logvar, labels, meta.json)."""
        d = Path(latents_dir)
        if not (d / "meta.json").is_file():
            raise FileNotFoundError(
                f"no latents in {d} (meta.json missing): run `python pipelines/encode.py --run {d.parent}` first, "
                f"or pass --pixels to train on images"
            )
        meta = read_json(d / "meta.json")
        if meta.get("layout") != "NCHW":
            raise ValueError(f"{d / 'meta.json'}: layout {meta.get('layout')!r} is not NCHW; re-run encode.py")
        fix = f"rerun `python pipelines/encode.py --run {d.parent}`"  # names the file when one is truncated
        mean = load_npy(d / f"{split}_mean.npy", mmap_mode="r", fix=fix)
        logvar = load_npy(d / f"{split}_logvar.npy", mmap_mode="r", fix=fix)
        if mean.shape != logvar.shape or list(mean.shape[1:]) != list(meta["latent_shape"]):
            raise ValueError(
                f"{d}: {split}_mean {mean.shape} / {split}_logvar {logvar.shape} disagree with meta.json "
                f"latent_shape {meta['latent_shape']}; the latents are corrupt, re-run encode.py"
            )
        norm = LatentNorm.from_meta(meta, mean.shape[1])
        labels_path = d / f"{split}_labels.npy"
        labels = torch.from_numpy(load_npy(labels_path, fix=fix).astype(np.int64)) if labels_path.is_file() else None
        data_meta = {
            "kind": "latent", "latents_dir": str(d), "shape": list(mean.shape[1:]),
            **norm.to_meta(), "num_classes": meta.get("num_classes"),
            "class_names": meta.get("class_names"), "vae_checkpoint": meta.get("vae_checkpoint"),
            "image_size": meta.get("image_size"), "channels": meta.get("channels"), "data": meta.get("data"),
        }
        return cls(
            labels=labels, num_classes=meta.get("num_classes") if labels is not None else None, meta=data_meta,
            mean=torch.from_numpy(np.array(mean, dtype=np.float32)),
            std=torch.exp(0.5 * torch.from_numpy(np.array(logvar, dtype=np.float32))),
            norm=norm,
        )


@dataclass
class PixelData(TrainData):
    """Images (N, C, H, W) float32 in [-1, 1]: the pixel-space baseline."""

    images: torch.Tensor = None  # type: ignore[assignment]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def draw(self, indices: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.images[indices]

    @classmethod
    def from_arrays(cls, images_nhwc: np.ndarray, labels: np.ndarray | None, num_classes: int | None,
                    meta: dict[str, Any] | None = None) -> PixelData:
        """From NHWC images in [-1, 1] (what the stage-1 loaders give)."""
        if images_nhwc.ndim != 4 or images_nhwc.size == 0:
            raise ValueError(f"expected NHWC images, got shape {images_nhwc.shape}")
        images = torch.from_numpy(np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2)), dtype=np.float32))
        lab = torch.from_numpy(np.asarray(labels, dtype=np.int64)) if labels is not None else None
        info = {"kind": "pixel", "shape": list(images.shape[1:]), "scale_factor": 1.0, "num_classes": num_classes}
        return cls(labels=lab, num_classes=num_classes if lab is not None else None,
                   meta={**info, **(meta or {})}, images=images)
