"""`TrainConfig`: the reference's training flags (same names) plus our additions, and named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from runfs import ConfigMixin


@dataclass
class TrainConfig(ConfigMixin):
    """Training options. `batch_size` is the global batch (split over DDP ranks, then into microbatches)."""

    batch_size: int = 128
    microbatch: int = -1  # -1: no microbatching (the reference's convention)
    lr: float = 1e-4
    weight_decay: float = 0.0
    ema_rate: str = "0.9999"  # comma list, one EMA copy per rate
    lr_anneal_steps: int = field(default=0, metadata={"help": "decay the lr linearly to 0 over this many steps, then "
                                                              "stop (0: constant lr, no limit)"})
    save_interval: int = 10000
    log_interval: int = 10
    schedule_sampler: str = "uniform"  # or "loss-second-moment"
    # Ours:
    max_steps: int = field(default=0, metadata={"help": "stop after this many steps in all (0: no limit; with "
                                                        "--lr-anneal-steps 0 and --max-train-minutes 0 the run "
                                                        "trains until Ctrl-C)"})
    max_train_minutes: float = field(default=0.0, metadata={"help": "also stop (and save) after this much training "
                                                                    "time in this process (0: no limit)"})
    ema_warmup: bool = False  # effective rate min(rate, (1 + step) / (10 + step))
    grad_clip: float = field(default=0.0, metadata={"help": "max global gradient norm (0: off)"})
    precision: str = "fp32"  # "fp32", "bf16" (autocast) or "auto" (bf16 where the device has it in hardware)
    cfg_dropout: float = 0.0  # share of labels replaced by the null class (classifier-free guidance)
    snr_gamma: float = 0.0  # min-SNR-gamma loss weighting (Hang et al. 2023; 5 is their default; 0: off)
    seed: int = 0
    keep: int = 3  # how many checkpoint folders to keep

    def __post_init__(self) -> None:
        problems = []
        for name in ("lr", "weight_decay", "max_train_minutes", "grad_clip", "cfg_dropout", "snr_gamma"):
            if not math.isfinite(getattr(self, name)):
                problems.append(f"{name} must be a finite number (got {getattr(self, name)})")
        if self.lr <= 0:
            problems.append(f"lr must be > 0 (got {self.lr})")
        for name in ("weight_decay", "grad_clip", "max_steps", "lr_anneal_steps"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0 (0: off; got {getattr(self, name)})")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.microbatch == 0 or self.microbatch < -1:
            problems.append(f"microbatch must be -1 (off) or >= 1 (got {self.microbatch})")
        if self.precision not in ("fp32", "bf16", "auto"):
            problems.append(f"precision must be 'fp32', 'bf16' or 'auto' (got {self.precision!r})")
        if not 0.0 <= self.cfg_dropout < 1.0:
            problems.append(f"cfg_dropout must be in [0, 1) (got {self.cfg_dropout})")
        if self.snr_gamma < 0:
            problems.append(f"snr_gamma must be >= 0 (0: off; got {self.snr_gamma})")
        if self.max_train_minutes < 0:
            problems.append(f"max_train_minutes must be >= 0 (0: no limit; got {self.max_train_minutes})")
        if self.keep < 1:
            problems.append(f"keep must be >= 1 (got {self.keep})")
        if self.save_interval < 1 or self.log_interval < 1:
            problems.append("save_interval and log_interval must be >= 1")
        try:
            rates = self.ema_rates
        except ValueError:
            rates = []
            problems.append(f"ema_rate must be a comma list of numbers in (0, 1) (got {self.ema_rate!r})")
        if any(not 0.0 < r < 1.0 for r in rates):
            problems.append(f"ema_rate values must lie in (0, 1) (got {self.ema_rate!r})")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    @property
    def ema_rates(self) -> list[float]:
        return [float(r) for r in self.ema_rate.split(",") if r.strip()]

    @property
    def total_steps(self) -> int:
        """Steps this run will take in all (0: unbounded)."""
        bounds = [s for s in (self.max_steps, self.lr_anneal_steps) if s > 0]
        return min(bounds) if bounds else 0


_RGB_TRAIN = TrainConfig(batch_size=64, lr=1e-3, ema_rate="0.999", save_interval=200, log_interval=20,
                         ema_warmup=True, grad_clip=1.0, cfg_dropout=0.1, snr_gamma=5.0, precision="auto")
TRAIN_PRESETS: dict[str, TrainConfig] = {
    # 8x8x8 Fashion-MNIST latents on 2 CPU cores at batch 128: 2,600 steps, ~12 minutes in bf16 on a CPU with AMX
    # (0.28 s per step), ~17.5 in fp32 (0.40 s); `auto` picks bf16 only where the hardware has it. 1,800 steps gave
    # FID 1.45 at best at 1,000 samples, 2,600 steps 0.68 in fp32 and 0.74 in bf16 (docs/benchmarks.md).
    # lr 1e-3 and min-SNR-5 weighting: at 700 steps FID 2.06 / class accuracy 0.86 against 11.6 / 0.58 with the
    # earlier preset's lr 3e-4 and plain mse (docs/benchmarks.md, "Stage-2 training"); the EMA warm-up lets a short
    # run use its EMA weights. EMA 0.995 (reached at step 1,790; 0.999 would not be reached before step 8,990): FID
    # 0.667 against 0.707 at 5,000 samples, same training (docs/benchmarks.md).
    "fmnist-latent": TrainConfig(
        batch_size=128, lr=1e-3, weight_decay=0.0, ema_rate="0.995", max_steps=2600, save_interval=200,
        log_interval=20, ema_warmup=True, grad_clip=1.0, cfg_dropout=0.1, snr_gamma=5.0, precision="auto",
    ),
    # The same recipe on 32x32x1 pixels (the latent-vs-pixel baseline): stop it by wall time to compare (bf16 is
    # 0.51x the fp32 step time here on an AMX CPU, so `auto` keeps the comparison fair).
    "fmnist-pixel": TrainConfig(
        batch_size=128, lr=1e-3, ema_rate="0.999", max_steps=1800, save_interval=50, log_interval=10,
        ema_warmup=True, grad_clip=1.0, cfg_dropout=0.1, snr_gamma=5.0, precision="auto",
    ),
    # RGB: the Fashion-MNIST recipe at batch 64, stopped by --max-steps or --max-train-minutes.
    "rgb-latent": _RGB_TRAIN,
    "rgb-pixel": _RGB_TRAIN,
    # The Keras DDIM example's training: batch 64, AdamW lr 1e-3 weight decay 1e-4, EMA 0.999 from the first step.
    # Its 80 epochs of the data repeated 5 times are 400 passes: --max-steps 400 * train images / 64 (Flowers' 6,552
    # training images: 40,950 steps), or stop by --max-train-minutes.
    "keras-ddim": TrainConfig(batch_size=64, lr=1e-3, weight_decay=1e-4, ema_rate="0.999", save_interval=1000,
                              log_interval=50, precision="auto"),
    "keras-ddim-latent": TrainConfig(batch_size=64, lr=1e-3, weight_decay=1e-4, ema_rate="0.999",
                                     save_interval=1000, log_interval=50, precision="auto"),
}


# Training of the autoguidance model (`train_diffusion.py --guide`, U-Net from `diffusion.config.guide_unet`) over
# the preset's: 800 steps (1.8 minutes on 2 cores for the Fashion-MNIST latents) with a short EMA that warms up in
# time. Guiding the shipped model with it lowers FID from 0.607 to 0.525 (docs/benchmarks.md, "Sampling and guidance").
GUIDE_TRAINING = {"max_steps": 800, "ema_rate": "0.99"}


# The noisy-input classifier on Fashion-MNIST latents (the reference trains its classifiers with AdamW, wd 0.05).
CLASSIFIER_TRAIN_PRESET = TrainConfig(batch_size=128, lr=3e-4, weight_decay=0.05, ema_rate="0.999", max_steps=1500,
                                      save_interval=500, log_interval=50, ema_warmup=True, grad_clip=1.0)
