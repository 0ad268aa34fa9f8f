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

import sys

from diffusion.config import PRESETS, DiffusionConfig, UNetConfig, guide_unet
from diffusion.training import TRAIN_PRESETS, TrainConfig
from diffusion.training.config import GUIDE_TRAINING
from diffusion.training.session import build_training
from pipelines.cli import add_config_args, add_training_args, apply_args, make_parser, run_main, run_training
from pipelines.train_data import load_train_data
from runfs import RunPaths
from runfs.leftovers import recover


def parse_args(argv: list[str] | None = None):
    parser = make_parser(__doc__)
    add_training_args(parser, "diffusion")
    parser.add_argument("--preset", default=None, choices=sorted(PRESETS),
                        help="model/diffusion/training preset (default: fmnist-latent, or fmnist-pixel with --pixels)")
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
    preset = args.preset or ("fmnist-pixel" if args.pixels else "fmnist-latent")
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
        data = load_train_data(run, args.pixels, args.data, args.limit, unet.image_size, unet.in_channels)
        return build_training(
            "diffusion", out_dir=out_dir, data=data, unet=unet, diffusion=diffusion, train=train, device=args.device,
            require_resume=args.resume, progress=not args.no_progress, tensorboard=args.tensorboard)

    return run_training(build, args.threads)


if __name__ == "__main__":
    sys.exit(run_main(main))
