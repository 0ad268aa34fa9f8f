"""The memory estimate (pipelines/bench/estimate.py): closed forms for what must be alive, linearity in the batch,
the label check under fake tensors, and the estimate against a measured CPU peak."""

import warnings

import pytest
import torch

from diffusion.config import DiffusionConfig, UNetConfig
from diffusion.factory import create_model
from pipelines.bench.estimate import ASSUMPTIONS, LinearFit, device_bytes, sample_step, train_step
from pipelines.bench.validate_estimate import MID32, measured_peak, runtime_bytes, simulated_peak

SMALL = UNetConfig(image_size=16, in_channels=3, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                   attention_resolutions="8", class_cond=True, num_classes=10, num_head_channels=16)
DIFFUSION = DiffusionConfig(diffusion_steps=100)
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def params_of(unet: UNetConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(unet).parameters())


def test_the_update_phase_holds_weights_gradients_moments_and_each_ema_copy():
    one, two = (train_step(SMALL, DIFFUSION, 2, ema_copies=k, target="cpu") for k in (1, 2))
    weights = 4 * params_of(SMALL)
    assert one.params == params_of(SMALL)
    # parameters + gradients + AdamW's two moments + one EMA copy are alive while the optimizer steps
    assert one.update_peak >= 5 * weights
    assert one.at_peak.get("Optstate", 0) + one.at_peak.get("Parameter", 0) > 0
    assert two.update_peak - one.update_peak == weights  # a second EMA copy: exactly one more fp32 copy


def test_training_memory_is_linear_in_the_batch():
    points = [train_step(SMALL, DIFFUSION, b, target="cpu") for b in (8, 16, 24)]
    fit = LinearFit.through(*((p.batch, p.activation_peak) for p in points[:2]))
    assert fit.per_item > 0
    assert fit.at(24) == pytest.approx(points[2].activation_peak, rel=0.01)


def test_bf16_activations_are_smaller_and_sampling_needs_no_optimizer():
    fp32, bf16 = (train_step(SMALL, DIFFUSION, 8, precision=p, target="cpu") for p in ("fp32", "bf16"))
    assert bf16.activation_peak < fp32.activation_peak
    sample = sample_step(SMALL, DIFFUSION, 8, target="cpu")
    assert "Optstate" not in sample.at_peak and sample.peak_bytes < fp32.update_peak


def test_cuda_target_rounds_every_block_to_512_bytes():
    cpu, cuda = (sample_step(SMALL, DIFFUSION, 1, target=t) for t in ("cpu", "cuda"))
    assert cuda.at_peak["Parameter"] > cpu.at_peak["Parameter"]  # many small biases: each rounded up
    assert cuda.at_peak["Parameter"] % ASSUMPTIONS["rounding_bytes"] == 0


def test_budget_inverts_the_line_with_the_stated_overheads():
    fit = LinearFit(fixed=2 * 2**30, per_item=2**30)
    best = fit.max_batch(16 * 2**30)
    assert device_bytes(fit.at(best)) <= 16 * 2**30 < device_bytes(fit.at(best + 1))
    assert LinearFit(fixed=20 * 2**30, per_item=2**30).max_batch(16 * 2**30) == 0


def test_label_check_runs_on_real_tensors_and_is_skipped_on_fake_ones():
    model = create_model(SMALL)
    x, t = torch.zeros(2, 3, 16, 16), torch.zeros(2)
    with pytest.raises(ValueError, match=r"labels \[10\] are out of range"):
        model(x, t, torch.tensor([0, 10]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimate = sample_step(SMALL, DIFFUSION, 2, target="cpu")  # fake labels: no values to check, no error
    assert estimate.peak_bytes > 0


def test_training_estimate_within_20_percent_of_the_measured_cpu_peak(monkeypatch):
    # glibc keeps freed blocks below its dynamic mmap threshold resident: a fixed threshold makes RSS follow the
    # live bytes (docs/gpu.md, "Validation"); the CPU runtime's own pages are measured with a minimal model.
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    runtime = runtime_bytes("train")
    estimate, measured = simulated_peak(MID32, 16, "train"), measured_peak(MID32, 16, "train")
    assert 0.8 <= (estimate + runtime) / measured <= 1.2, (estimate, runtime, measured)


def test_fake_tensors_account_for_what_real_tensors_allocate():
    for fn in (train_step, sample_step):
        fake, real = (fn(SMALL, DIFFUSION, 4, target="cpu", fake=f) for f in (True, False))
        assert fake.peak_bytes == real.peak_bytes and fake.at_peak == real.at_peak
