"""The file index of a folder source: every image's relative path, label and split, written once into the run.

Images are the JPEG/PNG/WebP files below the folder (recursively); labels come from sub-folder names or from the
filename prefix before "_" (the reference's convention).

The split is a seeded function of the file list alone: each file's rank is sha256(seed, relative path), the
round(n * val_fraction) lowest ranks are validation. It is the same on every machine and under resume, and adding a
file moves no other file across the split. A later run of the same source reads the index instead of deciding again,
and refuses it (naming the files) when the folder no longer holds the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runfs import read_json, write_json

SPLITS = ("train", "val")
UNUSED = "unused"  # listed, but beyond --limit
SHOW_NAMES = 5
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
LABEL_MODES = ("auto", "none", "subdir", "prefix")


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


def split_ranks(paths: list[str], seed: int) -> np.ndarray:
    """Position of each path when sorted by sha256(f"{seed}:{path}"): a seeded order that depends on the names only."""
    keys = [hashlib.sha256(f"{seed}:{p}".encode()).digest() for p in paths]
    order = sorted(range(len(paths)), key=keys.__getitem__)
    ranks = np.empty(len(paths), dtype=np.int64)
    ranks[order] = np.arange(len(paths))
    return ranks


def assign_splits(paths: list[str], seed: int, val_fraction: float) -> list[str]:
    """"train" or "val" per path: the round(n * val_fraction) lowest `split_ranks`, at least one on each side."""
    n = len(paths)
    if n < 2:
        raise ValueError(f"need at least 2 images to make a train/validation split, got {n}")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return ["val" if r < n_val else "train" for r in split_ranks(paths, seed)]


@dataclass
class FileIndex:
    """Every image file below `root` (relative POSIX paths, sorted), each with a label index (or None) and a split."""

    root: Path
    files: list[str]
    splits: list[str]  # "train", "val" or "unused"
    labels: list[int] | None
    class_names: list[str] | None
    settings: dict  # seed, val_fraction, folder_labels, limit: what the index was built for

    @classmethod
    def build(cls, root: str | os.PathLike, *, seed: int, val_fraction: float, folder_labels: str = "auto",
              limit: int | None = None) -> FileIndex:
        """List `root` (vae.data.folder.list_images), take labels and the first `limit` files, split them by seed."""
        root = Path(root).resolve()
        listed = list_images(root)
        used = listed[:limit]
        names = label_names(root, used, folder_labels)
        rel = [p.relative_to(root).as_posix() for p in listed]
        splits = assign_splits(rel[:len(used)], seed, val_fraction) + [UNUSED] * (len(listed) - len(used))
        class_names = None if names is None else sorted(set(names))
        labels = None if names is None else [class_names.index(n) for n in names] + [-1] * (len(listed) - len(used))
        settings = {"seed": seed, "val_fraction": val_fraction, "folder_labels": folder_labels, "limit": limit}
        return cls(root, rel, splits, labels, class_names, settings)

    @property
    def name(self) -> str:
        """The index's file stem in RUN/data/: the folder's name and a digest of its path and settings."""
        return index_name(self.root, self.settings)

    @property
    def digest(self) -> str:
        """sha256 of the files, splits and labels: what a cache made from this index is keyed on."""
        content = json.dumps([self.files, self.splits, self.labels, self.class_names])
        return hashlib.sha256(content.encode()).hexdigest()[:16]

    def count(self, split: str) -> int:
        return self.splits.count(split)

    def paths(self, split: str) -> list[str]:
        """Relative paths of `split`, in index order."""
        return [f for f, s in zip(self.files, self.splits, strict=True) if s == split]

    def split_labels(self, split: str) -> np.ndarray | None:
        if self.labels is None:
            return None
        return np.array([lab for lab, s in zip(self.labels, self.splits, strict=True) if s == split], np.int64)

    def to_dict(self) -> dict:
        rows = [[f, s, None if self.labels is None else self.labels[i]]
                for i, (f, s) in enumerate(zip(self.files, self.splits, strict=True))]
        return {"kind": "folder", "root": str(self.root), **self.settings, "class_names": self.class_names,
                "counts": {s: self.count(s) for s in SPLITS}, "files": rows}

    @classmethod
    def from_dict(cls, d: dict) -> FileIndex:
        files = [r[0] for r in d["files"]]
        labels = None if d["class_names"] is None else [int(r[2]) for r in d["files"]]
        settings = {k: d[k] for k in ("seed", "val_fraction", "folder_labels", "limit")}
        return cls(Path(d["root"]), files, [r[1] for r in d["files"]], labels, d["class_names"], settings)

    def stale_error(self, path: Path) -> ValueError | None:
        """None when `root` lists the same image files as when the index was built; else the error to raise."""
        now = {p.relative_to(self.root).as_posix() for p in list_images(self.root)}
        then = set(self.files)
        if now == then:
            return None
        added, removed = sorted(now - then), sorted(then - now)

        def some(names: list[str]) -> str:
            return ", ".join(names[:SHOW_NAMES]) + (", ..." if len(names) > SHOW_NAMES else "")

        changes = "; ".join(part for part in (f"{len(added)} added ({some(added)})" if added else "",
                                              f"{len(removed)} removed ({some(removed)})" if removed else "") if part)
        return ValueError(
            f"the file index {path} no longer matches the folder {self.root}: {changes}. The train/validation split "
            f"(and any VAE trained on it) comes from the index. Restore the folder, or rebuild the index with "
            f"--rebuild-index (a new split; retrain the VAE with train_vae.py --overwrite --rebuild-index)"
        )


def index_name(root: Path, settings: dict) -> str:
    """File name of the index of `root` built with `settings`: the folder's name and a digest of both."""
    key = hashlib.sha256(repr((str(root), sorted(settings.items()))).encode()).hexdigest()[:8]
    return f"{root.name or 'root'}-{key}"


def open_index(root: str | os.PathLike, folder: Path | None, *, seed: int, val_fraction: float,
               folder_labels: str = "auto", limit: int | None = None, rebuild: bool = False) -> FileIndex:
    """The index of `root` kept in `folder` (RUN/data/): read it and check it, or build and write it.

    Without `folder` the index is built in memory only (no run to keep it in).
    """
    root = Path(root).resolve()
    settings = {"seed": seed, "val_fraction": val_fraction, "folder_labels": folder_labels, "limit": limit}
    if folder is None:
        return FileIndex.build(root, **settings)
    path = folder / f"{index_name(root, settings)}.index.json"
    if path.is_file() and not rebuild:
        index = FileIndex.from_dict(read_json(path))
        error = index.stale_error(path)
        if error is not None:
            raise error
        return index
    index = FileIndex.build(root, **settings)
    write_json(path, index.to_dict())
    return index
