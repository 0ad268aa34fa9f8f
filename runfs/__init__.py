"""Run-folder I/O shared by every stage: atomic writes and the run layout (stdlib + numpy only).

A run folder is self-describing (docs/design.md): `vae/`, `latents/`, `bridge/`, `diffusion/`, `samples/`.
Every write goes to a temporary name beside its target and is renamed into place, so a process killed at
any moment leaves either the old file or the new one, never half of one.
"""

from runfs.atomic import atomic_dir, atomic_path, read_json, write_json, write_npy
from runfs.configs import ConfigMixin
from runfs.layout import RunPaths, file_digest
from runfs.versions import versions

__all__ = [
    "ConfigMixin", "atomic_dir", "atomic_path", "read_json", "write_json", "write_npy", "RunPaths", "file_digest",
    "versions",
]
