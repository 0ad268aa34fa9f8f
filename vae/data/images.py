"""Image shaping shared by the sources: center crop to a square, resize, and channel conversion."""

from __future__ import annotations

import numpy as np
from PIL import Image


def center_crop_resize(image: Image.Image | np.ndarray, size: int, channels: int) -> np.ndarray:
    """Any image -> uint8 (size, size, channels): the largest centred square, resized with antialiasing."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image)
    image = image.convert("L" if channels == 1 else "RGB")
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.BICUBIC if side < size else Image.Resampling.LANCZOS)
    arr = np.asarray(image, dtype=np.uint8)
    return arr[..., None] if channels == 1 else arr
