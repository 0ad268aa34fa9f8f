"""Likelihood helpers: Gaussian KL against torch.distributions and Monte Carlo; the 256-bin decoder likelihood."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from diffusion.losses import approx_standard_normal_cdf, discretized_gaussian_log_likelihood, mean_flat, normal_kl


def test_normal_kl_matches_torch_distributions_and_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64)
    lv1, lv2 = torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(5, generator=gen, dtype=torch.float64)
    kl = normal_kl(m1, lv1, m2, lv2)
    p, q = Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp())
    torch.testing.assert_close(kl, kl_divergence(p, q))
    samples = p.sample((200_000,))
    mc = (p.log_prob(samples) - q.log_prob(samples)).mean(0)
    torch.testing.assert_close(mc, kl, rtol=0.05, atol=0.01)
    assert normal_kl(m1, lv1, m1, lv1).abs().max() < 1e-15


def test_normal_kl_broadcasts_scalars_and_needs_a_tensor():
    m, lv = torch.tensor([0.3, -0.2]), torch.tensor([0.1, -1.0])
    torch.testing.assert_close(normal_kl(m, lv, 0.0, 0.0), 0.5 * (-1 - lv + lv.exp() + m**2))
    with pytest.raises(TypeError, match="at least one torch.Tensor"):
        normal_kl(0.0, 0.0, 1.0, 0.0)


def test_approx_cdf_is_close_to_the_exact_normal_cdf():
    x = torch.linspace(-8, 8, 10_001, dtype=torch.float64)
    assert (approx_standard_normal_cdf(x) - torch.special.ndtr(x)).abs().max() < 3e-4


@pytest.mark.parametrize("mean,log_scale", [(0.0, -3.0), (0.7, -1.0), (-0.99, -5.0), (0.2, 1.0)])
def test_discretized_likelihood_sums_to_one_over_256_bins(mean, log_scale):
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    log_p = discretized_gaussian_log_likelihood(
        levels, means=torch.full_like(levels, mean), log_scales=torch.full_like(levels, log_scale)
    )
    assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.all(log_p <= 0)


def test_discretized_likelihood_shape_error_and_mean_flat():
    with pytest.raises(ValueError, match="must have one shape"):
        discretized_gaussian_log_likelihood(torch.zeros(2, 3), means=torch.zeros(2, 3), log_scales=torch.zeros(3))
    x = torch.arange(24.0).view(2, 3, 4)
    torch.testing.assert_close(mean_flat(x), torch.tensor([5.5, 17.5]))
