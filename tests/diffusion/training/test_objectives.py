"""Min-SNR-gamma weighting: closed forms (Hang et al. 2023) and its effect on the training loss."""

import numpy as np
import pytest
import torch

from diffusion import formulas as F
from diffusion.config import DiffusionConfig
from diffusion.factory import create_gaussian_diffusion
from diffusion.gaussian_diffusion import ModelMeanType
from diffusion.schedules import get_named_beta_schedule
from diffusion.training.objectives import diffusion_objective, min_snr_weight

GAMMA = 5.0


def _mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).flatten(1).mean(dim=1)


def test_weights_equal_min_snr_on_the_x0_error_in_every_parameterisation():
    """w_eps |eps - eps^|^2 = w_v |v - v^|^2 = min(SNR, gamma) |x0 - x0^|^2 for the same prediction (float64)."""
    tab = F.process_tables(get_named_beta_schedule("linear", 1000))
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 10, 100, 300, 600, 999])
    x0, x0_hat, eps = (torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64) for _ in range(3))
    x_t = F.q_sample(tab, x0, t, eps)
    eps_hat = F.eps_from_xstart(tab, x_t, t, x0_hat)
    v, v_hat = F.v_from_xstart_eps(tab, x0, eps, t), F.v_from_xstart_eps(tab, x0_hat, eps_hat, t)
    alpha_bar = torch.as_tensor(tab.alphas_cumprod)[t]
    min_snr = (alpha_bar / (1 - alpha_bar)).clamp(max=GAMMA)
    expected = min_snr * _mse(x0, x0_hat)

    def weighted(mean_type, err):
        return min_snr_weight(tab.alphas_cumprod, t, GAMMA, mean_type).double() * err

    torch.testing.assert_close(weighted(ModelMeanType.START_X, _mse(x0, x0_hat)), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(weighted(ModelMeanType.EPSILON, _mse(eps, eps_hat)), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(weighted(ModelMeanType.VELOCITY, _mse(v, v_hat)), expected, rtol=1e-6, atol=0)


def test_eps_weight_is_one_where_snr_is_below_gamma():
    alphas_cumprod = np.cumprod(1 - get_named_beta_schedule("linear", 1000))
    t = torch.arange(1000)
    w = min_snr_weight(alphas_cumprod, t, GAMMA, ModelMeanType.EPSILON)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    low = torch.as_tensor(snr < GAMMA)
    assert torch.all(w[low] == 1.0)
    assert torch.all(w[~low] < 1.0) and bool((~low).any())


def test_objective_weights_the_loss_and_keeps_mse_unweighted():
    diffusion = create_gaussian_diffusion(DiffusionConfig(diffusion_steps=50))
    x0, noise = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4)
    t = torch.tensor([0, 5, 20, 49])

    def model(x, ts):
        return 0.5 * x  # any fixed denoiser

    plain = diffusion_objective(diffusion)(model, x0, t, None, noise)
    weighted = diffusion_objective(diffusion, snr_gamma=GAMMA)(model, x0, t, None, noise)
    w = min_snr_weight(diffusion.alphas_cumprod, t, GAMMA, ModelMeanType.EPSILON)
    torch.testing.assert_close(weighted["mse"], plain["mse"])
    torch.testing.assert_close(weighted["loss"], w * plain["mse"])
    assert w[0] < 1.0 and w[-1] == 1.0  # the smallest t has SNR far above gamma, the largest far below


def test_snr_gamma_rejects_what_it_cannot_weight():
    with pytest.raises(ValueError, match="--use-kl"):
        diffusion_objective(create_gaussian_diffusion(DiffusionConfig(diffusion_steps=50, use_kl=True)), 5.0)
    with pytest.raises(ValueError, match="eps, x0 or v parameterisation, not previous_x"):
        min_snr_weight(np.array([0.5]), torch.zeros(1, dtype=torch.long), 5.0, ModelMeanType.PREVIOUS_X)
