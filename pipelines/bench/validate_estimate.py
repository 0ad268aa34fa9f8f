"""The memory estimate against measured CPU peaks: each case's training step (AdamW, no EMA) and DDIM step is run
for real in a fresh process (`worker.py`: peak RSS over the idle baseline) and simulated (`estimate.py`, target
"cpu"), and the same tracker follows the same step on real tensors (the simulation's own check: the two agree
when the fake tensors account for what real execution allocates). Prints a markdown table (docs/gpu.md).

The measuring processes run with glibc's mmap threshold fixed (MALLOC_MMAP_THRESHOLD_=65536): with the default,
dynamic threshold, freed blocks of up to 32 MiB stay resident and RSS overstates the live bytes by 20-40% on these
models. The CPU runtime's own pages (oneDNN and OpenMP buffers, code) are measured once, with a minimal U-Net, and
added to each estimate: that is this allocator's counterpart of the CUDA context on a GPU.

    python pipelines/bench/validate_estimate.py
"""

from __future__ import annotations

import os
import sys
import warnings

from diffusion.config import PRESETS, DiffusionConfig, UNetConfig
from pipelines.bench.estimate import sample_step, train_step
from pipelines.bench.runner import run_worker
from pipelines.cli import make_parser

DIFFUSION = DiffusionConfig(diffusion_steps=100)
MINIMAL = UNetConfig(image_size=8, in_channels=1, num_channels=32, num_res_blocks=1, channel_mult="1",
                     attention_resolutions="", num_heads=1)
MID32 = UNetConfig(image_size=32, in_channels=3, num_channels=64, num_res_blocks=2, channel_mult="1,2,2",
                   attention_resolutions="16,8", class_cond=True, num_classes=10, learn_sigma=True,
                   num_head_channels=32)
CASES = [("fmnist-latent", PRESETS["fmnist-latent"][0], 512), ("fmnist-pixel", PRESETS["fmnist-pixel"][0], 32),
         ("fmnist-pixel", PRESETS["fmnist-pixel"][0], 128), ("32px 3-level, learn_sigma", MID32, 16),
         ("32px 3-level, learn_sigma", MID32, 32)]
MIB = 2**20


def measured_peak(unet: UNetConfig, batch: int, task: str) -> int:
    """Peak RSS over the idle baseline of one `task` ("train" or "sample") measurement in a fresh process (which
    inherits this process's environment: set MALLOC_MMAP_THRESHOLD_ first, as `main` does)."""
    spec = {"task": task, "unet": unet.to_dict(), "diffusion": DIFFUSION.to_dict(), "device": "cpu",
            "warmup": 1, "repeats": 1, "steps": 2, "decoder_dir": None, "budget_bytes": 0, "cap": 1,
            "inject_oom_batch": 0, "batch": batch}
    result = run_worker(spec, 900)
    if result["status"] != "ok":
        raise RuntimeError(f"measuring {task} at batch {batch} failed: {result.get('error')}")
    return result["peak_bytes"]


def simulated_peak(unet: UNetConfig, batch: int, task: str, fake: bool = True) -> int:
    """The estimate (fake=False: the same tracker over the same step on real tensors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "train":
            return train_step(unet, DIFFUSION, batch, ema_copies=0, target="cpu", fake=fake).peak_bytes
        return sample_step(unet, DIFFUSION, batch, target="cpu", fake=fake).peak_bytes


def runtime_bytes(task: str) -> int:
    """The CPU runtime's own pages: the minimal U-Net's measured peak less its simulated one."""
    return measured_peak(MINIMAL, 1, task) - simulated_peak(MINIMAL, 1, task)


def main(argv: list[str] | None = None) -> int:
    make_parser(__doc__).parse_args(argv)
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"  # inherited by the measuring processes (module docstring)
    runtime = {task: runtime_bytes(task) for task in ("train", "sample")}
    print(f"CPU runtime pages (minimal U-Net): train {runtime['train'] / MIB:.0f} MiB, "
          f"sample {runtime['sample'] / MIB:.0f} MiB\n")
    print("| model | task | batch | simulated MiB | real tensors, tracked MiB | measured RSS MiB | simulated / "
          "measured | (simulated + runtime) / measured |")
    print("|---|---|---|---|---|---|---|---|")
    for name, unet, batch in CASES:
        for task in ("train", "sample"):
            sim, tracked = simulated_peak(unet, batch, task), simulated_peak(unet, batch, task, fake=False)
            real = measured_peak(unet, batch, task)
            print(f"| {name} | {task} | {batch} | {sim / MIB:.0f} | {tracked / MIB:.0f} | {real / MIB:.0f} | "
                  f"{sim / real:.2f} | {(sim + runtime[task]) / real:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
