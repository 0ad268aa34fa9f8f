"""LatentData: a draw is (posterior sample - shift) * scale with the latents' stored per-channel norm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion.training import LatentData
from runfs import read_json, write_json
from runfs.latent_norm import LatentNorm
from tests.conftest import write_latents


def test_a_draw_is_the_shifted_and_scaled_posterior_sample():
    mean = torch.randn((6, 2, 3, 3), generator=torch.Generator().manual_seed(0))
    std = torch.full_like(mean, 0.1)
    norm = LatentNorm("channel", scale=(2.0, 0.5), shift=(1.0, -3.0))
    data = LatentData(labels=None, num_classes=None, mean=mean, std=std, norm=norm)
    indices = torch.tensor([4, 0, 4])
    got = data.draw(indices, torch.Generator().manual_seed(7))
    noise = torch.randn((3, 2, 3, 3), generator=torch.Generator().manual_seed(7))  # the same stream
    shift, scale = torch.tensor([1.0, -3.0]).view(1, 2, 1, 1), torch.tensor([2.0, 0.5]).view(1, 2, 1, 1)
    want = (mean[indices] + 0.1 * noise - shift) * scale
    torch.testing.assert_close(got, want)


def test_from_run_reads_a_per_channel_norm(tmp_path):
    d = write_latents(tmp_path, shape=(2, 4, 4))
    meta = read_json(d / "meta.json")
    norm = LatentNorm("channel", scale=(2.0, 0.5), shift=(0.25, -1.0))
    write_json(d / "meta.json", {**meta, **norm.to_meta()})
    data = LatentData.from_run(d)
    assert data.meta["latent_norm"] == "channel" and data.meta["shift_factor"] == [0.25, -1.0]
    stored = torch.from_numpy(np.load(d / "train_mean.npy"))
    draw = data.draw(torch.arange(len(data)), torch.Generator().manual_seed(0))
    # logvar -4: posterior std exp(-2) = 0.135, so the draw is the mean's affine image up to that noise
    expected = (stored - torch.tensor([0.25, -1.0]).view(1, 2, 1, 1)) * torch.tensor([2.0, 0.5]).view(1, 2, 1, 1)
    worst = (draw - expected).abs().amax(dim=(0, 2, 3))  # per channel, at most 6 posterior stds times the scale
    assert torch.all(worst < torch.tensor([2.0, 0.5]) * 0.135 * 6)
    assert torch.all(worst > torch.tensor([2.0, 0.5]) * 0.135)  # and the noise is there


def test_a_norm_for_other_channels_is_refused():
    with pytest.raises(ValueError, match="latent_norm has 3 channels, the latents 2"):
        LatentData(labels=None, num_classes=None, mean=torch.zeros(1, 2, 2, 2), std=torch.zeros(1, 2, 2, 2),
                   norm=LatentNorm.identity(3))
