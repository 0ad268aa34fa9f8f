"""Train the stage-1 convolutional VAE and write RUN/vae/ (config, model, metrics, reconstruction grids).

Examples:
  python pipelines/train_vae.py --run runs/demo                       # Fashion-MNIST 32x32, f=4, z=8
  python pipelines/train_vae.py --run runs/photos --data ~/photos --image-size 64 --channels 3
  python pipelines/train_vae.py --run runs/demo --resume              # continue after Ctrl-C
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipelines.cli import (
    add_data_access_args,
    int_list,
    make_parser,
    non_negative_float,
    non_negative_int,
    number,
    positive_float,
    positive_int,
    preset_hint,
    run_main,
)
from pipelines.resume_vae import decide_resume
from runfs.lineage import print_stale
from vae.config import PRESETS, VAEConfig

# Flags that map one-to-one onto VAEConfig fields (None = keep the preset's value).
CONFIG_FLAGS = ("data", "folder_labels", "background", "image_size", "channels", "limit", "val_fraction", "seed",
                "base_channels", "channel_mult", "num_res_blocks", "z_channels", "norm", "norm_groups", "recon_loss",
                "ssim_weight", "kl_weight", "epochs", "max_steps", "max_train_minutes", "batch_size", "lr",
                "lr_schedule", "weight_decay", "ema_momentum", "eval_images", "precision")


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(VAEConfig)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--run", required=True, help="run folder; the VAE goes to RUN/vae/")

    def add(flag: str, **kwargs) -> None:
        """p.add_argument; a VAEConfig field's help also names each preset's value (what an unset flag gives)."""
        field = flag[2:].replace("-", "_")
        if field in _CONFIG_FIELDS:
            kwargs["help"] = f"{kwargs['help']} {preset_hint(field, PRESETS)}".rstrip()
        p.add_argument(flag, **kwargs)

    add("--preset", default="fashion_mnist", help="named defaults: " + ", ".join(sorted(PRESETS)))
    add("--data", help="fashion_mnist, openclipart (Debian's openclipart-png: RGB clip-art, 22 labels), tfds:NAME, or "
        "a folder of images")
    add("--folder-labels", choices=["auto", "none", "subdir", "prefix"],
        help="class labels of a folder source: sub-folder names or the filename prefix before '_'")
    add("--background", help="colour that transparent pixels are composited onto: a name (white, black), #RRGGBB "
        "or R,G,B")
    add("--image-size", type=positive_int, help="square image side after center crop + resize")
    add("--channels", type=int, choices=[1, 3], help="1 = grayscale, 3 = RGB")
    add("--limit", type=positive_int, help="use only the first N images")
    add("--val-fraction", type=number(float, 0, 1, low_open=True), help="validation share (default: the source's own)")
    add("--seed", type=non_negative_int, help="seed of the split, shuffling and initialisation")
    add("--base-channels", type=positive_int, help="width of the first level")
    add("--channel-mult", type=int_list,
        help="width multipliers per level, e.g. 1,2,2 (downsampling f = 2^(levels-1))")
    add("--num-res-blocks", type=non_negative_int, help="residual blocks per level")
    add("--z-channels", type=positive_int, help="latent channels")
    add("--norm", choices=["group", "encoder", "none"],
        help="group: GroupNorm before each swish (LDM); encoder: in the encoder only; none: no "
             "normalisation layers: ~1.45x the training speed and sharper reconstructions, but latents "
             "the diffusion model fits worse (docs/benchmarks.md)")
    add("--norm-groups", type=positive_int, help="GroupNorm groups (must divide every width)")
    add("--mid-attention", action=argparse.BooleanOptionalAction, default=None,
        help="self-attention in the middle blocks")
    add("--recon-loss", choices=["l1", "l2"], help="reconstruction loss")
    add("--ssim-weight", type=non_negative_float,
        help="add W * pixels * (1 - SSIM) per image to the L1/L2 loss (0: off; 2.6 is Zhao et al.'s L1/SSIM balance "
             "on [-1, 1] images)")
    add("--kl-weight", type=non_negative_float, help="weight of the KL term (see docs/vae.md for the default)")
    add("--epochs", type=positive_int, help="epochs to train")
    add("--max-steps", type=positive_int, help="stop after this many optimizer steps in total")
    add("--max-train-minutes", type=positive_float, help="stop once this much training time has passed")
    add("--batch-size", type=positive_int, help="images per step")
    add("--lr", type=positive_float, help="AdamW learning rate")
    add("--lr-schedule", choices=["constant", "cosine"],
        help="cosine: decay to 0 over the step or time budget (whichever runs out first)")
    add("--weight-decay", type=non_negative_float, help="AdamW weight decay")
    add("--ema", action=argparse.BooleanOptionalAction, default=None,
        help="keep an EMA of the weights (Keras AdamW use_ema); the final model uses it")
    add("--ema-momentum", type=number(float, 0, 1), help="EMA momentum")
    add("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
        help="compile the training step with XLA")
    add("--precision", choices=["auto", "fp32", "bf16"],
        help="bf16: Keras' mixed_bfloat16 (bf16 compute, float32 weights, loss and saved models); auto: bf16 where "
             "the GPU (compute capability 8+) or the CPU (AMX, AVX512-BF16) computes it natively")
    add("--eval-images", type=positive_int, help="validation images scored after each epoch")
    add_data_access_args(p)
    add("--strategy", choices=["none", "mirrored", "multiworker"], default="none",
        help="mirrored: tf.distribute.MirroredStrategy over all local GPUs (or --devices), each batch split across "
             "them; multiworker: MultiWorkerMirroredStrategy across machines set up by TF_CONFIG (docs/data.md)")
    add("--devices", type=lambda s: [d.strip() for d in s.split(",")],
        help="with --strategy mirrored: the devices to use, e.g. /gpu:0,/gpu:1 (/cpu:0,/cpu:1 splits the CPU into "
             "logical devices, to try it without GPUs)")
    add("--overwrite", action="store_true", help="delete an existing RUN/vae/ first and train anew")
    add("--no-progress", action="store_true", help="no progress bar (the per-epoch lines stay)")
    add("--resume", action="store_true",
        help="continue RUN/vae/checkpoint with its saved config (only the stopping flags may change); the default "
             "when that checkpoint exists and --overwrite is not given")
    add("--checkpoint-minutes", type=non_negative_float, default=2.0,
        help="also save a resumable checkpoint every this many minutes within an epoch (0: at epoch ends only)")
    return p.parse_args(argv)


def resolve_config(args: argparse.Namespace):
    from runfs import RunPaths, read_json
    from vae.config import VAEConfig, preset

    if args.resume:
        config_path = RunPaths(args.run).vae / "config.json"
        if not config_path.is_file():
            raise SystemExit(f"--resume: {config_path} does not exist; train without --resume first")
        cfg = VAEConfig.from_dict(read_json(config_path))
        stopping = ("epochs", "max_steps", "max_train_minutes")
        changes = {k: getattr(args, k) for k in stopping if getattr(args, k) is not None}
        return cfg.replace(**changes)
    cfg = preset(args.preset)
    changes = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    for flag in ("mid_attention", "ema", "jit_compile"):
        if getattr(args, flag) is not None:
            changes[flag] = getattr(args, flag)
    if args.data is not None and args.data != "fashion_mnist" and args.preset == "fashion_mnist":
        changes.setdefault("channels", 3)  # photos and tfds datasets are RGB unless asked otherwise
    return cfg.replace(**changes)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.overwrite and args.resume:
        raise SystemExit("--overwrite and --resume exclude each other")
    if args.overwrite:
        shutil.rmtree(Path(args.run) / "vae", ignore_errors=True)
    args.resume = decide_resume(args, (*CONFIG_FLAGS, "mid_attention", "ema", "jit_compile"))
    try:
        cfg = resolve_config(args)
    except ValueError as e:
        raise SystemExit(f"bad VAE configuration: {e}") from e
    from vae.checkpoint import TrainingDiverged
    from vae.data import open_dataset
    from vae.distribute import is_chief, make_strategy
    from vae.train import TrainingInterrupted, setup_tensorflow, train_vae

    setup_tensorflow()  # before anything touches a device (reading the data may)
    try:
        strategy = make_strategy(args.strategy, args.devices)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    try:
        data = open_dataset(cfg.data, cfg.image_size, cfg.channels, limit=cfg.limit, seed=cfg.seed,
                            val_fraction=cfg.val_fraction, folder_labels=cfg.folder_labels, background=cfg.background,
                            run_dir=args.run, cache=args.cache, rebuild_index=args.rebuild_index,
                            progress=not args.no_progress)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        raise SystemExit(f"data: {e}") from e
    print(f"data {data.source}: {data.describe()}, {data.image_shape}, classes: {data.num_classes}; "
          f"latents {cfg.latent_shape_hwc} (f={cfg.downsample_factor})")
    run_dir = args.run
    if not is_chief():  # a multi-worker cluster: the chief writes the run, the others a folder of their own
        run_dir = tempfile.mkdtemp(prefix="train_vae_worker_")
        if args.resume:  # from the chief's checkpoint (the run folder is on a filesystem every worker sees)
            shutil.copytree(Path(args.run) / "vae", Path(run_dir) / "vae")
    from vae.trainer import resolve_precision

    precision, why = resolve_precision(cfg.precision)
    print(f"precision {cfg.precision}: {precision} ({why}); XLA {'on' if cfg.jit_compile else 'off'}")
    if strategy.num_replicas_in_sync > 1:
        print(f"strategy {args.strategy}: {strategy.num_replicas_in_sync} replicas, "
              f"{cfg.batch_size} images per step split across them")
    try:
        final = train_vae(cfg, data, run_dir, resume=args.resume, progress=not args.no_progress, strategy=strategy,
                          checkpoint_minutes=args.checkpoint_minutes)
    except TrainingInterrupted as e:
        print(e)
        return 130
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (FileExistsError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from e
    raw = final.get("raw_weights")
    ema = f" (EMA weights; raw weights {raw['val_psnr']:.2f} dB, {raw['val_ssim']:.4f})" if raw else ""
    print(f"done: val PSNR {final['val_psnr']:.2f} dB, SSIM {final['val_ssim']:.4f} on {final['val_images']} images"
          f"{ema}, {final['train_seconds']:.0f} s of training; model in {Path(args.run) / 'vae' / 'model'}")
    print_stale(args.run)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
