"""Training logs: per-interval means of every loss term, and per quarter of the timestep range (as the
reference logs `loss_q0..q3`), to a CSV file and, when asked and installed, TensorBoard."""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from pathlib import Path

import torch

from runfs import atomic_path


class LossAccumulator:
    """Sums of each loss term, overall and per timestep quartile, between two log lines."""

    def __init__(self, num_timesteps: int) -> None:
        self.num_timesteps = num_timesteps
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, t: torch.Tensor, losses: dict[str, torch.Tensor]) -> None:
        quartile = (4 * t.detach().cpu() // self.num_timesteps).clamp(max=3)
        for key, values in losses.items():
            v = values.detach().float().cpu()
            self.sums[key] += float(v.sum())
            self.counts[key] += v.numel()
            for q in range(4):
                sel = quartile == q
                if sel.any():
                    self.sums[f"{key}_q{q}"] += float(v[sel].sum())
                    self.counts[f"{key}_q{q}"] += int(sel.sum())

    def means(self) -> dict[str, float]:
        out = {k: self.sums[k] / self.counts[k] for k in self.sums if self.counts[k]}
        self.sums.clear()
        self.counts.clear()
        return out


class CSVLog:
    """Appends rows to `path`; on resume, drops rows logged after the resumed step (they will be redone)."""

    BASE = ["step", "samples", "lr", "grad_norm", "steps_per_sec"]

    def __init__(self, path: str | os.PathLike, resume_step: int, tensorboard_dir: str | None = None) -> None:
        self.path = Path(path)
        self.fields: list[str] | None = None
        if self.path.is_file():
            text = self.path.read_text()
            if not text.endswith("\n"):  # a process killed while appending left half a line: drop it
                text = text[:text.rfind("\n") + 1]
            reader = csv.DictReader(io.StringIO(text, newline=""))
            self.fields = reader.fieldnames
            rows = [r for r in reader if int(r["step"]) <= resume_step]
            self._rewrite(rows)
        self.tb = None
        if tensorboard_dir:
            from torch.utils.tensorboard import SummaryWriter  # optional: only when --tensorboard is given

            self.tb = SummaryWriter(tensorboard_dir)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields or self.BASE)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, float]) -> None:
        if self.fields is None or not self.path.is_file():
            self.fields = self.BASE + sorted(k for k in row if k not in self.BASE)
            self._rewrite([])
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(k, v, int(row["step"]))
