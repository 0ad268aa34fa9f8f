"""Stage-1 bf16 (Keras mixed_bfloat16): what computes in bf16, what stays float32, what is saved, and `auto`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from runfs import hardware
from tests.vae.conftest import trained_on_one_batch
from vae.checkpoint import save_checkpoint
from vae.config import VAEConfig
from vae.model import load_models
from vae.trainer import VAETrainer, images_to_float, resolve_precision


@pytest.fixture(scope="module")
def bf16_trained(tiny_cfg, blob_images):
    return trained_on_one_batch(tiny_cfg.replace(lr=3e-3), blob_images[:16], "bf16")


def test_bf16_computes_in_bfloat16_keeps_float32_weights_and_restores_the_global_policy(bf16_trained):
    trainer = bf16_trained[0]
    convs = [layer for model in (trainer.encoder, trainer.decoder) for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert convs and {layer.compute_dtype for layer in convs} == {"bfloat16"}
    assert {v.dtype for v in trainer.trainable_variables} == {"float32"}
    assert keras.config.dtype_policy().name == "float32"  # building under bf16 left the global policy as it was
    loss, rec, kl = trainer.losses_of(tf.zeros((2, 16, 16, 1)), training=False)
    assert loss.dtype == rec.dtype == kl.dtype == tf.float32


def test_bf16_training_lowers_the_loss_as_fp32_does(bf16_trained):
    _, before, after = bf16_trained
    assert after < 0.7 * before


def test_a_bf16_trainer_saves_float32_models_with_its_weights(tmp_path, bf16_trained, blob_images):
    trainer = bf16_trained[0]
    save_checkpoint(tmp_path, trainer, {"step": 30, "epoch": 1, "batch_in_epoch": 0})
    encoder, decoder = load_models(tmp_path / "checkpoint")
    assert {layer.compute_dtype for layer in encoder.layers + decoder.layers if layer.weights} == {"float32"}
    for saved, live in zip(encoder.get_weights() + decoder.get_weights(),
                           trainer.encoder.get_weights() + trainer.decoder.get_weights(), strict=True):
        np.testing.assert_array_equal(saved, live)
    # The float32 model reconstructs what the bf16 one does, up to bf16 rounding (8 significant bits).
    images = images_to_float(blob_images[:8])
    fp32 = decoder(encoder(images)[0]).numpy()
    bf16 = trainer(images).numpy()
    assert bf16.dtype == np.float32
    assert np.abs(fp32 - bf16).max() < 0.05 * np.abs(fp32).max()
    assert not np.array_equal(fp32, bf16)  # the trainer really computed in bf16


def test_fp32_trainer_saves_its_own_models(tiny_cfg):
    trainer = VAETrainer(tiny_cfg, precision="fp32")
    assert trainer.float32_models() == (trainer.encoder, trainer.decoder)


def test_auto_precision_follows_the_hardware(monkeypatch, tmp_path):
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    for flags, want in (("fpu avx2 avx512f amx_bf16 amx_tile", "bf16"), ("fpu avx512f avx512_bf16", "bf16"),
                        ("fpu avx2 avx512f avx512_vnni", "fp32")):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "cpuinfo")
        assert resolve_precision("auto")[0] == want
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "missing")
    assert resolve_precision("auto") == ("fp32", "cpu without native bfloat16")
    assert [resolve_precision(p)[0] for p in ("fp32", "bf16")] == ["fp32", "bf16"]
    # A GPU decides when there is one: Ampere (8.0) and newer compute bf16, Turing (7.5) does not.
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["gpu0"])
    for capability, want in (((8, 0), "bf16"), ((9, 0), "bf16"), ((7, 5), "fp32")):
        monkeypatch.setattr(tf.config.experimental, "get_device_details",
                            lambda device, c=capability: {"compute_capability": c})
        assert resolve_precision("auto")[0] == want


def test_precision_is_validated_and_defaults_to_fp32():
    assert VAEConfig().precision == "fp32"
    assert VAEConfig.from_dict({k: v for k, v in VAEConfig().to_dict().items() if k != "precision"}).precision == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        VAEConfig(precision="fp16")
