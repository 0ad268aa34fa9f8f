"""VAE losses: per-image reconstruction (L1 or L2) and the KL divergence of a diagonal Gaussian to N(0, I).

Both are summed over an image's elements and averaged over the batch, as in the latent-diffusion autoencoder,
so the KL weight means the same thing as there (around 1e-6 .. 1e-4) whatever the image size.
"""

from __future__ import annotations

from keras import ops


def reconstruction_loss(images, recon, kind: str = "l1"):
    """images, recon (N, H, W, C) -> (N,) sum over pixels of |x - x_hat| (l1) or (x - x_hat)^2 (l2)."""
    diff = ops.cast(images, "float32") - ops.cast(recon, "float32")
    per_pixel = ops.abs(diff) if kind == "l1" else ops.square(diff)
    return ops.sum(per_pixel, axis=(1, 2, 3))


def gaussian_kl(mean, logvar):
    """(N, h, w, z) moments -> (N,) KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 sum(mean^2 + var - 1 - logvar)."""
    mean = ops.cast(mean, "float32")
    logvar = ops.cast(logvar, "float32")
    return 0.5 * ops.sum(ops.square(mean) + ops.exp(logvar) - 1.0 - logvar, axis=(1, 2, 3))
