"""docs/bench/gpu.md from the stage results of `gpu_check.py` (plain data in, markdown out: no torch, no TF)."""

from __future__ import annotations

import subprocess
import time

MIB = 2**20


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _mib(value: float | None) -> str:
    return "-" if value is None or value < 0 else f"{value / MIB:.0f}"


def _stage_lines(stage: str, r: dict) -> list[str]:
    res = r.get("result", {})
    if r["status"] != "ok":
        return [f"- **{stage}: {r['status'].upper()}** ({r['seconds']} s)", "", "```", r.get("error", ""), "```"]
    if stage == "vae":
        text = (f"VAE step on {res['result_device']} (weights on {res['weights_device']}), TensorFlow "
                f"{res['tensorflow']}: {res['seconds_per_step'] * 1000:.1f} ms/step at batch {res['batch']}")
    elif stage == "stage2":
        text = (f"TrainLoop on {res['gpu']} (torch {res['torch']}, CUDA {res['cuda']}), fmnist-latent batch 128: "
                + ", ".join(f"{p} {res[p]['seconds_per_step'] * 1000:.1f} ms/step, "
                            f"{_mib(res[p]['max_memory_allocated'])} MiB" for p in ("fp32", "bf16")))
    elif stage == "sample":
        text = (f"decoder on {res['provider']}, bound from device memory: {res['bound_from_device_memory']}, "
                f"images on {res['images_device']}: {res['decode_seconds_per_64'] * 1000:.1f} ms per 64 images")
    elif stage == "bench":
        text = f"{len(res['cases'])} cases measured; table below"
    elif stage == "claim":
        text = f"guided128 ({res['params'] / 1e6:.1f} M parameters), fp32, AdamW + EMA; table below"
    else:
        text = "estimate beside each measured case; table below"
    return [f"- **{stage}: ok** ({r['seconds']} s): {text}"]


def _compare_table(res: dict) -> list[str]:
    lines = ["| case | task | batch | max_memory_allocated MiB | NVML process MiB | estimate MiB "
             "| estimate / measured |",
             "|---|---|---|---|---|---|---|"]
    for case in res["cases"]:
        for task in ("train", "sample"):
            m = case[task]
            if "estimate" not in m:
                lines.append(f"| {case['name']} | {task} | - | {m.get('status')} | - | - | - |")
                continue
            lines.append(f"| {case['name']} | {task} | {m['batch']} | {_mib(m['max_memory_allocated'])} | "
                         f"{_mib(m.get('nvml_process_bytes'))} | {_mib(m['estimate'])} | "
                         f"{m['estimate_over_measured']:.2f} |")
    return lines


def markdown(gpus: list[str], results: dict[str, dict]) -> str:
    """The report: machine, each stage's assertion and figures, the benchmark, the estimate vs measured table."""
    lines = ["# GPU check", "", f"`python pipelines/bench/gpu_check.py` on {gpus[0]}"
             + (f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else "")
             + f", {time.strftime('%Y-%m-%d')}, commit {_commit()}.", ""]
    for stage, r in results.items():
        lines += _stage_lines(stage, r)
    bench = results.get("bench", {}).get("result")
    if bench:
        from pipelines.bench.report import markdown as bench_markdown

        lines += ["", "## Latent vs pixel, measured", "", bench_markdown(bench)]
    compare = results.get("compare", {}).get("result")
    if compare:
        lines += ["", "## Estimate (simulation) vs measured", "",
                  "Training: AdamW, no EMA, batch as measured; sampling: one DDIM step, torch's memory only (the "
                  "decoder's onnxruntime arena is in the NVML column).", ""] + _compare_table(compare)
    claim = results.get("claim", {}).get("result")
    if claim:
        lines += ["", "## Seed notes: guided128 at 128x128, fp32, AdamW + EMA", "",
                  "| microbatch | max_memory_allocated MiB | reserved MiB | NVML process MiB | estimate MiB |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['batch']} | OOM | - | - | - |" if r.get("status") == "oom" else
                  f"| {r['batch']} | {_mib(r['max_memory_allocated'])} | {_mib(r['max_memory_reserved'])} | "
                  f"{_mib(r['nvml_process_bytes'])} | {_mib(r['estimate'])} |" for r in claim["rows"]]
    return "\n".join(lines) + "\n"
