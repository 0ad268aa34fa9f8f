"""One-shot GPU check (`make gpu-check`, at most ~8 minutes on one GPU); writes docs/bench/gpu.md.

Stages, each in its own process (TensorFlow's CUDA 12 and torch's CUDA 13 never meet; docs/gpu.md):
  vae      a few VAE training steps on TensorFlow's GPU (the step's device asserted)
  stage2   the diffusion TrainLoop's steps on the GPU in fp32 and bf16
  sample   the shipped decoder on onnxruntime's CUDA provider fed from torch's device memory (IOBinding asserted)
  bench    latent vs pixel at 64/128/256 px: torch.cuda.max_memory_allocated and NVML per case
  compare  each benchmark case beside its simulated estimate (pipelines/bench/estimate.py)
  claim    (opt-in: --stages ...,claim) guided-diffusion's 128x128 model in fp32 with AdamW + EMA at microbatches
           1-8: the seed notes' "over 16GB above microbatch 3", measured and estimated (~3 minutes more)
Where `nvidia-smi -L` lists no GPU it says so and exits 0, having checked nothing. Exit 1 when a stage failed.

    python pipelines/bench/gpu_check.py            # or: make gpu-check
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.bench.gpu_report import markdown
from runfs import atomic_path, read_json

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("vae", "stage2", "sample", "bench", "compare")  # the default run
OPT_IN = ("claim",)
TIMEOUTS = {"vae": 120, "stage2": 120, "sample": 60, "bench": 240, "compare": 120, "claim": 300}


def find_gpus() -> list[str]:
    """`nvidia-smi -L`'s GPU lines; [] without the tool, a driver or a GPU (nothing else is imported for this)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    return [line.strip() for line in proc.stdout.splitlines() if line.startswith("GPU ")]


def command(stage: str, work: Path) -> list[str]:
    if stage == "bench":
        return [sys.executable, "pipelines/bench/latent_vs_pixel.py", "--device", "cuda", "--sizes", "64,128,256",
                "--factors", "4,8", "--batch-size", "8", "--sample-batch", "8", "--steps", "10", "--repeats", "3",
                "--search", "fit", "--out", str(work / "bench"), "--no-progress"]
    extra = [str(work / "bench" / "report.json")] if stage == "compare" else []
    return [sys.executable, "-m", "pipelines.bench.gpu_stages", stage, str(work / f"{stage}.json"), *extra]


def run_stage(stage: str, work: Path) -> dict:
    """{"status": "ok" | "failed" | "timeout", "seconds", "result" (the stage's JSON) or "error"}."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(command(stage, work), cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=TIMEOUTS[stage])
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": TIMEOUTS[stage], "error": f"no result within {TIMEOUTS[stage]} s"}
    out = {"seconds": round(time.perf_counter() - started, 1)}
    result = work / ("bench/report.json" if stage == "bench" else f"{stage}.json")
    if proc.returncode != 0 or not result.is_file():
        return {**out, "status": "failed", "error": (proc.stderr or proc.stdout)[-1500:]}
    return {**out, "status": "ok", "result": read_json(result)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "bench" / "gpu.md", help="the report")
    p.add_argument("--stages", default=",".join(STAGES), help="comma list of stages to run")
    args = p.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    if unknown := [s for s in stages if s not in STAGES + OPT_IN]:
        print(f"error: unknown stage(s) {unknown}; stages are {list(STAGES + OPT_IN)}", file=sys.stderr)
        return 2
    gpus = find_gpus()
    if not gpus:
        print("no GPU: `nvidia-smi -L` lists none (or the NVIDIA driver is missing); nothing was checked")
        return 0
    print(f"GPU check on {gpus[0]}: stages {', '.join(stages)}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in stages:
            results[stage] = run_stage(stage, Path(tmp))
            print(f"  {stage}: {results[stage]['status']} ({results[stage]['seconds']} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as path:
        path.write_text(markdown(gpus, results))
    failed = [s for s, r in results.items() if r["status"] != "ok"]
    print(f"wrote {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else "; every stage passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
