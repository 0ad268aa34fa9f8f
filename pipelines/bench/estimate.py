"""Peak memory of a training step and of a sampling step, by simulation: nothing is allocated.

The real U-Net (`diffusion.factory.create_model`), the real loss (`diffusion.training.objectives`), torch's AdamW
and the training loop's `EMA` run on fake tensors (torch's `FakeTensorMode`: shapes, dtypes and devices, no data),
under torch's `MemTracker`, which adds up the bytes of every tensor storage alive after each operation. The peak
of a training step is that of the *second* iteration (the steady state: AdamW's two moments exist, the gradients
are re-created, the EMA copies are alive); sampling is one DDIM step under `no_grad` with the weights alone.

What the simulation sees is what torch's caching allocator is asked for (`torch.cuda.max_memory_allocated` on a
GPU). What it does not see is stated in `ASSUMPTIONS` and added by `device_bytes`: the CUDA context, the
allocator's reserve beyond the live blocks, and library workspaces (cuBLAS, cuDNN) that are not tensors.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.distributed._tools import mem_tracker
from torch.distributed._tools.mem_tracker import MemTracker

from diffusion.config import DiffusionConfig, UNetConfig
from diffusion.factory import create_gaussian_diffusion, create_model
from diffusion.respace import DEFAULT_LAMBDA_MIN
from diffusion.training.ema import EMA
from diffusion.training.objectives import diffusion_objective

GIB = 2**30
# What a GPU process holds beyond the simulated tensors (the estimate's stated assumptions; checked by gpu_check).
ASSUMPTIONS = {
    "cuda_context_bytes": 512 * 2**20,  # CUDA context + cuBLAS/cuDNN handles: ~0.3-0.6 GiB per process on CUDA 12/13
    "reserve_factor": 1.10,  # the caching allocator's reserved / allocated at the peak (fragmentation, rounding)
    "rounding_bytes": 512,  # every CUDA block is rounded up to 512 bytes (applied inside the simulation)
}


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of one simulated step and what was alive at that peak, by kind (Parameter, Gradient, Optstate,
    Activation, Temp, Other: the EMA copies and the inputs). A training step has two phases whose peaks differ in
    kind: forward + backward (`activation_peak`, grows with the batch) and clipping + AdamW + EMA (`update_peak`,
    the weights and their states plus AdamW's temporaries; nearly fixed); `peak_bytes` is the larger."""

    batch: int
    peak_bytes: int
    at_peak: dict[str, int]
    params: int
    activation_peak: int = 0
    update_peak: int = 0


@contextlib.contextmanager
def _cuda_block_rounding(enabled: bool) -> Iterator[None]:
    """MemTracker rounds storages to the CUDA allocator's 512-byte blocks only on CUDA tensors; the simulation runs
    on fake CPU tensors where torch has no CUDA (a CPU build), so the rounding is applied to every storage here."""
    if not enabled:
        yield
        return
    info = mem_tracker._WeakRefInfo
    original = info._calculate_mem_consumed
    step = ASSUMPTIONS["rounding_bytes"]
    info._calculate_mem_consumed = lambda self: math.ceil(self.size * self.element_size / step) * step
    try:
        yield
    finally:
        info._calculate_mem_consumed = original


def _tensors(fake: bool) -> contextlib.AbstractContextManager:
    """Fake tensors (the simulation; real CPU tensors such as the process's tables are converted on the way in), or
    real ones (the tracker's accounting checked on real execution)."""
    return FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext()


def _meta_model(unet: UNetConfig) -> torch.nn.Module:
    """The U-Net on the meta device (no initialisation computed); `.to_empty(device=...)` inside the fake mode
    then gives it fake parameters (built outside the mode: fake meta tensors could not be swapped for fake ones)."""
    with torch.device("meta"):
        return create_model(unet)


def _inputs(unet: UNetConfig, batch: int, device: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = torch.empty(batch, unet.in_channels, unet.image_size, unet.image_size, device=device)
    kwargs = {"y": torch.zeros(batch, dtype=torch.long, device=device)} if unet.class_cond else {}
    return x, kwargs


def _snapshot(tracker: MemTracker) -> tuple[int, dict[str, int]]:
    """(peak bytes, {kind: bytes at the peak}) of one tracker (one device)."""
    snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
    return int(snapshot["Total"]), {str(getattr(k, "value", k)): int(v) for k, v in snapshot.items()
                                    if v and k != "Total"}


class PeakTracker(MemTracker):
    """MemTracker keeping the peak of the whole process only. Its per-module peak snapshots (a loop over every
    module after every operation: two thirds of a simulation's time) are never read here."""

    def _update_peak_stats(self, peak_state: object) -> None:
        for dev, snap in self._curr_mem_snap.items():
            if self._peak_mem.get(dev, 0) < snap[mem_tracker._TOTAL_KEY]:
                self._peak_mem[dev] = snap[mem_tracker._TOTAL_KEY]
                self._peak_mem_snap[dev] = dict(snap)


def _tracking(*alive: object) -> MemTracker:
    """A tracker that counts `alive` (modules, optimizers, tensors made before it) from its start."""
    tracker = PeakTracker()
    tracker.track_external(*alive)
    return tracker


def simulation_device() -> str:
    """Fake tensors on "cuda" need torch's CUDA build; the CPU build simulates on "cpu" with CUDA's rounding."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_step(unet: UNetConfig, diffusion: DiffusionConfig, batch: int, precision: str = "fp32",
               ema_copies: int = 1, target: str = "cuda", snr_gamma: float = 0.0, fake: bool = True) -> Estimate:
    """Peak of the second training step at `batch` (forward, backward, gradient clipping, AdamW, EMA update), as
    `diffusion.training.loop.TrainLoop.run_step` takes it with one microbatch. target "cuda" predicts the GPU's
    allocator (512-byte blocks, AdamW's foreach path as torch picks it on CUDA); "cpu" this machine's tensors.
    fake=False runs the same step on real (uninitialised) tensors under the same tracker: the check that the fake
    tensors account for exactly what real execution allocates."""
    device = simulation_device() if target == "cuda" else "cpu"
    on_gpu = target == "cuda"
    model = _meta_model(unet)
    with _tensors(fake), _cuda_block_rounding(on_gpu and device == "cpu"):
        model = model.to_empty(device=device)
        params = sum(p.numel() for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=on_gpu)
        ema = EMA(model, [0.999 + 1e-6 * i for i in range(ema_copies)])
        objective = diffusion_objective(create_gaussian_diffusion(diffusion, learn_sigma=unet.learn_sigma), snr_gamma)
        model.train()
        shadows = [t for copy in ema.shadows.values() for t in copy.values()]
        for step in (1, 2):  # only the second step (the steady state) is tracked
            x, kwargs = _inputs(unet, batch, device)
            t = torch.zeros(batch, dtype=torch.long, device=device)
            noise = torch.empty_like(x)
            optimizer.zero_grad(set_to_none=True)
            inputs = (x, t, noise, *kwargs.values())
            with _tracking(model, optimizer, *shadows, *inputs) if step == 2 else contextlib.nullcontext() as forward:
                with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    losses = objective(model, x, t, kwargs.get("y"), noise)
                (losses["loss"].float().sum() / batch).backward()
                del losses
            with _tracking(model, optimizer, *shadows, *inputs) if step == 2 else contextlib.nullcontext() as update:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=on_gpu)
                optimizer.step()
                ema.update(model, step)
        (fwd_peak, fwd_kinds), (upd_peak, upd_kinds) = _snapshot(forward), _snapshot(update)
    return Estimate(batch=batch, peak_bytes=max(fwd_peak, upd_peak),
                    at_peak=fwd_kinds if fwd_peak >= upd_peak else upd_kinds, params=params,
                    activation_peak=fwd_peak, update_peak=upd_peak)


@torch.no_grad()
def sample_step(unet: UNetConfig, diffusion: DiffusionConfig, batch: int, precision: str = "fp32",
                target: str = "cuda", fake: bool = True) -> Estimate:
    """Peak of one DDIM denoising step at `batch` with the (EMA) weights loaded, as `sample.py` takes it
    (fake=False: on real tensors, as `train_step`)."""
    device = simulation_device() if target == "cuda" else "cpu"
    process = create_gaussian_diffusion(diffusion.replace(timestep_respacing="ddim10"),
                                        learn_sigma=unet.learn_sigma, lambda_min=DEFAULT_LAMBDA_MIN)
    model = _meta_model(unet)
    with _tensors(fake), _cuda_block_rounding(target == "cuda" and device == "cpu"):
        model = model.to_empty(device=device).eval()
        params = sum(p.numel() for p in model.parameters())
        with _tracking(model) as tracker:
            x, kwargs = _inputs(unet, batch, device)
            t = torch.full((batch,), process.num_timesteps - 1, dtype=torch.long, device=device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                process.ddim_sample(model, x, t, model_kwargs=kwargs)
        peak, kinds = _snapshot(tracker)
    return Estimate(batch=batch, peak_bytes=peak, at_peak=kinds, params=params, activation_peak=peak)


def device_bytes(allocated: int) -> int:
    """What NVML would show for a process whose allocator peak is `allocated` (the ASSUMPTIONS added)."""
    return int(allocated * ASSUMPTIONS["reserve_factor"] + ASSUMPTIONS["cuda_context_bytes"])


@dataclass(frozen=True)
class LinearFit:
    """peak(batch) = fixed + per_item * batch, through two simulated batches (exact for these models: every
    activation is proportional to the batch)."""

    fixed: float
    per_item: float

    @classmethod
    def through(cls, a: tuple[int, int], b: tuple[int, int]) -> LinearFit:
        """The line through two (batch, bytes) points."""
        (batch_a, bytes_a), (batch_b, bytes_b) = a, b
        per_item = (bytes_b - bytes_a) / (batch_b - batch_a)
        return cls(fixed=bytes_a - per_item * batch_a, per_item=per_item)

    def at(self, batch: int) -> float:
        return self.fixed + self.per_item * batch

    def max_batch(self, budget_bytes: float) -> int:
        """Largest batch whose device bytes (`device_bytes`) stay within `budget_bytes` (0 when none does)."""
        usable = (budget_bytes - ASSUMPTIONS["cuda_context_bytes"]) / ASSUMPTIONS["reserve_factor"]
        return max(0, int((usable - self.fixed) // self.per_item)) if self.per_item > 0 else 0
