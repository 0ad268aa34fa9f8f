"""Build fresh VAE decoders (random weights) and export them to ONNX:  python -m pipelines.bench.export_decoders JOBS

JOBS is a JSON list of {"vae": VAEConfig dict, "out": folder}. This module imports Keras and TensorFlow, so the
benchmark runs it only as a subprocess (`decoders.py`); decode time does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bridge.export import export_bridge
from runfs import read_json
from runfs.latent_norm import LatentNorm
from vae.config import VAEConfig
from vae.model import build_decoder, build_encoder


def export_one(cfg: VAEConfig, out: Path) -> None:
    """decoder.onnx + encoder.onnx + bridge.json for `cfg` in `out` (scale factor 1, a small parity check)."""
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    latents = np.random.default_rng(0).standard_normal((4, cfg.z_channels, cfg.latent_size, cfg.latent_size))
    export_bridge(encoder, decoder, out, latent_norm=LatentNorm.identity(cfg.z_channels),
                  real_latents=latents.astype(np.float32),
                  image_size=cfg.image_size, channels=cfg.channels, vae_checkpoint="benchmark (random weights)",
                  num_random=4, batch=4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jobs", type=Path, help="JSON list of {vae: VAEConfig dict, out: folder}")
    jobs = read_json(parser.parse_args(argv).jobs)
    for job in jobs:
        export_one(VAEConfig.from_dict(job["vae"]), Path(job["out"]))


if __name__ == "__main__":
    main()
