"""Stage-2 training data: stage 1's latents, or (--pixels) images read without TensorFlow."""

from __future__ import annotations

from diffusion.training import LatentData, PixelData, TrainData
from runfs import RunPaths


def load_train_data(run: RunPaths, pixels: bool = False, source: str = "fashion_mnist",
                    limit: int | None = None) -> TrainData:
    """DIR/latents (train split), or the image source's training images as PixelData; the first `limit` only."""
    if pixels:
        from vae.sources import load_train_arrays  # numpy + pillow only: keeps TensorFlow out of this process

        arrays = load_train_arrays(source, limit=limit)
        return PixelData.from_arrays(arrays.images, arrays.labels, arrays.num_classes,
                                     meta={"data": source, "class_names": arrays.class_names})
    data = LatentData.from_run(run.latents)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1 (got {limit})")
        keep = slice(0, limit)
        data.mean, data.std = data.mean[keep], data.std[keep]
        data.labels = None if data.labels is None else data.labels[keep]
    return data



