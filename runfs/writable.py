"""Checking, before any work starts, that a command can write where it must (stdlib only)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from runfs.errors import NotWritableError


def check_writable(folder: str | os.PathLike, what: str = "the output") -> Path:
    """NotWritableError naming `folder` and the reason unless a file can be created in it (or, while it does not
    exist yet, in its nearest existing parent, where it would be made): a probe file is written and removed, so
    read-only mounts and permissions are both caught; no folder is created. Returns `folder`."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file, not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        raise NotWritableError(
            f"cannot write {what} to {folder} ({reason} in {existing}); nothing was started: make it writable, or "
            "choose another folder (e.g. --out DIR, or a copy of the run folder)") from e
    return folder


def is_writable(folder: str | os.PathLike) -> bool:
    try:
        check_writable(folder)
    except NotWritableError:
        return False
    return True
