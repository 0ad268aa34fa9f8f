"""Closed forms of the process in float64: q_sample moments, the posterior as a Gaussian product, conversions."""

import numpy as np
import pytest
import torch

from diffusion import formulas as F
from diffusion.schedules import get_named_beta_schedule


@pytest.fixture(params=["linear", "cosine"])
def tab(request):
    return F.process_tables(get_named_beta_schedule(request.param, 100))


def _t(values):
    return torch.tensor(values, dtype=torch.long)


def test_q_sample_moments_match_q_mean_variance(tab):
    t = _t([0, 37, 99])
    x0 = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64).view(3, 1)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(3, 200_000, dtype=torch.float64, generator=gen)
    x_t = F.q_sample(tab, x0.expand(3, 200_000), t, noise)
    mean, variance, log_variance = F.q_mean_variance(tab, x0, t)
    std_err = variance.sqrt().squeeze(1) / np.sqrt(200_000)
    assert torch.all((x_t.mean(1) - mean.squeeze(1)).abs() < 5 * std_err)
    torch.testing.assert_close(x_t.var(1), variance.squeeze(1), rtol=0.02, atol=0)
    torch.testing.assert_close(log_variance, variance.log())


def test_posterior_is_the_gaussian_product(tab):
    # q(x_{t-1} | x_t, x_0) ∝ N(x_{t-1}; sqrt(a_prev) x0, 1 - a_prev) N(x_t; sqrt(alpha_t) x_{t-1}, beta_t).
    t = torch.arange(1, 100)
    x0 = torch.randn(99, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x_t = torch.randn(99, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    a_prev = torch.from_numpy(tab.alphas_cumprod_prev[1:]).view(-1, 1)
    beta = torch.from_numpy(tab.betas[1:]).view(-1, 1)
    precision = 1 / (1 - a_prev) + (1 - beta) / beta
    mean = (a_prev.sqrt() * x0 / (1 - a_prev) + (1 - beta).sqrt() * x_t / beta) / precision
    got_mean, got_var, got_log_var = F.q_posterior_mean_variance(tab, x0, x_t, t)
    torch.testing.assert_close(got_mean, mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got_var, (1 / precision).expand_as(x0), rtol=1e-10, atol=0)
    torch.testing.assert_close(got_log_var, got_var.log(), rtol=1e-10, atol=0)


def test_posterior_log_variance_at_t0_is_clipped_to_t1(tab):
    assert tab.posterior_variance[0] == 0
    assert tab.posterior_log_variance_clipped[0] == np.log(tab.posterior_variance[1])


def test_conversions_round_trip_in_float64(tab):
    gen = torch.Generator().manual_seed(3)
    t = torch.arange(100)
    x0 = torch.randn(100, 3, 2, 2, dtype=torch.float64, generator=gen)
    eps = torch.randn(100, 3, 2, 2, dtype=torch.float64, generator=gen)
    x_t = F.q_sample(tab, x0, t, eps)
    close = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(F.xstart_from_eps(tab, x_t, t, eps), x0, **close)
    torch.testing.assert_close(F.eps_from_xstart(tab, x_t, t, x0), eps, **close)
    v = F.v_from_xstart_eps(tab, x0, eps, t)
    torch.testing.assert_close(F.xstart_from_v(tab, x_t, t, v), x0, **close)
    torch.testing.assert_close(F.eps_from_v(tab, x_t, t, v), eps, **close)
    xprev = F.q_posterior_mean_variance(tab, x0, x_t, t)[0]
    torch.testing.assert_close(F.xstart_from_xprev(tab, x_t, t, xprev), x0, **close)
    # v = d x_t / d phi on the circle (alpha, sigma) = (cos phi, sin phi): |x_t|^2 + |v|^2 = |x0|^2 + |eps|^2.
    torch.testing.assert_close(x_t**2 + v**2, x0**2 + eps**2, **close)


def test_extract_casts_after_indexing():
    tab = F.process_tables(get_named_beta_schedule("linear", 100))
    t = _t([5, 50])
    for dtype, expected in [(torch.float32, torch.float32), (torch.float64, torch.float64),
                            (torch.bfloat16, torch.float32)]:
        out = F.extract(tab.alphas_cumprod, t, torch.zeros(2, 3, 4, 4, dtype=dtype))
        assert out.shape == (2, 1, 1, 1) and out.dtype == expected
    exact = F.extract(tab.alphas_cumprod, t, torch.zeros(2, 1, dtype=torch.float64)).flatten()
    assert exact.tolist() == [tab.alphas_cumprod[5], tab.alphas_cumprod[50]]


def test_variance_tables_and_learned_range_endpoints(tab):
    large, log_large = F.fixed_variance_tables(tab, large=True)
    assert large[0] == tab.posterior_variance[1] and np.array_equal(large[1:], tab.betas[1:])
    np.testing.assert_array_equal(log_large, np.log(large))
    small, log_small = F.fixed_variance_tables(tab, large=False)
    assert small is tab.posterior_variance and log_small is tab.posterior_log_variance_clipped
    t = torch.arange(100)
    ones = torch.ones(100, 2, dtype=torch.float64)
    lo = F.learned_range_log_variance(tab, t, -ones)
    hi = F.learned_range_log_variance(tab, t, ones)
    mid = F.learned_range_log_variance(tab, t, 0 * ones)
    torch.testing.assert_close(lo[:, 0], torch.from_numpy(tab.posterior_log_variance_clipped))
    torch.testing.assert_close(hi[:, 0], torch.from_numpy(np.log(tab.betas)))
    torch.testing.assert_close(mid, (lo + hi) / 2)


def test_ddim_sigma_at_eta_one_is_the_posterior_std(tab):
    t = torch.arange(1, 100)
    like = torch.zeros(99, 1, dtype=torch.float64)
    sigma = F.ddim_sigma(F.extract(tab.alphas_cumprod, t, like), F.extract(tab.alphas_cumprod_prev, t, like), 1.0)
    torch.testing.assert_close(sigma.squeeze(1) ** 2, torch.from_numpy(tab.posterior_variance[1:]))


def test_process_tables_rejects_bad_betas():
    with pytest.raises(ValueError, match="1-D array of at least 2 timesteps"):
        F.process_tables(np.array([[0.1, 0.2]]))
    with pytest.raises(ValueError, match=r"must all lie in \(0, 1\]"):
        F.process_tables(np.array([0.1, 0.0, 0.2]))
    with pytest.raises(ValueError, match=r"must all lie in \(0, 1\]"):
        F.process_tables(np.array([0.1, 1.5]))
