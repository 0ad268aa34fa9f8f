"""VAETrainer: a Keras Model that owns the encoder and decoder and knows one training step (loss, AdamW, trackers)."""

from __future__ import annotations

import keras
import tensorflow as tf

from runfs.hardware import cpu_native_bf16
from vae.config import VAEConfig
from vae.losses import gaussian_kl, reconstruction_loss
from vae.metrics import psnr_ssim
from vae.model import build_decoder, build_encoder, compute_precision


def resolve_precision(precision: str) -> tuple[str, str]:
    """(`fp32` or `bf16`, why) for a VAEConfig.precision. `auto` is bf16 where it is native: on the first GPU when its
    compute capability is 8 or more (Ampere+), on a CPU with AMX or AVX512-BF16 when there is no GPU (there oneDNN's
    bf16 convolutions made the photos64 step 1.2-1.4x faster, docs/benchmarks.md); fp32 elsewhere."""
    if precision != "auto":
        return precision, "as asked"
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability") or (0, 0)
        native = tuple(capability) >= (8, 0)
        return ("bf16" if native else "fp32"), f"GPU compute capability {capability[0]}.{capability[1]}"
    if cpu_native_bf16():
        return "bf16", "cpu (native bfloat16)"
    return "fp32", "cpu without native bfloat16"


def images_to_float(batch):
    """uint8 (N, H, W, C) in [0, 255] -> float32 in [-1, 1]; float input is taken as already scaled."""
    if batch.dtype == tf.uint8:
        return tf.cast(batch, tf.float32) / 127.5 - 1.0
    return tf.cast(batch, tf.float32)


class VAETrainer(keras.Model):
    """Trains `encoder` and `decoder` together: loss = reconstruction + kl_weight * KL (per image, batch mean).

    `train_step(images)` takes uint8 or [-1, 1] float images (N, H, W, C) and returns the running means of
    loss, recon (per pixel) and kl (per image); `distributed_step` is the same step on one replica's part of a
    global batch (vae.distribute). `eval_step(images)` returns per-image PSNR and SSIM of the
    reconstruction of the posterior mean.

    Under bf16 (`cfg.precision`, resolved by `resolve_precision` unless `precision` is given) the models it builds
    compute in bfloat16 with float32 weights; the loss and its terms are float32, and `float32_models()` gives the
    float32 models that are saved.
    """

    def __init__(self, cfg: VAEConfig, encoder: keras.Model | None = None, decoder: keras.Model | None = None,
                 precision: str | None = None, **kwargs) -> None:
        super().__init__(name="vae_trainer", **kwargs)
        self.cfg = cfg
        self.precision = precision or resolve_precision(cfg.precision)[0]
        with compute_precision(self.precision):
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
        """Reconstruct from the posterior mean: images (N, H, W, C) in [-1, 1] -> same shape, float32."""
        mean, _ = self.encoder(images, training=training)
        return tf.cast(self.decoder(mean, training=training), tf.float32)

    def float32_models(self) -> tuple[keras.Model, keras.Model]:
        """(encoder, decoder) computing in float32 with this trainer's weights: the models themselves under fp32,
        fresh float32 copies under bf16 (what is saved, exported and loaded later is always float32)."""
        if self.precision == "fp32":
            return self.encoder, self.decoder
        with compute_precision("fp32"):
            encoder, decoder = build_encoder(self.cfg), build_decoder(self.cfg)
        encoder.set_weights(self.encoder.get_weights())
        decoder.set_weights(self.decoder.get_weights())
        return encoder, decoder

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        cfg = self.cfg
        return keras.optimizers.AdamW(
            learning_rate=cfg.lr, weight_decay=cfg.weight_decay, use_ema=cfg.ema, ema_momentum=cfg.ema_momentum
        )

    def losses_of(self, images, training: bool, offset=0, global_batch=None):
        """images (N, H, W, C) in [-1, 1] -> (loss, recon per image, kl per image).

        The loss is this batch's share of the mean over a global batch of `global_batch` images (N when None):
        (sum of per-image losses) / global_batch. Replicas of a tf.distribute strategy each hold rows
        [offset, offset + N) of the global batch: their gradients, summed by the optimizer, are the global mean's,
        and each draws its rows of the global batch's posterior noise, so they draw what one device would."""
        local = tf.shape(images)[0]
        global_batch = local if global_batch is None else global_batch
        mean, logvar = (tf.cast(t, tf.float32) for t in self.encoder(images, training=training))
        # Reparameterisation: z = mean + std * eps keeps the sample differentiable in mean and logvar.
        noise = keras.random.normal(tf.concat([[global_batch], tf.shape(mean)[1:]], 0), seed=self.noise_seed)
        latents = mean + tf.exp(0.5 * logvar) * noise[offset:offset + local]
        recon = tf.cast(self.decoder(latents, training=training), tf.float32)
        rec = reconstruction_loss(images, recon, self.cfg.recon_loss, self.cfg.ssim_weight)
        kl = gaussian_kl(mean, logvar)
        share = tf.cast(global_batch, tf.float32)
        loss = tf.reduce_sum(rec) / share + self.cfg.kl_weight * tf.reduce_sum(kl) / share
        return loss, rec, kl

    def distributed_step(self, data, offset=0, global_batch=None):
        """One optimizer step on rows [offset, offset + N) of a global batch (see `losses_of`); returns this batch's
        share of the global batch's mean loss (the shares of all replicas add up to it)."""
        images = images_to_float(data)
        with tf.GradientTape() as tape:
            loss, rec, kl = self.losses_of(images, True, offset, global_batch)
        variables = self.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply(grads, variables)
        # Per-image values: the running means are over images, whichever replica saw them.
        self.loss_tracker.update_state(rec + self.cfg.kl_weight * kl)
        self.recon_tracker.update_state(rec / self.num_pixels)
        self.kl_tracker.update_state(kl)
        return loss

    def train_step(self, data):
        self.distributed_step(data)
        return {m.name: m.result() for m in self.metrics}

    def eval_step(self, data):
        """data (N, H, W, C) -> (psnr (N,), ssim (N,)) of decoder(encoder mean)."""
        images = images_to_float(data)
        return psnr_ssim(images, self(images, training=False))
