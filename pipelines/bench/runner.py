"""Run the latent-vs-pixel benchmark: every case's measurements in fresh subprocesses, gathered into one report
dict with the latent/pixel ratios (see `report.py` for the files written from it)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from diffusion.config import PRESETS
from pipelines.bench.cases import GIB, BenchConfig, Case, build_cases
from pipelines.bench.decoders import REPO_ROOT, prepare_decoders, run_vae_config
from pipelines.bench.memory import fit_max_batch
from runfs import read_json, write_json
from vae.config import preset as vae_preset


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, GPU name and library versions (versions read from metadata: nothing imported)."""
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    versions = {}
    for dist in ("torch", "numpy", "onnxruntime-gpu", "onnxruntime", "onnx", "tensorflow", "keras", "nvidia-ml-py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "load_average": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions}


def run_worker(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One measurement in a fresh `python -m pipelines.bench.worker`; a killed process (the kernel's OOM killer
    on the CPU) or a timeout is a result too."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, result_path = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        write_json(spec_path, spec)
        command = [sys.executable, "-m", "pipelines.bench.worker", str(spec_path), str(result_path)]
        try:
            proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"task": spec["task"], "batch": spec["batch"], "status": "timeout",
                    "error": f"no result within {timeout_s:.0f} s"}
        if result_path.is_file():
            return read_json(result_path)
        killed = proc.returncode < 0
        return {"task": spec["task"], "batch": spec["batch"], "status": "oom" if killed else "error",
                "error": f"worker exit {proc.returncode}" + (" (killed: out of memory?)" if killed else "")
                + f": {proc.stderr[-500:]}"}


def measure_case(case: Case, cfg: BenchConfig, decoder_dir: str | None, search: str, timeout_s: float) -> dict:
    """Training (at --batch-size), sampling (at --sample-batch) and the max batch of one case."""
    base = {"unet": case.unet.to_dict(), "diffusion": PRESETS[cfg.preset][1].to_dict(), "device": cfg.device,
            "warmup": cfg.warmup, "repeats": cfg.repeats, "steps": cfg.steps, "decoder_dir": None,
            "budget_bytes": int(cfg.budget_gib * GIB), "cap": cfg.max_batch_cap,
            "inject_oom_batch": cfg.inject_oom_batch}
    out = {"train": run_worker({**base, "task": "train", "batch": cfg.batch_size}, timeout_s),
           "sample": run_worker({**base, "task": "sample", "batch": cfg.sample_batch, "decoder_dir": decoder_dir},
                                timeout_s)}
    out["params"] = out["train"].get("params", out["sample"].get("params"))
    if search == "real":
        out["max_batch"] = run_worker({**base, "task": "search", "batch": cfg.batch_size}, timeout_s)
    else:  # CPU: one more single-step run at half the batch gives the memory's slope in the batch size
        small = max(1, cfg.batch_size // 2)
        probe = run_worker({**base, "task": "train", "batch": small, "warmup": 0, "repeats": 1}, timeout_s)
        points = [(r["batch"], r["peak_bytes"]) for r in (probe, out["train"]) if r.get("status") == "ok"]
        if len(points) == 2:
            out["max_batch"] = {"status": "ok", **fit_max_batch(points, base["budget_bytes"], cfg.max_batch_cap)}
        else:
            failed = next(r for r in (out["train"], probe) if r.get("status") != "ok")
            out["max_batch"] = {"status": failed["status"], "failed_batch": failed["batch"],
                                "failure": failed.get("error"), "method": "linear fit"}
    return out


def ratio(pixel: dict, latent: dict, task: str, key: str) -> float | None:
    """pixel / latent for one figure (None when either side has no figure, e.g. after an OOM)."""
    a, b = pixel[task].get(key), latent[task].get(key)
    return a / b if a and b else None


def run_benchmark(cfg: BenchConfig, out_dir: Path, run_dir: str | None = None, search: str = "auto",
                  timeout_s: float = 900.0, progress: bool = True) -> dict[str, Any]:
    """Measure every case and return the report dict (`report.py` writes it out)."""
    import torch

    if cfg.device == "auto":
        cfg = cfg.replace(device="cuda" if torch.cuda.is_available() else "cpu")
    elif cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {cfg.device} but torch sees no GPU; use --device cpu (or auto)")
    search = search if search != "auto" else ("real" if cfg.device.startswith("cuda") else "fit")
    vae_base = (run_vae_config(run_dir) if run_dir else None) or vae_preset(cfg.vae_preset)
    cases, skipped = build_cases(cfg, vae_base)
    decoders = prepare_decoders(cases, out_dir / "decoder_cache", run_dir)
    load_before = [round(v, 2) for v in os.getloadavg()]  # other processes on the machine distort the timings
    results = []
    for case in tqdm(cases, desc="benchmark cases", file=sys.stderr, disable=not progress):
        decoder = decoders.get(case.name)
        figures = measure_case(case, cfg, decoder["dir"] if decoder else None, search, timeout_s)
        results.append({"name": case.name, "size": case.size, "space": case.space, "factor": case.factor,
                        "input_shape": list(case.input_shape), "unet": case.unet.to_dict(),
                        "decoder": decoder, **figures})
    ratios = []
    for latent in (r for r in results if r["space"] == "latent"):
        pixel = next(r for r in results if r["space"] == "pixel" and r["size"] == latent["size"])
        ratios.append({"size": latent["size"], "factor": latent["factor"],
                       "train_speedup": ratio(pixel, latent, "train", "seconds"),
                       "train_memory_ratio": ratio(pixel, latent, "train", "peak_bytes"),
                       "step_speedup": ratio(pixel, latent, "sample", "step_seconds"),
                       "sample_e2e_speedup": ratio(pixel, latent, "sample", "end_to_end_seconds"),
                       "sample_memory_ratio": ratio(pixel, latent, "sample", "peak_bytes")})
    return {"config": asdict(cfg), "search": search, "run": run_dir, "machine": machine(),
            "load_average_before": load_before, "skipped": skipped,
            "cases": results, "ratios": ratios,
            "memory_measure": "torch.cuda.max_memory_allocated (+ NVML process memory)" if cfg.device.startswith(
                "cuda") else "peak RSS of a fresh process minus its RSS after imports"}
