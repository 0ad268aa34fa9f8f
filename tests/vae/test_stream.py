"""Streaming a folder through its index: parallel decode equals the serial reader, resume, damaged files, cache."""

import numpy as np
import pytest
from PIL import Image

from vae.data import load_dataset, open_dataset
from vae.data.cache import CACHE_BUDGET, cache_decision
from vae.data.dataset import batch_positions
from vae.data.images import read_image

SIZE = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """23 small PNG/JPEG images of varied sizes in two class folders."""
    root = tmp_path_factory.mktemp("stream") / "images"
    rng = np.random.default_rng(0)
    for i in range(23):
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (10 + i % 3, 9 + i % 4, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"class{i % 2}" / f"{i:02d}.{'jpg' if i % 3 == 0 else 'png'}")
    return root


def serial(stream, split, positions):
    """What the serial reader gives for `positions` of `split`: read_image file by file."""
    paths = stream.index.paths(split)
    return np.stack([read_image(stream.index.root / paths[p], SIZE, 3) for p in positions])


def epoch(stream, split="train", **kwargs):
    return [(x.numpy(), y.numpy()) for x, y in stream.batches(split, 4, with_labels=True, **kwargs)]


def test_parallel_decode_gives_the_serial_readers_images_in_order(folder):
    stream = open_dataset(str(folder), SIZE, 3, cache="off")
    batches = epoch(stream, shuffle=True, seed=5, epoch=2, drop_remainder=True)
    positions = batch_positions(stream.count("train"), 4, shuffle=True, seed=5, epoch=2, drop_remainder=True)
    assert len(batches) == stream.count("train") // 4 == stream.num_batches("train", 4, drop_remainder=True)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), serial(stream, "train", positions))
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), stream.labels("train")[positions])
    memory = load_dataset(str(folder), SIZE, 3)  # the in-memory arrays: the same split, the same images
    np.testing.assert_array_equal(memory.train_images, serial(stream, "train", range(stream.count("train"))))
    np.testing.assert_array_equal(memory.val_labels, stream.labels("val"))


def test_mid_epoch_resume_gives_the_rest_of_the_epoch(folder):
    stream = open_dataset(str(folder), SIZE, 3, cache="off")
    whole = epoch(stream, shuffle=True, seed=1, epoch=0, drop_remainder=True)
    rest = epoch(stream, shuffle=True, seed=1, epoch=0, drop_remainder=True, start_batch=2)
    assert len(rest) == len(whole) - 2
    for (a, la), (b, lb) in zip(rest, whole[2:], strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_damaged_files_mid_stream_are_skipped_and_named(folder, tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    pngs = sorted(folder.rglob("*.png"))[:10]
    for path in pngs:
        (root / path.name).write_bytes(path.read_bytes())
    (root / "03b_broken.png").write_bytes(b"not an image")
    (root / "05b_truncated.png").write_bytes(pngs[0].read_bytes()[:60])
    stream = open_dataset(str(root), SIZE, 3, val_fraction=0.25, cache="off")
    for split in ("train", "val"):
        paths = stream.index.paths(split)
        batches = [x.numpy() for x in stream.batches(split, 4)]
        bad = ["b_" in p for p in paths]
        assert [len(b) for b in batches] == [len(bad[i:i + 4]) - sum(bad[i:i + 4]) for i in range(0, len(paths), 4)]
        readable = [p for p in range(len(paths)) if not bad[p]]
        np.testing.assert_array_equal(np.concatenate(batches), serial(stream, split, readable))
    assert stream.skipped == {"03b_broken.png": "UnidentifiedImageError", "05b_truncated.png": "OSError"}


def test_files_over_the_pixel_limit_are_skipped_before_decoding_and_named(tmp_path, monkeypatch):
    from vae.data import images

    root = tmp_path / "images"
    root.mkdir()
    for name, side in (("a.png", 10), ("b.png", 12), ("c.png", 10), ("huge.png", 40), ("d.png", 11)):
        Image.fromarray(np.full((side, side, 3), side, np.uint8)).save(root / name)
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 39 * 39)  # 40 x 40 is one pixel row and column over
    with pytest.raises(images.ImageTooLarge, match=r"huge.png: 40x40 is 0 megapixels"):
        read_image(root / "huge.png", SIZE, 3)
    assert read_image(root / "b.png", SIZE, 3).shape == (SIZE, SIZE, 3)  # under the limit: decoded
    stream = open_dataset(str(root), SIZE, 3, val_fraction=0.2, cache="off")
    got = np.concatenate([np.concatenate([x.numpy() for x in stream.batches(split, 2)]) for split in ("train", "val")])
    assert len(got) == 4 and sorted(np.unique(got).tolist()) == [10, 11, 12]  # every file but the huge one
    assert stream.skipped == {"huge.png": "ImageTooLarge"}


def test_rgba_and_palette_files_are_composited_in_the_stream(tmp_path):
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    palette = Image.fromarray(np.ones((SIZE, SIZE), np.uint8), "P")
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.save(tmp_path / "b.png", transparency=1)
    stream = open_dataset(str(tmp_path), SIZE, 3, background="#000080", cache="off")
    images = {stream.index.paths(s)[0]: stream.head(s, 1)[0] for s in ("train", "val")}
    # (200 * 128 + 0 * 127) / 255 = 100.4; blue: 128 * 127 / 255 = 63.7; the transparent palette index: background
    assert images["a.png"][0, 0].tolist() == [100, 0, 64]
    assert images["b.png"][0, 0].tolist() == [0, 0, 128]


def test_the_cache_is_a_memory_map_with_the_streams_images(folder, tmp_path):
    run = tmp_path / "run"
    stream = open_dataset(str(folder), SIZE, 3, run_dir=run, cache="off")
    cached = open_dataset(str(folder), SIZE, 3, run_dir=run, cache="on")
    assert isinstance(cached.train_images, np.memmap) and "memory-mapped from the cache" in cached.describe()
    for split in ("train", "val"):
        np.testing.assert_array_equal(cached.images(split), serial(stream, split, range(stream.count(split))))
        np.testing.assert_array_equal(cached.labels(split), stream.labels(split))
    kwargs = {"shuffle": True, "seed": 5, "epoch": 1, "drop_remainder": True}
    for (a, la), (b, lb) in zip(epoch(cached, **kwargs), epoch(stream, **kwargs), strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    (cache_dir,) = (run / "data").glob("*.cache")
    stamp = (cache_dir / "train_images.npy").stat().st_mtime_ns
    open_dataset(str(folder), SIZE, 3, run_dir=run, cache="auto")  # small: auto reuses the same cache
    assert (cache_dir / "train_images.npy").stat().st_mtime_ns == stamp
    open_dataset(str(folder), SIZE, 3, run_dir=run, cache="on", background="black")
    assert len(list((run / "data").glob("*.cache"))) == 2  # another background: another cache


def test_load_dataset_opens_a_runs_matching_cache_instead_of_decoding_again(folder, tmp_path):
    run = tmp_path / "run"
    decoded = load_dataset(str(folder), SIZE, 3)  # no run: decoded into memory
    assert not isinstance(decoded.train_images, np.memmap)
    open_dataset(str(folder), SIZE, 3, run_dir=run, cache="on")  # what stage 1 leaves in RUN/data
    reused = load_dataset(str(folder), SIZE, 3, run_dir=run)
    assert isinstance(reused.train_images, np.memmap) and "memory-mapped from the cache" in reused.describe()
    for split in ("train", "val"):
        np.testing.assert_array_equal(reused.images(split), decoded.images(split))
        np.testing.assert_array_equal(reused.labels(split), decoded.labels(split))
    # other settings than the cache was made with: decoded as before, the cache left as it is
    other = load_dataset(str(folder), SIZE, 3, run_dir=run, background="black")
    assert not isinstance(other.train_images, np.memmap)
    assert len(list((run / "data").glob("*.cache"))) == 1


def test_unreadable_files_are_left_out_of_the_cache_and_listed(tmp_path, folder):
    for path in sorted(folder.rglob("*.png"))[:6]:
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "images" / path.name).write_bytes(path.read_bytes())
    (tmp_path / "images" / "zz_broken.png").write_bytes(b"junk")
    cached = open_dataset(str(tmp_path / "images"), SIZE, 3, run_dir=tmp_path / "run", cache="on")
    assert cached.count("train") + cached.count("val") == 6 and cached.skipped == {"zz_broken.png":
                                                                                   "UnidentifiedImageError"}
    again = open_dataset(str(tmp_path / "images"), SIZE, 3, run_dir=tmp_path / "run", cache="on")
    assert again.skipped == cached.skipped  # read back from the cache's meta.json


def test_cache_decision_and_its_errors(folder):
    assert cache_decision("auto", CACHE_BUDGET)[0] and not cache_decision("auto", CACHE_BUDGET + 1)[0]
    assert "over the 512 MiB budget" in cache_decision("auto", CACHE_BUDGET + 1)[1]
    assert cache_decision("on", 10**12)[0] and not cache_decision("off", 1)[0]
    with pytest.raises(ValueError, match="--cache must be one of"):
        cache_decision("sometimes", 1)
    with pytest.raises(ValueError, match="--cache on needs a run folder"):
        open_dataset(str(folder), SIZE, 3, cache="on")
    assert "no cache: no run folder" in open_dataset(str(folder), SIZE, 3).describe()
