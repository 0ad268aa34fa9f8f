"""Reading .npy files with an error that names the file when it is truncated or damaged (numpy only)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np

from runfs.errors import CorruptFileError


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
