"""Likelihood helpers for the variational bound (as in guided-diffusion's losses.py and nn.mean_flat).

All functions are elementwise on broadcastable tensors, in nats unless stated.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def mean_flat(tensor: Tensor) -> Tensor:
    """Mean over every dimension but the batch one: [N, ...] -> [N]."""
    return tensor.mean(dim=list(range(1, tensor.dim())))


def normal_kl(
    mean1: Tensor | float, logvar1: Tensor | float, mean2: Tensor | float, logvar2: Tensor | float
) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise (DDPM eq. 5's Gaussian KL); scalars broadcast."""
    like = next((obj for obj in (mean1, logvar1, mean2, logvar2) if isinstance(obj, Tensor)), None)
    if like is None:
        raise TypeError("normal_kl needs at least one torch.Tensor argument")
    # torch.exp needs tensors; broadcasting converts the means.
    logvar1, logvar2 = (x if isinstance(x, Tensor) else torch.tensor(x).to(like) for x in (logvar1, logvar2))
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + ((mean1 - mean2) ** 2) * torch.exp(-logvar2)
    )


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """Fast tanh approximation of the standard normal CDF (Page 1977), as used by DDPM's decoder likelihood."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x: Tensor, *, means: Tensor, log_scales: Tensor) -> Tensor:
    """DDPM eq. 13: log-probability (nats) of 8-bit data in [-1, 1] under a Gaussian binned into 256 bins.

    x, means, log_scales: same shape. Bins have width 2/255 around each of the 256 levels; the two edge bins are
    open-ended (everything below -0.999 / above 0.999), so the 256 bin probabilities sum to 1. Only meaningful
    when x really holds 8-bit levels rescaled to [-1, 1] (see docs/diffusion.md for latents).
    """
    if not (x.shape == means.shape == log_scales.shape):
        raise ValueError(
            f"x, means and log_scales must have one shape, got {tuple(x.shape)}, {tuple(means.shape)}, "
            f"{tuple(log_scales.shape)}"
        )
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))
