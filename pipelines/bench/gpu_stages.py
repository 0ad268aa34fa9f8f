"""The stages of `gpu_check.py`, each run in its own process:  python -m pipelines.bench.gpu_stages STAGE OUT.json

TensorFlow (CUDA 12) and torch + onnxruntime (CUDA 13) never share a process, so each stage imports only its own
side, inside its function: `vae` imports TensorFlow and Keras; every other stage imports torch (and onnxruntime).
Each stage asserts where its work ran and writes its figures to OUT.json; a failed assertion is a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from runfs import read_json, write_json

REPO_ROOT = Path(__file__).resolve().parents[2]


def vae(steps: int = 20) -> dict[str, Any]:
    """A few VAE training steps on TensorFlow's GPU, with the device of the step's result asserted."""
    import numpy as np
    import tensorflow as tf

    from vae.config import preset
    from vae.trainer import VAETrainer

    gpus = tf.config.list_physical_devices("GPU")
    assert gpus, f"TensorFlow {tf.__version__} sees no GPU: install tensorflow[and-cuda] (make setup GPU=1)"
    cfg = preset("fashion_mnist")
    images = np.random.default_rng(0).integers(0, 256, (cfg.batch_size, cfg.image_size, cfg.image_size,
                                                         cfg.channels), dtype=np.uint8)
    with tf.device("/GPU:0"):
        trainer = VAETrainer(cfg)
        trainer.compile(optimizer=trainer.make_optimizer())
        step = tf.function(trainer.train_step, jit_compile=cfg.jit_compile)
        out = step(tf.constant(images))  # compiles
        started = time.perf_counter()
        for _ in range(steps):
            out = step(tf.constant(images))
        loss = float(out["loss"])
        seconds = (time.perf_counter() - started) / steps
    device = out["loss"].device
    assert "GPU" in device, f"the VAE step ran on {device}, not on the GPU"
    kernel = trainer.trainable_variables[0].device
    assert "GPU" in kernel, f"the VAE's weights live on {kernel}, not on the GPU"
    return {"tensorflow": tf.__version__, "gpus": [g.name for g in gpus], "result_device": device,
            "weights_device": kernel, "seconds_per_step": seconds, "batch": cfg.batch_size, "loss": loss}


def stage2() -> dict[str, Any]:
    """The real TrainLoop's steps on the GPU (fmnist-latent preset, synthetic latents) in fp32 and bf16."""
    import statistics

    import torch

    from pipelines.bench.train_steps import step_times

    assert torch.cuda.is_available(), f"torch {torch.__version__} sees no GPU (CPU build?): make setup GPU=1"
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0)}
    for precision in ("fp32", "bf16"):
        torch.cuda.reset_peak_memory_stats()
        times = step_times("fmnist-latent", precision, batch=128, steps=30, warmup=5, device="cuda")
        out[precision] = {"seconds_per_step": statistics.median(times), "batch": 128,
                          "max_memory_allocated": torch.cuda.max_memory_allocated()}
    return out


def sample() -> dict[str, Any]:
    """The shipped run's decoder on onnxruntime's CUDA provider, fed from torch's device memory (IOBinding)."""
    import torch

    from bridge.runtime import load_decoder

    decoder = load_decoder(REPO_ROOT / "pretrained" / "fmnist", device="cuda", decode_batch=64)
    latents = torch.randn(64, *decoder.latent_shape, device="cuda")
    images = decoder.decode(latents)
    assert decoder.provider == "CUDAExecutionProvider", f"the decoder ran on {decoder.provider}"
    assert decoder.bound_from_device_memory, "the decoder copied the latents through host memory (no IOBinding)"
    started = time.perf_counter()
    for _ in range(10):
        decoder.decode(latents)
    torch.cuda.synchronize()
    return {"provider": decoder.provider, "bound_from_device_memory": decoder.bound_from_device_memory,
            "images_shape": list(images.shape), "images_device": str(images.device),
            "decode_seconds_per_64": (time.perf_counter() - started) / 10}


def compare(report_path: str) -> dict[str, Any]:
    """Each measured case of the latent-vs-pixel benchmark beside the simulation of the same step and batch."""
    from diffusion.config import PRESETS, UNetConfig
    from pipelines.bench.estimate import sample_step, train_step

    report = read_json(report_path)
    diffusion = PRESETS[report["config"]["preset"]][1]
    rows = []
    for case in report["cases"]:
        unet = UNetConfig.from_dict(case["unet"])
        row = {"name": case["name"], "params": case["params"]}
        for task, fn, kwargs in (("train", train_step, {"ema_copies": 0}), ("sample", sample_step, {})):
            measured = case[task]
            if measured.get("status") != "ok":
                row[task] = {"status": measured.get("status")}
                continue
            estimate = fn(unet, diffusion, measured["batch"], "fp32", target="cuda", **kwargs).peak_bytes
            row[task] = {"batch": measured["batch"], "max_memory_allocated": measured["peak_bytes"],
                         "nvml_process_bytes": measured.get("nvml_process_bytes"), "estimate": estimate,
                         "estimate_over_measured": estimate / measured["peak_bytes"]}
        rows.append(row)
    return {"cases": rows}


def claim(batches: tuple[int, ...] = (1, 2, 3, 4, 6, 8)) -> dict[str, Any]:
    """The seed notes' "over 16GB above microbatch 3" at 128x128: guided-diffusion's 128 model, fp32, AdamW and one
    EMA copy, measured at each microbatch (second step's peak), with the estimate at the same batches."""
    import torch

    from diffusion.factory import create_gaussian_diffusion, create_model
    from diffusion.training.ema import EMA
    from diffusion.training.objectives import diffusion_objective
    from pipelines.bench.estimate import train_step
    from pipelines.bench.memory import nvml_process_bytes
    from pipelines.bench.reference_models import model

    unet, diffusion = model("guided128")
    net = create_model(unet).cuda()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    ema, objective = EMA(net, [0.9999]), diffusion_objective(create_gaussian_diffusion(diffusion, learn_sigma=True))
    rows = []
    for batch in batches:
        try:
            for step in (1, 2):
                if step == 2:
                    torch.cuda.reset_peak_memory_stats()
                x = torch.randn(batch, 3, 128, 128, device="cuda")
                y = torch.randint(0, 1000, (batch,), device="cuda")
                t = torch.randint(0, 1000, (batch,), device="cuda")
                optimizer.zero_grad(set_to_none=True)
                objective(net, x, t, y, torch.randn_like(x))["loss"].mean().backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                ema.update(net, step)
            torch.cuda.synchronize()
            rows.append({"batch": batch, "max_memory_allocated": torch.cuda.max_memory_allocated(),
                         "max_memory_reserved": torch.cuda.max_memory_reserved(),
                         "nvml_process_bytes": nvml_process_bytes(torch.device("cuda")),
                         "estimate": train_step(unet, diffusion, batch, "fp32", 1, target="cuda").peak_bytes})
        except torch.OutOfMemoryError:
            rows.append({"batch": batch, "status": "oom"})
            break
    return {"params": sum(p.numel() for p in net.parameters()), "rows": rows}


STAGES = {"vae": vae, "stage2": stage2, "sample": sample, "compare": compare, "claim": claim}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=sorted(STAGES))
    parser.add_argument("out", help="the stage's result (JSON)")
    parser.add_argument("report", nargs="?", help="compare: the benchmark's report.json")
    args = parser.parse_args(argv)
    write_json(args.out, STAGES[args.stage](*([args.report] if args.stage == "compare" else [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
