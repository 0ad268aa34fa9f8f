"""Checkpoint sizes by arithmetic (pipelines/bench/checkpoint_size.py) against the files the writer really makes."""

import torch

from diffusion.config import UNetConfig
from diffusion.factory import create_model
from diffusion.training.checkpoint import save_checkpoint
from diffusion.training.ema import EMA
from pipelines.bench.checkpoint_size import STATE_PT_BYTES, checkpoint_size
from pipelines.bench.reference_models import model

UNET = UNetConfig(image_size=16, in_channels=4, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                  attention_resolutions="8", class_cond=True, num_classes=10, num_head_channels=16)


def test_arithmetic_matches_the_written_checkpoint(tmp_path):
    net = create_model(UNET)
    optimizer = torch.optim.AdamW(net.parameters())
    net(torch.randn(2, 4, 16, 16), torch.zeros(2), torch.zeros(2, dtype=torch.long)).square().mean().backward()
    optimizer.step()
    ema = EMA(net, [0.99, 0.999])
    folder = save_checkpoint(tmp_path, 1, {}, net.state_dict(), {r: ema.state_dict(net, r) for r in ema.rates},
                             optimizer.state_dict(), {"step": 1, "torch_rng": torch.get_rng_state()}, keep=1)
    size = checkpoint_size(UNET, ema_copies=2)
    written = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert abs(written["model.safetensors"] - size.model) <= 64  # header spacing only
    assert abs(written["ema_0.99.safetensors"] - size.ema_each) <= 64
    assert size.optimizer * 0.98 <= written["optimizer.pt"] <= size.optimizer * 1.02
    assert written["state.pt"] <= STATE_PT_BYTES
    assert 0.98 * size.total <= sum(written.values()) <= 1.02 * size.total


def test_guided128_saves_match_the_weights_closed_form():
    size = checkpoint_size(model("guided128")[0])
    assert size.params == 421_529_606  # guided-diffusion's 128x128 ImageNet model
    assert abs(size.model - 4 * size.params) < 10**6 and abs(size.optimizer - 8 * size.params) < 10**6
    assert size.reference_files == {"model.pt": 4 * size.params, "ema_0.pt": 4 * size.params,
                                    "opt.pt": 8 * size.params}
