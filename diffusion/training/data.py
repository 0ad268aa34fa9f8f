"""Training data for the diffuser: stage-1 latents (sampled afresh from the stored posterior) or raw pixels.

Batches are a pure function of (seed, step): the sample order is a per-epoch permutation seeded by the epoch
number, so resuming at step k reproduces exactly the batches an uninterrupted run would have seen, and every
DDP rank can compute the same global batch and take its own shard (`draw(..., shard)` reads only those rows).

Latents of a run are opened by memory map and read with random access (runfs.arrays.RowReader: only the rows of
a batch, read from the file, so that nothing but those rows enters the process's memory), never loaded whole; a
small set (at most IN_MEMORY_BYTES of mean + log-variance) is held in memory instead, the faster path. `access`
says which.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runfs import read_json
from runfs.arrays import RowReader, load_npy
from runfs.latent_norm import LatentNorm

IN_MEMORY_BYTES = 256 << 20  # latents (mean + log-variance) up to this size are held in memory


@dataclass
class TrainData:
    """Training examples; `draw` turns a global batch of indices into this rank's rows (N, C, H, W)."""

    labels: torch.Tensor | None  # (N,) int64, or None for unlabelled data
    num_classes: int | None
    meta: dict[str, Any] = field(default_factory=dict)  # travels into the checkpoint's config.json

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one example."""
        raise NotImplementedError

    @property
    def access(self) -> str:
        """How the examples are read, for the log."""
        return "in memory"

    def draw(self, indices: torch.Tensor, generator: torch.Generator, shard: slice | None = None) -> torch.Tensor:
        """The examples `indices[shard]` of a global batch (all of it when `shard` is None). Random draws are made for
        the whole global batch, so every rank's shard is its part of what one process would draw."""
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


class MappedPosterior:
    """Posterior mean and log-variance (N, C, H, W) float32 read from memory-mapped .npy files, rows on demand."""

    def __init__(self, mean: np.ndarray, logvar: np.ndarray) -> None:
        self.mean, self.logvar = mean, logvar
        self.reader = RowReader()

    def __len__(self) -> int:
        return len(self.mean)

    def head(self, n: int) -> MappedPosterior:
        return MappedPosterior(self.mean[:n], self.logvar[:n])

    def rows(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of `indices`, read in ascending file order."""
        wanted, inverse = np.unique(indices.numpy(), return_inverse=True)
        mean, logvar = (torch.from_numpy(self.reader.take(a, wanted)[inverse]) for a in (self.mean, self.logvar))
        return mean, torch.exp(0.5 * logvar)


@dataclass
class LatentData(TrainData):
    """Posterior mean and std per example (N, C, H, W); a draw is (mean + std * noise - shift) * scale, with the
    per-channel shift and scale of `norm` (runfs.latent_norm; identity when None). Held as tensors (`mean`, `std`)
    or, for a large set, read by memory map (`mapped`)."""

    mean: torch.Tensor = None  # type: ignore[assignment]
    std: torch.Tensor = None  # type: ignore[assignment]
    norm: LatentNorm | None = None
    mapped: MappedPosterior | None = None

    def __post_init__(self) -> None:
        channels = self.shape[0]
        norm = self.norm or LatentNorm.identity(channels)
        if norm.channels != channels:
            raise ValueError(f"latent_norm has {norm.channels} channels, the latents {channels}")
        self._shift, self._scale = (torch.from_numpy(a) for a in norm.arrays())

    def __len__(self) -> int:
        return len(self.mapped) if self.mapped is not None else self.mean.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        source = self.mapped.mean if self.mapped is not None else self.mean
        return tuple(source.shape[1:])  # type: ignore[return-value]

    @property
    def access(self) -> str:
        return "read by memory map" if self.mapped is not None else "in memory"

    def head(self, n: int) -> LatentData:
        """The first `n` examples (a view: nothing is copied)."""
        labels = None if self.labels is None else self.labels[:n]
        if self.mapped is not None:
            return LatentData(labels, self.num_classes, self.meta, norm=self.norm, mapped=self.mapped.head(n))
        return LatentData(labels, self.num_classes, self.meta, mean=self.mean[:n], std=self.std[:n], norm=self.norm)

    def draw(self, indices: torch.Tensor, generator: torch.Generator, shard: slice | None = None) -> torch.Tensor:
        noise = torch.randn((len(indices), *self.shape), generator=generator)
        shard = shard or slice(None)
        mine = indices[shard]
        mean, std = self.mapped.rows(mine) if self.mapped is not None else (self.mean[mine], self.std[mine])
        return (mean + std * noise[shard] - self._shift) * self._scale

    @classmethod
    def from_run(cls, latents_dir: str | os.PathLike, split: str = "train", in_memory: bool | None = None
                 ) -> LatentData:
        """Read DIR/latents/ as stage 1's encode.py wrote it (NCHW float32 mean/logvar, labels, meta.json).

        in_memory: hold the latents as tensors (True) or read them by memory map (False); None: in memory when
        mean + log-variance take at most IN_MEMORY_BYTES."""
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
        if in_memory is None:
            in_memory = mean.nbytes + logvar.nbytes <= IN_MEMORY_BYTES
        labels_path = d / f"{split}_labels.npy"
        labels = torch.from_numpy(load_npy(labels_path, fix=fix).astype(np.int64)) if labels_path.is_file() else None
        data_meta = {
            "kind": "latent", "latents_dir": str(d), "shape": list(mean.shape[1:]),
            **norm.to_meta(), "num_classes": meta.get("num_classes"),
            "class_names": meta.get("class_names"), "vae_checkpoint": meta.get("vae_checkpoint"),
            "image_size": meta.get("image_size"), "channels": meta.get("channels"), "data": meta.get("data"),
        }
        num_classes = meta.get("num_classes") if labels is not None else None
        if not in_memory:
            return cls(labels=labels, num_classes=num_classes, meta=data_meta, norm=norm,
                       mapped=MappedPosterior(mean, logvar))
        return cls(
            labels=labels, num_classes=num_classes, meta=data_meta,
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

    def draw(self, indices: torch.Tensor, generator: torch.Generator, shard: slice | None = None) -> torch.Tensor:
        return self.images[indices[shard or slice(None)]]

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
