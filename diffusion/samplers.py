"""Sampling loops over a diffusion process and any denoiser `model(x, t, **model_kwargs)`.

The per-step updates (ancestral, DDIM) are methods of the process (`GaussianDiffusion`); this module owns the
loops, the noise draws and DPM-Solver++ (2M). Noise: with `generator=None` every draw comes from torch's global RNG
in the reference's order (the start noise, then one `randn_like` per step), so `torch.manual_seed` reproduces
guided-diffusion's samples; with a `torch.Generator` every draw uses it instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor


class DiffusionProcess(Protocol):
    """What the loops here need of a process (diffusion.gaussian_diffusion.GaussianDiffusion is one): this module
    does not import it, so the dependency runs one way, from the process to its samplers."""

    num_timesteps: int
    alphas_cumprod: Any  # float64 [T]

    def p_mean_variance(self, model: Any, x: Tensor, t: Tensor, clip_denoised: bool = False,
                        denoised_fn: Callable[[Tensor], Tensor] | None = None,
                        model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]: ...

    def condition_score(self, cond_fn: Callable[..., Tensor], p_mean_var: dict[str, Tensor], x: Tensor, t: Tensor,
                        model_kwargs: dict[str, Any] | None = None) -> dict[str, Tensor]: ...


def randn_like(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Standard normal noise shaped like x, from `generator` or (None) the global RNG exactly as torch.randn_like."""
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def resolve_device(model: Any, device: torch.device | str | None, noise: Tensor | None = None) -> torch.device:
    """The device to sample on: the given one, else the model's parameters', else the noise's, else CPU."""
    if device is not None:
        return torch.device(device)
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        first = next(iter(parameters()), None)
        if first is not None:
            return first.device
    return noise.device if noise is not None else torch.device("cpu")


def initial_noise(
    shape: Sequence[int], noise: Tensor | None, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """x_T: the given noise (checked against shape) or one standard normal draw [N, C, ...]."""
    if not isinstance(shape, tuple | list):
        raise TypeError(f"shape must be a tuple or list like (N, C, H, W), got {type(shape).__name__}")
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)} but shape={tuple(shape)} was asked for")
        return noise
    if generator is None:
        return torch.randn(*shape, device=device)
    return torch.randn(*shape, generator=generator, device=device)


def _timesteps(num_timesteps: int, progress: bool) -> Iterator[int] | list[int]:
    indices = list(range(num_timesteps))[::-1]
    if progress:
        from tqdm.auto import tqdm

        return tqdm(indices)
    return indices


def sample_loop_progressive(
    step: Callable[..., dict[str, Tensor]],
    num_timesteps: int,
    model: Any,
    shape: Sequence[int],
    *,
    noise: Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
    **step_kwargs: Any,
) -> Iterator[dict[str, Tensor]]:
    """Run `step(model, x, t, generator=..., **step_kwargs)` from t = T-1 down to 0, yielding each step's dict."""
    device = resolve_device(model, device, noise)
    img = initial_noise(shape, noise, device, generator)
    for i in _timesteps(num_timesteps, progress):
        t = torch.tensor([i] * shape[0], device=device)
        with torch.no_grad():
            out = step(model, img, t, generator=generator, **step_kwargs)
            yield out
            img = out["sample"]


def final_sample(progressive: Iterator[dict[str, Tensor]]) -> Tensor:
    """The last "sample" of a progressive loop."""
    final = None
    for out in progressive:
        final = out
    if final is None:
        raise ValueError("the sampling loop ran no step (num_timesteps = 0)")
    return final["sample"]


def dpm_solver_pp_sample_loop_progressive(
    diffusion: DiffusionProcess,
    model: Any,
    shape: Sequence[int],
    noise: Tensor | None = None,
    clip_denoised: bool = False,
    denoised_fn: Callable[[Tensor], Tensor] | None = None,
    cond_fn: Callable[..., Tensor] | None = None,
    model_kwargs: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[dict[str, Tensor]]:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) on the diffusion's own timesteps T-1, ..., 0, then to x_0.

    One model call per timestep (the x_0 prediction of `p_mean_variance`, so every mean type, clip_denoised,
    denoised_fn and SpacedDiffusion's timestep mapping apply; cond_fn shifts the score as in DDIM). Deterministic
    after the start noise. Yields {"sample": x after the step, "pred_xstart": x_0 prediction} per step.
    """
    device = resolve_device(model, device, noise)
    x = initial_noise(shape, noise, device, generator)
    alpha_bar = np.asarray(diffusion.alphas_cumprod, dtype=np.float64)
    alpha, sigma = np.sqrt(alpha_bar), np.sqrt(1.0 - alpha_bar)
    lam = np.log(alpha) - np.log(sigma)  # half log-SNR, increasing as t decreases
    prev_x0, prev_h = None, None
    for i in _timesteps(diffusion.num_timesteps, progress):
        t = torch.tensor([i] * shape[0], device=device)
        with torch.no_grad():
            out = diffusion.p_mean_variance(
                model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn, model_kwargs=model_kwargs
            )
            if cond_fn is not None:
                out = diffusion.condition_score(cond_fn, out, x, t, model_kwargs=model_kwargs)
            x0 = out["pred_xstart"]
            if i == 0:
                # 1. Last step to alpha_bar = 1 (sigma = 0, h = inf): the update reduces to x = D; first order,
                #    since the multistep correction 1 / (2 r) vanishes only in the limit.
                x = x0
            else:
                # 2. Step size in half log-SNR from t_i to t_{i-1} (Alg. 2, h_i = lambda_{t_i} - lambda_{t_{i-1}}).
                h = float(lam[i - 1] - lam[i])
                r = prev_h / h if prev_h is not None else 0.0
                if r < 0.5:
                    # 3a. First order (DPM-Solver++ 1 = DDIM) on the first step, and (our stability guard) where the
                    #     step is over twice the last one in lambda (1/(2r) > 1 would amplify the old prediction):
                    #     grids that keep t = 0 ("ddimN", "N") end with such a jump; see docs/diffusion.md.
                    denoised = x0
                else:
                    # 3b. Multistep: D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}, r = h_{i-1} / h_i.
                    denoised = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
                # 4. Alg. 2's data-prediction update: x = (sigma_next / sigma) x - alpha_next (e^{-h} - 1) D.
                x = float(sigma[i - 1] / sigma[i]) * x - float(alpha[i - 1] * np.expm1(-h)) * denoised
                prev_x0, prev_h = x0, h
            yield {"sample": x, "pred_xstart": x0}
