"""diffusion.sampling.generate with a guidance interval: from unguided (no step inside) to fully guided."""

from __future__ import annotations

from pathlib import Path

import torch

from diffusion.config import DiffusionConfig, UNetConfig
from diffusion.sampling import LoadedCheckpoint, generate
from tests.diffusion.test_guidance import ClassModel

UNET = UNetConfig(image_size=3, in_channels=2, num_channels=8, class_cond=True, num_classes=3, null_class=True)
CONFIG = {"model": UNET.to_dict(), "diffusion": DiffusionConfig(diffusion_steps=50).to_dict()}


def _samples(guidance_scale: float, interval=None, model=None) -> torch.Tensor:
    loaded = LoadedCheckpoint(model=model or ClassModel(), config=CONFIG, path=Path("toy"), weights="toy")
    labels = torch.tensor([0, 1, 2, 1])
    batches = generate(loaded, num_samples=4, batch_size=4, sampler="ddim", timestep_respacing="ddim5",
                       labels=labels, guidance_scale=guidance_scale, guidance_interval=interval, progress=False)
    return torch.cat([x for x, _ in batches])


def test_an_interval_over_every_step_is_full_guidance_and_one_over_none_is_no_guidance():
    full, unguided = _samples(3.0), _samples(1.0)
    assert (full - unguided).abs().max() > 1e-3  # guidance matters for this model
    torch.testing.assert_close(_samples(3.0, (0, 49)), full, rtol=0, atol=0)
    torch.testing.assert_close(_samples(3.0, (50, 100)), unguided, rtol=0, atol=0)
    partial = _samples(3.0, (0, 20))  # ddim5 of 50 visits t = 40, 30, 20, 10, 0: three of them guided
    assert (partial - full).abs().max() > 1e-4 and (partial - unguided).abs().max() > 1e-4


def test_outside_the_interval_only_conditional_forwards_run():
    model = ClassModel()
    _samples(3.0, (0, 20), model)
    assert model.batches == [4, 4, 8, 8, 8]  # t = 40, 30 conditional only; t = 20, 10, 0 [cond; uncond]
