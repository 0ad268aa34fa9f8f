"""Image-quality metrics on [-1, 1] images, computed on the [0, 1] scale (PSNR's peak value is 1)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def to_unit(images):
    """[-1, 1] -> [0, 1], clipped (a decoder's output can overshoot a little)."""
    return tf.clip_by_value((tf.cast(images, tf.float32) + 1.0) * 0.5, 0.0, 1.0)


def psnr_ssim(images, recon) -> tuple[tf.Tensor, tf.Tensor]:
    """(N, H, W, C) pairs in [-1, 1] -> per-image PSNR (dB) and SSIM, each (N,).

    SSIM's Gaussian window (11 wide by default) shrinks to the image size for small test images.
    """
    a, b = to_unit(images), to_unit(recon)
    filter_size = min(11, int(images.shape[1]))
    return tf.image.psnr(a, b, max_val=1.0), tf.image.ssim(a, b, max_val=1.0, filter_size=filter_size)


def mean_finite(values: list[np.ndarray]) -> float:
    """Mean over batches of per-image values; identical images give PSNR=inf, which we cap at 100 dB."""
    v = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in values])
    return float(np.mean(np.minimum(v, 100.0)))
