"""Image files: [-1, 1] floats to uint8 as guided-diffusion does, and grids written atomically (numpy + pillow)."""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from runfs.atomic import atomic_path


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Floats in [-1, 1] -> uint8, ((x + 1) * 127.5) clamped to [0, 255] then truncated, as the reference."""
    return np.clip((np.asarray(images, dtype=np.float32) + 1.0) * 127.5, 0, 255).astype(np.uint8)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (..., C) in [0, 255] -> float32 in [-1, 1] (the inverse of to_uint8 up to its truncation)."""
    return np.asarray(images).astype(np.float32) / 127.5 - 1.0


def grid(images: np.ndarray, ncol: int | None = None, pad: int = 1) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (rows*(H+pad)-pad, ncol*(W+pad)-pad, C) mosaic, row-major."""
    n, h, w, c = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    out = np.zeros((nrow * (h + pad) - pad, ncol * (w + pad) - pad, c), dtype=np.uint8)
    for i, image in enumerate(images):
        r, k = divmod(i, ncol)
        out[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = image
    return out


def save_png(path: str | os.PathLike, image: np.ndarray, scale: int = 1) -> None:
    """Write an (H, W, C) uint8 image (C = 1 or 3) as PNG, atomically; `scale` enlarges with nearest neighbours."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path, suffix=".png") as tmp:
        picture.save(tmp, format="PNG")


def save_pair_grid(path: str | os.PathLike, originals: np.ndarray, recons: np.ndarray, scale: int = 2) -> None:
    """originals, recons (N, H, W, C) in [-1, 1] -> a 2-row PNG (top: originals, bottom: their reconstructions)."""
    rows = [np.concatenate(list(to_uint8(batch)), axis=1) for batch in (originals, recons)]
    save_png(path, np.concatenate(rows, axis=0), scale=scale)
