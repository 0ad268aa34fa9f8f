"""The VAE's learning-rate schedule: closed forms of the cosine over step and time budgets, and the value set from
Python reaching the XLA-compiled training step."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from vae.train import learning_rate
from vae.trainer import VAETrainer


@pytest.mark.parametrize("kind", ["constant", "cosine"])
def test_start_of_training_uses_the_configured_rate(tiny_cfg, kind):
    assert learning_rate(tiny_cfg.replace(lr=2e-3, lr_schedule=kind), 0, 100, 0.0) == pytest.approx(2e-3)


def test_cosine_over_the_step_budget(tiny_cfg):
    cfg = tiny_cfg.replace(lr=1e-3, lr_schedule="cosine", max_train_minutes=None)
    assert learning_rate(cfg, 50, 100, 1e6) == pytest.approx(0.5e-3)  # no time budget: time is ignored
    assert learning_rate(cfg, 25, 100, 0.0) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert learning_rate(cfg, 100, 100, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate(cfg, 150, 100, 0.0) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0


def test_cosine_follows_whichever_budget_is_used_up_more(tiny_cfg):
    cfg = tiny_cfg.replace(lr=1e-3, lr_schedule="cosine", max_train_minutes=10.0)
    # 10 of 100 steps but 5 of 10 minutes: the time budget sets the phase.
    assert learning_rate(cfg, 10, 100, 300.0) == pytest.approx(0.5e-3)
    # 75 of 100 steps after 1 minute: the step budget does.
    assert learning_rate(cfg, 75, 100, 60.0) == pytest.approx(1e-3 * (1 + math.cos(0.75 * math.pi)) / 2)
    # No finite step budget (epochs * batches is infinite only in theory): time alone.
    assert learning_rate(cfg, 10, math.inf, 600.0) == pytest.approx(0.0, abs=1e-12)


def test_the_assigned_rate_reaches_the_compiled_step(tiny_cfg, blob_images):
    cfg = tiny_cfg.replace(lr=3e-3, lr_schedule="cosine", ema=False)
    keras.utils.set_random_seed(0)
    trainer = VAETrainer(cfg)
    trainer.compile(optimizer=trainer.make_optimizer())
    trainer.optimizer.build(trainer.trainable_variables)
    step = tf.function(trainer.train_step, jit_compile=True)

    def weights():
        return [v.numpy().copy() for v in trainer.trainable_variables]

    trainer.optimizer.learning_rate.assign(0.0)  # AdamW's update and its decoupled weight decay both scale with lr
    before = weights()
    step(blob_images[:16])
    for a, b in zip(before, weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    trainer.optimizer.learning_rate.assign(learning_rate(cfg, 0, 10, 0.0))
    step(blob_images[:16])  # the same compiled function, now with a non-zero rate
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights(), strict=True))
