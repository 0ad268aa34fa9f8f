"""What a killed write leaves behind, and cleaning it up: temporary names that say who made them, and a sweep.

A temporary file or folder beside TARGET is named `.TARGET.HOST-PID-XXXXXXXX[.ext].tmp`: the host and process id of
the writer. A process killed with SIGKILL never removes its temporaries; the next write into the same folder (any
stage, any process on the same host) removes every temporary whose writer is no longer running, plus those in the
older unnamed form `.TARGET.XXXXXXXX[.ext].tmp`. A folder replaced on a file system without an atomic exchange is
first moved aside to `.TARGET.old`; when TARGET is missing, that is the complete previous version and is put back.
Stdlib only.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

_TAGGED = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[a-z0-9_]{8}(\.[^.]+)*\.tmp$")
_UNTAGGED = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[^.]+)*\.tmp$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old$")
_swept: set[str] = set()


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def temp_prefix(target: Path) -> str:
    """The start of a temporary name beside `target` (tempfile.mkstemp/mkdtemp add 8 random characters)."""
    return f".{target.name}.{_host()}-{os.getpid()}-"


def old_path(target: Path) -> Path:
    """Where a replaced folder waits while its successor is renamed into place (no atomic exchange available)."""
    return target.with_name(f".{target.name}.old")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def is_stale_temp(path: Path) -> bool:
    """A temporary of a writer that has stopped: one of this host's dead processes, or the unnamed older form."""
    tagged = _TAGGED.match(path.name)
    if tagged:
        return tagged["host"] == _host() and not _alive(int(tagged["pid"]))
    return bool(_UNTAGGED.match(path.name))


def recover(target: str | os.PathLike) -> bool:
    """Put `.TARGET.old` back as TARGET when a replace was killed between its two renames; True if it did."""
    target = Path(target)
    old = old_path(target)
    if old.is_dir() and not target.exists():
        try:
            os.replace(old, target)
        except OSError:  # a read-only folder: leave it as it is (the reader then finds nothing and says so)
            return False
        return True
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep(folder: str | os.PathLike) -> list[str]:
    """Remove the stale temporaries in `folder` (not below it), put back or drop `.X.old` folders; return what was
    done, one line each."""
    folder = Path(folder)
    done: list[str] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return done
    for entry in entries:
        old = _OLD.match(entry.name)
        if old and entry.is_dir():
            target = folder / old["name"]
            if recover(target):
                done.append(f"restored {target} from {entry.name} (a replace was interrupted)")
            else:
                _remove(entry)
                done.append(f"removed {entry} (the previous version of {target.name})")
        elif is_stale_temp(entry):
            _remove(entry)
            done.append(f"removed {entry} (left by a killed process)")
    return done


def sweep_once(folder: str | os.PathLike) -> list[str]:
    """`sweep(folder)` the first time this process writes into `folder`: a killed writer's temporaries exist before
    we start, so one sweep per folder and process is enough (and keeps writing many files into one folder cheap)."""
    key = f"{os.getpid()}:{os.path.abspath(folder)}"
    if key in _swept:
        return []
    _swept.add(key)
    return sweep(folder)


def find_leftovers(root: str | os.PathLike) -> list[Path]:
    """Every temporary or `.X.old` entry below `root` (the writer's liveness not considered): what a finished run
    must not contain."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if _TAGGED.match(name) or _UNTAGGED.match(name) or (_OLD.match(name) and name in dirnames):
                found.append(Path(dirpath) / name)
    return sorted(found)
