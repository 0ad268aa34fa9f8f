"""Named beta schedules (float64 numpy), as in openai/guided-diffusion.

A schedule is the sequence beta_1..beta_T of per-step noise variances; everything else in the process is derived
from it in float64 (see `diffusion.formulas`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

SCHEDULE_NAMES = ("linear", "cosine")


def linear_beta_schedule(num_diffusion_timesteps: int) -> np.ndarray:
    """Ho et al. 2020 (DDPM) Sec. 4: betas linear from 1e-4 to 0.02, scaled by 1000/T so any T behaves alike."""
    scale = 1000 / num_diffusion_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_diffusion_timesteps, dtype=np.float64)


def cosine_alpha_bar(t: float, s: float = 0.008) -> float:
    """Nichol & Dhariwal 2021 (IDDPM) eq. 17: alpha_bar(t) = cos(((t + s) / (1 + s)) * pi / 2)^2, t in [0, 1]."""
    return math.cos((t + s) / (1 + s) * math.pi / 2) ** 2


def betas_for_alpha_bar(
    num_diffusion_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999
) -> np.ndarray:
    """IDDPM Sec. 3.2: beta_t = min(1 - alpha_bar(t/T) / alpha_bar((t-1)/T), max_beta); the cap avoids beta = 1 at T."""
    betas = []
    for i in range(num_diffusion_timesteps):
        t1 = i / num_diffusion_timesteps
        t2 = (i + 1) / num_diffusion_timesteps
        betas.append(min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
    return np.array(betas, dtype=np.float64)


def get_named_beta_schedule(schedule_name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """Return the betas [T] (float64) of a named schedule: "linear" (DDPM) or "cosine" (IDDPM)."""
    if isinstance(num_diffusion_timesteps, bool) or not isinstance(num_diffusion_timesteps, int | np.integer):
        raise TypeError(f"num_diffusion_timesteps must be an int, got {type(num_diffusion_timesteps).__name__}")
    if num_diffusion_timesteps < 1:
        raise ValueError(f"num_diffusion_timesteps must be >= 1, got {num_diffusion_timesteps}")
    if schedule_name == "linear":
        if num_diffusion_timesteps <= 20:
            # beta_T = 0.02 * 1000 / T reaches 1 at T = 20: alpha_bar_T = 0 and x_0 cannot be predicted from x_T.
            raise ValueError(
                f"the linear schedule needs num_diffusion_timesteps > 20 (its last beta is 20 / T), got "
                f"{num_diffusion_timesteps}; use more steps or the cosine schedule"
            )
        return linear_beta_schedule(int(num_diffusion_timesteps))
    if schedule_name == "cosine":
        return betas_for_alpha_bar(int(num_diffusion_timesteps), cosine_alpha_bar)
    raise ValueError(f"unknown beta schedule {schedule_name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
