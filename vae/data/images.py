"""Decoding one image the way it is meant to be seen, then center crop and resize to a square of 1 or 3 channels.

Every PIL mode is converted by its meaning, not by `image.convert`'s defaults:
- EXIF orientation is applied first (a phone photo stored sideways comes out upright);
- alpha (RGBA, LA, PA, palette or L/RGB with a transparent colour key) is composited onto `background` (white by
  default): out = (colour * alpha + background * (255 - alpha)) / 255, rounded, so the colours under transparent
  pixels vanish;
- 16-bit and 32-bit integer grayscale (I;16*, I) take the 16-bit range 0..65535 to 0..255: round(v / 257);
- palette (P), bilevel (1), CMYK, YCbCr, LAB, HSV go through PIL's colour conversions to RGB or L;
- grayscale to RGB repeats the channel; RGB to grayscale is ITU-R 601-2 luma (PIL's "L").
Files over MAX_DECODE_PIXELS are refused before decoding (ImageTooLarge): skipped and named like damaged files.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageColor, ImageOps

WHITE = (255, 255, 255)
# PIL decodes every format but JPEG at full size: openclipart-png holds 19 files over 16 megapixels (rasterised
# drawings up to 623 MP), each 0.7-2.5 GB and seconds of one core to decode for a 64x64 crop; a batch of them took
# 75 s and 11 GB. Larger files are refused before decoding. PIL's own DecompressionBombWarning (89 MP) is then moot.
MAX_DECODE_PIXELS = 16_000_000
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageTooLarge(ValueError):
    """A file whose decoded image would exceed MAX_DECODE_PIXELS."""
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def parse_background(spec: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """'white', 'black', '#808080', '128,128,128' (or an RGB tuple) -> (r, g, b) in 0..255."""
    if isinstance(spec, tuple):
        rgb = spec
    elif "," in spec:
        try:
            rgb = tuple(int(v) for v in spec.split(","))
        except ValueError:
            rgb = ()
    else:
        try:
            rgb = ImageColor.getrgb(spec)[:3]
        except ValueError:
            rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ValueError(f"background {spec!r} is not a colour: use a name (white, black, gray), #RRGGBB or R,G,B "
                         "with values 0..255")
    return tuple(int(v) for v in rgb)  # type: ignore[return-value]


def _composite(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """An RGBA or LA image over an opaque background: (c * a + bg * (255 - a)) / 255 per channel, rounded."""
    arr = np.asarray(image, dtype=np.float64)
    colour, alpha = arr[..., :-1], arr[..., -1:]
    bg = np.array(background if image.mode == "RGBA" else [_luma(background)], dtype=np.float64)
    out = np.round((colour * alpha + bg * (255.0 - alpha)) / 255.0).astype(np.uint8)
    return Image.fromarray(out if image.mode == "RGBA" else out[..., 0], "RGB" if image.mode == "RGBA" else "L")


def _luma(rgb: tuple[int, int, int]) -> int:
    """ITU-R 601-2 luma of one colour, as PIL's RGB -> L: (299 R + 587 G + 114 B) / 1000, rounded."""
    return int(Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0)))


def to_visible(image: Image.Image, channels: int, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Any PIL image -> an opaque "L" (channels 1) or "RGB" (channels 3) image, each mode converted by its meaning."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in SIXTEEN_BIT:
        wide = np.asarray(image, dtype=np.int64)
        image = Image.fromarray(np.round(np.clip(wide, 0, 65535) / 257.0).astype(np.uint8), "L")
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "RGBa", "La"):
        image = image.convert("RGBA" if mode != "La" else "LA")
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("LA" if mode == "L" else "RGBA")  # a tRNS colour key: that value is transparent
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # 1, CMYK, YCbCr, LAB, HSV, F: PIL's colour conversions
    if image.mode in ("RGBA", "LA"):
        image = _composite(image, background)
    if channels == 1:
        return image.convert("L")
    return image.convert("RGB")


def center_crop_resize(image: Image.Image | np.ndarray, size: int, channels: int,
                       background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Any image -> uint8 (size, size, channels): made visible (`to_visible`), the largest centred square, resized
    with antialiasing. An array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) is read as L, RGB or RGBA."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.squeeze(-1) if image.ndim == 3 and image.shape[-1] == 1 else image)
    image = to_visible(image, channels, background)
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    image = image.crop((left, top, left + side, top + side))
    if side != size:
        image = image.resize((size, size), Image.Resampling.BICUBIC if side < size else Image.Resampling.LANCZOS)
    arr = np.asarray(image, dtype=np.uint8)
    return arr[..., None] if channels == 1 else arr


def read_image(path: str | os.PathLike, size: int, channels: int,
               background: tuple[int, int, int] = WHITE) -> np.ndarray:
    """Open and fully decode one file -> uint8 (size, size, channels); raises on a damaged or truncated file."""
    with Image.open(Path(path)) as image:
        w, h = image.size
        if w * h > MAX_DECODE_PIXELS:
            raise ImageTooLarge(f"{path}: {w}x{h} is {w * h / 1e6:.0f} megapixels, over the "
                                f"{MAX_DECODE_PIXELS / 1e6:.0f} decoded at most (vae.data.images.MAX_DECODE_PIXELS)")
        image.load()
        return center_crop_resize(image, size, channels, background)
