"""What the latent-vs-pixel benchmark measures: its config, the list of cases, and the rule that builds the same
U-Net (and the same VAE decoder design) at any input size.

The U-Net rule: a preset is defined at one input size. At another size the U-Net keeps the preset's channel
multipliers (so the same number of levels and the same widths per level) and puts attention at the same
downsampling rates (attention at ds=2 of an 8x8 preset becomes attention at 16x16 for a 32x32 input). Every
parameter is then identical except the input conv and the output conv, whose channel counts follow the input's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffusion.config import PRESETS, UNetConfig, attention_ds_for, channel_mult_for
from runfs.configs import ConfigMixin
from vae.config import VAEConfig

GIB = 1024**3


@dataclass(frozen=True)
class BenchConfig(ConfigMixin):
    """The benchmark's settings; see `pipelines/bench/latent_vs_pixel.py --help` for each flag."""

    preset: str = "fmnist-latent"
    sizes: tuple[int, ...] = (32, 64, 128)
    factors: tuple[int, ...] = (4, 8)
    channels: int = 0  # 0 = 1 for fmnist presets, else 3
    z_channels: int = 4
    batch_size: int = 32
    sample_batch: int = 16
    steps: int = 20  # denoising steps of the end-to-end sampling measurement
    warmup: int = 1
    repeats: int = 3
    budget_gib: float = 16.0
    max_batch_cap: int = 8192
    device: str = "auto"  # auto = cuda when torch sees a GPU
    vae_preset: str = "fashion_mnist"
    inject_oom_batch: int = 0  # testing hook: a fake OOM at any training batch >= this (0 = off)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown --preset {self.preset!r}; presets are {sorted(PRESETS)}")
        bad = [f for f in self.factors if f < 2 or f & (f - 1)]
        if bad:
            raise ValueError(f"--factors must be powers of two >= 2 (the VAE halves the size per level), got {bad}")
        if min(self.batch_size, self.sample_batch, self.steps, self.repeats) < 1:
            raise ValueError("--batch-size, --sample-batch, --steps and --repeats must all be >= 1")
        if self.budget_gib <= 0:
            raise ValueError(f"--budget must be positive, got {self.budget_gib} GiB")

    @property
    def image_channels(self) -> int:
        return self.channels or (1 if self.preset.startswith("fmnist") else 3)


@dataclass(frozen=True)
class Case:
    """One measured configuration: `space` is "pixel" or "latent"; `factor` is 1 in pixel space."""

    size: int  # output image resolution
    space: str
    factor: int
    unet: UNetConfig
    vae: VAEConfig | None  # the decoder design (latent cases only)

    @property
    def name(self) -> str:
        return f"{self.size}px-pixel" if self.space == "pixel" else f"{self.size}px-latent-f{self.factor}"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the U-Net input."""
        return (self.unet.in_channels, self.unet.image_size, self.unet.image_size)


def unet_at(base: UNetConfig, size: int, in_channels: int) -> UNetConfig:
    """`base` on (in_channels, size, size) inputs, with the same widths per level and attention at the same
    downsampling rates (module docstring). Raises ValueError when `size` is too small for the levels."""
    mults = channel_mult_for(base.image_size, base.channel_mult)
    rates = attention_ds_for(base.image_size, base.attention_resolutions, mults)
    deepest = 2 ** (len(mults) - 1)
    if size % deepest or size < deepest:
        raise ValueError(f"input size {size} does not fit the preset's {len(mults)} levels: it must be a multiple "
                         f"of {deepest}; use larger --sizes or smaller --factors")
    return base.replace(image_size=size, in_channels=in_channels, channel_mult=",".join(str(m) for m in mults),
                        attention_resolutions=",".join(str(size // r) for r in rates))


def vae_at(base: VAEConfig, size: int, channels: int, factor: int, z_channels: int) -> VAEConfig:
    """The decoder design of `base` for factor `factor`: its level widths, cut or extended (repeating the last
    multiplier) to log2(factor) + 1 levels; images of (size, size, channels)."""
    levels = int(math.log2(factor)) + 1
    mults = tuple(base.channel_mult[:levels]) + (base.channel_mult[-1],) * max(0, levels - len(base.channel_mult))
    return base.replace(image_size=size, channels=channels, channel_mult=mults, z_channels=z_channels)


def build_cases(cfg: BenchConfig, vae_base: VAEConfig) -> tuple[list[Case], list[str]]:
    """(cases, skipped): pixel space and each latent factor at every size; a latent too small for the U-Net's
    levels is skipped with the reason."""
    base = PRESETS[cfg.preset][0]
    cases, skipped = [], []
    for size in cfg.sizes:
        cases.append(Case(size, "pixel", 1, unet_at(base, size, cfg.image_channels), None))
        for f in cfg.factors:
            if size % f:
                skipped.append(f"{size}px f={f}: {size} is not divisible by {f}")
                continue
            try:
                unet = unet_at(base, size // f, cfg.z_channels)
            except ValueError as err:
                skipped.append(f"{size}px f={f}: {err}")
                continue
            cases.append(Case(size, "latent", f, unet, vae_at(vae_base, size, cfg.image_channels, f, cfg.z_channels)))
    return cases, skipped
