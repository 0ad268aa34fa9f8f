"""Stage-2 training data: stage 1's latents, or (--pixels) images read without TensorFlow."""

from __future__ import annotations

import os

from diffusion.training import LatentData, PixelData, TrainData
from runfs import RunPaths


def load_train_data(run: RunPaths, pixels: bool = False, source: str | None = None, limit: int | None = None,
                    image_size: int = 32, channels: int = 1) -> TrainData:
    """DIR/latents (train split), or the image source's training images as PixelData (source None: the run's own,
    RunPaths.data_source); the first `limit` only."""
    if limit is not None and limit < 2:
        raise ValueError(f"--limit must be at least 2, got {limit}")
    if pixels:
        # vae.data reads IDX files and folders with numpy + pillow: no TensorFlow enters this process.
        from vae.data import load_dataset, to_float

        source = run.data_source(source)
        ds = load_dataset(source, image_size=image_size, channels=channels, limit=limit, run_dir=run.root)
        return PixelData.from_arrays(to_float(ds.train_images), ds.train_labels, ds.num_classes,
                                     meta={"data": source, "class_names": ds.class_names})
    data = LatentData.from_run(run.latents)
    if limit is not None:
        data = data.head(limit)
    if int(os.environ.get("RANK", "0")) == 0:
        c, h, w = data.shape
        print(f"latents {run.latents}: {len(data)} x {c}x{h}x{w}, {data.access}")
    return data
