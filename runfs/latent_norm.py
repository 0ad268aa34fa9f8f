"""How the diffusion model's latents relate to the VAE's: scaled = (z - shift) * scale, per channel (NCHW axis 1).

Two modes, both computed from data when the dataset is encoded (vae.encode), stored in latents/meta.json and in
bridge.json, applied by stage 2's data loader and undone inside the exported decoder graph:
- `global` (the latent-diffusion autoencoder's): one factor, 1 / std of every latent value; no shift.
- `channel` (EDM2's latent standardisation, Karras et al. 2024): each channel minus its mean, over its std, so
  that every channel enters the diffusion process at unit variance (none is drowned by the noise earlier).
Numpy only, so that the Keras and the torch side share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

LATENT_NORMS = ("global", "channel")


@dataclass(frozen=True)
class LatentNorm:
    """The mode and, per channel (length z), `scale` and `shift`; in `global` mode all scales are equal, shifts 0."""

    mode: str
    scale: tuple[float, ...]
    shift: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.mode not in LATENT_NORMS:
            raise ValueError(f"latent_norm must be one of {LATENT_NORMS}, got {self.mode!r}")
        if len(self.scale) != len(self.shift) or not self.scale:
            raise ValueError(f"scale ({len(self.scale)}) and shift ({len(self.shift)}) need one value per channel")
        if not all(np.isfinite(s) and s > 0 for s in self.scale) or not np.all(np.isfinite(self.shift)):
            raise ValueError(f"latent scales must be positive and finite and shifts finite, got {self}")

    @property
    def channels(self) -> int:
        return len(self.scale)

    @classmethod
    def uniform(cls, scale_factor: float, channels: int) -> LatentNorm:
        """`global` mode: every channel times `scale_factor`, no shift."""
        return cls("global", (float(scale_factor),) * channels, (0.0,) * channels)

    @classmethod
    def identity(cls, channels: int) -> LatentNorm:
        return cls.uniform(1.0, channels)

    @classmethod
    def from_moments(cls, mode: str, count: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> LatentNorm:
        """From per-channel sums of the latent values: their `count`, `total` and `total_sq`, each of shape (z,)."""
        count, total, total_sq = (np.asarray(a, np.float64).reshape(-1) for a in (count, total, total_sq))
        channels = len(total)
        if mode == "global":
            count, total, total_sq = (np.full(channels, a.sum()) for a in (count, total, total_sq))
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
        shift = mean if mode == "channel" else np.zeros(channels)
        with np.errstate(divide="ignore"):  # a constant channel: scale inf, which __init__ rejects with its reason
            scale = 1.0 / std
        return cls(mode, tuple(float(v) for v in scale), tuple(float(v) for v in shift))

    @classmethod
    def from_meta(cls, meta: dict[str, Any], channels: int) -> LatentNorm:
        """Read latents/meta.json's or bridge.json's fields (`scale_factor` alone: a run from before `latent_norm`)."""
        mode = meta.get("latent_norm", "global")
        if mode == "global":
            return cls.uniform(meta["scale_factor"], channels)
        scale, shift = (tuple(float(v) for v in meta[key]) for key in ("scale_factor", "shift_factor"))
        if len(scale) != channels or len(shift) != channels:
            raise ValueError(f"latent_norm {mode!r} holds {len(scale)} scales and {len(shift)} shifts for "
                             f"{channels} latent channels")
        return cls(mode, scale, shift)

    def to_meta(self) -> dict[str, Any]:
        if self.mode == "global":
            return {"latent_norm": "global", "scale_factor": self.scale[0]}
        return {"latent_norm": self.mode, "scale_factor": list(self.scale), "shift_factor": list(self.shift)}

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(shift, scale), each float32 of shape (1, z, 1, 1): broadcast over NCHW latents."""
        return tuple(np.asarray(v, np.float32).reshape(1, -1, 1, 1) for v in (self.shift, self.scale))  # type: ignore

    def apply(self, latents: np.ndarray) -> np.ndarray:
        """VAE latents (N, z, h, w) -> the diffusion model's."""
        shift, scale = self.arrays()
        return (latents - shift) * scale

    def undo(self, scaled: np.ndarray) -> np.ndarray:
        """The diffusion model's latents (N, z, h, w) -> the VAE's."""
        shift, scale = self.arrays()
        return scaled / scale + shift

    def describe(self) -> str:
        if self.mode == "global":
            return f"scale_factor {self.scale[0]:.5g}"
        return (f"per-channel latent_norm: scale {min(self.scale):.4g} .. {max(self.scale):.4g}, "
                f"shift {min(self.shift):.4g} .. {max(self.shift):.4g}")
