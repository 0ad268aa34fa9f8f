import gzip

import numpy as np
import pytest
from PIL import Image

from vae.data import epoch_order, load_dataset, to_float
from vae.data.fashion_mnist import ENV_VAR, FILES


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fmnist_dir(tmp_path, monkeypatch):
    """A fake Fashion-MNIST install (IDX .gz files) of 30 train and 10 test images."""
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (30, 28, 28)), "train_labels": np.arange(30) % 10,
              "test_images": rng.integers(0, 256, (10, 28, 28)), "test_labels": np.arange(10)}
    for key, stem in FILES.items():
        write_idx(tmp_path / f"{stem}.gz", arrays[key])
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    return arrays


def test_fashion_mnist_from_idx_files_is_padded_to_32(fmnist_dir):
    data = load_dataset("fashion_mnist", image_size=32, channels=1)
    assert data.train_images.shape == (30, 32, 32, 1) and data.val_images.shape == (10, 32, 32, 1)
    np.testing.assert_array_equal(data.train_images[:, 2:30, 2:30, 0], fmnist_dir["train_images"])
    assert data.train_images[:, :2].max() == 0  # padding is background (-1 after scaling)
    assert data.train_labels.dtype == np.int64 and data.num_classes == 10
    assert data.class_names[0] == "T-shirt/top"
    rgb = load_dataset("fashion_mnist", image_size=32, channels=3, limit=14)
    assert rgb.train_images.shape == (12, 32, 32, 3) and rgb.val_images.shape == (2, 32, 32, 3)


def test_fashion_mnist_missing_everywhere_says_how_to_install(tmp_path, monkeypatch):
    import keras

    def offline():
        raise OSError("no network")

    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(RuntimeError, match=r"Fashion-MNIST not found.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist")


def save_image(path, size=(20, 12), value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_folder_with_subfolder_labels_crops_and_splits_by_seed(tmp_path):
    for i in range(6):
        save_image(tmp_path / "cats" / f"c{i}.png", value=10 * i)
        save_image(tmp_path / "dogs" / f"d{i}.jpg", size=(12, 30))
    data = load_dataset(str(tmp_path), image_size=8, channels=3, val_fraction=0.25, seed=1)
    assert data.train_images.shape == (9, 8, 8, 3) and data.val_images.shape == (3, 8, 8, 3)
    assert data.class_names == ["cats", "dogs"]
    again = load_dataset(str(tmp_path), image_size=8, channels=3, val_fraction=0.25, seed=1)
    np.testing.assert_array_equal(data.val_labels, again.val_labels)
    np.testing.assert_array_equal(data.val_images, again.val_images)
    gray = load_dataset(str(tmp_path), image_size=4, channels=1, folder_labels="none", limit=5)
    assert gray.train_images.shape[1:] == (4, 4, 1) and gray.num_classes is None
    assert len(gray.train_images) + len(gray.val_images) == 5


def test_folder_prefix_labels(tmp_path):
    for name in ("cat_1.png", "cat_2.png", "dog_1.png", "dog_2.webp"):
        save_image(tmp_path / name)
    data = load_dataset(str(tmp_path), image_size=4, channels=3, folder_labels="prefix")
    assert data.class_names == ["cat", "dog"]
    with pytest.raises(ValueError, match="has no '_'"):
        save_image(tmp_path / "bird.png")
        load_dataset(str(tmp_path), image_size=4, channels=3, folder_labels="prefix")


def test_corrupt_files_are_skipped_and_named(tmp_path):
    for i in range(4):
        save_image(tmp_path / f"ok{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "ok0.png").read_bytes()[:40])
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file\(s\).*broken\.jpg.*truncated\.png"):
        data = load_dataset(str(tmp_path), image_size=4, channels=1)
    assert len(data.train_images) + len(data.val_images) == 4


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (lambda p: None, FileNotFoundError, "does not exist; pass --data fashion_mnist"),
        (lambda p: p.mkdir(), ValueError, "is empty; put JPEG/PNG/WebP images in it"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), ValueError, r"1 files but no images.*notes"),
        (lambda p: p.write_text("x"), NotADirectoryError, "is a file, not a folder"),
    ],
    ids=["missing", "empty", "no-images", "a-file"],
)
def test_folder_errors_explain(tmp_path, setup, error, message):
    target = tmp_path / "data"
    setup(target)
    with pytest.raises(error, match=message):
        load_dataset(str(target))


def test_folder_of_only_corrupt_images_is_an_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="a.png"), pytest.raises(ValueError, match="none of the 2 image files"):
        load_dataset(str(tmp_path))


def test_limit_must_leave_a_validation_image():
    with pytest.raises(ValueError, match="--limit must be at least 2"):
        load_dataset("fashion_mnist", limit=1)


def test_batches_cover_each_image_once_per_epoch_and_resume_mid_epoch(fmnist_dir):
    data = load_dataset("fashion_mnist", image_size=32, channels=1)
    batches = [b.numpy() for b in data.batches("train", 8, shuffle=True, seed=3, epoch=1, drop_remainder=True)]
    assert len(batches) == 3 and all(b.dtype == np.uint8 and b.shape == (8, 32, 32, 1) for b in batches)
    seen = np.concatenate(batches)
    expected = data.train_images[np.sort(epoch_order(30, 3, 1)[:24])]
    assert sorted(map(bytes, seen)) == sorted(map(bytes, expected))
    later = [b.numpy() for b in data.batches("train", 8, shuffle=True, seed=3, epoch=1, start_batch=1,
                                             drop_remainder=True)]
    np.testing.assert_array_equal(np.concatenate(later), np.concatenate(batches[1:]))
    assert to_float(np.array([0, 255], np.uint8)).tolist() == [-1.0, 1.0]
    # no autotuning thread behind the training batches (its 60-second wake-ups are suspected of stalling epochs)
    assert data.batches("train", 8).options().autotune.enabled is False
