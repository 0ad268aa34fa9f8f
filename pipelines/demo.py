"""The main job on the embedded default (Fashion-MNIST): a 10x10 grid of class-conditional samples.

By default it samples from the trained run shipped in the repository (pretrained/fmnist: the ONNX decoder and
the EMA U-Net), which takes seconds. With --train it reproduces that run from scratch in --run, stage by stage
(VAE, encode, export, diffusion), each stage in its own process; a stage already complete is skipped when the
command is rerun, and an interrupted stage resumes from its last checkpoint.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from pipelines.cli import make_parser
from runfs import RunPaths, write_json

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained" / "fmnist"
# DPM-Solver++ 2M, 20 trailing steps, guidance 2: the settings of the best measured FID (docs/benchmarks.md, "Quality").
GRID = ["--num-samples", "100", "--batch-size", "100", "--sampler", "dpmpp", "--timestep-respacing", "trailing20"]


def demo_vae_minutes() -> int:
    """The VAE's share of the demo's 30 minutes on 2 cores (its preset alone would take 19). The diffusion preset's
    2,600 steps come first (measured: once the latents have 8 channels, diffusion steps buy more FID than VAE
    minutes; docs/benchmarks.md, "Stage 1 vs stage 2 in the demo's budget"); they take ~12-15 minutes where the
    device runs bfloat16 natively (the preset's `--precision auto`: AMX or AVX512-BF16 CPU, Ampere+ GPU), ~17.5 in
    float32 elsewhere. The VAE gets what is left: 11 or 8 minutes."""
    from diffusion.training.distributed import native_bf16, pick_device  # torch only, no TensorFlow

    return 11 if native_bf16(pick_device("auto")) else 8


def stages(run: RunPaths, args) -> list[tuple[str, list[str], Path]]:
    """(name, command, completion marker) in order; the marker is written only after the command succeeded."""
    vae_flags = ["--max-train-minutes", str(demo_vae_minutes())]
    if (run.vae / "checkpoint").exists():
        vae_flags.append("--resume")
    sample = ["pipelines/sample.py", "--run", str(run.root), *GRID, "--guidance-scale", str(args.guidance_scale)]
    return [
        ("vae", ["pipelines/train_vae.py", "--run", str(run.root), *vae_flags], run.vae / "model" / "meta.json"),
        ("encode", ["pipelines/encode.py", "--run", str(run.root)], run.latents / "meta.json"),
        ("export", ["pipelines/export.py", "--run", str(run.root)], run.bridge / "bridge.json"),
        ("diffusion", ["pipelines/train_diffusion.py", "--run", str(run.root)], run.root / ".done" / "diffusion"),
        ("sample", sample, run.samples / "grid.png"),
    ]


def run_stage(name: str, command: list[str], marker: Path, force: bool) -> float | None:
    """Run one stage unless its marker says it is complete; returns its seconds (None when skipped)."""
    if marker.exists() and not force:
        print(f"[{name}] complete ({marker} exists): skipped")
        return None
    print(f"[{name}] python {' '.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *command], cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"[{name}] failed with exit code {result.returncode}; fix the error above and rerun the "
                         "same command: completed stages are skipped, interrupted ones resume")
    if marker.parent.name == ".done":
        write_json(marker, {"seconds": time.perf_counter() - start})
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--run", default="runs/demo", help="run folder for --train, and where samples go")
    parser.add_argument("--train", action="store_true", help="train every stage from scratch instead of sampling "
                        "from the shipped run")
    parser.add_argument("--pretrained", default=str(PRETRAINED), help="the shipped run to sample from")
    parser.add_argument("--guidance-scale", type=float, default=2.0, help="classifier-free guidance scale")
    args = parser.parse_args(argv)
    run = RunPaths(args.run)
    timings: dict[str, float | None] = {}
    if args.train:
        for name, command, marker in stages(run, args):
            timings[name] = run_stage(name, command, marker, force=name == "sample")  # sampling is seconds: redo
    else:
        pretrained = Path(args.pretrained)
        if not (pretrained / "bridge" / "bridge.json").is_file():
            raise SystemExit(f"no shipped run at {pretrained} (bridge/bridge.json missing): train one with "
                             f"`python pipelines/demo.py --train` (make demo-train)")
        command = ["pipelines/sample.py", "--run", str(pretrained), "--out", str(run.samples), *GRID,
                   "--guidance-scale", str(args.guidance_scale)]
        timings["sample"] = run_stage("sample", command, run.samples / "grid.png", force=True)
    total = sum(t for t in timings.values() if t)
    print("\nstage times: " + ", ".join(f"{k} {'skipped' if v is None else f'{v:.1f} s'}"
                                       for k, v in timings.items()) + f"; total {total:.1f} s")
    print(f"samples: {run.samples / 'grid.png'} (one row per class, 10 classes x 10 samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
