"""Benchmark stage-1 training steps: ms per VAETrainer.train_step (forward, backward, AdamW) at a VAE preset on
random uint8 images, for every combination of the SSIM loss weights, norms, XLA settings and precisions given, and,
with --tf-image-ssim, with the SSIM term computed by tf.image.ssim instead of vae.losses' matrix form (what it
replaced). Prints a markdown table with images/s and the speed-up over the first row.

    python pipelines/bench/vae_steps.py --ssim-weights 0,2.6 --tf-image-ssim
    python pipelines/bench/vae_steps.py --preset photos64 --ssim-weights 0 --norms group,encoder --xla on,off \
        --precisions fp32,bf16
"""

from __future__ import annotations

import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipelines.cli import make_parser


def parse_args(argv: list[str] | None = None):
    p = make_parser(__doc__)
    p.add_argument("--preset", default="fashion_mnist", help="VAE preset (vae.config.PRESETS)")
    p.add_argument("--ssim-weights", default="0,2.6", help="comma list of --ssim-weight values to time")
    p.add_argument("--tf-image-ssim", action="store_true",
                   help="also time each non-zero weight with tf.image.ssim as the SSIM term")
    p.add_argument("--norms", default=None, help="comma list of norms (group, encoder, none); default: the preset's")
    p.add_argument("--xla", default=None, help="comma list of on/off (jit_compile); default: the preset's")
    p.add_argument("--precisions", default=None, help="comma list of fp32/bf16/auto; default: the preset's")
    p.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    p.add_argument("--steps", type=int, default=40, help="timed steps per repeat")
    p.add_argument("--repeats", type=int, default=3, help="repeats (the best is reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps after compiling")
    return p.parse_args(argv)


def tf_image_ssim_loss(images, recon):
    """1 - tf.image.ssim on the [0, 1] scale: the library form, for comparison."""
    import tensorflow as tf

    a, b = (tf.cast(images, tf.float32) + 1) * 0.5, (tf.cast(recon, tf.float32) + 1) * 0.5
    return 1.0 - tf.image.ssim(a, b, max_val=1.0, filter_size=min(11, int(images.shape[1])))


def step_ms(cfg, batch: int, steps: int, repeats: int, warmup: int) -> list[float]:
    import keras
    import numpy as np
    import tensorflow as tf

    from vae.trainer import VAETrainer

    images = tf.constant(np.random.default_rng(0).integers(
        0, 256, size=(batch, cfg.image_size, cfg.image_size, cfg.channels), dtype=np.uint8))
    keras.utils.set_random_seed(cfg.seed)
    trainer = VAETrainer(cfg)  # builds in cfg.precision
    trainer.compile(optimizer=trainer.make_optimizer())
    trainer.optimizer.build(trainer.trainable_variables)
    step = tf.function(trainer.train_step, jit_compile=cfg.jit_compile)
    for _ in range(warmup):
        step(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            out = step(images)
        float(out["loss"])  # wait for the last step
        times.append((time.perf_counter() - start) / steps * 1000)
    return times


def _choices(text: str | None, default, parse, name: str) -> list:
    if text is None:
        return [default]
    values = [parse(v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise ValueError(f"--{name} {text!r}: give one or more values")
    return values


def _on_off(value: str) -> bool:
    if value not in ("on", "off"):
        raise ValueError(f"--xla takes on/off, got {value!r}")
    return value == "on"


def main(argv: list[str] | None = None) -> int:
    import itertools

    from vae import losses
    from vae.config import preset
    from vae.trainer import resolve_precision

    args = parse_args(argv)
    try:
        cfg = preset(args.preset)
        weights = [float(w) for w in args.ssim_weights.split(",") if w.strip()]
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"--ssim-weights {args.ssim_weights!r}: give one or more weights >= 0")
        norms = _choices(args.norms, cfg.norm, str, "norms")
        xlas = _choices(args.xla, cfg.jit_compile, _on_off, "xla")
        precisions = _choices(args.precisions, cfg.precision, str, "precisions")
        for norm, precision in itertools.product(norms, precisions):
            cfg.replace(norm=norm, precision=precision)  # validates both
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    batch = args.batch_size or cfg.batch_size
    cases = [(w, "vae.losses (matrix form)" if w else "-") for w in weights]
    if args.tf_image_ssim:
        cases += [(w, "tf.image.ssim") for w in weights if w]
    print(f"VAE preset {args.preset}, batch {batch}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; best of {args.repeats} x {args.steps} steps\n")
    print("| ssim_weight | SSIM by | norm | XLA | precision | ms per step (best) | images/s | speed-up | repeats |\n"
          "|---|---|---|---|---|---|---|---|---|")
    matrix_form = losses.ssim_loss
    first = None
    for (weight, by), norm, xla, precision in itertools.product(cases, norms, xlas, precisions):
        losses.ssim_loss = tf_image_ssim_loss if by == "tf.image.ssim" else matrix_form
        try:
            times = step_ms(cfg.replace(ssim_weight=weight, norm=norm, jit_compile=xla, precision=precision), batch,
                            args.steps, args.repeats, args.warmup)
        finally:
            losses.ssim_loss = matrix_form
        best = min(times)
        first = first or best
        repeats = ", ".join(f"{t:.1f}" for t in times)
        print(f"| {weight:g} | {by} | {norm} | {'on' if xla else 'off'} | {resolve_precision(precision)[0]} | "
              f"{best:.1f} | {1000 * batch / best:.1f} | {first / best:.2f}x | {repeats} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
