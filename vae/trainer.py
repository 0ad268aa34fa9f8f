"""VAETrainer: a Keras Model that owns the encoder and decoder and knows one training step (loss, AdamW, trackers)."""

from __future__ import annotations

import keras
import tensorflow as tf

from vae.config import VAEConfig
from vae.losses import gaussian_kl, reconstruction_loss
from vae.metrics import psnr_ssim
from vae.model import build_decoder, build_encoder


def images_to_float(batch):
    """uint8 (N, H, W, C) in [0, 255] -> float32 in [-1, 1]; float input is taken as already scaled."""
    if batch.dtype == tf.uint8:
        return tf.cast(batch, tf.float32) / 127.5 - 1.0
    return tf.cast(batch, tf.float32)


class VAETrainer(keras.Model):
    """Trains `encoder` and `decoder` together: loss = reconstruction + kl_weight * KL (per image, batch mean).

    `train_step(images)` takes uint8 or [-1, 1] float images (N, H, W, C) and returns the running means of
    loss, recon (per pixel) and kl (per image). `eval_step(images)` returns per-image PSNR and SSIM of the
    reconstruction of the posterior mean.
    """

    def __init__(self, cfg: VAEConfig, encoder: keras.Model | None = None, decoder: keras.Model | None = None,
                 **kwargs) -> None:
        super().__init__(name="vae_trainer", **kwargs)
        self.cfg = cfg
        self.encoder = encoder if encoder is not None else build_encoder(cfg)
        self.decoder = decoder if decoder is not None else build_decoder(cfg)
        self.noise_seed = keras.random.SeedGenerator(cfg.seed, name="posterior_noise")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.recon_tracker = keras.metrics.Mean(name="recon")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.num_pixels = float(cfg.image_size * cfg.image_size * cfg.channels)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.recon_tracker, self.kl_tracker]

    def call(self, images, training: bool = False):
        """Reconstruct from the posterior mean: images (N, H, W, C) in [-1, 1] -> same shape."""
        mean, _ = self.encoder(images, training=training)
        return self.decoder(mean, training=training)

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        cfg = self.cfg
        return keras.optimizers.AdamW(
            learning_rate=cfg.lr, weight_decay=cfg.weight_decay, use_ema=cfg.ema, ema_momentum=cfg.ema_momentum
        )

    def losses_of(self, images, training: bool):
        """images (N, H, W, C) in [-1, 1] -> (loss, recon per image, kl per image)."""
        mean, logvar = self.encoder(images, training=training)
        # Reparameterisation: z = mean + std * eps keeps the sample differentiable in mean and logvar.
        noise = keras.random.normal(tf.shape(mean), seed=self.noise_seed)
        latents = mean + tf.exp(0.5 * logvar) * noise
        recon = self.decoder(latents, training=training)
        rec = reconstruction_loss(images, recon, self.cfg.recon_loss, self.cfg.ssim_weight)
        kl = gaussian_kl(mean, logvar)
        loss = tf.reduce_mean(rec) + self.cfg.kl_weight * tf.reduce_mean(kl)
        return loss, rec, kl

    def train_step(self, data):
        images = images_to_float(data)
        with tf.GradientTape() as tape:
            loss, rec, kl = self.losses_of(images, training=True)
        variables = self.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply(grads, variables)
        self.loss_tracker.update_state(loss)
        self.recon_tracker.update_state(tf.reduce_mean(rec) / self.num_pixels)
        self.kl_tracker.update_state(tf.reduce_mean(kl))
        return {m.name: m.result() for m in self.metrics}

    def eval_step(self, data):
        """data (N, H, W, C) -> (psnr (N,), ssim (N,)) of decoder(encoder mean)."""
        images = images_to_float(data)
        return psnr_ssim(images, self(images, training=False))
