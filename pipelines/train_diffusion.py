"""Stage 2: train the guided-diffusion U-Net on stage 1's latents (or, with --pixels, on images).

Reads DIR/latents/ (every step draws fresh latents from the stored posterior, mean + std * noise, times the
stored scale factor) and writes checkpoint folders DIR/diffusion/step_NNNNNNN/ (config.json, model.safetensors,
ema_RATE.safetensors, optimizer and RNG state, meta.json) and DIR/diffusion/log.csv (loss per quarter of the
timestep range). Rerunning the same command resumes from the newest complete checkpoint; Ctrl-C saves and exits.
With --guide it trains the run's autoguidance model into DIR/guide instead (a smaller, shorter-trained U-Net that
sample.py guides the main model away from).
Data-parallel: torchrun --nproc_per_node N pipelines/train_diffusion.py --run-dir DIR ... (torchrun takes
`--run` for its own --run-path, hence the --run-dir spelling).
Torch only: this process never imports TensorFlow.
"""

from __future__ import annotations

import os
import sys

from diffusion.architecture import describe, fit_unet
from diffusion.config import PRESETS, DiffusionConfig, UNetConfig, guide_unet
from diffusion.training import TRAIN_PRESETS, TrainConfig
from diffusion.training.config import GUIDE_TRAINING
from diffusion.training.session import build_training
from pipelines.cli import add_config_args, add_training_args, apply_args, given, make_parser, run_main, run_training
from pipelines.train_data import load_train_data
from runfs import RunPaths, read_json
from runfs.leftovers import recover


def parse_args(argv: list[str] | None = None):
    parser = make_parser(__doc__)
    add_training_args(parser, "diffusion")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help="model/diffusion/training preset (default: from the run's data: rgb-latent for colour "
                             "images, fmnist-latent otherwise; -pixel with --pixels)")
    parser.add_argument("--resume", action="store_true",
                        help="insist on a checkpoint to continue from (rerunning the same command resumes anyway)")
    parser.add_argument("--guide", action="store_true",
                        help="train the run's autoguidance model instead (DIR/guide: the preset's U-Net at half the "
                             "width with one ResBlock per level, 800 steps, EMA 0.99); sample.py then uses it")
    parser.add_argument("--tensorboard", action="store_true", help="also log to DIR/diffusion/tb (needs tensorboard)")
    add_config_args(parser, UNetConfig, "model (guided-diffusion flag names)",
                    presets={name: unet for name, (unet, _) in PRESETS.items()})
    add_config_args(parser, DiffusionConfig, "diffusion process",
                    presets={name: diffusion for name, (_, diffusion) in PRESETS.items()})
    add_config_args(parser, TrainConfig, "training",
                    presets={name: TRAIN_PRESETS.get(name, TrainConfig()) for name in PRESETS})
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    preset = args.preset or default_preset(RunPaths(args.run), args.pixels)
    unet_base, diff_base = PRESETS[preset]
    run = RunPaths(args.run)

    train_base = TRAIN_PRESETS.get(preset, TrainConfig())
    out_dir = run.root / "pixel_diffusion" if args.pixels else run.diffusion
    if args.guide:
        if args.pixels:
            print("error: --guide trains a latent run's guide (DIR/guide); for pixels, train a smaller model in "
                  "another run folder and pass its checkpoint to sample.py --guide", file=sys.stderr)
            return 2
        unet_base, train_base, out_dir = guide_unet(unet_base), train_base.replace(**GUIDE_TRAINING), run.guide

    def build():
        # The flags are checked before the data is read: a bad number fails at once.
        unet, diffusion, train = (apply_args(base, args) for base in (unet_base, diff_base, train_base))
        recover(run.latents)  # a replace of RUN/latents killed halfway left them as .latents.old
        size, channels = (pixel_shape(run, unet, given(args, UNetConfig)) if args.pixels
                          else (unet.image_size, unet.in_channels))
        data = load_train_data(run, args.pixels, args.data, args.limit, size, channels)
        unet, train = fit_to_data(unet, train, data, args)
        return build_training(
            "diffusion", out_dir=out_dir, data=data, unet=unet, diffusion=diffusion, train=train, device=args.device,
            require_resume=args.resume, progress=not args.no_progress, tensorboard=args.tensorboard)

    return run_training(build, args.threads)


def default_preset(run: RunPaths, pixels: bool) -> str:
    """The preset for the run's data when none is named: rgb-* for colour images (latents/meta.json says what the
    VAE saw), fmnist-* otherwise (grayscale, the embedded default)."""
    meta_path = run.latents / "meta.json"
    colour = meta_path.is_file() and int(read_json(meta_path).get("channels", 1)) == 3
    preset = ("rgb" if colour else "fmnist") + ("-pixel" if pixels else "-latent")
    if os.environ.get("RANK", "0") == "0":
        print(f"preset {preset} (from the data: {'RGB' if colour else 'grayscale'} images; --preset to choose "
              "another)", flush=True)
    return preset


def pixel_shape(run: RunPaths, unet: UNetConfig, explicit: dict) -> tuple[int, int]:
    """--pixels: the images' size and channels: the flags, else the run's VAE's (latents/meta.json: the pixel
    baseline sees the images the latent model's VAE saw), else the preset's."""
    meta_path = run.latents / "meta.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    size = explicit.get("image_size", meta.get("image_size", unet.image_size))
    return int(size), int(explicit.get("in_channels", meta.get("channels", unet.in_channels)))


def fit_to_data(unet: UNetConfig, train: TrainConfig, data, args) -> tuple[UNetConfig, TrainConfig]:
    """The preset's U-Net and training fitted to the data (levels, attention, labels; diffusion.architecture),
    the user's flags kept; printed, and recorded in the checkpoint's config."""
    unet, notes = fit_unet(unet, data.shape, data.num_classes, keep=given(args, UNetConfig))
    if unet.null_label is None and train.cfg_dropout > 0 and "cfg_dropout" not in given(args, TrainConfig):
        notes.append(f"cfg_dropout {train.cfg_dropout} -> 0.0 (no null class: "
                     f"{'unlabelled data' if data.num_classes is None else 'the model has none'})")
        train = train.replace(cfg_dropout=0.0)
    if os.environ.get("RANK", "0") == "0":
        print(f"U-Net: {describe(unet)}" + (f" (fitted to the data: {'; '.join(notes)})" if notes else ""),
              flush=True)
    return unet, train


if __name__ == "__main__":
    sys.exit(run_main(main))
