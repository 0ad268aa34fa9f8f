"""Test-wide settings (quiet TensorFlow, Keras on the TensorFlow backend) and small shared fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion.config import DiffusionConfig, UNetConfig  # noqa: E402
from runfs import write_json  # noqa: E402

TINY_UNET = UNetConfig(image_size=8, in_channels=4, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                       attention_resolutions="4", class_cond=True, num_classes=3, null_class=True,
                       num_head_channels=16)
TINY_DIFFUSION = DiffusionConfig(diffusion_steps=50)


def write_latents(run_dir, n=24, shape=(4, 8, 8), num_classes=3, seed=0, labels=True):
    """A stage-1 style DIR/latents/ folder with random posteriors."""
    rng = np.random.default_rng(seed)
    d = run_dir / "latents"
    d.mkdir(parents=True)
    for split, count in (("train", n), ("val", n // 4)):
        np.save(d / f"{split}_mean.npy", rng.normal(size=(count, *shape)).astype(np.float32))
        np.save(d / f"{split}_logvar.npy", np.full((count, *shape), -4.0, np.float32))
        if labels:
            np.save(d / f"{split}_labels.npy", rng.integers(0, num_classes, count).astype(np.int64))
    write_json(d / "meta.json", {"layout": "NCHW", "latent_shape": list(shape), "scale_factor": 0.5,
                                 "num_classes": num_classes if labels else None, "class_names": None,
                                 "image_size": 32, "channels": 1, "counts": {"train": n, "val": n // 4},
                                 "vae_checkpoint": "test", "data": "synthetic"})
    return d


@pytest.fixture
def tiny():
    """(UNetConfig, DiffusionConfig, write_latents) for small, fast training runs."""
    return TINY_UNET, TINY_DIFFUSION, write_latents


@pytest.fixture
def latents_run(tmp_path):
    write_latents(tmp_path)
    return tmp_path
