"""Timestep samplers for training (guided-diffusion's `resample.py`): uniform and loss-second-moment.

Importance sampling keeps the objective unbiased: a timestep drawn with probability p_t has its loss weighted by
1 / (T p_t). Draws use an explicit `torch.Generator`, so a seed (and a resumed state) gives the same timesteps.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


class ScheduleSampler:
    """A distribution over the `num_timesteps` diffusion steps."""

    def __init__(self, num_timesteps: int) -> None:
        self.num_timesteps = num_timesteps

    def weights(self) -> np.ndarray:
        """Unnormalised, positive weight per timestep, shape [T]."""
        return np.ones([self.num_timesteps], dtype=np.float64)

    def sample(
        self, batch_size: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance-sample `batch_size` timesteps: (t [N] int64, loss weights [N] float32) on `device`."""
        p = torch.from_numpy(self.weights() / self.weights().sum())
        t = torch.multinomial(p, batch_size, replacement=True, generator=generator)
        w = 1.0 / (len(p) * p[t])
        return t.to(device), w.float().to(device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class UniformSampler(ScheduleSampler):
    """Every timestep equally likely (weights all 1)."""


class LossSecondMomentResampler(ScheduleSampler):
    """p_t proportional to sqrt(E[loss_t^2]) over the last `history_per_term` losses, mixed with `uniform_prob`.

    Nichol & Dhariwal 2021, Sec. 3.3 (importance sampling of L_vlb). Uniform until every step has a full history.
    """

    def __init__(self, num_timesteps: int, history_per_term: int = 10, uniform_prob: float = 0.001) -> None:
        super().__init__(num_timesteps)
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        self.loss_history = np.zeros([num_timesteps, history_per_term], dtype=np.float64)
        self.loss_counts = np.zeros([num_timesteps], dtype=np.int64)

    def warmed_up(self) -> bool:
        return bool((self.loss_counts == self.history_per_term).all())

    def weights(self) -> np.ndarray:
        if not self.warmed_up():
            return np.ones([self.num_timesteps], dtype=np.float64)
        w = np.sqrt(np.mean(self.loss_history**2, axis=-1))
        w /= w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / len(w)

    def update_with_local_losses(self, local_ts: torch.Tensor, local_losses: torch.Tensor) -> None:
        """Gather (t, loss) from every rank, then update identically everywhere (ranks stay in step)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            pairs = torch.stack([local_ts.double(), local_losses.detach().double()])
            gathered = [torch.zeros_like(pairs) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, pairs)  # equal local batch sizes on every rank (the trainer shards evenly)
            pairs = torch.cat(gathered, dim=1)
        else:
            pairs = torch.stack([local_ts.double(), local_losses.detach().double()])
        self.update_with_all_losses(pairs[0].long().tolist(), pairs[1].tolist())

    def update_with_all_losses(self, ts: list[int], losses: list[float]) -> None:
        for t, loss in zip(ts, losses, strict=True):
            if self.loss_counts[t] == self.history_per_term:
                self.loss_history[t, :-1] = self.loss_history[t, 1:]  # shift out the oldest
                self.loss_history[t, -1] = loss
            else:
                self.loss_history[t, self.loss_counts[t]] = loss
                self.loss_counts[t] += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"loss_history": torch.from_numpy(self.loss_history.copy()),
                "loss_counts": torch.from_numpy(self.loss_counts.copy())}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.loss_history = state["loss_history"].numpy().astype(np.float64)
        self.loss_counts = state["loss_counts"].numpy().astype(np.int64)


SCHEDULE_SAMPLERS = {"uniform": UniformSampler, "loss-second-moment": LossSecondMomentResampler}


def create_named_schedule_sampler(name: str, num_timesteps: int) -> ScheduleSampler:
    """`uniform` or `loss-second-moment`, as the reference's `--schedule_sampler`."""
    if name not in SCHEDULE_SAMPLERS:
        raise ValueError(f"unknown schedule sampler {name!r}; choose one of {sorted(SCHEDULE_SAMPLERS)}")
    return SCHEDULE_SAMPLERS[name](num_timesteps)
