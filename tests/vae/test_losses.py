import numpy as np

from vae.losses import gaussian_kl, reconstruction_loss, ssim_loss
from vae.metrics import psnr_ssim


def test_kl_matches_the_closed_form_in_float64():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(3, 2, 2, 4)).astype(np.float32)
    logvar = rng.uniform(-3, 2, size=(3, 2, 2, 4)).astype(np.float32)
    # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2 per dimension, summed.
    s = np.exp(0.5 * logvar.astype(np.float64))
    expected = (np.log(1 / s) + (s**2 + mean.astype(np.float64) ** 2) / 2 - 0.5).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(gaussian_kl(mean, logvar)), expected, rtol=1e-5)


def test_kl_of_the_prior_is_zero():
    zeros = np.zeros((2, 2, 2, 4), np.float32)
    np.testing.assert_allclose(np.asarray(gaussian_kl(zeros, zeros)), 0.0, atol=1e-7)


def test_reconstruction_losses_sum_per_image():
    a = np.zeros((2, 2, 2, 1), np.float32)
    b = np.full((2, 2, 2, 1), 0.5, np.float32)
    b[1] = -2.0
    np.testing.assert_allclose(np.asarray(reconstruction_loss(a, b, "l1")), [2.0, 8.0])
    np.testing.assert_allclose(np.asarray(reconstruction_loss(a, b, "l2")), [1.0, 16.0])


def test_the_ssim_term_matches_the_closed_form_for_flat_images():
    # Flat images have no variance, so SSIM is its luminance term (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) on the
    # [0, 1] scale, C1 = 0.01^2; [-1, 1] values -1 and 0.5 are 0 and 0.75 there.
    a = np.full((1, 16, 16, 1), -1.0, np.float32)
    b = np.full((1, 16, 16, 1), 0.5, np.float32)
    c1 = 0.01**2
    one_minus_ssim = 1 - c1 / (0.75**2 + c1)
    np.testing.assert_allclose(np.asarray(ssim_loss(a, b)), [one_minus_ssim], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ssim_loss(b, b)), [0.0], atol=1e-6)
    # In the reconstruction loss it is weighted per pixel, beside the L1 sum 256 * 1.5.
    np.testing.assert_allclose(np.asarray(reconstruction_loss(a, b, "l1", ssim_weight=2.0)),
                               [256 * 1.5 + 2.0 * 256 * one_minus_ssim], rtol=1e-5)


def test_the_ssim_term_is_one_minus_the_reported_ssim():
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, size=(3, 16, 16, 1)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.3, size=a.shape), -1, 1).astype(np.float32)
    _, ssim = psnr_ssim(a, b)
    np.testing.assert_allclose(np.asarray(ssim_loss(a, b)), 1 - np.asarray(ssim), rtol=1e-5, atol=1e-6)
