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


def make_trainer(cfg, precision=None):
    """A compiled VAETrainer of `cfg` (precision: as the config resolves it unless given), optimizer built."""
    import keras

    from vae.trainer import VAETrainer

    keras.utils.set_random_seed(cfg.seed)
    trainer = VAETrainer(cfg, precision=precision)
    trainer.compile(optimizer=trainer.make_optimizer())
    trainer.optimizer.build(trainer.trainable_variables)
    return trainer


def trained_on_one_batch(cfg, batch, precision=None, steps=30):
    """(trainer, loss before, loss after) for `steps` compiled training steps on one uint8 batch."""
    import tensorflow as tf

    from vae.trainer import images_to_float

    trainer = make_trainer(cfg, precision)

    def loss_now():
        return float(trainer.losses_of(images_to_float(batch), training=False)[0])

    before = loss_now()
    step = tf.function(trainer.train_step)
    for _ in range(steps):
        step(batch)
    return trainer, before, loss_now()
