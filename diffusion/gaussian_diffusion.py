"""GaussianDiffusion: openai/guided-diffusion's process class, thin over `diffusion.formulas` and `diffusion.samplers`.

Method names, arguments and numbers follow the reference (`gaussian_diffusion.py`), with these differences:
`clip_denoised` defaults to False (latents are not in [-1, 1]; pass True for pixels), a fourth mean type
VELOCITY (v-prediction), a `generator=` keyword on every noise draw, and `dpm_solver_pp_sample_loop`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffusion import formulas as F
from diffusion import samplers
from diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl

Model = Callable[..., Tensor]


class ModelMeanType(enum.Enum):
    """What the model's first C output channels predict."""

    PREVIOUS_X = enum.auto()  # the posterior mean of x_{t-1}
    START_X = enum.auto()  # x_0
    EPSILON = enum.auto()  # the noise eps
    VELOCITY = enum.auto()  # v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022)


class ModelVarType(enum.Enum):
    """Where the reverse-step variance comes from (LEARNED*: C extra output channels)."""

    LEARNED = enum.auto()  # the extra channels are log sigma^2
    FIXED_SMALL = enum.auto()  # posterior variance beta_tilde_t
    FIXED_LARGE = enum.auto()  # beta_t
    LEARNED_RANGE = enum.auto()  # the extra channels v in [-1, 1] interpolate log beta_tilde_t .. log beta_t


class LossType(enum.Enum):
    MSE = enum.auto()  # MSE of the mean output (+ the variational bound for learned variances)
    RESCALED_MSE = enum.auto()  # MSE + variational bound scaled by T / 1000
    KL = enum.auto()  # the variational bound alone
    RESCALED_KL = enum.auto()  # the bound times T: an estimate of the full bound
    L1 = enum.auto()  # mean absolute error of the mean output (the Keras DDIM example's noise loss)

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


_LEARNED = (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)
# What the model is given besides x_t: the timestep (the reference) or the noise variance 1 - alpha_bar_t.
MODEL_INPUTS = ("timestep", "noise_variance")


class GaussianDiffusion:
    """Training and sampling utilities for a Gaussian diffusion with the given betas [T] (float64 tables).

    Attributes as the reference: num_timesteps, betas, alphas_cumprod, alphas_cumprod_prev, alphas_cumprod_next,
    sqrt_alphas_cumprod, ..., posterior_mean_coef1/2 (numpy float64 [T]). With rescale_timesteps the model sees
    float timesteps t * 1000 / T (so it always sees the 0..1000 range of the original paper).
    """

    def __init__(
        self,
        *,
        betas: np.ndarray,
        model_mean_type: ModelMeanType,
        model_var_type: ModelVarType,
        loss_type: LossType,
        rescale_timesteps: bool = False,
        model_input: str = "timestep",
    ) -> None:
        for value, kind in ((model_mean_type, ModelMeanType), (model_var_type, ModelVarType), (loss_type, LossType)):
            if not isinstance(value, kind):
                raise TypeError(f"expected a {kind.__name__} (one of {[m.name for m in kind]}), got {value!r}")
        self.model_mean_type = model_mean_type
        self.model_var_type = model_var_type
        self.loss_type = loss_type
        self.rescale_timesteps = rescale_timesteps
        if model_input not in MODEL_INPUTS:
            raise ValueError(f"model_input must be one of {MODEL_INPUTS}, got {model_input!r}")
        self.model_input = model_input
        self.tables = F.process_tables(betas)
        vars(self).update(self.tables.as_dict())  # reference attribute names: self.betas, self.alphas_cumprod, ...
        self.num_timesteps = int(self.tables.betas.shape[0])

    # -- q: the forward process -------------------------------------------------------------------------------
    def q_mean_variance(self, x_start: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance, log-variance of q(x_t | x_0), each [N, C, ...]."""
        return F.q_mean_variance(self.tables, x_start, t)

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """Sample x_t ~ q(x_t | x_0) [N, C, ...]; t [N] (0 means one step of noise)."""
        if noise is None:
            noise = torch.randn_like(x_start)
        if noise.shape != x_start.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} differs from x_start shape {tuple(x_start.shape)}")
        return F.q_sample(self.tables, x_start, t, noise)

    def q_posterior_mean_variance(self, x_start: Tensor, x_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0), each [N, C, ...]."""
        if x_start.shape != x_t.shape:
            raise ValueError(f"x_start {tuple(x_start.shape)} and x_t {tuple(x_t.shape)} must have one shape")
        return F.q_posterior_mean_variance(self.tables, x_start, x_t, t)

    # -- p: the model's reverse process ---------------------------------------------------------------------
    def _scale_timesteps(self, t: Tensor) -> Tensor:
        """What the model is given for step t: t, t * 1000 / T (rescale_timesteps), or the noise variance
        1 - alpha_bar_t (model_input "noise_variance", as the Keras DDIM example's network)."""
        if self.model_input == "noise_variance":
            return torch.as_tensor(1.0 - self.alphas_cumprod, dtype=torch.float32, device=t.device)[t]
        return t.float() * (1000.0 / self.num_timesteps) if self.rescale_timesteps else t

    def _predict_xstart_from_eps(self, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        return F.xstart_from_eps(self.tables, x_t, t, eps)

    def _predict_eps_from_xstart(self, x_t: Tensor, t: Tensor, pred_xstart: Tensor) -> Tensor:
        return F.eps_from_xstart(self.tables, x_t, t, pred_xstart)

    def _model_variance(self, var_values: Tensor | None, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        if self.model_var_type == ModelVarType.LEARNED:
            return torch.exp(var_values), var_values
        if self.model_var_type == ModelVarType.LEARNED_RANGE:
            log_variance = F.learned_range_log_variance(self.tables, t, var_values)
            return torch.exp(log_variance), log_variance
        variance, log_variance = F.fixed_variance_tables(self.tables, self.model_var_type == ModelVarType.FIXED_LARGE)
        return F.extract(variance, t, x).expand_as(x), F.extract(log_variance, t, x).expand_as(x)

    def _xstart_from_output(self, output: Tensor, x: Tensor, t: Tensor) -> Tensor:
        converters = {
            ModelMeanType.PREVIOUS_X: F.xstart_from_xprev,
            ModelMeanType.EPSILON: F.xstart_from_eps,
            ModelMeanType.VELOCITY: F.xstart_from_v,
        }
        if self.model_mean_type == ModelMeanType.START_X:
            return output
        return converters[self.model_mean_type](self.tables, x, t, output)

    def p_mean_variance(
        self,
        model: Model,
        x: Tensor,
        t: Tensor,
        clip_denoised: bool = False,
        denoised_fn: Callable[[Tensor], Tensor] | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Tensor]:
        """Apply the model: p(x_{t-1} | x_t) as dict(mean, variance, log_variance, pred_xstart), each [N, C, ...].

        denoised_fn (then clipping to [-1, 1] when clip_denoised) is applied to the x_0 prediction.
        """
        model_kwargs = {} if model_kwargs is None else model_kwargs
        B, C = x.shape[:2]
        if t.shape != (B,):
            raise ValueError(f"t must have shape ({B},) (one timestep per example), got {tuple(t.shape)}")
        model_output = model(x, self._scale_timesteps(t), **model_kwargs)
        var_values = None
        if self.model_var_type in _LEARNED:
            if model_output.shape != (B, C * 2, *x.shape[2:]):
                raise ValueError(
                    f"a learned variance needs 2C = {2 * C} output channels, got output {tuple(model_output.shape)}"
                )
            model_output, var_values = torch.split(model_output, C, dim=1)
        model_variance, model_log_variance = self._model_variance(var_values, x, t)

        pred_xstart = self._xstart_from_output(model_output, x, t)
        if denoised_fn is not None:
            pred_xstart = denoised_fn(pred_xstart)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            model_mean = model_output  # the reference keeps the raw output: clipping only touches pred_xstart
        else:
            model_mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": model_mean, "variance": model_variance, "log_variance": model_log_variance,
                "pred_xstart": pred_xstart}

    def condition_mean(self, cond_fn: Callable[..., Tensor], p_mean_var: dict[str, Tensor], x: Tensor, t: Tensor,
                       model_kwargs: dict[str, Any] | None = None) -> Tensor:
        """Classifier guidance for ancestral sampling (Sohl-Dickstein et al. 2015; Dhariwal & Nichol 2021 Alg. 1):
        mean + variance * grad log p(y | x_t)."""
        gradient = cond_fn(x, self._scale_timesteps(t), **(model_kwargs or {}))
        dtype = torch.promote_types(p_mean_var["mean"].dtype, torch.float32)  # the reference's .float(), or float64
        return p_mean_var["mean"].to(dtype) + p_mean_var["variance"] * gradient.to(dtype)

    def condition_score(self, cond_fn: Callable[..., Tensor], p_mean_var: dict[str, Tensor], x: Tensor, t: Tensor,
                        model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:
        """Classifier guidance for DDIM (Song et al. 2021; Dhariwal & Nichol 2021 Alg. 2):
        eps <- eps - sqrt(1 - alpha_bar) grad log p(y | x_t); returns p_mean_var with new pred_xstart and mean."""
        alpha_bar = F.extract(self.alphas_cumprod, t, x)
        eps = self._predict_eps_from_xstart(x, t, p_mean_var["pred_xstart"])
        eps = eps - (1 - alpha_bar).sqrt() * cond_fn(x, self._scale_timesteps(t), **(model_kwargs or {}))
        out = dict(p_mean_var)
        out["pred_xstart"] = self._predict_xstart_from_eps(x, t, eps)
        out["mean"], _, _ = self.q_posterior_mean_variance(out["pred_xstart"], x, t)
        return out

    # -- sampling steps (loops live in diffusion.samplers) --------------------------------------------------------
    def p_sample(self, model: Model, x: Tensor, t: Tensor, clip_denoised: bool = False,
                 denoised_fn: Callable[[Tensor], Tensor] | None = None, cond_fn: Callable[..., Tensor] | None = None,
                 model_kwargs: dict[str, Any] | None = None,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One ancestral step x_t -> x_{t-1} (DDPM Alg. 2); returns dict(sample, pred_xstart)."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        noise = samplers.randn_like(x, generator)  # drawn before cond_fn runs, as in the reference
        nonzero_mask = (t != 0).float().view(-1, *([1] * (x.dim() - 1)))  # no noise at t = 0
        if cond_fn is not None:
            out["mean"] = self.condition_mean(cond_fn, out, x, t, model_kwargs=model_kwargs)
        sample = out["mean"] + nonzero_mask * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model: Model, x: Tensor, t: Tensor, clip_denoised: bool = False,
                    denoised_fn: Callable[[Tensor], Tensor] | None = None,
                    cond_fn: Callable[..., Tensor] | None = None, model_kwargs: dict[str, Any] | None = None,
                    eta: float = 0.0, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """One DDIM step x_t -> x_{t-1} (DDIM eqs. 12, 16); draws noise even at eta = 0, as the reference does."""
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, t, model_kwargs=model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])  # re-derived for x_0 / x_prev / v models
        alpha_bar = F.extract(self.alphas_cumprod, t, x)
        alpha_bar_prev = F.extract(self.alphas_cumprod_prev, t, x)
        sigma = F.ddim_sigma(alpha_bar, alpha_bar_prev, eta)
        noise = samplers.randn_like(x, generator)
        nonzero_mask = (t != 0).float().view(-1, *([1] * (x.dim() - 1)))
        sample = F.ddim_mean(out["pred_xstart"], eps, alpha_bar_prev, sigma) + nonzero_mask * sigma * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_reverse_sample(self, model: Model, x: Tensor, t: Tensor, clip_denoised: bool = False,
                            denoised_fn: Callable[[Tensor], Tensor] | None = None,
                            model_kwargs: dict[str, Any] | None = None, eta: float = 0.0) -> dict[str, Tensor]:
        """One deterministic DDIM inversion step x_t -> x_{t+1} (DDIM eq. 12 reversed; eta must be 0)."""
        if eta != 0.0:
            raise ValueError(f"ddim_reverse_sample is the deterministic ODE: eta must be 0.0, got {eta}")
        out = self.p_mean_variance(model, x, t, clip_denoised, denoised_fn, model_kwargs)
        eps = self._predict_eps_from_xstart(x, t, out["pred_xstart"])
        alpha_bar_next = F.extract(self.alphas_cumprod_next, t, x)
        sample = out["pred_xstart"] * torch.sqrt(alpha_bar_next) + torch.sqrt(1 - alpha_bar_next) * eps
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    # -- sampling loops -------------------------------------------------------------------------------------
    def p_sample_loop_progressive(self, model: Model, shape: Sequence[int], noise: Tensor | None = None,
                                  clip_denoised: bool = False, denoised_fn: Callable[[Tensor], Tensor] | None = None,
                                  cond_fn: Callable[..., Tensor] | None = None,
                                  model_kwargs: dict[str, Any] | None = None, device: torch.device | str | None = None,
                                  progress: bool = False,
                                  generator: torch.Generator | None = None) -> Iterator[dict[str, Tensor]]:
        """Ancestral sampling from x_T ~ N(0, I) [shape]; yields p_sample's dict at every timestep."""
        return samplers.sample_loop_progressive(
            self.p_sample, self.num_timesteps, model, shape, noise=noise, device=device, progress=progress,
            generator=generator, clip_denoised=clip_denoised, denoised_fn=denoised_fn, cond_fn=cond_fn,
            model_kwargs=model_kwargs)

    def p_sample_loop(self, model: Model, shape: Sequence[int], noise: Tensor | None = None,
                      clip_denoised: bool = False, denoised_fn: Callable[[Tensor], Tensor] | None = None,
                      cond_fn: Callable[..., Tensor] | None = None, model_kwargs: dict[str, Any] | None = None,
                      device: torch.device | str | None = None, progress: bool = False,
                      generator: torch.Generator | None = None) -> Tensor:
        """Ancestral samples [shape] (no gradients)."""
        return samplers.final_sample(self.p_sample_loop_progressive(
            model, shape, noise, clip_denoised, denoised_fn, cond_fn, model_kwargs, device, progress, generator))

    def ddim_sample_loop_progressive(self, model: Model, shape: Sequence[int], noise: Tensor | None = None,
                                     clip_denoised: bool = False,
                                     denoised_fn: Callable[[Tensor], Tensor] | None = None,
                                     cond_fn: Callable[..., Tensor] | None = None,
                                     model_kwargs: dict[str, Any] | None = None,
                                     device: torch.device | str | None = None, progress: bool = False,
                                     eta: float = 0.0,
                                     generator: torch.Generator | None = None) -> Iterator[dict[str, Tensor]]:
        """DDIM sampling; yields ddim_sample's dict at every timestep."""
        return samplers.sample_loop_progressive(
            self.ddim_sample, self.num_timesteps, model, shape, noise=noise, device=device, progress=progress,
            generator=generator, clip_denoised=clip_denoised, denoised_fn=denoised_fn, cond_fn=cond_fn,
            model_kwargs=model_kwargs, eta=eta)

    def ddim_sample_loop(self, model: Model, shape: Sequence[int], noise: Tensor | None = None,
                         clip_denoised: bool = False, denoised_fn: Callable[[Tensor], Tensor] | None = None,
                         cond_fn: Callable[..., Tensor] | None = None, model_kwargs: dict[str, Any] | None = None,
                         device: torch.device | str | None = None, progress: bool = False, eta: float = 0.0,
                         generator: torch.Generator | None = None) -> Tensor:
        """DDIM samples [shape] (no gradients); eta = 0 is deterministic given the start noise."""
        return samplers.final_sample(self.ddim_sample_loop_progressive(
            model, shape, noise, clip_denoised, denoised_fn, cond_fn, model_kwargs, device, progress, eta, generator))

    def dpm_solver_pp_sample_loop(self, model: Model, shape: Sequence[int], noise: Tensor | None = None,
                                  clip_denoised: bool = False, denoised_fn: Callable[[Tensor], Tensor] | None = None,
                                  cond_fn: Callable[..., Tensor] | None = None,
                                  model_kwargs: dict[str, Any] | None = None, device: torch.device | str | None = None,
                                  progress: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """DPM-Solver++(2M) samples [shape] on this process's timesteps (use a SpacedDiffusion of 10-25 steps)."""
        return samplers.final_sample(samplers.dpm_solver_pp_sample_loop_progressive(
            self, model, shape, noise, clip_denoised, denoised_fn, cond_fn, model_kwargs, device, progress, generator))

    # -- losses -------------------------------------------------------------------------------------------------
    def _vb_terms_bpd(self, model: Model, x_start: Tensor, x_t: Tensor, t: Tensor, clip_denoised: bool = False,
                      model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:
        """One variational-bound term in bits [N]: KL(q || p) for t > 0, the decoder NLL at t = 0 (DDPM eq. 5)."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, out["mean"], out["log_variance"])) / np.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
        )
        decoder_nll = mean_flat(decoder_nll) / np.log(2.0)
        return {"output": torch.where(t == 0, decoder_nll, kl), "pred_xstart": out["pred_xstart"]}

    def _mse_target(self, x_start: Tensor, x_t: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        if self.model_mean_type == ModelMeanType.PREVIOUS_X:
            return self.q_posterior_mean_variance(x_start, x_t, t)[0]
        if self.model_mean_type == ModelMeanType.START_X:
            return x_start
        if self.model_mean_type == ModelMeanType.VELOCITY:
            return F.v_from_xstart_eps(self.tables, x_start, noise, t)
        return noise

    def training_losses(self, model: Model, x_start: Tensor, t: Tensor, model_kwargs: dict[str, Any] | None = None,
                        noise: Tensor | None = None) -> dict[str, Tensor]:
        """Losses for one timestep per example: dict with "loss" [N], plus "mse" and (learned variance) "vb"."""
        model_kwargs = {} if model_kwargs is None else model_kwargs
        noise = torch.randn_like(x_start) if noise is None else noise
        x_t = self.q_sample(x_start, t, noise=noise)
        terms: dict[str, Tensor] = {}
        if self.loss_type.is_vb():
            terms["loss"] = self._vb_terms_bpd(model, x_start, x_t, t, False, model_kwargs)["output"]
            if self.loss_type == LossType.RESCALED_KL:
                terms["loss"] = terms["loss"] * self.num_timesteps
            return terms

        model_output = model(x_t, self._scale_timesteps(t), **model_kwargs)
        if self.model_var_type in _LEARNED:
            B, C = x_t.shape[:2]
            if model_output.shape != (B, 2 * C, *x_t.shape[2:]):
                raise ValueError(f"a learned variance needs {2 * C} output channels, got {tuple(model_output.shape)}")
            model_output, var_values = torch.split(model_output, C, dim=1)
            # Hybrid loss (IDDPM eq. 16): the bound trains the variance only, so the mean output is detached.
            frozen_out = torch.cat([model_output.detach(), var_values], dim=1)
            terms["vb"] = self._vb_terms_bpd(lambda *args, r=frozen_out: r, x_start, x_t, t, False)["output"]
            if self.loss_type == LossType.RESCALED_MSE:
                terms["vb"] = terms["vb"] * (self.num_timesteps / 1000.0)  # the reference's scale for T = 1000
        target = self._mse_target(x_start, x_t, t, noise)
        if model_output.shape != target.shape:
            raise ValueError(f"model output {tuple(model_output.shape)} does not match target {tuple(target.shape)}")
        terms["mse"] = mean_flat((target - model_output) ** 2)
        if self.loss_type == LossType.L1:
            terms["mae"] = mean_flat((target - model_output).abs())
        main = terms["mae"] if self.loss_type == LossType.L1 else terms["mse"]
        terms["loss"] = main + terms["vb"] if "vb" in terms else main
        return terms

    def _prior_bpd(self, x_start: Tensor) -> Tensor:
        """KL(q(x_T | x_0) || N(0, I)) in bits per dim [N]; fixed by the schedule, not trainable."""
        t = torch.tensor([self.num_timesteps - 1] * x_start.shape[0], device=x_start.device)
        qt_mean, _, qt_log_variance = self.q_mean_variance(x_start, t)
        return mean_flat(normal_kl(qt_mean, qt_log_variance, 0.0, 0.0)) / np.log(2.0)

    def calc_bpd_loop(self, model: Model, x_start: Tensor, clip_denoised: bool = False,
                      model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]:
        """The whole variational bound in bits/dim: total_bpd [N], prior_bpd [N], vb, xstart_mse, mse [N, T]."""
        vb, xstart_mse, mse = [], [], []
        for i in list(range(self.num_timesteps))[::-1]:
            t = torch.tensor([i] * x_start.shape[0], device=x_start.device)
            noise = torch.randn_like(x_start)
            x_t = self.q_sample(x_start, t, noise=noise)
            with torch.no_grad():
                out = self._vb_terms_bpd(model, x_start, x_t, t, clip_denoised, model_kwargs)
            vb.append(out["output"])
            xstart_mse.append(mean_flat((out["pred_xstart"] - x_start) ** 2))
            mse.append(mean_flat((self._predict_eps_from_xstart(x_t, t, out["pred_xstart"]) - noise) ** 2))
        prior_bpd = self._prior_bpd(x_start)
        vb_t = torch.stack(vb, dim=1)
        return {"total_bpd": vb_t.sum(dim=1) + prior_bpd, "prior_bpd": prior_bpd, "vb": vb_t,
                "xstart_mse": torch.stack(xstart_mse, dim=1), "mse": torch.stack(mse, dim=1)}
