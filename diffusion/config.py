"""Config dataclasses for the U-Net and the diffusion process, with guided-diffusion's flag names, and presets.

Defaults are the reference's `model_and_diffusion_defaults()`; `in_channels`, `null_class` and `predict_v`
are ours. Strings stay strings ("1,2,2", "16,8", "ddim50") so a config reads like the reference's command
line; `channel_mult_for` and `attention_ds_for` turn them into the U-Net's arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusion.schedules import parse_signal_cosine
from runfs.configs import ConfigMixin

NOISE_SCHEDULES = ("linear", "cosine", "signal_cosine")  # signal_cosine also as "signal_cosine:MIN,MAX"
TIME_EMBEDDINGS = ("timestep", "keras_ddim")
RESPACING_HINT = "use e.g. '250', '10,10,10' (steps per equal section), 'ddim50' or 'trailing20', or '' for all steps"


def parse_respacing(spec: str) -> tuple[str, list[int]]:
    """A timestep respacing string -> (rule, counts): ("all", []) for "", ("sections", [250]) for "250" or
    ("sections", [10, 10, 10]) for "10,10,10", ("ddim", [50]) for "ddim50", ("trailing", [20]) for "trailing20".
    Checks the form and that every count is >= 1; whether the counts fit a T-step process is respace's check."""
    text = spec.strip()
    if not text:
        return "all", []
    for rule in ("ddim", "trailing"):
        if text.startswith(rule):
            count = text[len(rule):]
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"timestep respacing {spec!r}: expected {rule}N with a whole number N >= 1, e.g. "
                                 f"{rule}50")
            return rule, [int(count)]
    parts = text.split(",")
    if not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"cannot parse timestep respacing {spec!r}; {RESPACING_HINT}")
    counts = [int(p) for p in parts]
    if min(counts) < 1:
        raise ValueError(f"timestep respacing {spec!r}: every section needs at least 1 step")
    return "sections", counts

# The reference's channel multipliers by image size, plus ours for latent sizes (8, 16, 32 px latents).
CHANNEL_MULT_BY_SIZE: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),
    16: (1, 2, 2),
    8: (1, 2),
}


def channel_mult_for(image_size: int, channel_mult: str = "") -> tuple[float, ...]:
    """"" -> the default multipliers for `image_size`; "1,2,2" -> (1, 2, 2) (non-integers such as 0.5 allowed)."""
    if not channel_mult:
        if image_size not in CHANNEL_MULT_BY_SIZE:
            raise ValueError(f"no default channel_mult for image_size {image_size}; sizes with defaults are "
                             f"{sorted(CHANNEL_MULT_BY_SIZE)}, or pass channel_mult explicitly, e.g. '1,2,2'")
        return CHANNEL_MULT_BY_SIZE[image_size]
    try:
        mults = tuple(float(m) for m in channel_mult.split(","))
    except ValueError:
        msg = f"channel_mult {channel_mult!r} is not a comma-separated list of numbers like '1,2,2'"
        raise ValueError(msg) from None
    mults = tuple(int(m) if m == int(m) else m for m in mults)
    levels = len(mults)
    if image_size % 2 ** (levels - 1):
        raise ValueError(f"channel_mult {channel_mult!r} has {levels} levels, so image_size must be divisible by "
                         f"{2 ** (levels - 1)}; got {image_size}")
    return mults


def attention_ds_for(image_size: int, attention_resolutions: str, channel_mult: tuple[float, ...]) -> tuple[int, ...]:
    """Resolutions in pixels of the U-Net input ("16,8" at 64 px) -> downsampling rates (4, 8), as the reference.

    Unlike the reference, a resolution the U-Net never reaches is an error instead of silently no attention.
    """
    if not attention_resolutions:
        return ()
    reached = [image_size // 2**level for level in range(len(channel_mult))]
    ds = []
    for res in attention_resolutions.split(","):
        if not res.strip().isdigit() or int(res) not in reached:
            raise ValueError(f"attention resolution {res!r} is not one the U-Net reaches; with image_size "
                             f"{image_size} and channel_mult {channel_mult} the resolutions are {reached}")
        ds.append(image_size // int(res))
    return tuple(ds)


@dataclass(frozen=True)
class UNetConfig(ConfigMixin):
    """The U-Net's architecture. `num_classes` is the number of real classes; with `null_class` the label
    embedding gets one more row and label `num_classes` means "no label" (classifier-free guidance)."""

    image_size: int = 64
    in_channels: int = 3
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: str = ""  # "" = by image_size (CHANNEL_MULT_BY_SIZE)
    attention_resolutions: str = "16,8"  # pixels of the U-Net input, like the reference
    dropout: float = 0.0
    class_cond: bool = False
    num_classes: int = 1000
    null_class: bool = False
    learn_sigma: bool = False  # doubles out_channels: the process reads the variance from the second half
    use_checkpoint: bool = False
    use_fp16: bool = False  # kept for compatibility; prefer bf16 autocast
    num_heads: int = 4
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    # How the U-Net embeds the scalar it is given with x (the timestep, or what the process's model_input says):
    # "timestep": the reference's sinusoid (model_channels wide, periods up to 10,000); "keras_ddim": the Keras DDIM
    # example's (time_embedding_dims wide, frequencies 1..time_embedding_max_frequency), for a noise variance.
    time_embedding: str = "timestep"
    time_embedding_dims: int = 32
    time_embedding_max_frequency: float = 1000.0

    def __post_init__(self) -> None:
        if self.time_embedding not in TIME_EMBEDDINGS:
            raise ValueError(f"unknown time_embedding {self.time_embedding!r}; use one of {TIME_EMBEDDINGS}")
        if self.time_embedding_dims < 2 or self.time_embedding_dims % 2:
            raise ValueError(f"time_embedding_dims must be an even number >= 2, got {self.time_embedding_dims}")
        if self.null_class and not self.class_cond:
            raise ValueError("null_class=True needs class_cond=True (the null label is a row of the label embedding)")
        if self.class_cond and self.num_classes < 1:
            raise ValueError(f"class_cond needs num_classes >= 1, got {self.num_classes}")
        if self.in_channels < 1 or self.image_size < 1:
            raise ValueError(f"in_channels and image_size must be positive, got {self.in_channels}, {self.image_size}")
        if self.num_channels < 1 or self.num_res_blocks < 1 or self.num_heads < 1:
            raise ValueError(f"num_channels, num_res_blocks and num_heads must be >= 1, got {self.num_channels}, "
                             f"{self.num_res_blocks}, {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:  # NaN fails too
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def null_label(self) -> int | None:
        """The label index meaning "no label", or None when the model has no null row."""
        return self.num_classes if self.null_class else None


@dataclass(frozen=True)
class DiffusionConfig(ConfigMixin):
    """The diffusion process (reference flags; `predict_v` is our fourth mean type, v-prediction)."""

    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    timestep_respacing: str = ""  # "" = all steps; "250", "10,10,10", "ddim50"
    sigma_small: bool = False
    use_kl: bool = False
    predict_xstart: bool = False
    predict_v: bool = False
    rescale_timesteps: bool = False
    rescale_learned_sigmas: bool = False
    use_l1: bool = False  # mean absolute error instead of squared error (the Keras DDIM example's loss)
    model_input: str = "timestep"  # or "noise_variance": the model is given 1 - alpha_bar_t (Keras DDIM example)

    def __post_init__(self) -> None:
        if self.noise_schedule not in NOISE_SCHEDULES and parse_signal_cosine(self.noise_schedule) is None:
            raise ValueError(f"unknown noise_schedule {self.noise_schedule!r}; use one of {NOISE_SCHEDULES} "
                             "(signal_cosine also as signal_cosine:MIN,MAX)")
        if self.model_input not in ("timestep", "noise_variance"):
            raise ValueError(f"model_input must be 'timestep' or 'noise_variance', got {self.model_input!r}")
        if self.model_input == "noise_variance" and self.rescale_timesteps:
            raise ValueError("rescale_timesteps rescales timesteps; with model_input 'noise_variance' the model is "
                             "given no timestep")
        if self.use_l1 and self.use_kl:
            raise ValueError("use_l1 and use_kl are exclusive: the loss is the mean's error or the bound")
        if self.predict_xstart and self.predict_v:
            raise ValueError("predict_xstart and predict_v are exclusive: the model predicts one quantity")
        if self.diffusion_steps < 1:
            raise ValueError(f"diffusion_steps must be >= 1, got {self.diffusion_steps}")
        parse_respacing(self.timestep_respacing)


@dataclass
class ClassifierConfig(ConfigMixin):
    """The noisy-input classifier (`EncoderUNetModel`) for classifier guidance: the reference's classifier flags;
    image_size, in_channels and num_classes are set from the data."""

    classifier_width: int = 64
    classifier_depth: int = 2
    classifier_attention_resolutions: str = "4"
    classifier_use_scale_shift_norm: bool = True
    classifier_resblock_updown: bool = True
    classifier_pool: str = "attention"
    channel_mult: str = "1,2"


# Classifier-free guidance scale that sample.py and demo.py use for models with a null class when none is given:
# the shipped Fashion-MNIST model's best measured FID with its class accuracy within 5 points of real images'
# (5,000 samples, dpmpp 20: guidance 1.75 / 2 / 2.25 / 2.5 / 3 -> FID 0.85 / 0.67 / 0.61 / 0.61 / 0.74, class
# accuracy 0.89 / 0.92 / 0.93 / 0.94 / 0.96 against 0.89 for real images; docs/benchmarks.md).
DEFAULT_GUIDANCE_SCALE = 2.25
# With a guide model (autoguidance, Karras et al. 2024) the two kinds of guidance add up: classifier-free guidance at
# DEFAULT_GUIDANCE_SCALE_WITH_GUIDE plus autoguidance at DEFAULT_GUIDE_SCALE (docs/benchmarks.md, "Sampling and
# guidance").
DEFAULT_GUIDANCE_SCALE_WITH_GUIDE = 2.0
DEFAULT_GUIDE_SCALE = 1.2

# Fashion-MNIST latents: 32x32x1 images through the f=4, z=8 VAE -> 8x8x8 (training takes in_channels from the
# latents, so a z=4 VAE works as well). Widths chosen with pipelines/bench/unet_modes.py
# so that ~15 minutes of training on 2 CPU cores (batch 128) gives recognisable samples (docs/bench/unet.md).
_FMNIST_UNET = UNetConfig(
    image_size=8, in_channels=8, num_channels=64, num_res_blocks=2, channel_mult="1,2", attention_resolutions="4",
    dropout=0.0, class_cond=True, num_classes=10, null_class=True, num_head_channels=32,
    use_scale_shift_norm=True, use_new_attention_order=True,
)
_RGB_UNET = _FMNIST_UNET.replace(image_size=16, in_channels=4, channel_mult="1,2,2", attention_resolutions="8,4")
# The Keras DDIM example (keras.io/examples/generative/ddim, its model card): widths 32, 64, 96, 128 (channel_mult
# 1,2,3,4 of 32 channels), block depth 2, no attention, unconditional; the noise variance embedded by its 32-dim
# sinusoid (frequencies 1..1000); its continuous cosine schedule by signal rates (0.95 down to 0.02) discretised to
# 1000 steps; noise prediction trained with mean absolute error. Not exact (docs/keras_ddim.md): the embedding feeds
# every ResBlock (the example concatenates it to the input only), GroupNorm instead of its affine-free BatchNorm.
_KERAS_DDIM_UNET = UNetConfig(
    image_size=64, in_channels=3, num_channels=32, num_res_blocks=2, channel_mult="1,2,3,4", attention_resolutions="",
    class_cond=False, use_scale_shift_norm=False, time_embedding="keras_ddim", time_embedding_dims=32,
    time_embedding_max_frequency=1000.0,
)
_KERAS_DDIM_DIFFUSION = DiffusionConfig(diffusion_steps=1000, noise_schedule="signal_cosine:0.02,0.95",
                                        model_input="noise_variance", use_l1=True)
PRESETS: dict[str, tuple[UNetConfig, DiffusionConfig]] = {
    "fmnist-latent": (_FMNIST_UNET, DiffusionConfig(diffusion_steps=1000, noise_schedule="linear")),
    # Same network on 32x32x1 pixels (attention at the same downsampling rate): the latent-vs-pixel baseline.
    "fmnist-pixel": (
        _FMNIST_UNET.replace(image_size=32, in_channels=1, attention_resolutions="16"),
        DiffusionConfig(diffusion_steps=1000, noise_schedule="linear"),
    ),
    # The reference's 64x64 ImageNet model (README flags), with fp32 weights instead of use_fp16.
    "guided64": (
        UNetConfig(image_size=64, in_channels=3, num_channels=192, num_res_blocks=3, attention_resolutions="32,16,8",
                   dropout=0.1, class_cond=True, num_classes=1000, learn_sigma=True, num_head_channels=64,
                   use_scale_shift_norm=True, resblock_updown=True, use_new_attention_order=True),
        DiffusionConfig(diffusion_steps=1000, noise_schedule="cosine"),
    ),
    # RGB latents (photos64: 16x16x4; photos128: 16x16x4; photos256: 32x32x4, fitted by diffusion.architecture): the
    # Fashion-MNIST recipe one level deeper, attention at the two coarsest levels (8 and 4 at 16x16).
    "rgb-latent": (_RGB_UNET, DiffusionConfig(diffusion_steps=1000, noise_schedule="linear")),
    # The same U-Net on 64x64 RGB pixels (the reference's levels for 64 px, attention at the two coarsest).
    "rgb-pixel": (_RGB_UNET.replace(image_size=64, in_channels=3, channel_mult="1,2,3,4", attention_resolutions="16,8"),
                  DiffusionConfig(diffusion_steps=1000, noise_schedule="linear")),
    "keras-ddim": (_KERAS_DDIM_UNET, _KERAS_DDIM_DIFFUSION),
    # The same network and process on a VAE's latents (64 px through an f=4 VAE: 16x16; other sizes are fitted).
    "keras-ddim-latent": (_KERAS_DDIM_UNET.replace(image_size=16, in_channels=4), _KERAS_DDIM_DIFFUSION),
}


def guide_unet(unet: UNetConfig) -> UNetConfig:
    """The autoguidance model of `unet` (Karras et al. 2024): the same U-Net at half the width with one ResBlock per
    level, trained for a fraction of the steps (`GUIDE_TRAINING`). Its errors are a larger version of the main
    model's, which is what the guidance extrapolates away from: on the Fashion-MNIST latents an early checkpoint of
    the main model itself guided worse (docs/benchmarks.md, "Sampling and guidance")."""
    return unet.replace(num_channels=max(unet.num_channels // 2, 1), num_res_blocks=1)


def preset(name: str) -> tuple[UNetConfig, DiffusionConfig]:
    """The (UNetConfig, DiffusionConfig) pair of a named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets are {sorted(PRESETS)}")
    return PRESETS[name]
