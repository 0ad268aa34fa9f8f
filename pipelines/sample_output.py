"""What sample.py writes: grid.png, samples_NxHxWxC.npz (the reference evaluator's format), PNGs, info.json."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from runfs import atomic_dir, atomic_path, write_json
from runfs.images import grid, save_png

GRID_COLUMNS = 16  # grid.png shows at most this many samples per class row (or 16x16 unconditional): a preview


def grid_tiles(pixels: np.ndarray, num_classes: int | None) -> tuple[np.ndarray, int | None]:
    """The samples grid.png shows and its column count: one row per class when the samples come in equal class
    blocks (make_labels' order), the first GRID_COLUMNS of each; otherwise the first GRID_COLUMNS**2, square."""
    n, *image_shape = pixels.shape
    if num_classes and n % num_classes == 0 and n >= num_classes:
        keep = min(n // num_classes, GRID_COLUMNS)
        return pixels.reshape(num_classes, -1, *image_shape)[:, :keep].reshape(-1, *image_shape), keep
    return pixels[:GRID_COLUMNS ** 2], None


def save_samples(out: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None, info: dict[str, Any],
                 num_classes: int | None, save_pngs: bool = False) -> Path:
    """images: uint8 (N, H, W, C). Every file is written atomically."""
    out = Path(out)
    if images.dtype != np.uint8:
        raise TypeError(f"save_samples takes uint8 images, got {images.dtype} (runfs.images.to_uint8 converts)")
    pixels = images
    n, h, w, c = pixels.shape
    with atomic_path(out / f"samples_{n}x{h}x{w}x{c}.npz", suffix=".npz") as tmp, open(tmp, "wb") as f:
        arrays = {"arr_0": pixels} if labels is None else {"arr_0": pixels, "arr_1": labels.astype(np.int64)}
        np.savez(f, **arrays)
    tiles, ncol = grid_tiles(pixels, num_classes)
    save_png(out / "grid.png", grid(tiles, ncol), scale=max(1, 256 // max(h, w) // 2))
    if save_pngs:
        with atomic_dir(out / "images") as d:
            for i, image in enumerate(pixels):
                suffix = "" if labels is None else f"_class{int(labels[i])}"
                save_png(d / f"{i:05d}{suffix}.png", image)
    write_json(out / "info.json", {**info, "num_samples": n, "shape": [h, w, c]})
    return out
