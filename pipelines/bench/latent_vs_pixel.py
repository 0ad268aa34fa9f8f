"""Latent space vs pixel space: how much memory and time the latent U-Net saves, measured on this machine.

The same U-Net preset (identical widths and depth) runs on HxWxC pixels and on (H/f)x(W/f)x4 latents for each
factor f; latent sampling also pays for the VAE decoder (the run's trained ONNX decoder, or a fresh one of the
same design). Per case: parameters, training step (forward + backward + AdamW) time and peak memory, one
denoising step, N DDIM steps end to end including the decode, and the largest training batch under --budget.
CPU: each measurement in a fresh subprocess (peak RSS over the idle baseline); GPU: torch's allocator peak plus
NVML, and a real OOM-bounded batch search. Writes report.json, report.md and plot.png under --out.

--estimate measures nothing: it simulates the GPU memory of training (steady state: AdamW's states, the EMA
copy) and of sampling for pixel vs latent space on any machine (the real model on fake tensors, no allocation;
pipelines/bench/estimate.py), with the largest microbatch under each --budget and the checkpoint size, for the
project's presets or guided-diffusion's published configurations (--preset guided64/guided128/guided256).
Writes estimate.json, estimate.md and estimate.png.

    flock /tmp/ldm-heavy.lock python pipelines/bench/latent_vs_pixel.py --sizes 32,64 --batch-size 8
    python pipelines/bench/latent_vs_pixel.py --estimate --preset guided128 --sizes 128,256 --budget 16GiB,80GiB
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from diffusion.config import PRESETS
from pipelines.bench.cases import BenchConfig
from pipelines.bench.reference_models import MODELS
from pipelines.bench.report import markdown, write_report
from pipelines.bench.runner import run_benchmark
from pipelines.cli import make_parser, non_negative_int, positive_float, positive_int

_UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "m": 2**20, "mib": 2**20, "g": 2**30, "gib": 2**30,
          "gb": 2**30, "t": 2**40, "tib": 2**40}


def parse_budget(text: str) -> float:
    """'16GiB', '512MiB', '16' (GiB) -> GiB as a float."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"--budget {text!r}: write a size like 16GiB, 512MiB or 16 (GiB)")
    unit = _UNITS[match.group(2).lower()] if match.group(2) else 2**30
    return float(match.group(1)) * unit / 2**30


def budget_list(text: str) -> tuple[float, ...]:
    """'16GiB,24GiB,80GiB' -> (16.0, 24.0, 80.0) GiB."""
    return tuple(parse_budget(part) for part in text.split(","))


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers like 32,64") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = make_parser(__doc__)
    p.add_argument("--run", default=None, help="run folder: its trained decoder and VAE design are used; "
                   "the report goes to DIR/bench/ unless --out is given")
    p.add_argument("--out", type=Path, default=None, help="output folder (default DIR/bench/ or runs/bench/)")
    p.add_argument("--estimate", action="store_true", help="simulate GPU memory instead of measuring (any machine)")
    p.add_argument("--preset", default="fmnist-latent", choices=sorted(MODELS),
                   help="U-Net preset in both spaces (guided128/guided256: guided-diffusion's, --estimate only)")
    p.add_argument("--sizes", type=int_list, default=None,
                   help="output resolutions in pixels (default 32,64,128; with --estimate 64,128,256,512)")
    p.add_argument("--factors", type=int_list, default=(4, 8), help="VAE downsampling factors of the latent cases")
    p.add_argument("--channels", type=non_negative_int, default=0,
                   help="image channels (0: 1 for fmnist presets, else 3)")
    p.add_argument("--z-channels", type=positive_int, default=4, help="latent channels")
    p.add_argument("--batch-size", type=positive_int, default=8, help="training batch")
    p.add_argument("--sample-batch", type=positive_int, default=8, help="sampling batch")
    p.add_argument("--steps", type=positive_int, default=10, help="DDIM steps of the end-to-end sampling measurement")
    p.add_argument("--warmup", type=non_negative_int, default=1, help="untimed calls before timing")
    p.add_argument("--repeats", type=positive_int, default=3, help="timed calls (the median is reported)")
    p.add_argument("--budget", type=budget_list, default=(16.0,),
                   help="memory budget(s) of the max-batch search, e.g. 16GiB,24GiB,80GiB (measuring: the first)")
    p.add_argument("--precisions", default="fp32,bf16", help="--estimate: fp32 and/or bf16 (autocast)")
    p.add_argument("--ema-copies", type=non_negative_int, default=1, help="--estimate: EMA copies held during training")
    p.add_argument("--max-batch-cap", type=positive_int, default=8192, help="largest batch the max-batch search tries")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto = cuda when available")
    p.add_argument("--search", default="auto", choices=["auto", "real", "fit"],
                   help="max batch: real = try batches until OOM (GPU), fit = linear memory fit (CPU); auto by device")
    p.add_argument("--vae-preset", default="fashion_mnist", help="vae/ preset of the fresh decoders (without --run)")
    p.add_argument("--timeout", type=positive_float, default=900, help="seconds per measurement subprocess")
    p.add_argument("--inject-oom-batch", type=int, default=0, help=argparse.SUPPRESS)  # testing hook
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def estimate(args: argparse.Namespace, out: Path) -> int:
    """--estimate: the simulated report (no measurement)."""
    from pipelines.bench.estimate_report import markdown as estimate_markdown
    from pipelines.bench.estimate_report import run_estimate, write_estimate

    precisions = tuple(p.strip() for p in args.precisions.split(","))
    bad = [p for p in precisions if p not in ("fp32", "bf16")]
    if bad or args.ema_copies < 0:
        print(f"error: --precisions takes fp32 and/or bf16 (got {bad}); --ema-copies must be >= 0", file=sys.stderr)
        return 2
    report = run_estimate(args.preset, args.sizes or (64, 128, 256, 512), args.factors, precisions, args.budget,
                          args.sample_batch, args.ema_copies, progress=not args.no_progress)
    paths = write_estimate(report, out)
    print(estimate_markdown(report))
    print(f"wrote {paths['json']}, {paths['md']}, {paths['plot']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or (Path(args.run) / "bench" if args.run else Path("runs/bench"))
    if args.estimate:
        return estimate(args, out)
    if args.preset not in PRESETS:
        print(f"error: --preset {args.preset} is for --estimate only; measure one of {sorted(PRESETS)}",
              file=sys.stderr)
        return 2
    try:
        cfg = BenchConfig(preset=args.preset, sizes=args.sizes or (32, 64, 128), factors=args.factors,
                          channels=args.channels,
                          z_channels=args.z_channels, batch_size=args.batch_size, sample_batch=args.sample_batch,
                          steps=args.steps, warmup=args.warmup, repeats=args.repeats, budget_gib=args.budget[0],
                          max_batch_cap=args.max_batch_cap, device=args.device, vae_preset=args.vae_preset,
                          inject_oom_batch=args.inject_oom_batch)
        report = run_benchmark(cfg, out, args.run, args.search, args.timeout, progress=not args.no_progress)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    paths = write_report(report, out)
    print(markdown(report))
    print(f"wrote {paths['json']}, {paths['md']}, {paths['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
