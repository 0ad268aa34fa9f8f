"""Exponential moving averages of the parameters, one copy per rate (the reference's `update_ema`)."""

from __future__ import annotations

import math

import torch


def ema_decay(rate: float, step: int, warmup: bool) -> float:
    """The decay used at `step`: `rate`, or with warm-up min(rate, (1 + step) / (10 + step))."""
    return min(rate, (1.0 + step) / (10.0 + step)) if warmup else rate


def warmup_reaches_rate_at(rate: float) -> int:
    """The first step at which the warm-up decay (1 + step) / (10 + step) is no longer below `rate`."""
    step = max(math.ceil((10.0 * rate - 1.0) / (1.0 - rate)), 0)  # closed form, then settled in floating point
    while step > 0 and ema_decay(rate, step - 1, True) >= rate:
        step -= 1
    while ema_decay(rate, step, True) < rate:
        step += 1
    return step


def warmup_note(rates: list[float], max_steps: int | None) -> str | None:
    """A line for the user when warm-up keeps some rates below their nominal decay for the whole run (their EMA
    copies are then identical to each other), else None."""
    if not max_steps:
        return None
    late = {r: step for r in rates if (step := warmup_reaches_rate_at(r)) > max_steps}
    if not late:
        return None
    effective = ema_decay(1.0, max_steps, True)
    same = " (so their EMA copies will be identical)" if len(late) > 1 else ""
    return (f"EMA warm-up: rate(s) {', '.join(map(str, late))} are reached only after step "
            f"{min(late.values())}, past the run's {max_steps} steps; until then they decay at "
            f"(1 + step) / (10 + step), {effective:.5f} at the last step{same}")


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
