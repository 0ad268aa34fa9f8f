"""Tiny functional Keras VAE halves with the stage-1 signatures, and one export shared by the bridge tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

IMAGE_SIZE, CHANNELS, Z = 16, 1, 2
LATENT_SHAPE = (Z, 4, 4)  # (z, h, w): f = 4
SCALE = 0.5


def build_tiny_vae(seed: int = 0):
    """encoder: (N,16,16,1) -> (mean, logvar) each (N,4,4,2); decoder: (N,4,4,2) unscaled -> (N,16,16,1)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, CHANNELS))
    x = layers.Conv2D(8, 3, strides=2, padding="same")(images)
    x = layers.Activation("swish")(layers.GroupNormalization(4)(x))
    x = layers.Conv2D(8, 3, strides=2, padding="same")(x)
    moments = layers.Conv2D(2 * Z, 1)(layers.Activation("swish")(layers.GroupNormalization(4)(x)))
    encoder = keras.Model(images, [moments[..., :Z], moments[..., Z:]], name="tiny_encoder")

    latents = keras.Input((LATENT_SHAPE[1], LATENT_SHAPE[2], Z))
    # swish before the first GroupNorm: GroupNorm(conv(a * z)) would be almost blind to the latent scale.
    y = layers.Activation("swish")(layers.Conv2D(8, 3, padding="same")(latents))
    for _ in range(2):
        y = layers.Activation("swish")(layers.GroupNormalization(4)(y))
        y = layers.Conv2D(8, 3, padding="same")(layers.UpSampling2D(2)(y))
    decoder = keras.Model(latents, layers.Conv2D(CHANNELS, 3, padding="same")(y), name="tiny_decoder")
    # Trained-looking GroupNorm affine weights (not 1/0), so the fused ONNX normalisation is checked with them.
    rng = np.random.default_rng(seed)
    for layer in encoder.layers + decoder.layers:
        if isinstance(layer, layers.GroupNormalization):
            layer.gamma.assign(rng.normal(1.0, 0.3, layer.gamma.shape).astype(np.float32))
            layer.beta.assign(rng.normal(0.0, 0.3, layer.beta.shape).astype(np.float32))
    return encoder, decoder


@dataclass
class Exported:
    folder: Path
    encoder: object
    decoder: object
    real_latents: np.ndarray  # (N, z, h, w) unscaled
    info: dict


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Exported:
    from bridge.export import export_bridge
    from runfs.latent_norm import LatentNorm

    encoder, decoder = build_tiny_vae()
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, (24, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)).astype(np.float32)
    real = np.ascontiguousarray(encoder.predict(images, verbose=0)[0].transpose(0, 3, 1, 2))
    folder = tmp_path_factory.mktemp("run") / "bridge"
    info = export_bridge(
        encoder, decoder, folder, latent_norm=LatentNorm.uniform(SCALE, Z), real_latents=real, image_size=IMAGE_SIZE,
        channels=CHANNELS, vae_checkpoint="tiny-test", num_random=16, batch=8,
    )
    return Exported(folder, encoder, decoder, real, info)
