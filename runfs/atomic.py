"""Atomic file and folder writes: write under a temporary name, fsync, then rename into place.

Temporary names say which process made them (runfs.leftovers), so the first write into a folder removes what a
killed process left there. A folder is replaced by one atomic exchange of the two names (Linux renameat2
RENAME_EXCHANGE) where the file system has it; elsewhere the old folder is moved aside to `.NAME.old` first, and
put back by the next reader or writer if the process died between the two renames. A full disk is reported as
such (runfs.errors.DiskFullError), with nothing half-written left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runfs.errors import CorruptFileError, disk_full_error
from runfs.leftovers import old_path, recover, sweep_once, temp_prefix

# Testing hooks (docs/reliability.md, pipelines/fault_injection.py): KTLDM_KILL_AT="POINT:N" sends SIGKILL to this
# process the N-th time it reaches POINT: "written" (a temporary complete, not yet renamed) or "replace" (inside a
# folder replace); KTLDM_POINT_LOG=FILE appends the name of every point reached to FILE.
KILL_AT_ENV, POINT_LOG_ENV = "KTLDM_KILL_AT", "KTLDM_POINT_LOG"
_points: dict[str, int] = {}


def fault_point(point: str) -> None:
    if os.environ.get(POINT_LOG_ENV):
        with open(os.environ[POINT_LOG_ENV], "a") as log:
            log.write(point + "\n")
    spec = os.environ.get(KILL_AT_ENV)
    if not spec or not spec.startswith(point + ":"):
        return
    _points[point] = _points.get(point, 0) + 1
    if _points[point] == int(spec.split(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _prepare(target: Path) -> None:
    """Create the parent folder; clean what killed writers left in it."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        full = disk_full_error(e, target)
        if full is None:
            raise
        raise full from e
    sweep_once(target.parent)


@contextlib.contextmanager
def _cleanup_on_error(tmp: Path, target: Path) -> Iterator[None]:
    try:
        yield
    except BaseException as e:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        full = disk_full_error(e, target) if isinstance(e, Exception) else None
        if full is not None:
            raise full from e
        raise


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path beside `target`; on success it replaces `target`, on error it is removed.

    `suffix` keeps an extension that a writer insists on (e.g. Keras wants `.keras`).
    """
    target = Path(target)
    _prepare(target)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=suffix + ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual permissions
    with _cleanup_on_error(tmp_path, target):
        yield tmp_path
        with contextlib.suppress(OSError):
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
        fault_point("written")
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)


def _usual_permissions(folder: Path) -> None:
    """Give the files under `folder` the permissions a plain `open` would (umask applied).

    Some writers create owner-only files (safetensors' save_file makes 0600), which would leave a finished run
    unreadable to the other users of a shared machine. Executable bits are kept.
    """
    mask = _umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            executable = path.stat().st_mode & 0o100
            os.chmod(path, (0o777 if executable else 0o666) & ~mask)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
except (OSError, AttributeError):  # not Linux/glibc
    _renameat2 = None


def exchange(a: Path, b: Path) -> bool:
    """Swap the names `a` and `b` in one atomic step (renameat2 RENAME_EXCHANGE); False where unsupported."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _replace_dir(tmp: Path, target: Path) -> None:
    """Put folder `tmp` in place of folder `target` so that `target` names a complete folder at every moment (or,
    without an atomic exchange, `.target.old` does while `target` is missing: runfs.leftovers.recover)."""
    if exchange(tmp, target):
        fault_point("replace")
        shutil.rmtree(tmp, ignore_errors=True)  # now the old folder
        return
    old = old_path(target)
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    fault_point("replace")
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; on success it replaces `target` whole, on error it is removed."""
    target = Path(target)
    _prepare(target)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    with _cleanup_on_error(tmp, target):
        yield tmp
        _usual_permissions(tmp)
        fault_point("written")
        if target.exists():
            _replace_dir(tmp, target)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)


def finite_or_null(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None: JSON has no NaN, and Python's bare `NaN` is not JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented, valid JSON (NaN and infinities become null), atomically."""
    text = json.dumps(finite_or_null(obj), indent=2, sort_keys=False, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON, naming the file in the error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path} is not valid JSON ({e}); the file is corrupt, rerun the stage that wrote "
                               "it") from e


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save one array as .npy, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)  # a file object: np.save would append ".npy" to a bare temporary name
