"""GaussianDiffusion: model variances, training losses (keys, targets, hybrid detach), RNG order, guidance hooks."""

import numpy as np
import pytest
import torch

from diffusion import GaussianDiffusion, LossType, ModelMeanType, ModelVarType, get_named_beta_schedule
from diffusion import formulas as F

T = 30
SHAPE = (3, 2, 4, 4)


def make(mean=ModelMeanType.EPSILON, var=ModelVarType.FIXED_SMALL, loss=LossType.MSE, **kw):
    return GaussianDiffusion(betas=get_named_beta_schedule("linear", T), model_mean_type=mean, model_var_type=var,
                             loss_type=loss, **kw)


class Tiny(torch.nn.Module):
    """A 1x1 conv whose output also depends on t, standing in for a U-Net: model(x, t) -> [N, out, ...]."""

    def __init__(self, out_channels=2, dtype=torch.float32):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, out_channels, 1, dtype=dtype)

    def forward(self, x, t, **_):
        return self.conv(x) + 0.01 * t.to(x.dtype).view(-1, 1, 1, 1)


def oracle(diffusion, point, learned=False):
    """The exact denoiser of the one-point dataset {point}: outputs what the mean type asks for, given x_t."""

    def model(x, t, **_):
        t = t.long()
        x0 = point.expand_as(x).to(x.dtype)
        eps = F.eps_from_xstart(diffusion.tables, x, t, x0)
        out = {ModelMeanType.EPSILON: eps, ModelMeanType.START_X: x0,
               ModelMeanType.VELOCITY: F.v_from_xstart_eps(diffusion.tables, x0, eps, t),
               ModelMeanType.PREVIOUS_X: diffusion.q_posterior_mean_variance(x0, x, t)[0]}[diffusion.model_mean_type]
        return torch.cat([out, torch.zeros_like(out)], 1) if learned else out

    return model


def test_attributes_follow_the_reference():
    d = make()
    assert d.num_timesteps == T and d.alphas_cumprod.dtype == np.float64
    assert d.alphas_cumprod_prev[0] == 1.0 and d.alphas_cumprod_next[-1] == 0.0
    np.testing.assert_array_equal(d.alphas_cumprod_prev[1:], d.alphas_cumprod[:-1])
    np.testing.assert_allclose(d.sqrt_recipm1_alphas_cumprod**2, 1 / d.alphas_cumprod - 1, rtol=1e-12)


@pytest.mark.parametrize("var", list(ModelVarType))
def test_p_mean_variance_variances(var):
    d = make(var=var)
    learned = var in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)
    x, t = torch.zeros(T, 1, dtype=torch.float64), torch.arange(T)
    values = torch.full((T, 1), 0.5, dtype=torch.float64)
    out = d.p_mean_variance(lambda x, t: torch.cat([x, values], 1) if learned else x, x, t)
    expected = {
        ModelVarType.FIXED_SMALL: d.posterior_log_variance_clipped,
        ModelVarType.FIXED_LARGE: np.log(np.append(d.posterior_variance[1], d.betas[1:])),
        ModelVarType.LEARNED: np.full(T, 0.5),
        ModelVarType.LEARNED_RANGE: 0.75 * np.log(d.betas) + 0.25 * d.posterior_log_variance_clipped,
    }[var]
    torch.testing.assert_close(out["log_variance"][:, 0], torch.from_numpy(expected))
    torch.testing.assert_close(out["variance"][1:], out["log_variance"][1:].exp())
    # FIXED_SMALL keeps the true posterior variance 0 at t = 0 beside the clipped log (reference quirk).
    expected_v0 = 0.0 if var == ModelVarType.FIXED_SMALL else out["log_variance"][0, 0].exp().item()
    assert out["variance"][0, 0].item() == pytest.approx(expected_v0, rel=1e-12)


@pytest.mark.parametrize("mean", list(ModelMeanType))
def test_oracle_gives_exact_x0_zero_mse_and_zero_kl(mean):
    d = make(mean=mean)
    point = torch.tensor([0.4, -0.8], dtype=torch.float64).view(1, 2, 1, 1)
    x0 = point.expand(T, 2, 3, 3)
    t = torch.arange(T)
    noise = torch.randn(x0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_t = d.q_sample(x0, t, noise)
    out = d.p_mean_variance(oracle(d, point), x_t, t)
    torch.testing.assert_close(out["pred_xstart"], x0)
    losses = d.training_losses(oracle(d, point), x0, t, noise=noise)
    assert set(losses) == {"loss", "mse"} and losses["loss"].shape == (T,)
    assert losses["mse"].max() < 1e-18
    kl = make(mean=mean, loss=LossType.KL).training_losses(oracle(d, point), x0, t, noise=noise)["loss"]
    assert kl[1:].abs().max() < 1e-9  # t > 0: KL(q || p) with the true posterior mean and variance


@pytest.mark.parametrize("loss", list(LossType))
@pytest.mark.parametrize("var", [ModelVarType.FIXED_LARGE, ModelVarType.LEARNED_RANGE])
def test_training_losses_keys_and_shapes(loss, var):
    d = make(var=var, loss=loss)
    learned = var == ModelVarType.LEARNED_RANGE
    model = Tiny(4 if learned else 2)
    x0, t = torch.randn(SHAPE), torch.tensor([0, 5, T - 1])
    terms = d.training_losses(model, x0, t)
    expected = {"loss"} if loss.is_vb() else ({"loss", "mse", "vb"} if learned else {"loss", "mse"})
    expected |= {"mae"} if loss == LossType.L1 else set()
    assert set(terms) == expected and all(v.shape == (3,) for v in terms.values())
    main = terms["mae"] if loss == LossType.L1 else terms.get("mse")
    if "vb" in terms:
        torch.testing.assert_close(terms["loss"], main + terms["vb"])


def test_rescaled_losses_scale_the_bound():
    x0, t = torch.randn(SHAPE), torch.tensor([0, 5, T - 1])
    noise = torch.randn(SHAPE)
    model = Tiny(4)
    per = {loss: make(var=ModelVarType.LEARNED_RANGE, loss=loss).training_losses(model, x0, t, noise=noise)
           for loss in LossType}
    torch.testing.assert_close(per[LossType.RESCALED_MSE]["vb"], per[LossType.MSE]["vb"] * T / 1000)
    torch.testing.assert_close(per[LossType.RESCALED_KL]["loss"], per[LossType.KL]["loss"] * T)
    torch.testing.assert_close(per[LossType.KL]["loss"], per[LossType.MSE]["vb"])


def test_hybrid_vb_term_sends_no_gradient_to_the_mean_channels():
    d = make(var=ModelVarType.LEARNED_RANGE)
    output = torch.randn(3, 4, 4, 4, requires_grad=True)
    terms = d.training_losses(lambda x, t: output, torch.randn(SHAPE), torch.tensor([0, 5, T - 1]))
    (grad,) = torch.autograd.grad(terms["vb"].sum(), output)
    assert torch.all(grad[:, :2] == 0) and grad[:, 2:].abs().sum() > 0
    (grad_mse,) = torch.autograd.grad(terms["mse"].sum(), output)
    assert torch.all(grad_mse[:, 2:] == 0) and grad_mse[:, :2].abs().sum() > 0


def test_p_sample_loop_draws_from_the_global_rng_in_the_reference_order():
    d = make(var=ModelVarType.FIXED_LARGE)
    model = Tiny()
    torch.manual_seed(7)
    sample = d.p_sample_loop(model, SHAPE)
    torch.manual_seed(7)  # by hand: x_T, then one randn_like per step (also at t = 0, where it is masked)
    x = torch.randn(*SHAPE)
    with torch.no_grad():
        for i in reversed(range(T)):
            out = d.p_mean_variance(model, x, torch.full((3,), i))
            x = out["mean"] + (i != 0) * torch.exp(0.5 * out["log_variance"]) * torch.randn_like(x)
    assert torch.equal(sample, x)
    unseeded = [d.p_sample_loop(model, SHAPE, noise=sample) for _ in range(2)]
    assert not torch.equal(*unseeded)  # step noise still comes from the (advancing) global RNG
    torch.manual_seed(3)
    first = d.p_sample_loop(model, SHAPE, noise=sample)
    torch.manual_seed(3)
    assert torch.equal(first, d.p_sample_loop(model, SHAPE, noise=sample))


def test_ddim_draws_one_noise_per_step_even_at_eta_zero():
    d = make()
    model = Tiny()
    torch.manual_seed(0)
    d.ddim_sample_loop(model, SHAPE, eta=0.0)
    after_loop = torch.randn(1)
    torch.manual_seed(0)
    for _ in range(T + 1):
        torch.randn(*SHAPE)
    assert torch.equal(after_loop, torch.randn(1))


def test_generator_reproduces_and_leaves_the_global_rng_alone():
    d = make(var=ModelVarType.FIXED_LARGE)
    model = Tiny()
    torch.manual_seed(0)
    before = torch.get_rng_state()
    runs = [d.p_sample_loop(model, SHAPE, generator=torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    ddim = [d.ddim_sample_loop(model, SHAPE, eta=1.0, generator=torch.Generator().manual_seed(s)) for s in (1, 1)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2]) and torch.equal(*ddim)
    assert torch.equal(before, torch.get_rng_state())


def test_ddim_reverse_then_forward_returns_to_the_start():
    d = make()
    point = torch.tensor([0.4, -0.8], dtype=torch.float64).view(1, 2, 1, 1)
    x0 = point.expand(*SHAPE)
    t = torch.full((3,), 10)
    x = d.q_sample(x0, t, torch.randn(SHAPE, dtype=torch.float64))
    up = d.ddim_reverse_sample(oracle(d, point), x, t)["sample"]
    back = d.ddim_sample(oracle(d, point), up, t + 1)["sample"]
    torch.testing.assert_close(back, x, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="eta must be 0.0"):
        d.ddim_reverse_sample(oracle(d, point), x, t, eta=0.5)


def test_condition_mean_and_score_shift_by_the_gradient():
    d = make()
    x, t = torch.randn(SHAPE, dtype=torch.float64), torch.tensor([3, 10, 29])
    grad = torch.randn(SHAPE, dtype=torch.float64)
    seen = []
    out = d.p_mean_variance(Tiny(dtype=torch.float64), x, t)
    cond_fn = lambda x, t, y=None: seen.append((t, y)) or grad  # noqa: E731
    shifted = d.condition_mean(cond_fn, out, x, t, model_kwargs={"y": 4})
    torch.testing.assert_close(shifted, out["mean"] + out["variance"] * grad)
    scored = d.condition_score(cond_fn, out, x, t, model_kwargs={"y": 4})
    abar = torch.from_numpy(d.alphas_cumprod[t.numpy()]).view(-1, 1, 1, 1)
    eps = d._predict_eps_from_xstart(x, t, out["pred_xstart"])
    torch.testing.assert_close(d._predict_eps_from_xstart(x, t, scored["pred_xstart"]), eps - (1 - abar).sqrt() * grad)
    assert all(torch.equal(s, t) and y == 4 for s, y in seen)


def test_rescale_timesteps_and_calc_bpd_loop():
    d = make(rescale_timesteps=True)
    seen = []
    model = lambda x, t: seen.append(t) or torch.zeros_like(x)  # noqa: E731
    bpd = d.calc_bpd_loop(model, torch.rand(2, 2, 4, 4) * 2 - 1)
    assert seen[0].dtype == torch.float32 and seen[0][0].item() == pytest.approx((T - 1) * 1000 / T)
    assert bpd["vb"].shape == bpd["mse"].shape == bpd["xstart_mse"].shape == (2, T)
    torch.testing.assert_close(bpd["total_bpd"], bpd["vb"].sum(1) + bpd["prior_bpd"])
    assert torch.all(bpd["prior_bpd"] > 0) and torch.all(bpd["vb"] >= 0)


def test_errors_name_the_problem():
    with pytest.raises(TypeError, match="expected a ModelMeanType"):
        GaussianDiffusion(betas=get_named_beta_schedule("linear", T), model_mean_type="eps",
                          model_var_type=ModelVarType.FIXED_SMALL, loss_type=LossType.MSE)
    d = make(var=ModelVarType.LEARNED)
    x = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="learned variance needs 2C = 4 output channels"):
        d.p_mean_variance(lambda x, t: x, x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        d.p_mean_variance(lambda x, t: x, x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="noise shape"):
        d.q_sample(x, torch.zeros(3, dtype=torch.long), noise=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"noise has shape \(3, 2\) but shape=\(3, 2, 4, 4\)"):
        d.p_sample_loop(lambda x, t: x, SHAPE, noise=torch.zeros(3, 2))
    with pytest.raises(TypeError, match="shape must be a tuple or list"):
        d.p_sample_loop(lambda x, t: x, torch.Size([3, 2]).numel())
