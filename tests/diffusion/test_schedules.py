"""Beta schedules: endpoints, the cosine cap, alpha_bar against its closed form, and the error messages."""

import numpy as np
import pytest

from diffusion.schedules import cosine_alpha_bar, get_named_beta_schedule


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [50, 1000, 4000])
def test_alpha_bar_decreases_inside_unit_interval(name, steps):
    betas = get_named_beta_schedule(name, steps)
    alpha_bar = np.cumprod(1.0 - betas)
    assert betas.dtype == np.float64 and betas.shape == (steps,)
    assert np.all(alpha_bar > 0) and np.all(alpha_bar <= 1)
    assert np.all(np.diff(alpha_bar) < 0)


@pytest.mark.parametrize("steps", [100, 1000, 4000])
def test_linear_endpoints_scale_with_steps(steps):
    betas = get_named_beta_schedule("linear", steps)
    scale = 1000 / steps
    assert betas[0] == pytest.approx(1e-4 * scale, rel=1e-12)
    assert betas[-1] == pytest.approx(0.02 * scale, rel=1e-12)
    np.testing.assert_allclose(np.diff(betas), np.full(steps - 1, (0.02 - 1e-4) * scale / (steps - 1)), rtol=1e-9)


@pytest.mark.parametrize("steps", [10, 1000])
def test_cosine_alpha_bar_telescopes_to_closed_form_and_caps_last_beta(steps):
    betas = get_named_beta_schedule("cosine", steps)
    alpha_bar = np.cumprod(1.0 - betas)
    f = np.array([cosine_alpha_bar(k / steps) for k in range(steps + 1)])
    # Uncapped steps: prod (f(t_k) / f(t_{k-1})) = f(t) / f(0), IDDPM eq. 17.
    np.testing.assert_allclose(alpha_bar[:-1], f[1:-1] / f[0], rtol=1e-10)
    assert betas.max() == 0.999 and betas[-1] == 0.999  # f(1) = 0 would make beta_T = 1


def test_schedule_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown beta schedule 'quadratic'; choose one of linear, cosine"):
        get_named_beta_schedule("quadratic", 100)
    with pytest.raises(ValueError, match="linear schedule needs num_diffusion_timesteps > 20"):
        get_named_beta_schedule("linear", 20)
    with pytest.raises(ValueError, match="must be >= 1"):
        get_named_beta_schedule("cosine", 0)
    with pytest.raises(TypeError, match="must be an int"):
        get_named_beta_schedule("cosine", 10.0)
