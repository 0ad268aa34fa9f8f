"""vae.decoder_tune: the decoder tuned alone on a run's latents, saved beside the VAE, used by load_vae and export."""

import shutil

import keras
import numpy as np
import pytest

from runfs import RunPaths, file_digest, read_json, write_json
from runfs.latent_norm import LatentNorm
from vae.checkpoint import save_final
from vae.data import Dataset
from vae.decoder_tune import DecoderTuneConfig, noise_std, score, tune_decoder
from vae.encode import encode_dataset
from vae.model import TUNED_DECODER, load_vae
from vae.trainer import VAETrainer

STEPS = 40


def _weights_equal(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_cfg, blob_images):
    """A tiny (untrained, seeded) VAE saved as a run's model, its blobs encoded, then its decoder tuned for STEPS."""
    run = tmp_path_factory.mktemp("tune")
    keras.utils.set_random_seed(0)
    save_final(RunPaths(run).vae, VAETrainer(tiny_cfg), {"step": 0, "epoch": 0})
    data = Dataset("blobs", blob_images[:40], blob_images[40:])
    encode_dataset(run, data, batch_size=16, progress=False)
    model_digest = file_digest(RunPaths(run).vae / "model")
    info = tune_decoder(run, data, DecoderTuneConfig(max_train_minutes=None, max_steps=STEPS, latent_noise=0.05,
                                                     lr=3e-3), progress=False)
    return run, data, info, model_digest


@pytest.mark.parametrize("bad", [dict(max_train_minutes=None, max_steps=None), dict(max_train_minutes=0.0),
                                 dict(max_steps=0), dict(latent_noise=-0.1), dict(latent_noise=float("nan")),
                                 dict(lr=0.0), dict(batch_size=0)])
def test_config_rejects_settings_that_cannot_train(bad):
    with pytest.raises(ValueError):
        DecoderTuneConfig(**bad)


def test_noise_is_given_in_the_diffusion_models_units():
    # (z - shift) * scale is what the diffusion model sees: noise s there is s / scale in the VAE's own units.
    np.testing.assert_allclose(noise_std({"scale_factor": 2.0}, 3, 0.1), [0.05] * 3, rtol=1e-6)
    channel = LatentNorm("channel", (1.0, 2.0, 4.0, 8.0), (0.5, -1.0, 0.0, 3.0)).to_meta()
    np.testing.assert_allclose(noise_std(channel, 4, 0.1), [0.1, 0.05, 0.025, 0.0125], rtol=1e-6)


def test_the_tuned_decoder_fits_the_latents_better_and_its_score_is_the_saved_models(tuned):
    run, data, info, _ = tuned
    assert info["steps"] == STEPS and info["latent_noise"] == 0.05
    assert info["val_after"]["psnr"] > info["val_before"]["psnr"] + 1.0  # an untrained decoder learns the blobs
    # The reported score is that of the decoder on disk (what export.py will ship), recomputed here.
    _, _, decoder = load_vae(RunPaths(run).vae)
    val = np.load(RunPaths(run).latents / "val_mean.npy").transpose(0, 2, 3, 1)
    assert info["val_after"]["images"] == len(data.val_images)  # the tiny preset scores up to 64
    assert score(decoder, val, data.val_images)["psnr"] == pytest.approx(info["val_after"]["psnr"], abs=1e-4)
    saved = RunPaths(run).vae / TUNED_DECODER
    assert read_json(saved / "meta.json") == info
    assert DecoderTuneConfig.load(saved / "config.json").max_steps == STEPS


def test_the_vae_model_and_encoder_stay_as_they_were(tuned):
    run, _, info, model_digest = tuned
    vae = RunPaths(run).vae
    assert file_digest(vae / "model") == model_digest == info["base_model"]
    _, enc_tuned, dec_tuned = load_vae(vae)
    _, enc_plain, dec_plain = load_vae(vae, tuned_decoder=False)
    assert _weights_equal(enc_tuned, enc_plain)
    assert not _weights_equal(dec_tuned, dec_plain)
    assert _weights_equal(dec_plain, keras.saving.load_model(vae / "model" / "decoder.keras"))


def test_a_decoder_tuned_from_another_vae_is_refused(tuned, tmp_path):
    run, *_ = tuned
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    meta = read_json(copy / "vae" / TUNED_DECODER / "meta.json")
    write_json(copy / "vae" / TUNED_DECODER / "meta.json", {**meta, "base_model": "0123456789abcdef"})
    with pytest.raises(ValueError, match="tune_decoder.py"):
        load_vae(copy / "vae")
    load_vae(copy / "vae", tuned_decoder=False)  # the VAE itself still loads (encode.py needs only the encoder)


def test_latents_of_another_vae_are_refused(tuned, tmp_path):
    run, data, *_ = tuned
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    meta = read_json(copy / "latents" / "meta.json")
    write_json(copy / "latents" / "meta.json", {**meta, "vae_checkpoint": "0123456789abcdef"})
    with pytest.raises(ValueError, match="encode.py"):
        tune_decoder(copy, data, DecoderTuneConfig(max_train_minutes=None, max_steps=1), progress=False)


def test_the_export_ships_the_tuned_decoder(tuned):
    from bridge.runtime import load_decoder
    from pipelines.export import main as export_main

    run, *_ = tuned
    paths = RunPaths(run)
    export_main(["--run", str(run), "--num-real", "8", "--num-random", "8", "--batch", "8"])
    meta = read_json(paths.latents / "meta.json")
    latents = np.load(paths.latents / "val_mean.npy")
    norm = LatentNorm.from_meta(meta, latents.shape[1])
    import torch

    onnx_images = load_decoder(run, device="cpu").decode(torch.from_numpy(norm.apply(latents))).numpy()
    nhwc = latents.transpose(0, 2, 3, 1)
    _, _, tuned_decoder = load_vae(paths.vae)
    _, _, plain_decoder = load_vae(paths.vae, tuned_decoder=False)
    np.testing.assert_allclose(onnx_images, tuned_decoder(nhwc).numpy(), atol=1e-4)
    assert np.abs(onnx_images - plain_decoder(nhwc).numpy()).max() > 1e-2


def test_the_latent_noise_reaches_the_training_and_nothing_else_is_random(tuned, tmp_path):
    run, data, *_ = tuned
    weights = {}
    for name, noise in (("a", 0.0), ("b", 0.0), ("c", 1.0)):
        copy = tmp_path / name
        shutil.copytree(run, copy)
        shutil.rmtree(copy / "vae" / TUNED_DECODER)
        tune_decoder(copy, data, DecoderTuneConfig(max_train_minutes=None, max_steps=2, latent_noise=noise),
                     progress=False)
        weights[name] = load_vae(copy / "vae")[2]
    assert _weights_equal(weights["a"], weights["b"])  # same seed, no noise: the same decoder
    assert not _weights_equal(weights["a"], weights["c"])
