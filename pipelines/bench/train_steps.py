"""Benchmark stage-2 training steps: steps/s of the real TrainLoop (forward, backward, AdamW, EMA) at a preset,
fp32 vs bf16 autocast, on synthetic latents of the preset's shape. Prints a markdown table.

    flock /tmp/ldm-heavy.lock python pipelines/bench/train_steps.py --preset fmnist-latent --steps 20
    python pipelines/bench/train_steps.py --preset rgb-latent --size 32 --batch-size 64   # 256 px through f=8
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time

import torch

from diffusion.architecture import describe, fit_unet
from diffusion.config import PRESETS
from diffusion.training import TRAIN_PRESETS, LatentData, TrainConfig
from diffusion.training.logger import LossAccumulator
from diffusion.training.session import build_training
from pipelines.cli import make_parser, non_negative_int, positive_int


def synthetic_latents(unet, n: int = 1024) -> LatentData:
    g = torch.Generator().manual_seed(0)
    shape = (n, unet.in_channels, unet.image_size, unet.image_size)
    labels = torch.randint(0, unet.num_classes, (n,), generator=g) if unet.class_cond else None
    return LatentData(labels=labels, num_classes=unet.num_classes if unet.class_cond else None,
                      meta={"kind": "synthetic"}, mean=torch.randn(shape, generator=g),
                      std=torch.full(shape, 0.1))


def fitted(preset: str, size: int | None):
    """The preset's U-Net, fitted to size x size latents as training fits it (None: the preset's own size)."""
    unet = PRESETS[preset][0]
    if size is None:
        return unet
    return fit_unet(unet, (unet.in_channels, size, size), unet.num_classes if unet.class_cond else None)[0]


def step_times(preset: str, precision: str, batch: int, steps: int, warmup: int, device: str,
               size: int | None = None) -> list[float]:
    """Seconds of each timed step; size: see `fitted`."""
    unet, diffusion = fitted(preset, size), PRESETS[preset][1]
    train = TRAIN_PRESETS.get(preset, TrainConfig()).replace(batch_size=batch, precision=precision, max_steps=0)
    if not unet.null_class:
        train = train.replace(cfg_dropout=0.0)
    with tempfile.TemporaryDirectory() as out:
        session = build_training("diffusion", out_dir=out, data=synthetic_latents(unet), unet=unet,
                                 diffusion=diffusion, train=train, device=device, progress=False)
        acc = LossAccumulator(1000)
        times = []
        for i in range(warmup + steps):
            start = time.perf_counter()
            session.loop.run_step(acc)
            if session.dist.device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--preset", default="fmnist-latent", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--steps", type=positive_int, default=20, help="timed steps per precision")
    parser.add_argument("--warmup", type=non_negative_int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--size", type=positive_int, default=None,
                        help="latents of SIZExSIZE instead of the preset's (the U-Net fitted as training fits it)")
    args = parser.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}, preset {args.preset}, "
          f"batch {args.batch_size}, {describe(fitted(args.preset, args.size))}")
    print("| precision | median s/step | steps/s | images/s |\n|---|---|---|---|")
    medians = {}
    for precision in args.precisions.split(","):
        times = step_times(args.preset, precision, args.batch_size, args.steps, args.warmup, args.device, args.size)
        medians[precision] = statistics.median(times)
        print(f"| {precision} | {medians[precision]:.4f} | {1 / medians[precision]:.2f} | "
              f"{args.batch_size / medians[precision]:.0f} |")
    if {"fp32", "bf16"} <= medians.keys():
        print(f"bf16 / fp32 step time: {medians['bf16'] / medians['fp32']:.2f}x")


if __name__ == "__main__":
    main()
