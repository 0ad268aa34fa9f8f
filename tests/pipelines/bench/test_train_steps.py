"""pipelines/bench/train_steps.py: stage-2 steps timed at a preset, optionally fitted to another latent size."""

from diffusion.architecture import _reached
from pipelines.bench.train_steps import fitted, step_times


def test_fitted_resizes_the_preset_as_training_does_and_keeps_it_otherwise():
    own = fitted("rgb-latent", None)
    assert own.image_size == 16
    big = fitted("rgb-latent", 32)
    assert big.image_size == 32 and big.in_channels == own.in_channels
    # one more level, and attention still at resolutions the U-Net reaches
    assert len(big.channel_mult.split(",")) == len(own.channel_mult.split(",")) + 1
    reached = _reached(32, big.channel_mult)
    assert {int(r) for r in big.attention_resolutions.split(",")} <= set(reached)


def test_step_times_runs_the_real_training_step_at_the_fitted_size():
    times = step_times("rgb-latent", "fp32", batch=2, steps=2, warmup=1, device="cpu", size=8)
    assert len(times) == 2 and all(t > 0 for t in times)
