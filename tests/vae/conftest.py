"""Shared tiny VAE pieces for the vae tests: building Keras models is slow on 2 cores, so build them once."""

import numpy as np
import pytest

from vae.config import preset


@pytest.fixture(scope="session")
def tiny_cfg():
    """8-wide, 16x16 grayscale, f=4, z=4: small enough that a training step takes milliseconds."""
    return preset("tiny")


@pytest.fixture(scope="session")
def blob_images():
    """uint8 (48, 16, 16, 1): soft random blobs, smooth enough to be learnable in a few steps."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16]
    centres = rng.uniform(3, 13, size=(48, 2))
    radius = rng.uniform(2, 5, size=(48, 1, 1))
    d2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    return (255 * np.exp(-d2 / (2 * radius**2)))[..., None].astype(np.uint8)
