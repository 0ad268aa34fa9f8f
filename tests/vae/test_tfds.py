"""tfds sources stream from tfds itself: a tiny dataset built offline in a temporary data dir, re-split by slicing."""

import numpy as np
import pytest

from vae.data import load_dataset, open_dataset
from vae.data.tfds_source import slice_count, split_specs

tfds = pytest.importorskip("tensorflow_datasets")

SIZES = {"train": 10, "test": 5}


def rgba_pixels(split: str, i: int) -> np.ndarray:
    """Example i of `split`: red = i, green = 100 (train) or 200 (test), half transparent."""
    pixels = np.zeros((6, 6, 4), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 3] = i, 100 if split == "train" else 200, 255
    pixels[0, 0, 3] = 0  # one transparent pixel: composited onto the background
    return pixels


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """Registers and prepares `tiny_rgba_shapes` (train 10, test 5 RGBA PNG examples, 2 classes) offline."""

    class TinyRgbaShapes(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        @tfds.core.utils.classproperty
        @classmethod
        def code_path(cls):  # no source folder (checksums, metadata) for a builder defined in a test
            return None

        def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(6, 6, 4)),
                "label": tfds.features.ClassLabel(names=["even", "odd"])}))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in SIZES}

        def _generate_examples(self, split):
            for i in range(SIZES[split]):
                yield f"{split}{i}", {"image": rgba_pixels(split, i), "label": i % 2}

    data_dir = tmp_path_factory.mktemp("tfds")
    TinyRgbaShapes(data_dir=str(data_dir)).download_and_prepare()
    return data_dir


@pytest.fixture
def tfds_dir(tiny_tfds, monkeypatch):
    monkeypatch.setattr(tfds.core.constants, "DATA_DIR", str(tiny_tfds))
    return tiny_tfds


def test_split_specs_re_split_every_official_split():
    specs = split_specs({"train": 10, "test": 5}, 0.2, None)
    assert specs == {"train": "test[:4]+train[:8]", "val": "test[4:5]+train[8:10]"}
    assert slice_count(specs["train"]) == 12 and slice_count(specs["val"]) == 3
    assert split_specs({"train": 10, "test": 5}, 0.2, 7) == {"train": "test[:4]+train[:2]", "val": "test[4:5]"}
    with pytest.raises(ValueError, match="give no validation images"):
        split_specs({"train": 2}, 0.1, None)


def tfds_read(spec: str) -> list[tuple[int, int, int]]:
    """(red, green, label) of each example of a slicing string, in tfds's order, read by tfds itself."""
    examples = tfds.as_numpy(tfds.builder("tiny_rgba_shapes").as_dataset(split=spec))
    return [(int(ex["image"][1, 1, 0]), int(ex["image"][1, 1, 1]), int(ex["label"])) for ex in examples]


def test_streamed_examples_are_the_sliced_ones_composited(tfds_dir):
    stream = open_dataset("tfds:tiny_rgba_shapes", 6, 3, cache="off")
    assert stream.specs == {"train": "test[:4]+train[:8]", "val": "test[4:5]+train[8:10]"}
    assert (stream.count("train"), stream.count("val")) == (12, 3) and stream.class_names == ["even", "odd"]
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in stream.batches("val", 2, with_labels=True)],
                         strict=True)
    images, labels = np.concatenate(images), np.concatenate(labels)
    got = [(int(x[1, 1, 0]), int(x[1, 1, 1]), int(y)) for x, y in zip(images, labels, strict=True)]
    assert got == tfds_read(stream.specs["val"])
    assert [g for _, g, _ in got] == [200, 100, 100]  # one test example, then two train examples
    assert images[:, 0, 0].tolist() == [[255, 255, 255]] * 3  # the transparent pixel: white


def test_shuffled_epochs_cover_the_split_and_repeat_with_the_seed(tfds_dir):
    stream = open_dataset("tfds:tiny_rgba_shapes", 6, 3, cache="off")

    def reds(**kwargs):
        return [(int(v), int(g)) for x in stream.batches("train", 4, shuffle=True, seed=3, **kwargs)
                for v, g in x[:, 1, 1, :2].numpy()]

    first = reds(epoch=0)
    assert sorted(first) == sorted((r, g) for r, g, _ in tfds_read(stream.specs["train"]))
    assert first == reds(epoch=0)
    assert reds(epoch=0, start_batch=1) == first[4:]  # resume: the rest of the same epoch
    assert reds(epoch=1) != first


def test_in_memory_and_cached_tfds_agree(tfds_dir, tmp_path):
    memory = load_dataset("tfds:tiny_rgba_shapes", 6, 1)
    assert memory.train_images.shape == (12, 6, 6, 1) and memory.train_labels.dtype == np.int64
    cached = open_dataset("tfds:tiny_rgba_shapes", 6, 1, run_dir=tmp_path, cache="on")
    np.testing.assert_array_equal(np.asarray(cached.train_images), memory.train_images)
    np.testing.assert_array_equal(cached.val_labels, memory.val_labels)
    assert len(list((tmp_path / "data").glob("tfds-tiny_rgba_shapes-*.index.json"))) == 1


def test_unknown_and_unreachable_datasets_explain(monkeypatch):
    with pytest.raises(ValueError, match="no dataset named 'no_such_dataset_xyz'"):
        load_dataset("tfds:no_such_dataset_xyz")
    with pytest.raises(ValueError, match="needs a dataset name"):
        load_dataset("tfds:")

    class Offline:
        def download_and_prepare(self):
            raise ConnectionError("Failed to resolve 'storage.googleapis.com'")

    monkeypatch.setattr(tfds, "builder", lambda name: Offline())
    with pytest.raises(RuntimeError, match=r"could not get TFDS dataset 'oxford_flowers102'.*run once with network"):
        load_dataset("tfds:oxford_flowers102")
