"""Exponential moving averages of the parameters, one copy per rate (the reference's `update_ema`)."""

from __future__ import annotations

import torch


def ema_decay(rate: float, step: int, warmup: bool) -> float:
    """The decay used at `step`: `rate`, or with warm-up min(rate, (1 + step) / (10 + step))."""
    return min(rate, (1.0 + step) / (10.0 + step)) if warmup else rate


class EMA:
    """EMA copies of a module's floating-point parameters, keyed by parameter name."""

    def __init__(self, model: torch.nn.Module, rates: list[float], warmup: bool = False) -> None:
        self.rates = rates
        self.warmup = warmup
        self.shadows = {rate: {n: p.detach().clone() for n, p in model.named_parameters()} for rate in rates}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        params = dict(model.named_parameters())
        for rate, shadow in self.shadows.items():
            decay = ema_decay(rate, step, self.warmup)
            names = list(shadow)
            torch._foreach_lerp_([shadow[n] for n in names], [params[n].detach() for n in names], 1.0 - decay)

    def state_dict(self, model: torch.nn.Module, rate: float) -> dict[str, torch.Tensor]:
        """The model's full state dict with the EMA copy of `rate` in place of its parameters."""
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state.update({k: v.clone() for k, v in self.shadows[rate].items()})
        return state

    def load(self, rate: float, state: dict[str, torch.Tensor]) -> None:
        shadow = self.shadows[rate]
        missing = sorted(set(shadow) - set(state))
        if missing:
            raise ValueError(f"EMA {rate}: checkpoint lacks parameters {missing[:5]}")
        for name in shadow:
            shadow[name].copy_(state[name])
