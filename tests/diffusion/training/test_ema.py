"""EMA decay with warm-up: where the nominal rate takes over, and the note for runs that never get there."""

import pytest
import torch

from diffusion.training.ema import EMA, ema_decay, warmup_note, warmup_reaches_rate_at


@pytest.mark.parametrize("rate", [0.9, 0.99, 0.995, 0.999, 0.9999])
def test_warmup_reaches_the_rate_exactly_at_the_computed_step(rate):
    step = warmup_reaches_rate_at(rate)
    assert ema_decay(rate, step, warmup=True) == rate
    assert ema_decay(rate, step - 1, warmup=True) < rate


def test_closed_form_steps():
    # (1 + s) / (10 + s) >= r  <=>  s >= (10 r - 1) / (1 - r): 0.999 -> 8,990; 0.995 -> 1,790
    assert warmup_reaches_rate_at(0.999) == 8990 and warmup_reaches_rate_at(0.995) == 1790


def test_note_names_the_rates_a_short_run_never_reaches():
    note = warmup_note([0.999, 0.9995, 0.995], 2600)
    assert "0.999, 0.9995" in note and "8990" in note and "identical" in note and "0.99655" in note
    assert warmup_note([0.995], 2600) is None  # reached at step 1,790
    assert warmup_note([0.999], None) is None


def test_rates_beyond_the_warmup_give_identical_copies():
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, [0.999, 0.9995, 0.9], warmup=True)
    for step in range(200):  # 0.9 is reached at step 80, 0.999 at 8,990
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        ema.update(model, step)
    a, b, c = (ema.shadows[r]["weight"] for r in (0.999, 0.9995, 0.9))
    assert torch.equal(a, b) and not torch.allclose(a, c)
