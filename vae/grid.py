"""Reconstruction grids: originals above their reconstructions, saved as one PNG."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from runfs import atomic_path


def save_pair_grid(path: str | os.PathLike, originals: np.ndarray, recons: np.ndarray, scale: int = 2) -> None:
    """originals, recons (N, H, W, C) in [-1, 1] -> a 2-row PNG (top: originals, bottom: reconstructions)."""
    rows = [np.concatenate(list(batch), axis=1) for batch in (originals, recons)]
    grid = np.concatenate(rows, axis=0)
    grid = np.clip((grid + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
