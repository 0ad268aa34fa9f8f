"""Memory-mapped .npy arrays read and written in pieces, so that no stage holds a whole dataset in memory, and
read with an error that names the file when it is truncated or damaged.

Pages of a memory map that a process has touched count in its resident set until the kernel needs them back.
`RowReader` gathers rows by index and, every `release_bytes` read, drops the mapped pages from the process
(madvise DONTNEED on a shared file mapping: the data stays in the OS page cache and the next read maps it again),
so reading a 20 GB array batch by batch keeps the resident set near `release_bytes`.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Literal

import numpy as np

from runfs.atomic import atomic_path
from runfs.errors import CorruptFileError

RELEASE_BYTES = 64 << 20


def release_pages(array: np.ndarray) -> None:
    """Flush a memory-mapped array and drop its pages from this process's resident set (no-op for other arrays)."""
    mapping = getattr(array, "_mmap", None)  # np.memmap and its views keep the mmap object here
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if array.flags.writeable:
        mapping.flush()
    mapping.madvise(mmap.MADV_DONTNEED)


class RowReader:
    """Gathers rows of arrays by index (`take`), releasing memory-mapped pages every `release_bytes` read."""

    def __init__(self, release_bytes: int = RELEASE_BYTES) -> None:
        self.release_bytes = release_bytes
        self._pending = 0
        self._touched: dict[int, np.ndarray] = {}

    def take(self, array: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """array[indices] as a new in-memory array; `indices` sorted ascending read the file forward."""
        rows = np.asarray(array[indices])  # fancy indexing copies already
        if isinstance(array, np.memmap):
            self._touched[id(array)] = array
            self._pending += rows.nbytes
            if self._pending >= self.release_bytes:
                self.release()
        return rows

    def release(self) -> None:
        for array in self._touched.values():
            release_pages(array)
        self._touched.clear()
        self._pending = 0


def truncate_npy(path: str | os.PathLike, rows: int, chunk_bytes: int = RELEASE_BYTES) -> None:
    """Keep the first `rows` rows of the .npy file at `path` (copied in chunks into a new file that replaces it)."""
    path = Path(path)
    source = np.load(path, mmap_mode="r")
    if rows == len(source):
        return
    if rows > len(source):
        raise ValueError(f"{path} has {len(source)} rows, cannot keep {rows}")
    step = max(1, chunk_bytes // max(1, source[:1].nbytes))
    with atomic_path(path) as tmp:
        target = np.lib.format.open_memmap(tmp, mode="w+", dtype=source.dtype, shape=(rows, *source.shape[1:]))
        for start in range(0, rows, step):
            target[start:start + step] = source[start:min(rows, start + step)]
            release_pages(target)
            release_pages(source)
        del target
    del source

def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from a .npy header; CorruptFileError when the header cannot be read."""
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f, max_header_size=1 << 20)
            return tuple(shape), np.dtype(dtype), f.tell()
    except (ValueError, EOFError, SyntaxError, OSError) as e:
        raise CorruptFileError(f"{path} is not a readable .npy file ({e})") from e


def load_npy(path: str | os.PathLike, mmap_mode: Literal["r", "r+", "c"] | None = None, fix: str = "") -> np.ndarray:
    """np.load(path, mmap_mode) after checking that the file holds as many bytes as its header promises, so a
    truncated file is named (numpy's own errors do not say which file). `fix`: what to do, added to the message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist" + (f"; {fix}" if fix else ""))
    try:
        shape, dtype, offset = npy_header(path)
    except CorruptFileError as e:
        raise CorruptFileError(f"{e}; the file is damaged" + (f": {fix}" if fix else "")) from e
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if dtype.hasobject or size != expected:
        problem = "holds Python objects" if dtype.hasobject else f"has {size} bytes where its header promises " \
                                                                 f"{expected} ({shape} {dtype})"
        raise CorruptFileError(f"{path} is truncated or damaged: it {problem}" + (f"; {fix}" if fix else ""))
    return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
