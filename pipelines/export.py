"""Export a run's trained Keras VAE to ONNX so that sampling needs only torch + onnxruntime.

Reads RUN/vae/ (the trained VAE) and RUN/latents/ (meta.json with the scale factor, val_mean.npy) and writes
RUN/bridge/: decoder.onnx (scaled NCHW latents -> NHWC images), encoder.onnx and bridge.json. The export is kept
only when onnxruntime reproduces Keras to --tolerance on random and on real latents; otherwise nothing is written.

Example:  python pipelines/export.py --run runs/demo
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.cli import make_parser, number, positive_float, positive_int, run_main
from runfs import RunPaths, read_json
from runfs.arrays import load_npy
from runfs.latent_norm import LatentNorm
from runfs.leftovers import recover
from runfs.lineage import check_export, latents_digest, print_stale
from runfs.writable import check_writable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--run", required=True, type=Path, help="run folder holding vae/ and latents/")
    p.add_argument(
        "--num-real", type=positive_int, default=256,
        help="real latents (from latents/val_mean.npy) in the parity check"
    )
    p.add_argument("--num-random", type=positive_int, default=64, help="random latents and images in the parity check")
    p.add_argument("--tolerance", type=positive_float, default=1e-4,
                   help="largest max-abs difference Keras vs onnxruntime")
    p.add_argument("--opset", type=number(int, 13), default=17, help="ONNX opset to write")
    p.add_argument("--batch", type=positive_int, default=64, help="batch size of the parity runs")
    return p.parse_args(argv)


def read_latents(run: RunPaths, num_real: int) -> tuple[dict, np.ndarray]:
    """latents/meta.json and the first `num_real` validation means (N, z, h, w), unscaled NCHW."""
    recover(run.latents)  # a replace of RUN/latents killed halfway left them as .latents.old
    meta_path = run.latents / "meta.json"
    encode_hint = f"python pipelines/encode.py --run {run.root}"
    if not meta_path.is_file():
        raise SystemExit(f"{meta_path} is missing: encode the dataset first: {encode_hint}")
    meta = read_json(meta_path)
    check_export(meta, run.latents, run.root)  # the latents must come from the VAE being exported
    if meta.get("layout", "NCHW") != "NCHW":
        raise SystemExit(f"{meta_path} says layout {meta['layout']!r}; the bridge expects NCHW latents")
    for name in ("val_mean.npy", "train_mean.npy"):
        if (run.latents / name).is_file():
            means = load_npy(run.latents / name, mmap_mode="r", fix=f"rerun {encode_hint}")
            break
    else:
        raise SystemExit(f"no val_mean.npy or train_mean.npy in {run.latents}: rerun {encode_hint}")
    if list(means.shape[1:]) != list(meta["latent_shape"]):
        raise SystemExit(
            f"{run.latents} is inconsistent: latents of shape {list(means.shape[1:])}, meta.json says "
            f"{meta['latent_shape']}; rerun {encode_hint}"
        )
    return meta, np.array(means[:num_real], dtype=np.float32)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    run = RunPaths(args.run)
    check_writable(run.bridge, "the bridge")
    meta, real_latents = read_latents(run, args.num_real)

    from bridge.export import export_bridge  # Keras/TensorFlow load here, after the cheap checks
    from vae.model import load_vae

    started = time.perf_counter()
    cfg, encoder, decoder = load_vae(run.vae)
    image_shape = f"{cfg.image_size}x{cfg.image_size}x{cfg.channels}"
    print(f"loaded the VAE from {run.vae}: images {image_shape} -> latents {meta['latent_shape']} (NCHW)")
    print(f"exporting to ONNX (opset {args.opset}) and checking parity on {args.num_random} random + "
          f"{len(real_latents)} real latents ...", flush=True)
    info = export_bridge(
        encoder, decoder, run.bridge,
        latent_norm=LatentNorm.from_meta(meta, real_latents.shape[1]), real_latents=real_latents,
        image_size=cfg.image_size, channels=cfg.channels, vae_checkpoint=str(meta.get("vae_checkpoint", "")),
        latents_digest=latents_digest(run.latents) or "",
        num_random=args.num_random, tolerance=args.tolerance, opset=args.opset, batch=args.batch,
    )
    parity = {k: f"{v:.2e}" for k, v in info["parity"].items() if k.startswith(("decoder_", "encoder_"))}
    print(f"wrote {run.bridge}/: decoder.onnx, encoder.onnx, bridge.json  (IR {info['ir_version']}, "
          f"opset {info['opset']}, {LatentNorm.from_meta(info, real_latents.shape[1]).describe()}, "
          f"{time.perf_counter() - started:.1f} s)")
    print(f"parity, max |Keras - onnxruntime| (tolerance {args.tolerance:g}): {parity}")
    print_stale(run.root)
    return info


def cli(argv: list[str] | None = None) -> int:
    """The `ldm-export` console script and `python pipelines/export.py`: main() with the project's error handling and
    exit code 0 (main returns the bridge info to Python callers)."""
    return run_main(lambda: main(argv))


if __name__ == "__main__":
    sys.exit(cli())
