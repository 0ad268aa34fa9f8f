"""LatentData: a draw is (posterior sample - shift) * scale with the latents' stored per-channel norm."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture
def latents_dir(tmp_path):
    return write_latents(tmp_path, n=40, shape=(2, 4, 4))


def test_memory_mapped_latents_draw_what_the_in_memory_ones_draw(latents_dir):
    mapped = LatentData.from_run(latents_dir, in_memory=False)
    held = LatentData.from_run(latents_dir, in_memory=True)
    assert isinstance(mapped.mapped.mean, np.memmap) and mapped.mean is None
    assert mapped.access == "read by memory map" and held.access == "in memory"
    assert len(mapped) == len(held) == 40 and mapped.shape == held.shape == (2, 4, 4)
    indices = torch.tensor([39, 0, 7, 7, 21, 3])  # random access, repeats included
    a = mapped.draw(indices, torch.Generator().manual_seed(3))
    b = held.draw(indices, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    head = mapped.head(10)
    assert len(head) == 10 and len(head.labels) == 10 and head.access == "read by memory map"
    torch.testing.assert_close(head.draw(torch.arange(10), torch.Generator().manual_seed(1)),
                               held.head(10).draw(torch.arange(10), torch.Generator().manual_seed(1)))


def test_small_latents_are_held_in_memory_and_large_ones_mapped(latents_dir, monkeypatch):
    import diffusion.training.data as data_module

    assert LatentData.from_run(latents_dir).access == "in memory"  # 40 x 2x4x4 x 2 arrays: 5 KiB
    monkeypatch.setattr(data_module, "IN_MEMORY_BYTES", 40 * 32 * 4 * 2 - 1)
    assert LatentData.from_run(latents_dir).access == "read by memory map"


def test_shards_of_a_draw_make_up_the_whole_draw(latents_dir):
    data = LatentData.from_run(latents_dir, in_memory=False)
    indices = data.epoch_indices(seed=5, step=3, batch_size=8)
    whole = data.draw(indices, torch.Generator().manual_seed(9))
    parts = [data.draw(indices, torch.Generator().manual_seed(9), slice(r * 4, r * 4 + 4)) for r in range(2)]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=0, atol=0)


WORKER = '''
import sys, torch
import diffusion.training.data as data_module
from diffusion.training import LatentData
from diffusion.training.distributed import setup_distributed, cleanup_distributed
info = setup_distributed("cpu")
data = LatentData.from_run(sys.argv[1], in_memory=False)
read = []
take = data.mapped.reader.take
data.mapped.reader.take = lambda array, rows: (read.append(rows.tolist()), take(array, rows))[1]
out = {}
for step in range(3):
    idx = data.epoch_indices(7, step, 8)
    shard = slice(info.rank * 4, info.rank * 4 + 4)
    out[step] = (data.draw(idx, torch.Generator().manual_seed(step), shard), sorted(set(idx[shard].tolist())))
torch.save({"out": out, "read": read}, f"{sys.argv[2]}/rank{info.rank}.pt")
cleanup_distributed()
'''


def test_two_gloo_ranks_each_read_only_their_shard(latents_dir, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29531", str(script), str(latents_dir), str(tmp_path)], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    data = LatentData.from_run(latents_dir, in_memory=True)
    for step in range(3):
        idx = data.epoch_indices(7, step, 8)
        whole = data.draw(idx, torch.Generator().manual_seed(step))
        torch.testing.assert_close(torch.cat([r["out"][step][0] for r in ranks]), whole, rtol=0, atol=0)
        for rank, result in enumerate(ranks):
            # each rank read the rows of its own shard (mean, then log-variance) and no others
            assert result["read"][2 * step] == result["read"][2 * step + 1] == result["out"][step][1]
            assert result["out"][step][1] == sorted(set(idx[rank * 4:rank * 4 + 4].tolist()))
