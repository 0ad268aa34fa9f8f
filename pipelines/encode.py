"""Encode a dataset with the run's trained VAE into RUN/latents/ (posterior mean + log-variance, labels, meta.json).

The images stream through the same input pipeline as training (the file index and cache in RUN/data/); latents
are written chunk by chunk into memory-mapped files, so an interrupted run continues from its last complete chunk
when the same command is run again.

The data settings (source, image size, channels, limit, split seed) default to those the VAE was trained with,
read from RUN/vae/. meta.json records the NCHW layout, the latent shape and how the diffusion stage scales the
latents (computed from posterior samples of the train set): one factor, 1 / their std (`--latent-norm global`, the
latent-diffusion convention), or each channel standardised to mean 0 and std 1 (`channel`, EDM2's).

Example:
  python pipelines/encode.py --run runs/demo
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipelines.cli import add_data_access_args, make_parser, non_negative_int, positive_int, run_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--run", required=True, help="run folder holding vae/ (from train_vae.py); writes RUN/latents/")
    p.add_argument("--data", help="data source to encode (default: the one the VAE was trained on)")
    p.add_argument("--limit", type=positive_int,
                   help="encode only the first N images (default: the training run's limit)")
    p.add_argument("--all", action="store_true", help="ignore the training run's --limit and encode everything")
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per encoder call")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the posterior samples behind the scale factor")
    p.add_argument("--latent-norm", choices=["global", "channel"], default="global",
                   help="global: one scale factor for all latents; channel: per-channel mean and std")
    p.add_argument("--chunk-size", type=positive_int, default=4096, help="images per resumable chunk")
    add_data_access_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from runfs import RunPaths
    from runfs.latent_norm import LatentNorm
    from runfs.lineage import print_stale
    from vae.data import open_dataset
    from vae.encode import encode_dataset
    from vae.model import load_vae_config

    try:
        cfg = load_vae_config(RunPaths(args.run).vae)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from e
    limit = None if args.all else (args.limit if args.limit is not None else cfg.limit)
    if args.chunk_size < 1 or args.batch_size < 1:
        raise SystemExit(f"--batch-size and --chunk-size must be at least 1, got {args.batch_size}, {args.chunk_size}")
    try:
        data = open_dataset(args.data or cfg.data, cfg.image_size, cfg.channels, limit=limit, seed=cfg.seed,
                            val_fraction=cfg.val_fraction, folder_labels=cfg.folder_labels, background=cfg.background,
                            run_dir=args.run, cache=args.cache, rebuild_index=args.rebuild_index,
                            progress=not args.no_progress)
    except (ValueError, FileNotFoundError, NotADirectoryError) as e:
        raise SystemExit(f"data: {e}") from e
    print(f"data {data.source}: {data.describe()}")
    meta = encode_dataset(args.run, data, batch_size=args.batch_size, seed=args.seed, latent_norm=args.latent_norm,
                          progress=not args.no_progress, chunk_size=args.chunk_size)
    if meta["skipped_files"]:
        print(f"skipped {len(meta['skipped_files'])} unreadable file(s), named in RUN/latents/meta.json")
    z, h, w = meta["latent_shape"]
    print(f"latents ({z}, {h}, {w}) {meta['layout']}: {meta['counts']['train']} train / {meta['counts']['val']} val, "
          f"{LatentNorm.from_meta(meta, z).describe()}; written to {RunPaths(args.run).latents}")
    print_stale(args.run)  # the bridge or models made from the previous latents, if they differ now
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
