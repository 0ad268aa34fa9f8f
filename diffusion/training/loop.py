"""`TrainLoop`: guided-diffusion's training loop with its known problems fixed.

- Microbatch gradients are averaged (each microbatch's loss is weighted by its share of the batch), so any
  `microbatch` gives the gradient of the full batch; the reference summed them.
- Every batch, timestep and noise draw is a function of (seed, step): resume is exact and DDP ranks shard one
  global batch, so N ranks give the result of one process with the same global batch.
- SIGINT/SIGTERM finish the current step, save and return; a NaN/inf loss stops with `TrainingDiverged` and keeps
  the last good checkpoint; checkpoints are atomic folders, the newest `keep` kept.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from diffusion import checkpoints
from diffusion.nn import to_preferred_format
from diffusion.resample import LossSecondMomentResampler, ScheduleSampler
from diffusion.training import checkpoint as ckpt
from diffusion.training.config import TrainConfig
from diffusion.training.data import TrainData
from diffusion.training.distributed import DistInfo, any_rank, barrier
from diffusion.training.ema import EMA
from diffusion.training.logger import CSVLog, LossAccumulator
from runfs.errors import CorruptFileError
from runfs.lineage import check_resume

# objective(model, x_start, t, y, noise) -> per-example loss terms, each (N,); "loss" is the one minimised.
Objective = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor],
                     dict[str, torch.Tensor]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % (2**63 - 1)


class TrainLoop:
    def __init__(self, *, model: torch.nn.Module, objective: Objective, sampler: ScheduleSampler,
                 data: TrainData, config: TrainConfig, out_dir: str | Path, run_config: dict[str, Any],
                 dist: DistInfo, null_label: int | None = None, use_labels: bool = True,
                 progress: bool = True, tensorboard: bool = False) -> None:
        cfg = self.config = config
        if cfg.batch_size % dist.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of processes "
                             f"({dist.world_size})")
        if cfg.cfg_dropout > 0 and null_label is None:
            raise ValueError("cfg_dropout > 0 needs a model with a null class (class-conditional, null_class=True)")
        self.local_batch = cfg.batch_size // dist.world_size
        self.micro = self.local_batch if cfg.microbatch == -1 else min(cfg.microbatch, self.local_batch)
        self.dist, self.data, self.objective, self.sampler = dist, data, objective, sampler
        self.use_labels = use_labels and data.labels is not None
        self.null_label, self.progress = null_label, progress
        self.out_dir, self.run_config = Path(out_dir), run_config
        self.model = to_preferred_format(model.to(dist.device))  # channels_last on the CPU: faster steps
        self.ddp_model = DDP(self.model) if dist.world_size > 1 else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.ema = EMA(self.model, cfg.ema_rates, cfg.ema_warmup)
        self.step = 0
        self.stop_requested = False
        self.resumed_from = self._resume()
        self.log = (CSVLog(self.out_dir / "log.csv", self.step, str(self.out_dir / "tb") if tensorboard else None)
                    if dist.is_main else None)

    # -- state ---------------------------------------------------------------------------------------------
    def _resume(self) -> Path | None:
        """Continue from the newest complete checkpoint; one whose files are damaged is set aside (renamed
        step_N.damaged, with a warning) and the one before it used."""
        for found in reversed(checkpoints.list_checkpoints(self.out_dir)):
            stored = checkpoints.read_checkpoint_config(found)
            for key in ("model", "diffusion"):
                if key in self.run_config and stored.get(key) != self.run_config.get(key):
                    raise ValueError(
                        f"{found} was trained with a different {key} config than this command asks for; rerun with "
                        f"the same flags to resume, or choose a new --run folder.\n stored:    {stored.get(key)}\n "
                        f"requested: {self.run_config.get(key)}")
            check_resume(stored.get("data") or {}, self.run_config.get("data") or {}, found)
            try:
                state = self._read_state(found)
            except CorruptFileError as e:
                self._set_aside(found, e)
                continue
            self._apply_state(state)
            return found
        return None

    def _read_state(self, found: Path) -> dict[str, Any]:
        """Every tensor of checkpoint `found`, read before any is applied (a damaged file changes nothing)."""
        device = self.dist.device
        emas = {rate: found / checkpoints.ema_filename(rate) for rate in self.ema.rates}
        return {"model": checkpoints.load_weights(found / "model.safetensors", device),
                "ema": {rate: checkpoints.load_weights(path, device) for rate, path in emas.items() if path.is_file()},
                "optimizer": (ckpt.load_torch_state(found / "optimizer.pt") if (found / "optimizer.pt").is_file()
                              else None),
                "trainer": ckpt.load_torch_state(found / "state.pt")}

    def _apply_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for rate, weights in state["ema"].items():
            self.ema.load(rate, weights)
        if state["optimizer"] is not None:
            self.opt.load_state_dict(state["optimizer"])
        trainer = state["trainer"]
        torch.set_rng_state(trainer["torch_rng"])
        if "cuda_rng" in trainer and torch.cuda.is_available():
            torch.cuda.set_rng_state(trainer["cuda_rng"], self.dist.device)
        self.sampler.load_state_dict(trainer.get("sampler", {}))
        self.step = int(trainer["step"])

    def _set_aside(self, found: Path, error: Exception) -> None:
        """Rename a damaged checkpoint to step_N.damaged (kept for inspection, no longer loaded), with a warning."""
        aside = found.with_name(found.name + ".damaged")
        barrier()  # every rank has read the folder before it moves
        if self.dist.is_main:
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(found, aside)
            print(f"warning: {error}; that checkpoint is set aside as {aside} (delete it when done) and training "
                  "resumes from the one before it", file=sys.stderr, flush=True)
        barrier()

    def save(self) -> Path | None:
        path = None
        if self.dist.is_main:
            state = {"step": self.step, "torch_rng": torch.get_rng_state(), "sampler": self.sampler.state_dict()}
            if self.dist.device.type == "cuda":
                state["cuda_rng"] = torch.cuda.get_rng_state(self.dist.device)
            path = ckpt.save_checkpoint(
                self.out_dir, self.step, self.run_config, self.model.state_dict(),
                {r: self.ema.state_dict(self.model, r) for r in self.ema.rates}, self.opt.state_dict(), state,
                self.config.keep)
        barrier()
        return path

    # -- one step ----------------------------------------------------------------------------------------------
    def _global_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """This rank's shard of the step's global batch: x_start, t, loss weights, noise, labels."""
        cfg, g = self.config, torch.Generator().manual_seed(step_seed(self.config.seed, self.step))
        idx = self.data.epoch_indices(cfg.seed, self.step, cfg.batch_size)
        shard = slice(self.dist.rank * self.local_batch, (self.dist.rank + 1) * self.local_batch)
        x = self.data.draw(idx, g, shard)  # only this rank's rows are read
        t, w = self.sampler.sample(cfg.batch_size, "cpu", generator=g)
        noise = torch.randn((cfg.batch_size, *x.shape[1:]), generator=g)
        y = self.data.labels[idx] if self.use_labels else None
        if y is not None and cfg.cfg_dropout > 0:
            y = torch.where(torch.rand(cfg.batch_size, generator=g) < cfg.cfg_dropout, self.null_label, y)
        dev = self.dist.device
        x, noise = to_preferred_format(x.to(dev)), to_preferred_format(noise[shard].to(dev))
        return (x, t[shard].to(dev), w[shard].to(dev), noise,
                None if y is None else y[shard].to(dev))

    def run_step(self, acc: LossAccumulator) -> float:
        """One optimizer step; returns the global gradient norm."""
        x, t, w, noise, y = self._global_batch()
        self.opt.zero_grad(set_to_none=True)
        autocast = torch.autocast(self.dist.device.type, dtype=torch.bfloat16,
                                  enabled=self.config.precision == "bf16")
        total = 0.0
        for i in range(0, self.local_batch, self.micro):
            part = slice(i, i + self.micro)
            last = i + self.micro >= self.local_batch
            sync = contextlib.nullcontext() if last or self.ddp_model is self.model else self.ddp_model.no_sync()
            with sync:
                with autocast:
                    losses = self.objective(self.ddp_model, x[part], t[part], None if y is None else y[part],
                                            noise[part])
                if isinstance(self.sampler, LossSecondMomentResampler):
                    self.sampler.update_with_local_losses(t[part], losses["loss"].detach())
                # Weighted by its share of the batch: the microbatch gradients add up to the full-batch mean.
                loss = (losses["loss"].float() * w[part]).sum() / self.local_batch
                loss.backward()
            total += float(loss.detach())
            acc.add(t[part], {k: v * w[part] for k, v in losses.items()})
        if any_rank(not math.isfinite(total), self.dist.device):
            raise TrainingDiverged(f"the loss became {total} at step {self.step}")
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        self._set_lr()
        self.opt.step()
        self.step += 1
        self.ema.update(self.model, self.step)
        return grad_norm

    def _set_lr(self) -> None:
        if self.config.lr_anneal_steps:
            lr = self.config.lr * max(0.0, 1.0 - self.step / self.config.lr_anneal_steps)
            for group in self.opt.param_groups:
                group["lr"] = lr

    # -- the loop ----------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def run(self) -> Path | None:
        """Train until `total_steps` (or a signal); returns the last checkpoint folder."""
        cfg, total = self.config, self.config.total_steps
        handlers = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        acc = LossAccumulator(self.sampler.num_timesteps)
        last_saved, saved_step = self.resumed_from, self.step if self.resumed_from else -1
        bar = tqdm(total=total or None, initial=self.step, disable=not (self.progress and self.dist.is_main),
                   desc="train", unit="step", dynamic_ncols=True)
        tick, tick_step = time.perf_counter(), self.step
        deadline = tick + 60 * cfg.max_train_minutes if cfg.max_train_minutes else None
        try:
            while (not total or self.step < total) and not any_rank(self.stop_requested, self.dist.device):
                # One decision for every rank; no extra collective per step when there is no time limit.
                if deadline is not None and any_rank(time.perf_counter() >= deadline, self.dist.device):
                    if self.dist.is_main:
                        bar.write(f"stopping at step {self.step}: {cfg.max_train_minutes:g} minutes of training "
                                  "reached (--max-train-minutes)")
                    break
                try:
                    grad_norm = self.run_step(acc)
                except TrainingDiverged as e:
                    kept = f"the last good checkpoint {last_saved} is kept" if last_saved else "no checkpoint yet"
                    raise TrainingDiverged(f"{e}; {kept}. Lower --lr, set --grad-clip, or use --precision fp32.") \
                        from None
                bar.update(1)
                if self.step % cfg.log_interval == 0:
                    now = time.perf_counter()
                    row = {"step": self.step, "samples": self.step * cfg.batch_size,
                           "lr": self.opt.param_groups[0]["lr"], "grad_norm": grad_norm,
                           "steps_per_sec": (self.step - tick_step) / max(now - tick, 1e-9), **acc.means()}
                    tick, tick_step = now, self.step
                    bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4f}")
                    if self.log is not None:
                        self.log.write(row)
                if self.step % cfg.save_interval == 0:
                    last_saved, saved_step = self.save(), self.step
            if saved_step != self.step:  # the same decision on every rank: save() holds a barrier
                last_saved = self.save()
        finally:
            bar.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        return last_saved
