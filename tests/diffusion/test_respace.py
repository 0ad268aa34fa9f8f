"""Respacing: the reference's exact step choices, recomputed betas, and original timesteps reaching model/cond_fn."""

import numpy as np
import pytest
import torch

from diffusion import LossType, ModelMeanType, ModelVarType, SpacedDiffusion, get_named_beta_schedule, space_timesteps


def test_reference_step_choices():
    assert sorted(space_timesteps(1000, "250")) == [round(k * 999 / 249) for k in range(250)]
    assert sorted(space_timesteps(1000, "250"))[:3] == [0, 4, 8] and sorted(space_timesteps(1000, "250"))[-2:] == [
        995, 999]
    assert sorted(space_timesteps(1000, "ddim50")) == list(range(0, 1000, 20))  # never T-1
    steps = sorted(space_timesteps(1000, "10,10,10"))
    assert len(steps) == 30 and steps[0] == 0 and steps[-1] == 999
    assert steps[:10] == [round(k * 333 / 9) for k in range(10)] and steps[10] == 334  # sections of 334, 333, 333
    assert space_timesteps(1000, [10, 10, 10]) == set(steps)
    assert space_timesteps(100, "100") == set(range(100))


def test_trailing_includes_the_last_step():
    for n in (1, 3, 10, 25, 1000):
        steps = sorted(space_timesteps(1000, f"trailing{n}"))
        assert len(steps) == n and steps[-1] == 999 and steps[0] >= 0
    assert sorted(space_timesteps(1000, "trailing10")) == list(range(99, 1000, 100))


def test_respacing_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"'ddim7': no integer stride gives exactly 7 of 10 steps \(ddimN allows "
                                         r"N = 10, 5, 4, 3, 2, \.\.\.\); 'trailing7' or '7' take any count"):
        space_timesteps(10, "ddim7")
    with pytest.raises(ValueError, match="'6,6': cannot take 6 steps from a section of 5"):
        space_timesteps(10, "6,6")
    with pytest.raises(ValueError, match="cannot parse timestep respacing 'fast'"):
        space_timesteps(10, "fast")
    for spec in ("ddim", "ddimX", "ddim0", "trailing0", "trailing-3"):
        with pytest.raises(ValueError, match=f"'{spec}': expected (ddim|trailing)N with a whole number N >= 1"):
            space_timesteps(10, spec)
    for spec in ("0", "10,0"):
        with pytest.raises(ValueError, match="every section needs at least 1 step"):
            space_timesteps(10, spec)
    for spec in ("trailing20", "ddim20", "20"):
        with pytest.raises(ValueError, match=f"'{spec}' asks for 20 steps of a 10-step process.*at most 10"):
            space_timesteps(10, spec)
    assert space_timesteps(10, "") == set(range(10))  # "": every step
    with pytest.raises(ValueError, match="non-empty subset of 0..9"):
        SpacedDiffusion([3, 12], betas=get_named_beta_schedule("cosine", 10), model_mean_type=ModelMeanType.EPSILON,
                        model_var_type=ModelVarType.FIXED_SMALL, loss_type=LossType.MSE)


def _spaced(spec, rescale=False, var=ModelVarType.FIXED_SMALL):
    betas = get_named_beta_schedule("linear", 1000)
    return SpacedDiffusion(space_timesteps(1000, spec), betas=betas, model_mean_type=ModelMeanType.EPSILON,
                           model_var_type=var, loss_type=LossType.MSE, rescale_timesteps=rescale)


def test_spaced_process_keeps_the_original_alpha_bar():
    d = _spaced("ddim50")
    base = np.cumprod(1 - get_named_beta_schedule("linear", 1000))
    assert d.timestep_map == list(range(0, 1000, 20)) and d.num_timesteps == 50
    np.testing.assert_allclose(d.alphas_cumprod, base[d.timestep_map], rtol=1e-12)
    np.testing.assert_allclose(_spaced("1000").betas, get_named_beta_schedule("linear", 1000), rtol=1e-12)


@pytest.mark.parametrize("rescale", [False, True])
def test_model_and_cond_fn_receive_original_timesteps(rescale):
    d = _spaced("10,10,10", rescale=rescale)
    model_ts, cond_ts = [], []
    model = lambda x, t, y=None: model_ts.append(t) or torch.zeros_like(x)  # noqa: E731
    cond_fn = lambda x, t, y=None: cond_ts.append(t) or torch.zeros_like(x)  # noqa: E731
    kwargs = dict(cond_fn=cond_fn, model_kwargs={"y": torch.zeros(2, dtype=torch.long)})
    expected = [t * 1000 / 1000 if rescale else t for t in reversed(d.timestep_map)]
    for loop in (d.p_sample_loop, d.ddim_sample_loop, d.dpm_solver_pp_sample_loop):
        model_ts.clear()
        cond_ts.clear()
        loop(model, (2, 1, 2, 2), **kwargs)
        assert [t[0].item() for t in model_ts] == expected == [t[0].item() for t in cond_ts]
        assert all(t.dtype == (torch.float32 if rescale else torch.int64) for t in model_ts + cond_ts)
    model_ts.clear()
    d.training_losses(model, torch.zeros(2, 1, 2, 2), torch.tensor([0, 29]))
    assert model_ts[0].tolist() == [0, 999]


def test_rescale_maps_to_0_1000_for_a_shorter_original_process():
    betas = get_named_beta_schedule("cosine", 100)
    d = SpacedDiffusion(space_timesteps(100, "ddim10"), betas=betas, model_mean_type=ModelMeanType.EPSILON,
                        model_var_type=ModelVarType.FIXED_SMALL, loss_type=LossType.MSE, rescale_timesteps=True)
    seen = []
    d.ddim_sample_loop(lambda x, t: seen.append(t) or torch.zeros_like(x), (1, 1, 1, 1))
    assert [t.item() for t in seen] == [10.0 * s for s in reversed(range(0, 100, 10))]


def test_usable_timesteps_against_the_closed_form_log_snr():
    from diffusion.respace import DEFAULT_LAMBDA_MIN, usable_timesteps
    from diffusion.schedules import cosine_alpha_bar

    # Linear: alpha_bar at T-1 is 4.04e-5, log-SNR -5.06 >= -5.1: every step stays, so samplers start at T-1 as before.
    assert usable_timesteps(get_named_beta_schedule("linear", 1000)) == 1000
    # Cosine: alpha_bar_t = f((t + 1) / T) / f(0) (the 0.999 beta cap only bites at T-1); keep the steps with
    # 0.5 log(alpha_bar / (1 - alpha_bar)) >= -5.1.
    closed = np.array([cosine_alpha_bar((t + 1) / 1000) / cosine_alpha_bar(0) for t in range(1000)])
    expected = int(np.count_nonzero(0.5 * np.log(closed / (1 - closed)) >= DEFAULT_LAMBDA_MIN))
    assert 990 < expected < 1000
    assert usable_timesteps(get_named_beta_schedule("cosine", 1000)) == expected
    assert usable_timesteps(get_named_beta_schedule("cosine", 1000), -np.inf) == 1000
    assert usable_timesteps(get_named_beta_schedule("cosine", 1000), 50.0) == 1  # never fewer than one step


def test_lambda_min_lays_the_respacing_over_the_usable_steps_only():
    from diffusion import DiffusionConfig, create_gaussian_diffusion
    from diffusion.respace import DEFAULT_LAMBDA_MIN

    for schedule, first in (("linear", 999), ("cosine", 995)):
        cfg = DiffusionConfig(noise_schedule=schedule, timestep_respacing="trailing20")
        clipped = create_gaussian_diffusion(cfg, lambda_min=DEFAULT_LAMBDA_MIN)
        assert list(clipped.timestep_map) == sorted(space_timesteps(first + 1, "trailing20"))
        assert max(create_gaussian_diffusion(cfg).timestep_map) == 999  # the factory's default: the reference's


def test_a_default_respacing_is_capped_at_the_usable_steps_and_a_chosen_one_is_not():
    from diffusion import DiffusionConfig
    from diffusion.respace import check_respacing, fit_default_respacing, process_usable

    short = DiffusionConfig(noise_schedule="cosine", diffusion_steps=50)
    usable = process_usable(short)
    assert 40 < usable < 50  # the cosine schedule's last steps fall below the default log-SNR floor
    assert fit_default_respacing(short, "ddim50") == f"ddim{usable}"
    assert fit_default_respacing(short, "trailing20") == "trailing20"  # fits: unchanged
    assert fit_default_respacing(short, "") == ""  # every step (ddpm's default)
    assert fit_default_respacing(short, "ddim50", -np.inf) == "ddim50"  # -inf keeps all 50
    check_respacing(short, fit_default_respacing(short, "ddim50"))  # the capped default fits
    with pytest.raises(ValueError, match=f"'ddim50' asks for 50 steps of a {usable}-step process"):
        check_respacing(short, "ddim50")  # as the user's own choice it is refused with the reason
