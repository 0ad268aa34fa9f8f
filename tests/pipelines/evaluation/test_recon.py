"""VAE reconstruction: PSNR/SSIM closed forms, and the ONNX round trip against the Keras VAE it was exported from."""

from pathlib import Path

import numpy as np
import pytest

from pipelines.evaluation.recon import PSNR_CAP_DB, reconstruct, reconstruction_metrics
from runfs.images import to_uint8


def test_psnr_and_ssim_closed_forms():
    rng = np.random.default_rng(0)
    images = rng.integers(20, 200, size=(3, 16, 16, 1), dtype=np.uint8)
    same = reconstruction_metrics(images, images)
    assert same.psnr == PSNR_CAP_DB and same.ssim == pytest.approx(1.0) and same.num_images == 3
    shifted = reconstruction_metrics(images, images + np.uint8(5))  # MSE = 25 exactly
    assert shifted.psnr == pytest.approx(10 * np.log10(255**2 / 25)) and shifted.psnr_std == pytest.approx(0.0)
    tiny = reconstruction_metrics(images[:, :4, :4], images[:, :4, :4] + np.uint8(5))  # window shrinks to 3
    assert tiny.ssim < 1.0


def test_onnx_round_trip_matches_the_keras_vae(tiny_pipeline_run):
    from vae.model import load_models

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(5, 16, 16, 1), dtype=np.uint8)
    got = reconstruct(tiny_pipeline_run, images, device="cpu", batch_size=2, progress=False)
    encoder, decoder = load_models(Path(tiny_pipeline_run) / "vae" / "model")
    mean, _ = encoder.predict(images.astype(np.float32) / 127.5 - 1.0, verbose=0)
    expected = to_uint8(decoder.predict(mean, verbose=0))  # the scale factor cancels: applied, then undone
    assert got.shape == images.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # float32 round-off may flip one level


def test_images_of_another_size_are_refused(tiny_pipeline_run):
    with pytest.raises(ValueError, match=r"takes \(16, 16, 1\) images but the real images are \(32, 32, 1\)"):
        reconstruct(tiny_pipeline_run, np.zeros((2, 32, 32, 1), np.uint8), device="cpu", progress=False)
