"""Named beta schedules (float64 numpy), as in openai/guided-diffusion.

A schedule is the sequence beta_1..beta_T of per-step noise variances; everything else in the process is derived
from it in float64 (see `diffusion.formulas`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

SCHEDULE_NAMES = ("linear", "cosine", "signal_cosine")
# The Keras DDIM example's signal-rate range: sqrt(alpha_bar) from 0.95 (least noisy step) down to 0.02.
SIGNAL_COSINE_RATES = (0.02, 0.95)


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


def parse_signal_cosine(name: str) -> tuple[float, float] | None:
    """"signal_cosine" -> the Keras example's (0.02, 0.95); "signal_cosine:MIN,MAX" -> (MIN, MAX); other names None.
    The rates must satisfy 0 < MIN < MAX < 1."""
    if name != "signal_cosine" and not name.startswith("signal_cosine:"):
        return None
    if name == "signal_cosine":
        return SIGNAL_COSINE_RATES
    try:
        low, high = (float(v) for v in name.split(":", 1)[1].split(","))
    except ValueError:
        raise ValueError(f"{name!r} is not signal_cosine:MIN,MAX (e.g. signal_cosine:0.02,0.95)") from None
    if not 0 < low < high < 1:
        raise ValueError(f"{name!r}: the signal rates need 0 < MIN < MAX < 1")
    return low, high


def signal_cosine_alpha_bars(num_diffusion_timesteps: int, min_signal_rate: float,
                             max_signal_rate: float) -> np.ndarray:
    """The Keras DDIM example's schedule, discretised: signal rate cos(angle), noise rate sin(angle), the angle linear
    in t from acos(max_signal_rate) at the first step to acos(min_signal_rate) at the last; alpha_bar = signal^2."""
    start, end = math.acos(max_signal_rate), math.acos(min_signal_rate)
    t = np.arange(num_diffusion_timesteps, dtype=np.float64) / max(num_diffusion_timesteps - 1, 1)
    return np.cos(start + t * (end - start)) ** 2


def betas_from_alpha_bars(alpha_bars: np.ndarray) -> np.ndarray:
    """beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}, with alpha_bar before the first step = 1."""
    return 1.0 - alpha_bars / np.append(1.0, alpha_bars[:-1])


def get_named_beta_schedule(schedule_name: str, num_diffusion_timesteps: int) -> np.ndarray:
    """Return the betas [T] (float64) of a named schedule: "linear" (DDPM), "cosine" (IDDPM), or "signal_cosine"
    (the Keras DDIM example; "signal_cosine:MIN,MAX" sets its signal-rate range)."""
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
    rates = parse_signal_cosine(schedule_name)
    if rates is not None:
        if num_diffusion_timesteps < 2:
            raise ValueError("the signal_cosine schedule needs num_diffusion_timesteps >= 2")
        return betas_from_alpha_bars(signal_cosine_alpha_bars(int(num_diffusion_timesteps), *rates))
    raise ValueError(f"unknown beta schedule {schedule_name!r}; choose one of {', '.join(SCHEDULE_NAMES)}")
