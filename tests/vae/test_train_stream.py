"""train_vae on a streamed folder: a damaged file mid-stream is skipped, named, counted; mid-epoch resume is exact."""

import warnings

import numpy as np
import pytest
from PIL import Image

from runfs import read_json
from vae.data import open_dataset
from vae.data.dataset import batch_positions
from vae.model import load_models
from vae.train import train_vae


@pytest.fixture(scope="module")
def stream_folder(tmp_path_factory, blob_images):
    root = tmp_path_factory.mktemp("blobs")
    for i, image in enumerate(blob_images[:40]):
        Image.fromarray(image[..., 0]).save(root / f"{i:02d}.png")
    (root / "17b_broken.png").write_bytes(b"not a png")
    return root


def test_a_resumed_streamed_run_equals_an_uninterrupted_one_and_counts_the_damaged_file(stream_folder, tmp_path,
                                                                                          tiny_cfg):
    cfg = tiny_cfg.replace(data=str(stream_folder), batch_size=8, epochs=1, eval_images=8)

    def data(run):
        return open_dataset(str(stream_folder), 16, 1, run_dir=run, cache="off")

    train_data = data(tmp_path / "whole")
    order = batch_positions(train_data.count("train"), 8, shuffle=True, seed=cfg.seed, epoch=0, drop_remainder=True)
    broken = train_data.index.paths("train").index("17b_broken.png")
    assert broken in order[:32]  # the damaged file is met within the first 4 steps (in batch 2 or later)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image file\(s\) in .*: 17b_broken.png"):
        whole = train_vae(cfg.replace(max_steps=4), train_data, tmp_path / "whole", progress=False)
    assert whole["skipped_files"] == {"count": 1, "files": {"17b_broken.png": "UnidentifiedImageError"}}
    assert read_json(tmp_path / "whole" / "vae" / "metrics.json")["epochs"][-1]["skipped_files"] == 1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_vae(cfg.replace(max_steps=2), data(tmp_path / "split"), tmp_path / "split", progress=False)
        assert read_json(tmp_path / "split" / "vae" / "checkpoint" / "meta.json")["batch_in_epoch"] == 2
        train_vae(cfg.replace(max_steps=4), data(tmp_path / "split"), tmp_path / "split", resume=True,
                  progress=False)
    for a, b in zip(*(load_models(tmp_path / run / "vae" / "model")[0].get_weights() for run in ("whole", "split")),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
