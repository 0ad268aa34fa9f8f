"""grid.png is a preview of bounded size: one row per class (at most GRID_COLUMNS each), or the first 16x16."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.sample_output import GRID_COLUMNS, grid_tiles, save_samples


def _numbered(n: int) -> np.ndarray:
    """(n, 2, 2, 1) uint8 images whose every pixel holds the image's index mod 256."""
    return np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, 2, 2, 1)).copy()


def test_class_rows_keep_the_first_samples_of_each_class():
    pixels = _numbered(10 * 40)  # 10 classes in blocks of 40
    tiles, ncol = grid_tiles(pixels, 10)
    assert ncol == GRID_COLUMNS and len(tiles) == 10 * GRID_COLUMNS
    first_of_each_row = tiles[::GRID_COLUMNS, 0, 0, 0]
    assert first_of_each_row.tolist() == [40 * k % 256 for k in range(10)]  # row k starts at class k's first sample


def test_small_class_blocks_and_unconditional_samples():
    tiles, ncol = grid_tiles(_numbered(30), 10)  # 3 per class: all shown, 3 per row
    assert ncol == 3 and len(tiles) == 30
    tiles, ncol = grid_tiles(_numbered(1000), None)
    assert ncol is None and tiles[:, 0, 0, 0].tolist() == list(range(256))
    tiles, ncol = grid_tiles(_numbered(25), 10)  # not equal class blocks: square grid of everything
    assert ncol is None and len(tiles) == 25


def test_saved_grid_of_a_large_run_has_one_row_per_class(tmp_path):
    images = _numbered(10 * 100).astype(np.uint8)
    save_samples(tmp_path, images, np.repeat(np.arange(10), 100), {}, num_classes=10)
    scale = 256 // 2 // 2  # save_samples enlarges 2x2 images to fill ~128 px
    width, height = Image.open(tmp_path / "grid.png").size
    assert (width, height) == ((GRID_COLUMNS * 3 - 1) * scale, (10 * 3 - 1) * scale)  # 1-px padding between tiles
    assert np.load(tmp_path / "samples_1000x2x2x1.npz")["arr_0"].shape == (1000, 2, 2, 1)  # the npz keeps them all


def test_save_samples_refuses_float_images(tmp_path):
    with pytest.raises(TypeError, match="takes uint8 images, got float32"):
        save_samples(tmp_path, np.zeros((2, 2, 2, 1), np.float32), None, {}, num_classes=None)
