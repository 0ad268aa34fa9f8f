"""The run folder's layout: one place that names every stage's sub-folder."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """Paths inside a run folder `root` (e.g. runs/demo)."""

    root: Path

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def vae(self) -> Path:
        return self.root / "vae"

    @property
    def latents(self) -> Path:
        return self.root / "latents"

    @property
    def bridge(self) -> Path:
        return self.root / "bridge"

    @property
    def diffusion(self) -> Path:
        return self.root / "diffusion"

    @property
    def guide(self) -> Path:
        """The autoguidance model's checkpoints: a smaller, shorter-trained U-Net of the same latents."""
        return self.root / "guide"

    @property
    def classifier(self) -> Path:
        return self.root / "classifier"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def pixel_samples(self) -> Path:
        """The pixel-space baseline's samples (`sample.py --pixels`), kept apart from the latent model's."""
        return self.root / "pixel_samples"

    def data_source(self, given: str | None = None) -> str:
        """The run's real images: `given` (a --data flag), else the source its VAE was trained on as
        latents/meta.json (latents_meta.json in a packed run) records it, else the embedded default,
        fashion_mnist. Pixel baselines, evaluation and guidance tuning compare with these, never silently with
        another dataset."""
        if given:
            return given
        from runfs.atomic import read_json

        for meta in (self.latents / "meta.json", self.root / "latents_meta.json"):  # a full run, a packed one
            if meta.is_file() and read_json(meta).get("data"):
                return str(read_json(meta)["data"])
        return "fashion_mnist"


def file_digest(path: str | os.PathLike, length: int = 16) -> str:
    """Short sha256 of a file or of every file below a folder (sorted by relative path): a checkpoint's id."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:length]

