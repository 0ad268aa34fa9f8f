"""Train the noisy-input classifier (guided-diffusion's EncoderUNetModel) for classifier guidance.

Reads labelled latents from DIR/latents/ (or images with --pixels), noises them with the diffusion process
(q_sample at a uniformly drawn timestep) and trains cross-entropy; checkpoints go to DIR/classifier/ with the same
machinery as the diffuser (atomic folders, EMA, exact resume, Ctrl-C saves). Used by
`pipelines/sample.py --classifier-scale S`. Torch only.
"""

from __future__ import annotations

import sys

from diffusion.config import PRESETS, ClassifierConfig, DiffusionConfig
from diffusion.training import TrainConfig
from diffusion.training.config import CLASSIFIER_TRAIN_PRESET
from diffusion.training.session import build_training
from pipelines.cli import add_config_args, add_training_args, apply_args, make_parser, run_main, run_training
from pipelines.train_data import load_train_data
from runfs import RunPaths


def parse_args(argv: list[str] | None = None):
    parser = make_parser(__doc__)
    add_training_args(parser, "classifier")
    parser.add_argument("--preset", default="fmnist-latent", choices=sorted(PRESETS),
                        help="the diffusion process the classifier must match (noise schedule, steps)")
    add_config_args(parser, ClassifierConfig, "classifier (reference flag names)")
    add_config_args(parser, DiffusionConfig, "diffusion process",
                    presets={name: diffusion for name, (_, diffusion) in PRESETS.items()})
    add_config_args(parser, TrainConfig, "training", skip=("cfg_dropout",),
                    presets={"classifier": CLASSIFIER_TRAIN_PRESET})
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run = RunPaths(args.run)

    def build():
        size, channels = PRESETS["fmnist-pixel"][0].image_size, PRESETS["fmnist-pixel"][0].in_channels
        data = load_train_data(run, args.pixels, args.data, args.limit, size, channels)
        return build_training(
            "classifier", out_dir=run.root / "pixel_classifier" if args.pixels else run.classifier, data=data,
            unet=PRESETS[args.preset][0], diffusion=apply_args(PRESETS[args.preset][1], args),
            classifier=apply_args(ClassifierConfig(), args), train=apply_args(CLASSIFIER_TRAIN_PRESET, args),
            device=args.device, progress=not args.no_progress)

    return run_training(build, args.threads)


if __name__ == "__main__":
    sys.exit(run_main(main))
