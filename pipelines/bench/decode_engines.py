"""Benchmark: VAE decode throughput, onnxruntime (bridge.runtime) vs Keras `predict`, at one batch size on the CPU.

Uses the run's trained VAE when --run names one with vae/, otherwise a decoder built with vae/'s builders at
--preset (random weights: throughput does not depend on the weights), exported afresh to a temporary folder by
the current exporter. Prints images per second for each engine and the ratio, measured in one process;
--profile adds plain onnxruntime sessions (threads, spinning, optimisation level, GroupNorm not fused).

Example:  python pipelines/bench/decode_engines.py --profile
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipelines.bench.timing import median_seconds
from pipelines.cli import make_parser, positive_int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--run", type=Path, default=Path("runs/demo"), help="run folder with a trained VAE (if present)")
    p.add_argument("--preset", default="fashion_mnist", help="vae/ preset to build when the run has no VAE")
    p.add_argument("--batch", type=positive_int, default=64, help="batch size of both engines")
    p.add_argument("--batches", type=positive_int, default=8, help="batches per timed repeat")
    p.add_argument("--repeats", type=positive_int, default=5, help="timed repeats (the median is reported)")
    p.add_argument("--profile", action="store_true", help="also time plain sessions: threads, spinning, optimisation")
    return p.parse_args(argv)


def images_per_second(fn: Callable[[], object], images: int, repeats: int) -> float:
    """Images per second of `fn` (median of `repeats` timed calls after one warm-up call)."""
    return images / median_seconds(fn, warmup=1, repeats=repeats)


def bridge_for(args: argparse.Namespace, workdir: Path):
    """(keras decoder, bridge folder, where the weights came from), exported afresh into `workdir` so that the
    figures are those of the current exporter; with --profile also workdir/decoder_unfused.onnx (GroupNorm as
    tf2onnx emits it)."""
    from bridge.export import export_bridge, to_onnx, wrap_decoder
    from runfs import RunPaths
    from runfs.latent_norm import LatentNorm

    run = RunPaths(args.run)
    if (run.vae / "model").is_dir() or (run.vae / "checkpoint").is_dir():
        from vae.model import load_vae

        cfg, encoder, decoder = load_vae(run.vae)
        source = f"trained VAE of {run.root}"
    else:
        from vae.config import preset
        from vae.model import build_decoder, build_encoder

        cfg = preset(args.preset)
        encoder, decoder = build_encoder(cfg), build_decoder(cfg)
        source = f"untrained vae/ preset {args.preset!r} (no VAE in {run.root})"
    latent_shape = (cfg.z_channels, cfg.latent_size, cfg.latent_size)
    latents = np.random.default_rng(0).standard_normal((16, *latent_shape))
    identity = LatentNorm.identity(cfg.z_channels)
    export_bridge(encoder, decoder, workdir / "bridge", latent_norm=identity, real_latents=latents.astype(np.float32),
                  image_size=cfg.image_size, channels=cfg.channels, vae_checkpoint="bench", num_random=16)
    if args.profile:
        import onnx

        unfused = to_onnx(wrap_decoder(decoder, identity, latent_shape), ["images"], fuse_norms=False)
        onnx.save(unfused, workdir / "decoder_unfused.onnx")
    return decoder, workdir / "bridge", source


def profile(path: Path, unfused: Path, scaled: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    """Plain onnxruntime sessions at each intra-op thread count and optimisation level, and the graph without the
    GroupNorm fusion (what limits the speed-up, and what the fusion brings)."""
    import onnxruntime as ort

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    figures = {}
    variants = [(1, "basic", True, path), (1, "all", True, path), (2, "basic", True, path), (2, "all", True, path),
                (2, "all", False, path), (2, "all", True, unfused)]
    for threads, name, spinning, graph in variants:
        options = ort.SessionOptions()
        options.graph_optimization_level, options.intra_op_num_threads = levels[name], threads
        # Spinning worker threads cut wake-up latency but burn a core that other processes may need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

        def run(session=session) -> None:
            for i in range(0, len(scaled), args.batch):
                session.run(None, {"latents": scaled[i : i + args.batch]})

        key = (f"ort_session_threads{threads}_opt_{name}" + ("" if spinning else "_nospin")
               + ("_unfused_groupnorm" if graph == unfused else ""))
        figures[key] = images_per_second(run, len(scaled), args.repeats)
    return figures


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    import torch

    from bridge.runtime import load_decoder

    with tempfile.TemporaryDirectory() as tmp:
        keras_decoder, bridge_dir, source = bridge_for(args, Path(tmp))
        onnx_decoder = load_decoder(bridge_dir, device="cpu", decode_batch=args.batch)
        n = args.batch * args.batches
        scaled = torch.randn((n, *onnx_decoder.latent_shape), generator=torch.Generator().manual_seed(0))
        nhwc = np.ascontiguousarray(onnx_decoder.latent_norm.undo(scaled.numpy()).transpose(0, 2, 3, 1))
        figures = {
            "keras_predict": images_per_second(lambda: keras_decoder.predict(nhwc, batch_size=args.batch, verbose=0),
                                               n, args.repeats),
            "onnxruntime": images_per_second(lambda: onnx_decoder.decode(scaled), n, args.repeats),
        }
        if args.profile:
            figures.update(profile(onnx_decoder.spec.decoder_path, Path(tmp) / "decoder_unfused.onnx", scaled.numpy(),
                                   args))
    print(f"decoder: {source}; latents {onnx_decoder.latent_shape} -> images "
          f"{onnx_decoder.image_size}x{onnx_decoder.image_size}x{onnx_decoder.channels}")
    print(f"batch {args.batch}, {n} images per repeat, median of {args.repeats}; "
          f"torch threads {torch.get_num_threads()}, onnxruntime intra-op threads = physical cores")
    for name, value in figures.items():
        print(f"  {name:50s} {value:9.1f} images/s")
    print(f"onnxruntime / keras predict: {figures['onnxruntime'] / figures['keras_predict']:.2f}x")
    return figures


if __name__ == "__main__":
    main()
