import numpy as np
import pytest

from tests.vae.conftest import make_trainer, trained_on_one_batch
from vae.checkpoint import restore_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def cfg(tiny_cfg):
    return tiny_cfg.replace(lr=3e-3, ema=True, ema_momentum=0.9)


@pytest.fixture(scope="module")
def trained(cfg, blob_images):
    """A tiny trainer after 30 compiled steps on one batch, with the loss before and after."""
    return trained_on_one_batch(cfg, blob_images[:16])


def test_a_few_steps_lower_the_loss(trained):
    _, before, after = trained
    assert after < 0.7 * before


def test_resume_restores_step_optimizer_state_and_continues_identically(tmp_path, cfg, trained, blob_images):
    trainer = trained[0]
    save_checkpoint(tmp_path, trainer, {"step": 30, "epoch": 2, "batch_in_epoch": 0, "train_seconds": 1.0})

    resumed = make_trainer(cfg.replace(seed=99))  # different init and noise seed: all must come from the file
    state = restore_checkpoint(tmp_path, resumed)
    assert state["step"] == 30 and state["epoch"] == 2
    assert int(resumed.optimizer.iterations.numpy()) == 30
    for a, b in zip(trainer.optimizer.variables, resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Same state + same batch + the restored noise seed -> the same next step (eager: no second compile).
    trainer.train_step(blob_images[16:32])
    resumed.train_step(blob_images[16:32])
    for a, b in zip(trainer.trainable_variables, resumed.trainable_variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_resume_with_a_changed_architecture_is_refused(tmp_path, cfg):
    save_checkpoint(tmp_path, make_trainer(cfg), {"step": 0, "epoch": 0, "batch_in_epoch": 0})
    with pytest.raises(ValueError, match="does not match this model's optimizer"):
        restore_checkpoint(tmp_path, make_trainer(cfg.replace(ema=False)))


def test_resume_without_checkpoint_says_so(tmp_path, cfg):
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        restore_checkpoint(tmp_path, make_trainer(cfg))
