"""Timestep respacing: sample with a subset of a trained process's timesteps (as guided-diffusion's respace.py).

A kept subset t_0 < ... < t_{K-1} defines a K-step process with betas 1 - alpha_bar[t_k] / alpha_bar[t_{k-1}],
so its alpha_bar values are exactly the original ones at the kept steps. The model keeps seeing the ORIGINAL
timesteps (optionally rescaled to 0..1000): every model and cond_fn call goes through `_WrappedModel`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from diffusion.config import parse_respacing
from diffusion.gaussian_diffusion import GaussianDiffusion
from diffusion.schedules import betas_from_alpha_bars, get_named_beta_schedule


def _too_many(spec: str, count: int, num_timesteps: int) -> ValueError:
    return ValueError(f"timestep respacing {spec!r} asks for {count} steps of a {num_timesteps}-step process (the "
                      f"model's timesteps that sampling uses); give at most {num_timesteps}")


def _ddim_steps(num_timesteps: int, desired_count: int) -> set[int]:
    # The reference's quirk: the smallest integer stride giving exactly N steps, starting at 0, so T-1 is never
    # kept unless the stride is 1 (ddim50 of 1000 is 0, 20, ..., 980).
    if desired_count > num_timesteps:
        raise _too_many(f"ddim{desired_count}", desired_count, num_timesteps)
    for stride in range(1, num_timesteps):  # the reference stops short of stride T (ddim1 is refused)
        if len(range(0, num_timesteps, stride)) == desired_count:
            return set(range(0, num_timesteps, stride))
    possible = sorted({len(range(0, num_timesteps, s)) for s in range(1, num_timesteps)}, reverse=True)
    raise ValueError(f"timestep respacing 'ddim{desired_count}': no integer stride gives exactly {desired_count} of "
                     f"{num_timesteps} steps (ddimN allows N = {', '.join(map(str, possible[:8]))}, ...); "
                     f"'trailing{desired_count}' or '{desired_count}' take any count")


def _trailing_steps(num_timesteps: int, desired_count: int) -> set[int]:
    # "Common Diffusion Noise Schedules and Sample Steps Are Flawed" (Lin et al. 2024, Table 2, trailing):
    # count down from T in float strides of T/N, so T-1 (the noisiest step, where sampling starts) is kept.
    if desired_count > num_timesteps:
        raise _too_many(f"trailing{desired_count}", desired_count, num_timesteps)
    # Computed as T - k T/N (not np.arange(T, 0, -T/N)): arange can yield an extra near-zero entry from rounding.
    steps = np.round(num_timesteps - np.arange(desired_count) * (num_timesteps / desired_count)).astype(np.int64) - 1
    return {int(s) for s in steps}


def _sections(num_timesteps: int, section_counts: list[int]) -> set[int]:
    # Split [0, T) into len(section_counts) equal sections (the first T % len get one more step) and take
    # section_count steps in each with a float stride and Python's round (banker's rounding: the reference's).
    if len(section_counts) == 1 and section_counts[0] > num_timesteps:
        raise _too_many(str(section_counts[0]), section_counts[0], num_timesteps)
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start_idx = 0
    all_steps: list[int] = []
    for i, section_count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if section_count < 1 or size < section_count:
            raise ValueError(f"timestep respacing {','.join(map(str, section_counts))!r}: cannot take "
                             f"{section_count} steps from a section of {size} (the process has {num_timesteps} "
                             f"steps, split into {len(section_counts)} equal sections)")
        frac_stride = 1 if section_count <= 1 else (size - 1) / (section_count - 1)
        cur_idx = 0.0
        for _ in range(section_count):
            all_steps.append(start_idx + round(cur_idx))
            cur_idx += frac_stride
        start_idx += size
    return set(all_steps)


# Sampling starts no noisier than log-SNR lambda = log(alpha / sigma) = -5.1 (diffusers' `lambda_min_clipped` for the
# cosine schedule). An eps model's x_0 = (x_t - sigma_t eps) / alpha_t multiplies its error by 1 / alpha_t: 157 at the
# linear schedule's T-1 (lambda -5.06, kept) but 20,000 at the cosine schedule's (alpha_bar 2.4e-9), which no
# unclipped (latent) model survives. The linear schedule is untouched; -inf keeps every step (the reference).
DEFAULT_LAMBDA_MIN = -5.1


def usable_timesteps(betas: np.ndarray, lambda_min: float = DEFAULT_LAMBDA_MIN) -> int:
    """How many leading timesteps 0..n-1 of a beta schedule have log-SNR >= lambda_min (at least 1)."""
    alpha_bar = np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))
    log_snr = 0.5 * (np.log(alpha_bar) - np.log1p(-alpha_bar))  # decreasing in t
    return max(1, int(np.count_nonzero(log_snr >= lambda_min)))


def space_timesteps(num_timesteps: int, section_counts: str | Iterable[int]) -> set[int]:
    """Timesteps of a T-step process to keep: "250", "10,10,10" (per equal section), "ddimN", "trailingN"."""
    if isinstance(section_counts, str):
        rule, counts = parse_respacing(section_counts)
        if rule == "ddim":
            return _ddim_steps(num_timesteps, counts[0])
        if rule == "trailing":
            return _trailing_steps(num_timesteps, counts[0])
        if rule == "all":
            return set(range(num_timesteps))
        return _sections(num_timesteps, counts)
    return _sections(num_timesteps, [int(c) for c in section_counts])


class _WrappedModel:
    """Calls model(x, timestep_map[t] (rescaled to 0..1000 if asked), **kwargs): spaced index -> original step."""

    def __init__(self, model: Any, timestep_map: list[int], rescale_timesteps: bool, original_num_steps: int,
                 noise_variances: np.ndarray | None = None):
        self.model = model
        self.timestep_map = timestep_map
        self.rescale_timesteps = rescale_timesteps
        self.original_num_steps = original_num_steps
        self.noise_variances = noise_variances  # [len(timestep_map)]: model_input "noise_variance"

    def __call__(self, x: Tensor, ts: Tensor, **kwargs: Any) -> Tensor:
        if self.noise_variances is not None:  # the model sees 1 - alpha_bar of the original step
            return self.model(x, torch.as_tensor(self.noise_variances, dtype=torch.float32, device=ts.device)[ts],
                              **kwargs)
        map_tensor = torch.tensor(self.timestep_map, device=ts.device, dtype=ts.dtype)
        new_ts = map_tensor[ts]
        if self.rescale_timesteps:
            new_ts = new_ts.float() * (1000.0 / self.original_num_steps)
        return self.model(x, new_ts, **kwargs)


class SpacedDiffusion(GaussianDiffusion):
    """A GaussianDiffusion over the kept timesteps `use_timesteps` of the process that `kwargs` describe.

    timestep_map[k] is the original timestep of spaced index k. Models and cond_fns receive original timesteps.
    """

    def __init__(self, use_timesteps: Iterable[int], **kwargs: Any) -> None:
        self.use_timesteps = set(use_timesteps)
        self.original_num_steps = len(kwargs["betas"])
        outside = sorted(t for t in self.use_timesteps if not 0 <= t < self.original_num_steps)
        if outside or not self.use_timesteps:
            raise ValueError(
                f"use_timesteps must be a non-empty subset of 0..{self.original_num_steps - 1}; got out of range "
                f"{outside[:5]}"
            )
        base = GaussianDiffusion(**kwargs)
        self.timestep_map: list[int] = sorted(self.use_timesteps)
        kept = base.alphas_cumprod[self.timestep_map]
        # beta_k = 1 - alpha_bar[t_k] / alpha_bar[t_{k-1}] with alpha_bar before the first kept step = 1.
        kwargs["betas"] = betas_from_alpha_bars(kept)
        super().__init__(**kwargs)

    def _wrap_model(self, model: Any) -> _WrappedModel:
        if isinstance(model, _WrappedModel):
            return model
        variances = 1.0 - self.alphas_cumprod if self.model_input == "noise_variance" else None
        return _WrappedModel(model, self.timestep_map, self.rescale_timesteps, self.original_num_steps, variances)

    def p_mean_variance(self, model: Any, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        return super().p_mean_variance(self._wrap_model(model), *args, **kwargs)

    def training_losses(self, model: Any, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        return super().training_losses(self._wrap_model(model), *args, **kwargs)

    def condition_mean(self, cond_fn: Any, *args: Any, **kwargs: Any) -> Tensor:
        return super().condition_mean(self._wrap_model(cond_fn), *args, **kwargs)

    def condition_score(self, cond_fn: Any, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        return super().condition_score(self._wrap_model(cond_fn), *args, **kwargs)

    def _scale_timesteps(self, t: Tensor) -> Tensor:
        return t  # the wrapped model maps (and rescales) the timesteps


def process_usable(cfg, lambda_min: float = DEFAULT_LAMBDA_MIN) -> int:
    """The timesteps of DiffusionConfig `cfg`'s process that a sampler uses at `lambda_min`."""
    return usable_timesteps(get_named_beta_schedule(cfg.noise_schedule, cfg.diffusion_steps), lambda_min)


def fit_default_respacing(cfg, spec: str, lambda_min: float = DEFAULT_LAMBDA_MIN) -> str:
    """A sampler's default respacing (one count: "ddim50", "trailing20", "250") with the count capped at the
    timesteps the process has at `lambda_min`: a model trained with T=50 samples "ddim46", not an error. A
    respacing the user chose is never changed (check_respacing explains why it does not fit)."""
    _, counts = parse_respacing(spec)
    usable = process_usable(cfg, lambda_min)
    if len(counts) != 1 or counts[0] <= usable:
        return spec
    return spec.replace(str(counts[0]), str(usable))


def check_respacing(cfg, spec: str, lambda_min: float = DEFAULT_LAMBDA_MIN) -> None:
    """ValueError with the reason when respacing `spec` does not fit the process of DiffusionConfig `cfg` at
    `lambda_min` (the steps a sampler would use): checked before any sampling starts."""
    usable = process_usable(cfg, lambda_min)
    try:
        space_timesteps(usable, spec)
    except ValueError as e:
        if usable == cfg.diffusion_steps:
            raise
        raise ValueError(f"{e} (sampling uses the first {usable} of the model's {cfg.diffusion_steps} timesteps: "
                         f"those with log-SNR >= --lambda-min {lambda_min:g}; --lambda-min=-inf uses all)") from None
