"""Memory-mapped .npy arrays read and written in pieces, so that no stage holds a whole dataset in memory, and
read with an error that names the file when it is truncated or damaged.

Reading: `RowReader.take(array, rows)` gathers rows of an array opened with np.load(mmap_mode="r") by reading
them from its file (os.preadv, one call per run of consecutive rows), not through the mapping. The OS page cache
serves both alike, but a mapped access makes the pages part of this process's resident set, and where the page
cache holds large folios (2 MiB on this project's Linux machines) one touched row maps a whole folio: 32 random
12 KiB rows of a 527 MB cache file put 57 MB into the resident set, 320 rows 355 MB (measured; docs/data.md).
Read through the file, the resident set holds the rows asked for and nothing else.
Writing: a writer of a memory map calls `release_pages` after each piece (flush, then madvise DONTNEED: the data
is on disk and in the page cache, and leaves the process's resident set).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Literal

import numpy as np

from runfs.atomic import atomic_path
from runfs.errors import CorruptFileError

CHUNK_BYTES = 64 << 20


def release_pages(array: np.ndarray) -> None:
    """Flush a memory-mapped array and drop its pages from this process's resident set (no-op for other arrays)."""
    mapping = getattr(array, "_mmap", None)  # np.memmap and its views keep the mmap object here
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    if array.flags.writeable:
        mapping.flush()
    mapping.madvise(mmap.MADV_DONTNEED)


def _file_offset(array: np.ndarray) -> int | None:
    """Byte offset in its file of the first row of a C-contiguous memory map opened by np.load (or a leading slice
    of one); None for anything else."""
    mapping = getattr(array, "_mmap", None)
    if mapping is None or getattr(array, "filename", None) is None or not array.flags.c_contiguous:
        return None
    mapped_from = array.offset - array.offset % mmap.ALLOCATIONGRANULARITY
    start = array.ctypes.data - np.frombuffer(mapping, np.uint8).ctypes.data
    return mapped_from + start if start == array.offset - mapped_from else None


class RowReader:
    """Gathers rows of arrays by index (`take`); memory-mapped .npy arrays are read through their files."""

    def take(self, array: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """array[indices] as a new in-memory array (`indices` ascending: the file is read forward)."""
        indices = np.asarray(indices)
        offset = _file_offset(array) if len(indices) else None
        if offset is None or not hasattr(os, "preadv"):
            return np.asarray(array[indices])  # fancy indexing copies
        out = np.empty((len(indices), *array.shape[1:]), dtype=array.dtype)
        row = out[:1].nbytes
        flat = out.reshape(len(indices), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(indices) != 1) + 1  # runs of consecutive rows: one read each
        with open(array.filename, "rb", buffering=0) as f:
            for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(indices)], strict=True):
                want = (hi - lo) * row
                if os.preadv(f.fileno(), [memoryview(flat[lo:hi]).cast("B")], offset + int(indices[lo]) * row) != want:
                    raise OSError(f"{array.filename}: short read at row {indices[lo]}; the file is truncated")
        return out


def truncate_npy(path: str | os.PathLike, rows: int, chunk_bytes: int = CHUNK_BYTES) -> None:
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
