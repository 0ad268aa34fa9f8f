"""Samplers against closed forms: a one-point dataset (exact x_0) and Gaussian data (exact probability-flow ODE)."""

import numpy as np
import pytest
import torch

from diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    SpacedDiffusion,
    get_named_beta_schedule,
    space_timesteps,
)
from diffusion import formulas as F

BETAS = get_named_beta_schedule("linear", 1000)
BASE = F.process_tables(BETAS)
POINT = torch.tensor([0.4, -1.3], dtype=torch.float64).view(1, 2, 1, 1)


def spaced(spec, mean=ModelMeanType.EPSILON, betas=BETAS):
    return SpacedDiffusion(space_timesteps(len(betas), spec), betas=betas, model_mean_type=mean,
                           model_var_type=ModelVarType.FIXED_SMALL, loss_type=LossType.MSE)


def point_oracle(mean):
    """Exact denoiser of the dataset {POINT} for eps / x0 / v outputs, fed the ORIGINAL timesteps."""
    calls = []

    def model(x, t):
        calls.append(t)
        x0 = POINT.expand_as(x)
        eps = F.eps_from_xstart(BASE, x, t, x0)
        return {ModelMeanType.EPSILON: eps, ModelMeanType.START_X: x0,
                ModelMeanType.VELOCITY: F.v_from_xstart_eps(BASE, x0, eps, t)}[mean]

    model.calls = calls
    return model


@pytest.mark.parametrize("mean", [ModelMeanType.EPSILON, ModelMeanType.START_X, ModelMeanType.VELOCITY])
@pytest.mark.parametrize("spec", ["ddim10", "trailing10"])
def test_oracle_on_a_point_mass_returns_the_point(mean, spec):
    d = spaced(spec, mean)
    noise = torch.randn(4, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # With the exact x_0, the ODE path is x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps_T: eps stays constant.
    eps_T = F.eps_from_xstart(d.tables, noise, torch.full((4,), 9), POINT.expand_as(noise))
    for loop in (d.ddim_sample_loop_progressive, samplers_dpm(d)):
        outs = list(loop(point_oracle(mean), noise.shape, noise=noise))
        for k, out in enumerate(outs[:-1]):
            t = torch.full((4,), 8 - k)
            torch.testing.assert_close(F.eps_from_xstart(d.tables, out["sample"], t, POINT.expand_as(noise)), eps_T)
        torch.testing.assert_close(outs[-1]["sample"], POINT.expand_as(noise), rtol=0, atol=1e-12)


def samplers_dpm(d):
    from diffusion.samplers import dpm_solver_pp_sample_loop_progressive

    return lambda model, shape, noise: dpm_solver_pp_sample_loop_progressive(d, model, shape, noise=noise)


def test_ddim_and_ancestral_with_previous_x_oracle_on_the_full_process():
    d = GaussianDiffusion(betas=get_named_beta_schedule("cosine", 40), model_mean_type=ModelMeanType.PREVIOUS_X,
                          model_var_type=ModelVarType.FIXED_LARGE, loss_type=LossType.MSE)
    oracle = lambda x, t: d.q_posterior_mean_variance(POINT.expand_as(x), x, t)[0]  # noqa: E731
    noise = torch.randn(3, 2, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(d.ddim_sample_loop(oracle, noise.shape, noise=noise), POINT.expand_as(noise))
    torch.testing.assert_close(d.p_sample_loop(oracle, noise.shape, noise=noise), POINT.expand_as(noise))


def _gaussian_case(spec, schedule):
    """Data N(m, s^2): oracle eps and the exact probability-flow ODE solution from x_T (standardised value fixed)."""
    betas = get_named_beta_schedule(schedule, 1000)
    alpha_bar = np.cumprod(1 - betas)
    m, s = 0.3, 1.0

    def eps_model(x, t):
        a = torch.from_numpy(alpha_bar[t.numpy()]).view(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * s * s + 1 - a)

    d = spaced(spec, betas=betas)
    x_T = torch.randn(64, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    a_T = d.alphas_cumprod[-1]
    exact = m + s * (x_T - np.sqrt(a_T) * m) / np.sqrt(a_T * s * s + 1 - a_T)
    return d, eps_model, x_T, exact


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("spec", ["trailing25", "ddim25", "25"])
def test_dpm_solver_pp_beats_ddim_on_gaussian_data(schedule, spec):
    d, eps_model, x_T, exact = _gaussian_case(spec, schedule)
    ddim_err = (d.ddim_sample_loop(eps_model, x_T.shape, noise=x_T) - exact).abs().max()
    dpm_err = (d.dpm_solver_pp_sample_loop(eps_model, x_T.shape, noise=x_T) - exact).abs().max()
    assert dpm_err < ddim_err / 4, (dpm_err, ddim_err)


def test_dpm_solver_pp_is_second_order_and_calls_the_model_once_per_step():
    errors = []
    for n in (40, 80):
        d, eps_model, x_T, exact = _gaussian_case(f"trailing{n}", "cosine")
        calls = []
        counted = lambda x, t, f=eps_model, c=calls: c.append(t) or f(x, t)  # noqa: E731
        errors.append((d.dpm_solver_pp_sample_loop(counted, x_T.shape, noise=x_T) - exact).abs().max().item())
        assert len(calls) == n
    assert errors[0] / errors[1] > 3  # first order would give about 2


def test_samplers_are_reproducible_with_a_generator():
    d = spaced("ddim10")
    model = lambda x, t: 0.5 * x  # noqa: E731
    shape = (2, 2, 3, 3)
    a, b, c = (d.dpm_solver_pp_sample_loop(model, shape, generator=torch.Generator().manual_seed(s)) for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(1)
    first = d.dpm_solver_pp_sample_loop(model, shape)
    torch.manual_seed(1)
    assert torch.equal(first, d.dpm_solver_pp_sample_loop(model, shape, progress=True))


@pytest.mark.parametrize("sampler", ["ddim_sample_loop", "dpm_solver_pp_sample_loop"])
def test_lambda_min_keeps_the_cosine_schedule_s_first_step_from_amplifying_eps_errors(sampler):
    """Gaussian data, its exact eps model and the same model 1e-3 off. From the cosine schedule's T-1 (alpha_bar
    2.4e-9) the first step's x_0 is off by 1e-3 / sqrt(alpha_bar) ~ 20 and the ODE carries that to the end; started
    at the noisiest step with log-SNR >= DEFAULT_LAMBDA_MIN (alpha_bar >= 3.7e-5) the samples move tens of times
    less."""
    from diffusion import DiffusionConfig, create_gaussian_diffusion
    from diffusion.respace import DEFAULT_LAMBDA_MIN

    cfg = DiffusionConfig(diffusion_steps=1000, noise_schedule="cosine", timestep_respacing="trailing20")
    _, eps_model, x_T, _ = _gaussian_case("trailing20", "cosine")
    shifted = lambda offset: lambda x, t: eps_model(x, t) + offset  # noqa: E731
    moved = {}
    for lam in (-np.inf, DEFAULT_LAMBDA_MIN):
        loop = getattr(create_gaussian_diffusion(cfg, lambda_min=lam), sampler)
        exact, off = (loop(shifted(offset), x_T.shape, noise=x_T) for offset in (0.0, 1e-3))
        moved[lam] = (off - exact).abs().max().item()
    assert moved[-np.inf] > 1.0, moved
    assert moved[DEFAULT_LAMBDA_MIN] < 0.05, moved
