"""What one call of `LatentDiffusion.sample` takes (`SampleSettings`, checked before any work) and gives (`Samples`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from diffusion.respace import DEFAULT_LAMBDA_MIN
from diffusion.sampling import DEFAULT_RESPACING

# `steps` as a respacing string, per sampler: the reference's DDIM grid, its even grid for ancestral sampling, and
# the trailing grid DPM-Solver++ was measured best with (docs/diffusion.md).
STEPS_RESPACING = {"ddim": "ddim{}", "ddpm": "{}", "dpmpp": "trailing{}"}


@dataclass
class SampleSettings:
    """Sampling options. Unset guidance scales come from the run (LatentDiffusion.guidance)."""

    classes: list[int] | None = None  # spread the samples over these classes in equal blocks (default: all)
    class_label: int | None = None  # or sample this class only
    sampler: str = "dpmpp"  # "dpmpp" (DPM-Solver++ 2M), "ddim" or "ddpm" (ancestral)
    steps: int | None = None  # denoising steps (default: the sampler's: 20 dpmpp, 50 ddim, all for ddpm)
    timestep_respacing: str | None = None  # or the reference's respacing string ("ddim50", "250", "10,10,10", ...)
    eta: float = 0.0  # DDIM noise (0: deterministic)
    guidance_scale: float | None = None  # classifier-free guidance (1: none)
    guide_scale: float | None = None  # autoguidance by the run's guide model (1: none)
    guidance_interval: tuple[float, float] | None = None  # guide only at timesteps LO..HI of the model's T
    classifier_scale: float = 0.0  # classifier guidance by RUN/classifier (0: off)
    seed: int | None = 0  # None: torch's global RNG (the reference's draws)
    batch_size: int = 64
    lambda_min: float = DEFAULT_LAMBDA_MIN  # start no noisier than this log-SNR
    progress: bool = False

    def check(self, num_samples: int) -> None:
        """Refuse what cannot work, saying why, before any sampling starts."""
        if self.sampler not in DEFAULT_RESPACING:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {sorted(DEFAULT_RESPACING)}")
        _whole(num_samples, "num_samples")
        _whole(self.batch_size, "batch_size")
        if self.steps is not None:
            _whole(self.steps, "steps")
            if self.timestep_respacing is not None:
                raise ValueError("give steps or timestep_respacing, not both")
        for name in ("eta", "classifier_scale", "guidance_scale", "guide_scale"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if math.isnan(self.lambda_min):
            raise ValueError("lambda_min must be a log-SNR or -inf, got nan")
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not 0 <= lo <= hi:
                raise ValueError(f"guidance_interval must be (LO, HI) with 0 <= LO <= HI, got {self.guidance_interval}")

    def respacing(self) -> str:
        """The respacing string: given, from `steps`, or the sampler's default."""
        if self.timestep_respacing is not None:
            return self.timestep_respacing
        if self.steps is not None:
            return STEPS_RESPACING[self.sampler].format(self.steps)
        return DEFAULT_RESPACING[self.sampler]

    def describe(self) -> dict[str, Any]:
        """The settings as info.json records them (valid JSON: no infinities)."""
        d = asdict(self)
        d["timestep_respacing"] = self.respacing()
        d["lambda_min"] = self.lambda_min if math.isfinite(self.lambda_min) else None
        for key in ("guidance_scale", "guide_scale", "progress", "steps"):
            d.pop(key)
        return d


@dataclass
class Samples:
    """images: uint8 (N, H, W, C); labels: int64 (N,) or None; info: the settings, guidance and timings."""

    images: np.ndarray
    labels: np.ndarray | None
    info: dict[str, Any]


def _whole(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
