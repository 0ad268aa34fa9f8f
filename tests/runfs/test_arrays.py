"""runfs.arrays: rows of memory-mapped .npy files read through the file, and .npy files shortened in place."""

import numpy as np
import pytest

from runfs.arrays import RowReader, release_pages, truncate_npy


@pytest.fixture
def stored(tmp_path):
    array = np.random.default_rng(0).normal(size=(50, 3, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", array)
    return array, np.load(tmp_path / "a.npy", mmap_mode="r")


@pytest.mark.parametrize("rows", [[0], [49], [0, 1, 2, 7, 8, 30, 49], list(range(50)), []])
def test_rows_read_from_the_file_equal_fancy_indexing(stored, rows):
    array, mapped = stored
    got = RowReader().take(mapped, np.array(rows, dtype=np.int64))
    assert type(got) is np.ndarray and got.dtype == np.float32 and got.shape == (len(rows), 3, 4)
    np.testing.assert_array_equal(got, array[rows])


def test_leading_slices_other_views_and_plain_arrays(stored):
    array, mapped = stored
    reader = RowReader()
    np.testing.assert_array_equal(reader.take(mapped[:20], np.array([3, 19])), array[[3, 19]])
    np.testing.assert_array_equal(reader.take(mapped[5:], np.array([0, 2])), array[[5, 7]])  # via the mapping
    np.testing.assert_array_equal(reader.take(array, np.array([4, 1])), array[[4, 1]])


def test_a_truncated_file_is_named(tmp_path, stored):
    _, mapped = stored
    path = tmp_path / "a.npy"
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 10)
    with pytest.raises(OSError, match=r"a\.npy: short read at row 49; the file is truncated"):
        RowReader().take(mapped, np.array([49]))


def test_truncate_keeps_the_first_rows(tmp_path):
    array = np.arange(40, dtype=np.int64).reshape(10, 4)
    written = np.lib.format.open_memmap(tmp_path / "b.npy", mode="w+", dtype=np.int64, shape=(10, 4))
    written[:] = array
    release_pages(written)
    del written
    truncate_npy(tmp_path / "b.npy", 6, chunk_bytes=40)  # chunks of one row
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), array[:6])
    truncate_npy(tmp_path / "b.npy", 6)  # already that long: unchanged
    with pytest.raises(ValueError, match="has 6 rows, cannot keep 7"):
        truncate_npy(tmp_path / "b.npy", 7)
