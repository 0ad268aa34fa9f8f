"""The errors a run folder's files can raise: each message names the file and what to do (stdlib only).

They subclass the built-in kinds the stage scripts already catch (ValueError, OSError), so an existing
`except ValueError` prints them as one line; `pipelines.cli.run_main` turns any of them into `error: ...`, exit 2.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path


class RunError(Exception):
    """A problem with a run folder that the message explains: which file, what is wrong, what to do."""


class CorruptFileError(RunError, ValueError):
    """A file exists but cannot be read back (truncated, damaged, or not what its name says)."""


class LineageError(RunError, ValueError):
    """Two stages of a run were built from different things (e.g. latents of one VAE, a bridge of another)."""


class DiskFullError(RunError, OSError):
    """A write failed because the file system is full (or over quota)."""


class NotWritableError(RunError, PermissionError):
    """A folder a command must write to cannot be written."""


# What a full disk looks like when a library wraps the OSError in its own exception: torch.save ("unexpected pos",
# "file write failed"), safetensors and numpy ("No space left on device").
_FULL_DISK_TEXT = ("no space left on device", "unexpected pos", "file write failed", "disk quota exceeded")


def _free_space(folder: Path) -> str:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown space"
    return f"{free / 2**20:.1f} MiB"


def disk_full_error(exc: BaseException, target: str | os.PathLike) -> DiskFullError | None:
    """A DiskFullError for writing `target` when `exc` (or an exception it was raised from) says the disk is full;
    None otherwise."""
    seen: BaseException | None = exc
    for _ in range(8):  # follow __cause__/__context__ a few links
        if seen is None:
            return None
        full = isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT)
        if full or any(text in str(seen).lower() for text in _FULL_DISK_TEXT):
            target = Path(target)
            return DiskFullError(
                f"could not write {target}: the disk is full ({_free_space(target.parent)} free where it goes; "
                f"{type(exc).__name__}: {str(exc).strip()[:200]}). Nothing half-written was left behind: free some "
                "space (or use a --run/--out folder on another disk) and rerun the same command")
        seen = seen.__cause__ or seen.__context__
    return None
