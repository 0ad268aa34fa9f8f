"""VAEConfig: the one typed config of stage 1 (data, architecture, training), with named presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vae.data.images import parse_background

RECON_LOSSES = ("l1", "l2")
LR_SCHEDULES = ("constant", "cosine")
NORMS = ("group", "encoder", "none")
# fp32; bf16: Keras' mixed_bfloat16 (bf16 compute, float32 weights and loss); auto: bf16 where the device computes
# it natively (vae.trainer.resolve_precision).
PRECISIONS = ("fp32", "bf16", "auto")


@dataclass
class VAEConfig:
    """Everything needed to rebuild and retrain the VAE; saved as DIR/vae/config.json beside the weights.

    The latent of an (image_size, image_size, channels) image is (image_size / f, image_size / f, z_channels)
    with the downsampling factor f = 2 ** (len(channel_mult) - 1).
    """

    # data
    data: str = "fashion_mnist"
    image_size: int = 32
    channels: int = 1
    limit: int | None = None
    val_fraction: float | None = None  # None: the source's default (see vae.data.load_dataset)
    seed: int = 0
    folder_labels: str = "auto"  # folder sources: auto | none | subdir | prefix (see vae.data.folder)
    background: str = "white"  # what transparent pixels are composited onto (vae.data.images.parse_background)
    # architecture
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    z_channels: int = 4
    mid_attention: bool = False
    # "group": GroupNorm before every swish (LDM's autoencoder); "encoder": in the encoder only (the decoder, which
    # takes most of the compute, has none); "none": no normalisation layers (docs/benchmarks.md).
    norm: str = "group"
    norm_groups: int = 8
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    # training
    recon_loss: str = "l1"
    kl_weight: float = 1e-6
    # Adds ssim_weight * (pixels per image) * (1 - SSIM) to each image's reconstruction loss (0: off). On [-1, 1]
    # images 2.6 gives SSIM the share Zhao et al. (2017) found best beside L1 (alpha 0.84 on [0, 1] images).
    ssim_weight: float = 0.0
    epochs: int = 10
    max_steps: int | None = None
    max_train_minutes: float | None = None  # stop (and finish normally) once this much training time has passed
    batch_size: int = 64
    lr: float = 1e-3
    # cosine: lr * (1 + cos(pi * progress)) / 2, progress = the larger of the step budget (epochs, max_steps) and
    # the time budget (max_train_minutes) used so far, so a time-boxed run ends its decay when its time is up.
    lr_schedule: str = "constant"
    weight_decay: float = 1e-4
    ema: bool = False
    ema_momentum: float = 0.999
    jit_compile: bool = True
    precision: str = "fp32"  # one of PRECISIONS; the saved models are float32 whichever it is
    eval_images: int = 2000  # validation images scored after each epoch (the whole set after the last)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes, e.g. the preset name

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.validate()

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downsample_factor

    @property
    def latent_shape_hwc(self) -> tuple[int, int, int]:
        return (self.latent_size, self.latent_size, self.z_channels)

    def validate(self) -> None:
        f = self.downsample_factor
        if self.image_size % f:
            raise ValueError(
                f"image_size {self.image_size} is not divisible by the downsampling factor {f} "
                f"(channel_mult {self.channel_mult}); pick an image size that is a multiple of {f}"
            )
        parse_background(self.background)
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.recon_loss not in RECON_LOSSES:
            raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {self.recon_loss!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        for level, mult in enumerate(self.channel_mult):
            width = self.base_channels * mult
            if self.norm != "none" and width % self.norm_groups:
                raise ValueError(
                    f"level {level} has {width} channels, not divisible by norm_groups={self.norm_groups}"
                )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.ssim_weight < 0:
            raise ValueError(f"ssim_weight must be >= 0, got {self.ssim_weight}")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")
        problems = [f"{name} must be {rule}, got {getattr(self, name)!r}" for name, rule, ok in self._number_rules()
                    if getattr(self, name) is not None and not ok(getattr(self, name))]
        if problems:
            raise ValueError("; ".join(problems))

    @staticmethod
    def _number_rules():
        """(field, rule in words, check) for every number: NaN and infinities fail every check."""
        def finite(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False):
            return lambda v: (math.isfinite(v) and (v > low if low_open else v >= low)
                              and (v < high if high_open else v <= high))
        return [("lr", "a finite number > 0", finite(0, low_open=True)),
                ("weight_decay", "a finite number >= 0", finite(0)),
                ("kl_weight", "a finite number >= 0", finite(0)),
                ("ssim_weight", "a finite number >= 0", finite(0)),
                ("ema_momentum", "in [0, 1)", finite(0, 1, high_open=True)),
                ("val_fraction", "in (0, 1)", finite(0, 1, low_open=True, high_open=True)),
                ("max_train_minutes", "a finite number > 0 (or unset)", finite(0, low_open=True)),
                ("logvar_min", "finite", finite(-math.inf)), ("logvar_max", "finite", finite(-math.inf)),
                *[(name, ">= 1", lambda v: v >= 1) for name in (
                    "image_size", "base_channels", "z_channels", "norm_groups", "epochs", "batch_size", "max_steps",
                    "limit", "eval_images")],
                ("num_res_blocks", ">= 0", lambda v: v >= 0)]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown VAEConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def replace(self, **changes: Any) -> VAEConfig:
        return VAEConfig.from_dict({**self.to_dict(), **changes})


# What the RGB presets share for speed (see photos64).
_RGB_SPEED: dict[str, Any] = {"norm": "encoder", "jit_compile": False, "precision": "auto"}

# Named presets. `fashion_mnist` is what `make demo-train` trains (for what the measured diffusion steps leave of
# its 30 minutes, at most 11): its widths and epochs are the ones measured to reach >= 30 dB validation PSNR within
# 20 minutes on a 2-core CPU with 4 latent channels (docs/bench/vae.md); 8 channels reach 31.1 dB in 11 minutes and
# cut the VAE's FID floor 3x; GroupNorm in the encoder only: samples of the diffusion model on its latents scored
# FID 0.71 against 0.93 for the all-GroupNorm VAE at the same budget (docs/benchmarks.md).
PRESETS: dict[str, VAEConfig] = {
    "fashion_mnist": VAEConfig(base_channels=16, channel_mult=(1, 2, 4), z_channels=8, norm="encoder", batch_size=32,
                               epochs=3, max_train_minutes=19.0, extra={"preset": "fashion_mnist"}),
    # RGB presets: GroupNorm in the encoder only, no XLA, bf16 where the hardware has it. On 64x64 RGB (2-core
    # AVX512-BF16 EPYC) that is 2.05x the images/s of all-GroupNorm + XLA + fp32 (1.42x from bf16 and no XLA alone, at
    # the same PSNR per step; the decoder's GroupNorms cost ~30% of a step), docs/benchmarks.md "Stage-1 throughput".
    "photos64": VAEConfig(
        data="folder", image_size=64, channels=3, base_channels=16, channel_mult=(1, 2, 4), num_res_blocks=1,
        epochs=20, batch_size=32, **_RGB_SPEED, extra={"preset": "photos64"},
    ),
    # RGB at 128 and 256 px with f=8 (LDM's KL-f8 levels 1,2,4,4 at a fraction of its width): 16x16x4 and 32x32x4
    # latents, the sizes the rgb-latent diffusion preset is written for.
    "photos128": VAEConfig(
        data="folder", image_size=128, channels=3, base_channels=16, channel_mult=(1, 2, 4, 4), num_res_blocks=1,
        epochs=20, batch_size=16, **_RGB_SPEED, extra={"preset": "photos128"},
    ),
    "photos256": VAEConfig(
        data="folder", image_size=256, channels=3, base_channels=16, channel_mult=(1, 2, 4, 4), num_res_blocks=1,
        epochs=20, batch_size=8, **_RGB_SPEED, extra={"preset": "photos256"},
    ),
    # Oxford Flowers 102 at 64x64 (the Keras DDIM example's data: all official splits re-split 80/20, center crops),
    # f=4 like photos64: 16x16 latents for the keras-ddim-latent diffusion preset.
    "flowers64": VAEConfig(
        data="tfds:oxford_flowers102", image_size=64, channels=3, base_channels=16, channel_mult=(1, 2, 4),
        num_res_blocks=1, epochs=20, batch_size=32, **_RGB_SPEED, extra={"preset": "flowers64"},
    ),
    "tiny": VAEConfig(
        image_size=16, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, norm_groups=4, epochs=1,
        batch_size=16, jit_compile=False, eval_images=64, extra={"preset": "tiny"},
    ),
}


def preset(name: str) -> VAEConfig:
    """A fresh copy of a named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown VAE preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace()
