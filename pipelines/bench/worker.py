"""One measurement in a fresh process:  python -m pipelines.bench.worker SPEC.json RESULT.json

A fresh process per measurement is what makes the CPU figures honest: peak RSS cannot be reset, and a process
that ran a big case keeps its allocator's pages. SPEC holds `task` ("train", "sample" or "search"), `unet`
(UNetConfig dict), `diffusion` (DiffusionConfig dict), `batch`, `device`, `warmup`, `repeats`, `steps`,
`decoder_dir` (a bridge folder or null), `budget_bytes`, `cap` and `inject_oom_batch`. RESULT gets `status`
("ok", "oom" or "error") and the figures. Never imports TensorFlow or Keras (recorded in the result).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

import torch

from diffusion.config import DiffusionConfig, UNetConfig
from diffusion.factory import create_gaussian_diffusion, create_model
from diffusion.respace import DEFAULT_LAMBDA_MIN
from pipelines.bench.memory import CpuProbe, CudaProbe, InjectedOOM, is_oom, search_max_batch
from pipelines.bench.timing import median_seconds
from runfs import read_json, write_json


class Bench:
    """Model, process and inputs of one case on one device."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.device = torch.device(spec["device"])
        if spec.get("decoder_dir"):
            import bridge.runtime  # noqa: F401 - onnxruntime's libraries belong to the baseline, not the case
        self.probe = CudaProbe(self.device) if self.device.type == "cuda" else CpuProbe()
        self.sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else None
        self.unet = UNetConfig.from_dict(spec["unet"])
        self.diffusion = DiffusionConfig.from_dict(spec["diffusion"])
        torch.manual_seed(0)
        self.model = create_model(self.unet).to(self.device)
        self.params = sum(p.numel() for p in self.model.parameters())

    def inputs(self, batch: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Standard-normal (batch, C, H, W) inputs and the model's labels (random classes when class-conditional)."""
        u = self.unet
        x = torch.randn(batch, u.in_channels, u.image_size, u.image_size, device=self.device)
        kwargs = {"y": torch.randint(0, u.num_classes, (batch,), device=self.device)} if u.class_cond else {}
        return x, kwargs

    def train_step_fn(self, batch: int):
        """One training step (forward, backward, AdamW) at `batch`, as a zero-argument callable."""
        inject = self.spec.get("inject_oom_batch", 0)
        if inject and batch >= inject:
            raise InjectedOOM(f"injected out of memory at batch {batch} (testing hook)")
        process = create_gaussian_diffusion(self.diffusion, learn_sigma=self.unet.learn_sigma)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        x, kwargs = self.inputs(batch)
        self.model.train()

        def step() -> None:
            t = torch.randint(0, process.num_timesteps, (batch,), device=self.device)
            loss = process.training_losses(self.model, x, t, model_kwargs=kwargs)["loss"].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    def train(self) -> dict[str, Any]:
        self.probe.reset()
        step = self.train_step_fn(self.spec["batch"])
        seconds = median_seconds(step, self.spec["warmup"], self.spec["repeats"], self.sync)
        return {"seconds": seconds, **self.probe.peak()}

    @torch.no_grad()
    def sample(self) -> dict[str, Any]:
        """One denoising step, and `steps` DDIM steps end to end plus the decode (latent cases)."""
        spec = self.spec
        self.model.eval()
        process = create_gaussian_diffusion(self.diffusion.replace(timestep_respacing=f"ddim{spec['steps']}"),
                                            learn_sigma=self.unet.learn_sigma, lambda_min=DEFAULT_LAMBDA_MIN)
        decoder = None
        if spec.get("decoder_dir"):
            from bridge.runtime import load_decoder

            decoder = load_decoder(spec["decoder_dir"], device=self.device.type, decode_batch=spec["batch"])
        self.probe.reset()
        x, kwargs = self.inputs(spec["batch"])
        t = torch.full((spec["batch"],), process.num_timesteps - 1, device=self.device, dtype=torch.long)
        one_step = median_seconds(lambda: process.ddim_sample(self.model, x, t, model_kwargs=kwargs),
                                  spec["warmup"], spec["repeats"], self.sync)
        latents = process.ddim_sample_loop(self.model, x.shape, model_kwargs=kwargs, device=self.device)
        out: dict[str, Any] = {"step_seconds": one_step, "decode_seconds": 0.0}
        if decoder is not None:
            out["decode_seconds"] = median_seconds(lambda: decoder.decode(latents), 1, spec["repeats"], self.sync)
            out["decoder_provider"] = decoder.provider

        def end_to_end() -> None:
            z = process.ddim_sample_loop(self.model, x.shape, model_kwargs=kwargs, device=self.device)
            if decoder is not None:
                decoder.decode(z)

        # The loop was warmed up by the one-step timing and the decode by its own timing: no extra warm-up.
        out["end_to_end_seconds"] = median_seconds(end_to_end, 0, max(1, spec["repeats"] - 1), self.sync)
        return {**out, **self.probe.peak()}

    def search(self) -> dict[str, Any]:
        """Largest training batch under the budget by trying it: an OOM (or a peak over budget) bounds the search."""
        budget = self.spec["budget_bytes"]

        def try_batch(batch: int) -> str | None:
            reason = None
            try:
                self.probe.reset()
                self.train_step_fn(batch)()
                peak = self.probe.peak()["peak_bytes"]
                if peak > budget:
                    reason = f"over budget: peak {peak / 2**30:.2f} GiB > {budget / 2**30:.2f} GiB"
            except Exception as err:
                if not is_oom(err):
                    raise
                reason = f"OOM: {str(err).splitlines()[0][:200]}"
            self.model.zero_grad(set_to_none=True)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # the failed attempt's blocks must not count against the next one
            return reason

        return search_max_batch(try_batch, self.spec["batch"], self.spec["cap"]).to_dict()


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one task; an OOM becomes {"status": "oom", "batch": B, "error": ...} instead of a crash."""
    result: dict[str, Any] = {"task": spec["task"], "batch": spec["batch"]}
    try:
        bench = Bench(spec)
        result["params"] = bench.params
        result.update(getattr(bench, spec["task"])())
        result["status"] = "ok"
    except Exception as err:
        result["status"] = "oom" if is_oom(err) else "error"
        result["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}"
        if result["status"] == "error":
            result["traceback"] = traceback.format_exc()[-2000:]
    result["tensorflow_imported"] = any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="SPEC.json (written by runner.run_worker)")
    parser.add_argument("result", help="RESULT.json to write")
    args = parser.parse_args(argv)
    write_json(args.result, run(read_json(args.spec)))


if __name__ == "__main__":
    main()
