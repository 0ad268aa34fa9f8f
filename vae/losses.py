"""VAE losses: per-image reconstruction (L1 or L2, optionally with an SSIM term) and the KL divergence of a
diagonal Gaussian to N(0, I).

Both are summed over an image's elements and averaged over the batch, as in the latent-diffusion autoencoder,
so the KL weight means the same thing as there (around 1e-6 .. 1e-4) whatever the image size.
"""

from __future__ import annotations

import numpy as np
from keras import ops


def reconstruction_loss(images, recon, kind: str = "l1", ssim_weight: float = 0.0):
    """images, recon (N, H, W, C) -> (N,) sum over pixels of |x - x_hat| (l1) or (x - x_hat)^2 (l2), plus
    ssim_weight * pixels * (1 - SSIM) when ssim_weight > 0 (the SSIM term then has the L1 term's per-pixel scale)."""
    diff = ops.cast(images, "float32") - ops.cast(recon, "float32")
    per_pixel = ops.abs(diff) if kind == "l1" else ops.square(diff)
    loss = ops.sum(per_pixel, axis=(1, 2, 3))
    if ssim_weight:
        pixels = float(images.shape[1] * images.shape[2] * images.shape[3])
        loss = loss + ssim_weight * pixels * ssim_loss(images, recon)
    return loss


def gaussian_window_matrix(size: int, window: int = 11, sigma: float = 1.5) -> np.ndarray:
    """(size - window + 1, size) matrix whose rows are the normalised 1-D Gaussian window at each 'valid' offset:
    M @ X @ M.T is X filtered by tf.image.ssim's separable window (the 'valid' part), as two small matmuls."""
    taps = np.exp(-0.5 * ((np.arange(window) - (window - 1) / 2) / sigma) ** 2)
    taps /= taps.sum()
    m = np.zeros((size - window + 1, size), np.float32)
    for i in range(size - window + 1):
        m[i, i:i + window] = taps
    return m


def ssim_loss(images, recon, k1: float = 0.01, k2: float = 0.03):
    """images, recon (N, H, W, C) in [-1, 1] -> (N,) 1 - SSIM on the [0, 1] scale, unclipped so the gradient reaches
    overshooting pixels. The same SSIM as tf.image.ssim (11-wide Gaussian window, sigma 1.5, shrunk to the image
    size for small images, as vae.metrics.psnr_ssim), computed with the separable window as matrix products: on a
    2-core CPU, tf.image.ssim's depthwise convolutions made the Fashion-MNIST VAE's training step 1.5x slower."""
    h, w = int(images.shape[1]), int(images.shape[2])
    window = min(11, h, w)
    mh = ops.convert_to_tensor(gaussian_window_matrix(h, window))
    mw = ops.convert_to_tensor(gaussian_window_matrix(w, window))

    def blur(x):  # (N, C, H, W) -> (N, C, H - window + 1, W - window + 1)
        return ops.matmul(ops.matmul(mh, x), ops.transpose(mw))

    a = ops.transpose((ops.cast(images, "float32") + 1.0) * 0.5, (0, 3, 1, 2))
    b = ops.transpose((ops.cast(recon, "float32") + 1.0) * 0.5, (0, 3, 1, 2))
    c1, c2 = k1**2, k2**2
    mu_a, mu_b = blur(a), blur(b)
    mu_ab = mu_a * mu_b
    mu_sq = ops.square(mu_a) + ops.square(mu_b)
    luminance = (2.0 * mu_ab + c1) / (mu_sq + c1)
    contrast_structure = (2.0 * (blur(a * b) - mu_ab) + c2) / (blur(ops.square(a) + ops.square(b)) - mu_sq + c2)
    return 1.0 - ops.mean(luminance * contrast_structure, axis=(1, 2, 3))


def gaussian_kl(mean, logvar):
    """(N, h, w, z) moments -> (N,) KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 sum(mean^2 + var - 1 - logvar)."""
    mean = ops.cast(mean, "float32")
    logvar = ops.cast(logvar, "float32")
    return 0.5 * ops.sum(ops.square(mean) + ops.exp(logvar) - 1.0 - logvar, axis=(1, 2, 3))
