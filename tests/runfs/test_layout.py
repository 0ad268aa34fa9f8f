"""RunPaths.data_source: what a run's pixel baseline, evaluation and guidance tuning compare with."""

import numpy as np
from PIL import Image

from runfs import RunPaths, write_json


def test_the_flag_wins_then_the_vaes_data_then_the_embedded_default(tmp_path):
    run = RunPaths(tmp_path / "run")
    assert run.data_source() == "fashion_mnist"  # nothing trained yet
    write_json(run.latents / "meta.json", {"data": "/some/folder", "channels": 3})
    assert run.data_source() == "/some/folder"
    assert run.data_source("tfds:oxford_flowers102") == "tfds:oxford_flowers102"
    write_json(run.latents / "meta.json", {"channels": 1})  # written before the source was recorded
    assert run.data_source() == "fashion_mnist"
    packed = RunPaths(tmp_path / "packed")  # pipelines/package_run.py keeps the latents' meta as latents_meta.json
    write_json(packed.root / "latents_meta.json", {"data": "openclipart"})
    assert packed.data_source() == "openclipart"


def test_a_pixel_baseline_trains_on_the_runs_own_images(tmp_path):
    from pipelines.train_data import load_train_data

    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), 40 * i + (100 if label == "b" else 0), np.uint8)).save(
                folder / label / f"{i}.png")
    run = RunPaths(tmp_path / "run")
    write_json(run.latents / "meta.json", {"data": str(folder), "channels": 3, "image_size": 8})
    data = load_train_data(run, pixels=True, image_size=8, channels=3)
    assert data.num_classes == 2 and data.shape == (3, 8, 8)  # the folder's two labels, not Fashion-MNIST's ten
