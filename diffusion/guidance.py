"""Guidance as wrappers around a denoiser: classifier-free (Ho & Salimans 2022) and classifier (Dhariwal & Nichol 2021).

Both plug into every sampler unchanged: `ClassifierFreeGuidance` is itself a model(x, t, y=...), and
`classifier_cond_fn` builds the `cond_fn(x, t, y=...)` that the samplers take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ClassifierFreeGuidance(nn.Module):
    """model(x, t, y) -> guided output; one batched forward of [conditional; unconditional (y = null_label)].

    Ho & Salimans 2022 eq. 6: out = uncond + s (cond - uncond) on the first C channels (the mean part: eps, x_0,
    v or x_prev, whatever the mean type), written as cond + (s - 1)(cond - uncond) so that s = 1 returns the
    conditional output exactly. Variance channels (output with 2C channels) are the conditional ones.
    The model must have been trained with label dropout to `null_label` (its extra "no class" embedding).

    `interval` (lo, hi): guide only at timesteps lo <= t <= hi (the model's own timestep units, i.e. the original
    steps 0..T-1 under respacing) and return the conditional output elsewhere, without the unconditional forward
    (Kynkäänniemi et al. 2024: guidance at high noise levels costs diversity, at low ones it does little).
    """

    def __init__(self, model: nn.Module | Callable[..., Tensor], guidance_scale: float, null_label: int,
                 interval: tuple[float, float] | None = None) -> None:
        super().__init__()
        if interval is not None and not interval[0] <= interval[1]:
            raise ValueError(f"guidance interval {interval}: the low end must not exceed the high end")
        self.model = model
        self.guidance_scale = float(guidance_scale)
        self.null_label = int(null_label)
        self.interval = interval

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, **kwargs: Any) -> Tensor:
        """x [N, C, ...], t [N], y [N] int labels -> [N, C or 2C, ...]."""
        if y is None:
            raise ValueError("ClassifierFreeGuidance needs class labels: pass model_kwargs={'y': labels}")
        n, c = x.shape[:2]
        scale = torch.full((n,), self.guidance_scale, device=x.device)
        if self.interval is not None:
            inside = (t >= self.interval[0]) & (t <= self.interval[1])
            if not bool(inside.any()):
                return self.model(x, t, y=y, **kwargs)  # scale 1 for every example: the conditional output
            scale = torch.where(inside, scale, torch.ones_like(scale))
        # Other per-example tensors are duplicated along the batch like x; anything else passes unchanged.
        extra = {k: torch.cat([v, v]) if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v
                 for k, v in kwargs.items()}
        null = torch.full_like(y, self.null_label)
        out = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, null]), **extra)  # [2N, C', ...]
        cond, uncond = out[:n], out[n:]
        scale = scale.view(n, *([1] * (x.dim() - 1))).to(cond.dtype)
        mean = cond[:, :c] + (scale - 1.0) * (cond[:, :c] - uncond[:, :c])
        return torch.cat([mean, cond[:, c:]], dim=1)


def classifier_cond_fn(classifier: nn.Module | Callable[..., Tensor], scale: float) -> Callable[..., Tensor]:
    """cond_fn(x, t, y) = scale * grad_x log p(y | x_t) from a noisy-input classifier(x, t) -> logits [N, K]."""

    def cond_fn(x: Tensor, t: Tensor, y: Tensor | None = None, **_: Any) -> Tensor:
        if y is None:
            raise ValueError("classifier guidance needs the target labels: pass model_kwargs={'y': labels}")
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_probs = F.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[torch.arange(len(log_probs), device=log_probs.device), y.view(-1)]
            return torch.autograd.grad(selected.sum(), x_in)[0] * scale

    return cond_fn
