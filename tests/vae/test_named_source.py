"""`--data openclipart`: Debian's clip-art folder by name, labels from its category folders, alpha on white."""

import numpy as np
import pytest
from PIL import Image

from vae.data import load_dataset


def _fake_openclipart(root):
    """Two categories of RGBA clip-art: an opaque red square on a transparent field."""
    for category in ("animals", "food"):
        (root / category / "sub").mkdir(parents=True)
        for i in range(4):
            rgba = np.zeros((20, 20, 4), np.uint8)  # transparent black
            rgba[5:15, 5:15] = (255, 0, 0, 255)
            Image.fromarray(rgba, "RGBA").save(root / category / "sub" / f"art_{i}.png")
    return root


def test_openclipart_is_a_folder_source_with_category_labels_and_alpha_on_white(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCLIPART_DIR", str(_fake_openclipart(tmp_path / "png")))
    ds = load_dataset("openclipart", image_size=20, channels=3, val_fraction=0.25)
    images = np.concatenate([ds.train_images, ds.val_images])
    labels = np.concatenate([ds.train_labels, ds.val_labels])
    assert images.shape == (8, 20, 20, 3) and sorted(set(labels.tolist())) == [0, 1]
    assert (images[:, 0, 0] == 255).all()  # transparent corners composited onto white, not black
    assert (images[:, 10, 10] == (255, 0, 0)).all()


def test_a_missing_openclipart_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENCLIPART_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"apt-get install openclipart-png"):
        load_dataset("openclipart", image_size=16, channels=3)
