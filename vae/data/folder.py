"""A folder of images (JPEG/PNG/WebP, recursively), with optional labels from sub-folders or filename prefixes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vae.data.dataset import Dataset, split_by_seed
from vae.data.images import WHITE, read_image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
LABEL_MODES = ("auto", "none", "subdir", "prefix")
SHOW_NAMES = 5


def list_images(root: Path) -> list[Path]:
    """Every image file below `root`, sorted; one clear error for a missing path, an empty folder, or no images."""
    if not root.exists():
        raise FileNotFoundError(
            f"data folder {root} does not exist; pass --data fashion_mnist, --data tfds:NAME, or a folder of images"
        )
    if not root.is_dir():
        raise NotADirectoryError(f"--data {root} is a file, not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"data folder {root} is empty; put JPEG/PNG/WebP images in it (sub-folders are searched)")
    images = [p for p in files if p.suffix.lower() in EXTENSIONS]
    if not images:
        examples = ", ".join(p.name for p in files[:SHOW_NAMES])
        raise ValueError(
            f"data folder {root} has {len(files)} files but no images with extension {'/'.join(EXTENSIONS)} "
            f"(e.g. {examples})"
        )
    return images


def label_names(root: Path, files: list[Path], mode: str) -> list[str] | None:
    """One class name per file, or None. auto: sub-folder names when every image sits in one of >= 2 sub-folders."""
    if mode not in LABEL_MODES:
        raise ValueError(f"folder label mode must be one of {LABEL_MODES}, got {mode!r}")
    subdirs = [p.relative_to(root).parts[0] if len(p.relative_to(root).parts) > 1 else None for p in files]
    if mode == "auto":
        mode = "subdir" if None not in subdirs and len(set(subdirs)) >= 2 else "none"
    if mode == "none":
        return None
    if mode == "subdir":
        flat = [p.name for p, s in zip(files, subdirs, strict=True) if s is None]
        if flat:
            raise ValueError(f"labels from sub-folders, but {len(flat)} images lie directly in {root} (e.g. {flat[0]})")
        return subdirs  # type: ignore[return-value]
    no_prefix = [p.name for p in files if "_" not in p.name]
    if no_prefix:
        raise ValueError(f"labels from filename prefixes (CLASS_name.png), but {no_prefix[0]} has no '_'")
    return [p.name.split("_")[0] for p in files]


def load_folder(root: str | Path, image_size: int, channels: int, limit: int | None, val_fraction: float | None,
                seed: int, labels: str = "auto", background: tuple[int, int, int] = WHITE) -> Dataset:
    """Load, center-crop and resize every image; corrupt files are skipped and named in one warning."""
    root = Path(root)
    files = list_images(root)[:limit]
    names = label_names(root, files, labels)
    kept, kept_names, bad = [], [], []
    for i, path in enumerate(tqdm(files, desc=f"loading {root.name or root}", unit="img", leave=False)):
        try:
            kept.append(read_image(path, image_size, channels, background))
        except Exception as e:  # noqa: BLE001 -- PIL raises many types for damaged files; skip them all
            bad.append(f"{path.relative_to(root)} ({type(e).__name__})")
            continue
        if names is not None:
            kept_names.append(names[i])
    if bad:
        shown = ", ".join(bad[:SHOW_NAMES]) + (", ..." if len(bad) > SHOW_NAMES else "")
        warnings.warn(f"skipped {len(bad)} unreadable image file(s) in {root}: {shown}", stacklevel=2)
    if not kept:
        raise ValueError(f"none of the {len(files)} image files in {root} could be read")
    images = np.stack(kept)
    class_names, label_array = None, None
    if names is not None:
        class_names = sorted(set(kept_names))
        label_array = np.array([class_names.index(n) for n in kept_names], dtype=np.int64)
    tx, vx, ty, vy = split_by_seed(images, label_array, 0.1 if val_fraction is None else val_fraction, seed)
    return Dataset(str(root), tx, vx, ty, vy, class_names)
