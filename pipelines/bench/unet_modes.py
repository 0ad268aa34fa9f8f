"""Benchmark the U-Net: forward and forward+backward time per preset, memory format and torch.compile.

Prints a markdown table (median seconds per call over --repeats after --warmup calls). Run heavy benchmarks
under the shared lock:  flock /tmp/ldm-heavy.lock python pipelines/bench/unet_modes.py
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch
from tqdm import tqdm

from diffusion.config import PRESETS, UNetConfig
from diffusion.factory import create_model
from pipelines.bench.timing import median_seconds
from pipelines.cli import make_parser


def bench_case(cfg: UNetConfig, batch: int, channels_last: bool, compiled: bool, warmup: int, repeats: int,
               backward: bool = True) -> tuple[float, float]:
    """(forward seconds, forward+backward seconds); NaN when a mode fails (e.g. compile without a compiler)."""
    torch.manual_seed(0)
    model = create_model(cfg)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size).contiguous(memory_format=fmt)
    t = torch.randint(0, 1000, (batch,))
    y = torch.randint(0, cfg.num_classes, (batch,)) if cfg.class_cond else None
    net = torch.compile(model) if compiled else model

    def forward():
        with torch.no_grad():
            net(x, t, y)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        net(x, t, y).square().mean().backward()

    model.eval()
    fwd = median_seconds(forward, warmup, repeats)
    model.train()
    fwd_bwd = median_seconds(forward_backward, warmup, repeats) if backward else float("nan")
    return fwd, fwd_bwd


def parse_args() -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument("--cases", default="fmnist-latent:128,fmnist-latent:8,fmnist-pixel:128,guided64:8",
                        help="comma-separated PRESET:BATCH pairs")
    parser.add_argument("--modes", default="eager,eager+cl,compile,compile+cl",
                        help="eager / compile, '+cl' = channels_last")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing (compile happens here)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls; the median is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--sweep", default="",
                        help="also time fmnist-latent variants WIDTH:RES_BLOCKS:MULT;... "
                        "at batch 128 (eager, channels_last)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats} after {args.warmup} warm-up calls\n")
    print("| preset | batch | mode | forward s | forward+backward s |\n|---|---|---|---|---|", flush=True)
    cases = [(name, int(batch)) for name, batch in (c.split(":") for c in args.cases.split(","))]
    jobs = [(name, batch, mode) for name, batch in cases for mode in args.modes.split(",")]
    for name, batch, mode in tqdm(jobs, desc="bench", file=sys.stderr):
        cfg = PRESETS[name][0]
        try:
            fwd, fwd_bwd = bench_case(cfg, batch, "+cl" in mode, mode.startswith("compile"), args.warmup,
                                      args.repeats)
        except Exception as err:
            print(f"{name}:{batch} {mode} failed: {type(err).__name__}: {str(err)[:200]}", file=sys.stderr)
            fwd = fwd_bwd = float("nan")
        print(f"| {name} | {batch} | {mode} | {fwd:.4f} | {fwd_bwd:.4f} |", flush=True)  # a row as soon as known
    if args.sweep:
        base = PRESETS["fmnist-latent"][0]
        print("\n| fmnist-latent variant (width:res_blocks:mult) | params M | batch 128 forward+backward s |")
        print("|---|---|---|")
        for variant in tqdm(args.sweep.split(";"), desc="sweep", file=sys.stderr):
            width, blocks, mult = variant.split(":")
            cfg = base.replace(num_channels=int(width), num_res_blocks=int(blocks), channel_mult=mult)
            params = sum(p.numel() for p in create_model(cfg).parameters()) / 1e6
            _, fwd_bwd = bench_case(cfg, 128, True, False, args.warmup, args.repeats)
            print(f"| {variant} | {params:.2f} | {fwd_bwd:.4f} |", flush=True)


if __name__ == "__main__":
    main()
