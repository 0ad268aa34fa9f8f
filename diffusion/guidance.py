"""Guidance as wrappers around a denoiser: classifier-free (Ho & Salimans 2022), autoguidance by a weaker model
(Karras et al. 2024) and classifier guidance (Dhariwal & Nichol 2021).

All plug into every sampler unchanged: `Guidance` is itself a model(x, t, y=...), and
`classifier_cond_fn` builds the `cond_fn(x, t, y=...)` that the samplers take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Guidance(nn.Module):
    """model(x, t, y) -> guided output, from up to two guidance terms on the first C channels (the mean part: eps,
    x_0, v or x_prev, whatever the mean type), with cond = model(x, t, y):

        out = cond + (w - 1)(cond - uncond) + (s - 1)(cond - bad)

    - classifier-free (Ho & Salimans 2022 eq. 6) at scale w when `null_label` is given: uncond = model(x, t,
      null_label), computed in one batched forward with cond. The model must have been trained with label dropout
      to `null_label` (its extra "no class" embedding).
    - autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") at scale s when
      `guide` is given: bad = guide(x, t, y), a smaller and/or shorter-trained model of the same data, noise
      schedule and parameterisation. It pushes samples away from the weaker model's errors rather than towards the
      class, so it costs less diversity than classifier-free guidance; the two add up.

    At w = s = 1 the output is exactly the conditional one. Variance channels (output with 2C channels) are the
    conditional model's. `interval` (lo, hi): guide only at timesteps lo <= t <= hi (the model's own timestep units,
    i.e. the original steps 0..T-1 under respacing) and return the conditional output elsewhere, without the other
    forwards (Kynkäänniemi et al. 2024: guidance at high noise levels costs diversity, at low ones it does little).
    """

    def __init__(self, model: nn.Module | Callable[..., Tensor], guidance_scale: float = 1.0,
                 null_label: int | None = None, guide: nn.Module | Callable[..., Tensor] | None = None,
                 guide_scale: float = 1.0, interval: tuple[float, float] | None = None) -> None:
        super().__init__()
        if interval is not None and not interval[0] <= interval[1]:
            raise ValueError(f"guidance interval {interval}: the low end must not exceed the high end")
        self.model, self.guide = model, guide
        self.guidance_scale, self.guide_scale = float(guidance_scale), float(guide_scale)
        self.null_label = None if null_label is None else int(null_label)
        self.interval = interval

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, **kwargs: Any) -> Tensor:
        """x [N, C, ...], t [N], y [N] int labels -> [N, C or 2C, ...]."""
        if y is None and self.null_label is not None:
            raise ValueError("classifier-free guidance needs class labels: pass model_kwargs={'y': labels}")
        n, c = x.shape[:2]
        inside = torch.ones(n, dtype=torch.bool, device=x.device)
        if self.interval is not None:
            inside = (t >= self.interval[0]) & (t <= self.interval[1])
            if not bool(inside.any()):
                return self.model(x, t, y=y, **kwargs)  # scale 1 for every example: the conditional output

        def scale(value: float) -> Tensor:  # per example: `value` inside the interval, 1 outside
            return torch.where(inside, value, 1.0).view(n, *([1] * (x.dim() - 1)))

        if self.null_label is None:
            cond = self.model(x, t, y=y, **kwargs)
            mean = cond[:, :c]
        else:
            # Other per-example tensors are duplicated along the batch like x; anything else passes unchanged.
            extra = {k: torch.cat([v, v]) if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n else v
                     for k, v in kwargs.items()}
            null = torch.full_like(y, self.null_label)
            out = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([y, null]), **extra)  # [2N, C', ...]
            cond, uncond = out[:n], out[n:]
            mean = cond[:, :c] + (scale(self.guidance_scale) - 1.0).to(cond.dtype) * (cond[:, :c] - uncond[:, :c])
        if self.guide is not None:
            bad = self.guide(x, t, y=y, **kwargs)[:, :c].to(cond.dtype)
            mean = mean + (scale(self.guide_scale) - 1.0).to(cond.dtype) * (cond[:, :c] - bad)
        return torch.cat([mean, cond[:, c:]], dim=1)


class ClassifierFreeGuidance(Guidance):
    """Classifier-free guidance alone: uncond + w (cond - uncond), one batched forward of [cond; uncond]."""

    def __init__(self, model: nn.Module | Callable[..., Tensor], guidance_scale: float, null_label: int,
                 interval: tuple[float, float] | None = None) -> None:
        super().__init__(model, guidance_scale, null_label, interval=interval)


class AutoGuidance(Guidance):
    """Autoguidance alone: bad + s (good - bad), with the weaker model `guide` called on the same inputs and labels
    (no null class needed)."""

    def __init__(self, model: nn.Module | Callable[..., Tensor], guide: nn.Module | Callable[..., Tensor],
                 guide_scale: float, interval: tuple[float, float] | None = None) -> None:
        super().__init__(model, guide=guide, guide_scale=guide_scale, interval=interval)


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
