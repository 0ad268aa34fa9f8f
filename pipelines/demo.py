"""The main job on the embedded default (Fashion-MNIST): a 10x10 grid of class-conditional samples.

By default it samples from the trained run shipped in the repository (pretrained/fmnist: the ONNX decoder, the EMA
U-Net and the small U-Net that guides it), which takes seconds. With --train it reproduces that run from scratch in
--run, stage by stage (VAE, encode, export, diffusion, guide), each stage in its own process; a stage already
complete is skipped when the command is rerun, and an interrupted stage resumes from its last checkpoint.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffusion.config import DEFAULT_GUIDANCE_SCALE, DEFAULT_GUIDANCE_SCALE_WITH_GUIDE
from pipelines.cli import finite_float, make_parser
from runfs import RunPaths, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained" / "fmnist"
# DPM-Solver++ 2M, 20 trailing steps, with sample.py's default guidance (classifier-free 2 plus autoguidance 1.2 by
# the run's guide): the best measured FID (docs/benchmarks.md, "Quality").
GRID = ["--num-samples", "100", "--batch-size", "100", "--sampler", "dpmpp", "--timestep-respacing", "trailing20"]


@dataclass(frozen=True)
class Recipe:
    """What `--data NAME` trains and samples: the stage scripts' flags beyond --run."""

    vae: tuple[str, ...]  # train_vae.py
    diffusion: tuple[str, ...]  # train_diffusion.py, for the main model and its guide
    grid: tuple[str, ...]  # sample.py
    vae_minutes: float | None  # None: planned from this machine's measured diffusion step (demo_vae_minutes)
    pretrained: Path  # the shipped run `demo.py --data NAME` samples without --train
    classes: int


RECIPES = {
    "fashion_mnist": Recipe((), (), tuple(GRID), None, PRETRAINED, 10),
    # Debian's clip art (openclipart-png: 8,121 images, 22 categories) at 64x64 RGB through the f=4 `photos64` VAE
    # (16x16x4 latents; 26.5 dB in its 11 minutes) and the `rgb-latent` U-Net. Against an f=8 VAE with 8 latent
    # channels (8x8x8, twice the stage-2 steps in the same minutes): PSNR 26.5 vs 23.5 dB, FID 3.7 vs 5.8, VAE floor
    # 4.4 vs 6.9, class accuracy 0.10 both (docs/benchmarks.md, "RGB: openclipart at 64 px").
    "openclipart": Recipe(
        ("--preset", "photos64", "--data", "openclipart"),
        ("--preset", "rgb-latent"),
        ("--num-samples", "110", "--batch-size", "110", "--sampler", "dpmpp", "--timestep-respacing", "trailing20"),
        11.0, ROOT / "pretrained" / "openclipart64", 22),
}


# The demo's budget on a 2-core machine and what the stages other than VAE and diffusion take of it (encode 51 s,
# export 14 s, sample 9 s, the VAE's final evaluation and the process start-ups: 2.7 minutes measured on an
# AVX512-BF16 EPYC; docs/benchmarks.md).
BUDGET_MINUTES = 30.0
# The autoguidance model (`train_diffusion.py --guide`: 800 steps of a half-width U-Net): 1.8 minutes on the EPYC.
GUIDE_MINUTES = 2.0
OTHER_STAGES_MINUTES = 2.75 + GUIDE_MINUTES
# The full training loop (data draws, EMA, logging, checkpoints) over the probe's bare steps: 1.09x on an AMX Xeon,
# 0.98-1.2x on an AVX512-BF16 EPYC, where 15-step probes themselves vary by ~15%. The plan takes the probe as it is
# and favours the VAE (its minutes buy more than the last diffusion steps); the diffusion stage's own time limit
# (`diffusion_minutes_left`) keeps the 30 minutes when the estimate was short, at the cost of a few steps.
LOOP_OVERHEAD = 1.0
# At least 8: 8 VAE minutes instead of 11 lost more (VAE floor FID 0.6-0.9 against 0.29) than the diffusion steps
# they pay for win back (docs/benchmarks.md); where the steps are slower, the diffusion stage stops at its time
# limit instead. At most 11: what the recipe was measured with.
VAE_MINUTES = (8.0, 11.0)
SAMPLE_MINUTES = 0.75  # kept back for the diffusion stage's last save and the sample stage


def diffusion_step_seconds(steps: int = 15, warmup: int = 3) -> float:
    """Median seconds of one stage-2 training step of the `fmnist-latent` preset on this machine, at the precision
    its `--precision auto` picks (bf16 where the device has it natively), timed on synthetic latents (~10 s)."""
    import statistics

    from diffusion.training import TRAIN_PRESETS
    from pipelines.bench.train_steps import step_times  # torch only, no TensorFlow

    train = TRAIN_PRESETS["fmnist-latent"]
    return statistics.median(step_times("fmnist-latent", train.precision, train.batch_size, steps, warmup, "auto"))


def demo_vae_minutes(run: RunPaths, step_seconds: Callable[[], float] | None = None) -> float:
    """The VAE's share of the demo's 30 minutes: what the diffusion preset's steps at this machine's measured step
    time leave over, at most 11 minutes (the recipe's measured VAE budget) and at least 8 (VAE_MINUTES; where the
    steps are slower, the diffusion stage's time limit cuts steps instead: docs/benchmarks.md). Decided once per run
    and kept in RUN/.done/plan.json, so a resumed VAE stage keeps the budget it started with."""
    from diffusion.training import TRAIN_PRESETS

    plan_path = run.root / ".done" / "plan.json"
    if plan_path.is_file():
        return float(read_json(plan_path)["vae_minutes"])
    steps = TRAIN_PRESETS["fmnist-latent"].max_steps
    seconds = (step_seconds or diffusion_step_seconds)()
    diffusion_minutes = steps * seconds * LOOP_OVERHEAD / 60
    vae_minutes = round(min(max(BUDGET_MINUTES - OTHER_STAGES_MINUTES - diffusion_minutes, VAE_MINUTES[0]),
                            VAE_MINUTES[1]), 1)
    plan = {"vae_minutes": vae_minutes, "diffusion_step_seconds": seconds, "diffusion_steps": steps,
            "predicted_diffusion_minutes": round(diffusion_minutes, 1), "budget_minutes": BUDGET_MINUTES}
    write_json(plan_path, plan)
    print(f"[plan] a diffusion step takes {seconds:.3f} s here: {steps} steps ~{diffusion_minutes:.1f} min, so the "
          f"VAE gets {vae_minutes} min of the {BUDGET_MINUTES:.0f}-minute budget ({plan_path})", flush=True)
    return vae_minutes


def stages(run: RunPaths, args) -> list[tuple[str, list[str], Path]]:
    """(name, command, completion marker) in order; the marker is written only after the command succeeded."""
    recipe = RECIPES[getattr(args, "data", "fashion_mnist")]
    vae_done = run.vae / "model" / "meta.json"
    vae_flags = [] if vae_done.exists() else [
        *recipe.vae, "--max-train-minutes", str(recipe.vae_minutes or demo_vae_minutes(run))]
    if (run.vae / "checkpoint").exists():
        vae_flags.append("--resume")  # the checkpoint's config holds the recipe's flags
    sample = ["pipelines/sample.py", "--run", str(run.root), *recipe.grid, *guidance_flags(args)]
    diffusion = ["pipelines/train_diffusion.py", "--run", str(run.root), *recipe.diffusion]
    return [
        ("vae", ["pipelines/train_vae.py", "--run", str(run.root), *vae_flags], vae_done),
        ("encode", ["pipelines/encode.py", "--run", str(run.root)], run.latents / "meta.json"),
        ("export", ["pipelines/export.py", "--run", str(run.root)], run.bridge / "bridge.json"),
        ("diffusion", diffusion, run.root / ".done" / "diffusion"),
        ("guide", [*diffusion, "--guide"], run.root / ".done" / "guide"),
        ("sample", sample, run.samples / "grid.png"),
    ]


def guidance_flags(args) -> list[str]:
    """sample.py's guidance flags: the user's scale, or none for sample.py's defaults (which depend on the guide)."""
    return [] if args.guidance_scale is None else ["--guidance-scale", str(args.guidance_scale)]


def minutes_left(stage: str, started: float, now: float | None = None) -> float:
    """What this invocation's 30 minutes leave a training stage (started: its time.perf_counter() at launch), less
    the shares of the stages after it (the guide's and the sample stage's for the diffusion stage, the sample
    stage's for the guide); at least one minute (half a minute for the guide), so that a slow machine still gets a
    model (and is told so)."""
    used = ((time.perf_counter() if now is None else now) - started) / 60
    after, least = {"diffusion": (SAMPLE_MINUTES + GUIDE_MINUTES, 1.0), "guide": (SAMPLE_MINUTES, 0.5)}[stage]
    return round(max(BUDGET_MINUTES - used - after, least), 2)


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
    parser.add_argument("--data", default="fashion_mnist", choices=sorted(RECIPES),
                        help="the recipe: fashion_mnist (the embedded default, 32x32 grayscale) or openclipart "
                             "(Debian's openclipart-png, 64x64 RGB, 22 categories)")
    parser.add_argument("--pretrained", default=None,
                        help="the shipped run to sample from (default: pretrained/fmnist, or pretrained/openclipart64 "
                             "with --data openclipart)")
    parser.add_argument("--guidance-scale", type=finite_float, default=None,
                        help="classifier-free guidance scale (default: sample.py's: the run's guidance.json when "
                             "pipelines/tune_guidance.py wrote one, else "
                             f"{DEFAULT_GUIDANCE_SCALE_WITH_GUIDE} with the run's autoguidance model, "
                             f"{DEFAULT_GUIDANCE_SCALE} without)")
    args = parser.parse_args(argv)
    run = RunPaths(args.run)
    timings: dict[str, float | None] = {}
    if args.train:
        started = time.perf_counter()
        for name, command, marker in stages(run, args):
            if name in ("diffusion", "guide") and not marker.exists():
                # The preset's steps, or fewer where the budget runs out first (the plan above was an estimate).
                command = [*command, "--max-train-minutes", str(minutes_left(name, started))]
            timings[name] = run_stage(name, command, marker, force=name == "sample")  # sampling is seconds: redo
    else:
        recipe = RECIPES[args.data]
        pretrained = Path(args.pretrained) if args.pretrained else recipe.pretrained
        if not (pretrained / "bridge" / "bridge.json").is_file():
            raise SystemExit(f"no shipped run at {pretrained} (bridge/bridge.json missing): train one with `python "
                             f"pipelines/demo.py --train --data {args.data}` (make demo-train DATA={args.data})")
        command = ["pipelines/sample.py", "--run", str(pretrained), "--out", str(run.samples), *recipe.grid,
                   *guidance_flags(args)]
        timings["sample"] = run_stage("sample", command, run.samples / "grid.png", force=True)
    total = sum(t for t in timings.values() if t)
    print("\nstage times: " + ", ".join(f"{k} {'skipped' if v is None else f'{v:.1f} s'}"
                                       for k, v in timings.items()) + f"; total {total:.1f} s")
    classes = RECIPES[args.data].classes
    print(f"samples: {run.samples / 'grid.png'} (one row per class: {classes} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
