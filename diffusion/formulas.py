"""Closed forms of the Gaussian diffusion process as pure functions.

Notation: alpha_bar_t = prod_{s<=t} (1 - beta_s); x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps.
Papers: DDPM = Ho et al. 2020; IDDPM = Nichol & Dhariwal 2021; DDIM = Song et al. 2021;
PD = Salimans & Ho 2022 (progressive distillation, v-prediction).

Tables are float64 numpy arrays indexed by timestep. `extract` indexes a table first and casts afterwards, so the
only rounding is the final cast (as the reference does). Each function takes the tables, tensors of shape
[N, C, ...] and a timestep tensor t of shape [N] (int64 indices into the tables).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class ProcessTables:
    """Per-timestep float64 tables [T] of a diffusion process (names as in the reference)."""

    betas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    alphas_cumprod_next: np.ndarray
    sqrt_alphas_cumprod: np.ndarray
    sqrt_one_minus_alphas_cumprod: np.ndarray
    log_one_minus_alphas_cumprod: np.ndarray
    sqrt_recip_alphas_cumprod: np.ndarray
    sqrt_recipm1_alphas_cumprod: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """The tables by name (no copies)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def process_tables(betas: np.ndarray) -> ProcessTables:
    """DDPM eqs. 4, 6-7: alpha_bar, q(x_t | x_0) and posterior q(x_{t-1} | x_t, x_0) coefficients, in float64."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.shape[0] < 2:
        raise ValueError(f"betas must be a 1-D array of at least 2 timesteps, got shape {betas.shape}")
    if not np.all(np.isfinite(betas)) or not ((betas > 0).all() and (betas <= 1).all()):
        raise ValueError("betas must all lie in (0, 1]; check the schedule (a linear schedule needs T > 20)")
    alphas = 1.0 - betas
    alphas_cumprod = np.cumprod(alphas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    return ProcessTables(
        betas=betas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        alphas_cumprod_next=np.append(alphas_cumprod[1:], 0.0),
        sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
        log_one_minus_alphas_cumprod=np.log(1.0 - alphas_cumprod),
        sqrt_recip_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod),
        sqrt_recipm1_alphas_cumprod=np.sqrt(1.0 / alphas_cumprod - 1),
        posterior_variance=posterior_variance,
        # The posterior variance is 0 at t = 0, so its log is clipped by repeating the t = 1 entry (reference quirk).
        posterior_log_variance_clipped=np.log(np.append(posterior_variance[1], posterior_variance[1:])),
        posterior_mean_coef1=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod),
    )


def extract(table: np.ndarray, t: Tensor, like: Tensor) -> Tensor:
    """Gather table[t] in float64, then cast to like's dtype (at least float32); shape [N, 1, ..., 1] broadcasts."""
    dtype = torch.promote_types(like.dtype, torch.float32) if like.is_floating_point() else torch.float32
    values = torch.from_numpy(np.asarray(table, dtype=np.float64)).to(t.device)[t.long()].to(dtype)
    return values.view(-1, *([1] * (like.dim() - 1)))


def q_mean_variance(tab: ProcessTables, x_start: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """DDPM eq. 4: q(x_t | x_0) = N(sqrt(alpha_bar) x_0, (1 - alpha_bar) I); returns mean, variance, log-variance."""
    mean = extract(tab.sqrt_alphas_cumprod, t, x_start) * x_start
    variance = extract(1.0 - tab.alphas_cumprod, t, x_start).expand_as(x_start)
    log_variance = extract(tab.log_one_minus_alphas_cumprod, t, x_start).expand_as(x_start)
    return mean, variance, log_variance


def q_sample(tab: ProcessTables, x_start: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """DDPM eq. 4 (reparameterised): x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps."""
    return (
        extract(tab.sqrt_alphas_cumprod, t, x_start) * x_start
        + extract(tab.sqrt_one_minus_alphas_cumprod, t, x_start) * noise
    )


def q_posterior_mean_variance(
    tab: ProcessTables, x_start: Tensor, x_t: Tensor, t: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """DDPM eqs. 6-7: mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0)."""
    mean = extract(tab.posterior_mean_coef1, t, x_t) * x_start + extract(tab.posterior_mean_coef2, t, x_t) * x_t
    variance = extract(tab.posterior_variance, t, x_t).expand_as(x_t)
    log_variance = extract(tab.posterior_log_variance_clipped, t, x_t).expand_as(x_t)
    return mean, variance, log_variance


def xstart_from_eps(tab: ProcessTables, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """DDPM eq. 4 solved for x_0: x_0 = sqrt(1 / alpha_bar) x_t - sqrt(1 / alpha_bar - 1) eps."""
    return extract(tab.sqrt_recip_alphas_cumprod, t, x_t) * x_t - extract(tab.sqrt_recipm1_alphas_cumprod, t, x_t) * eps


def eps_from_xstart(tab: ProcessTables, x_t: Tensor, t: Tensor, x_start: Tensor) -> Tensor:
    """DDPM eq. 4 solved for eps: eps = (sqrt(1 / alpha_bar) x_t - x_0) / sqrt(1 / alpha_bar - 1)."""
    return (extract(tab.sqrt_recip_alphas_cumprod, t, x_t) * x_t - x_start) / extract(
        tab.sqrt_recipm1_alphas_cumprod, t, x_t
    )


def xstart_from_xprev(tab: ProcessTables, x_t: Tensor, t: Tensor, xprev: Tensor) -> Tensor:
    """DDPM eq. 7 solved for x_0: x_0 = (mu_{t-1} - coef2 x_t) / coef1."""
    return (
        extract(1.0 / tab.posterior_mean_coef1, t, x_t) * xprev
        - extract(tab.posterior_mean_coef2 / tab.posterior_mean_coef1, t, x_t) * x_t
    )


def v_from_xstart_eps(tab: ProcessTables, x_start: Tensor, eps: Tensor, t: Tensor) -> Tensor:
    """PD Sec. 4: v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0."""
    return (
        extract(tab.sqrt_alphas_cumprod, t, x_start) * eps
        - extract(tab.sqrt_one_minus_alphas_cumprod, t, x_start) * x_start
    )


def xstart_from_v(tab: ProcessTables, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """PD Sec. 4: x_0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v."""
    return extract(tab.sqrt_alphas_cumprod, t, x_t) * x_t - extract(tab.sqrt_one_minus_alphas_cumprod, t, x_t) * v


def eps_from_v(tab: ProcessTables, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """PD Sec. 4: eps = sqrt(alpha_bar) v + sqrt(1 - alpha_bar) x_t."""
    return extract(tab.sqrt_alphas_cumprod, t, x_t) * v + extract(tab.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t


def fixed_variance_tables(tab: ProcessTables, large: bool) -> tuple[np.ndarray, np.ndarray]:
    """IDDPM Sec. 3.1: sigma^2 = beta_t (large) or the posterior variance (small); returns (variance, log)."""
    if large:
        # The first entry is the posterior variance at t = 1 rather than beta_0, for a better decoder likelihood.
        variance = np.append(tab.posterior_variance[1], tab.betas[1:])
        return variance, np.log(variance)
    return tab.posterior_variance, tab.posterior_log_variance_clipped


def learned_range_log_variance(tab: ProcessTables, t: Tensor, var_values: Tensor) -> Tensor:
    """IDDPM eq. 15: log sigma^2 = f log beta_t + (1 - f) log beta_tilde_t with f = (v + 1) / 2, v in [-1, 1]."""
    min_log = extract(tab.posterior_log_variance_clipped, t, var_values)
    max_log = extract(np.log(tab.betas), t, var_values)
    frac = (var_values + 1) / 2
    return frac * max_log + (1 - frac) * min_log


def ddim_sigma(alpha_bar: Tensor, alpha_bar_prev: Tensor, eta: float) -> Tensor:
    """DDIM eq. 16: sigma = eta sqrt((1 - a_prev) / (1 - a)) sqrt(1 - a / a_prev) (eta = 1: DDPM's posterior std)."""
    return eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)


def ddim_mean(x_start: Tensor, eps: Tensor, alpha_bar_prev: Tensor, sigma: Tensor) -> Tensor:
    """DDIM eq. 12 without its noise term: sqrt(a_prev) x_0 + sqrt(1 - a_prev - sigma^2) eps."""
    return x_start * torch.sqrt(alpha_bar_prev) + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
