import numpy as np

from vae.losses import gaussian_kl, reconstruction_loss


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
