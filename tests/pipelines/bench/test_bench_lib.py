"""pipelines/bench: the same-network rule, the max-batch search and fit, OOM handling, decoder preparation."""

import subprocess

import pytest

from diffusion.config import PRESETS, UNetConfig
from diffusion.factory import create_model
from pipelines.bench import decoders
from pipelines.bench.cases import BenchConfig, build_cases, unet_at, vae_at
from pipelines.bench.memory import fit_max_batch, is_oom, search_max_batch
from pipelines.bench.timing import median_seconds
from pipelines.bench.worker import run
from vae.config import preset as vae_preset

SMALL = UNetConfig(image_size=8, in_channels=4, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                   attention_resolutions="4", num_head_channels=16, class_cond=True, num_classes=3)


def test_pixel_and_latent_nets_differ_only_in_the_input_and_output_convs():
    base = PRESETS["fmnist-latent"][0]
    pixel, latent = create_model(unet_at(base, 32, 1)), create_model(unet_at(base, 8, 4))
    shapes_p = {k: v.shape for k, v in pixel.state_dict().items()}
    shapes_l = {k: v.shape for k, v in latent.state_dict().items()}
    assert shapes_p.keys() == shapes_l.keys()
    differ = sorted(k for k in shapes_p if shapes_p[k] != shapes_l[k])
    assert differ == ["input_blocks.0.0.weight", "out.2.bias", "out.2.weight"]
    # in conv: 3x3 x width per input channel; out conv: 3x3 x width + 1 bias per output channel
    width, extra = base.num_channels, 4 - 1
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(latent) - count(pixel) == extra * 9 * width + extra * (9 * width + 1)


def test_attention_stays_at_the_same_downsampling_rate():
    base = PRESETS["fmnist-latent"][0]  # 8x8 preset, attention at 4 px = rate 2
    assert unet_at(base, 64, 1).attention_resolutions == "32"
    assert unet_at(base, 16, 4).channel_mult == "1,2"


def test_too_small_latent_is_skipped_with_the_reason():
    cfg = BenchConfig(sizes=(8,), factors=(8,))
    cases, skipped = build_cases(cfg, vae_preset("fashion_mnist"))
    assert [c.name for c in cases] == ["8px-pixel"]
    assert "must be a multiple of 2" in skipped[0]
    with pytest.raises(ValueError, match="must be a multiple of 2"):
        unet_at(PRESETS["fmnist-latent"][0], 1, 4)


def test_vae_design_extends_levels_for_larger_factors():
    base = vae_preset("tiny").replace(channel_mult=(1, 2, 4))  # f = 4
    cfg = vae_at(base, 64, 3, 8, 4)
    assert cfg.downsample_factor == 8 and cfg.channel_mult == (1, 2, 4, 4) and cfg.latent_size == 8
    assert vae_at(base, 64, 1, 2, 4).channel_mult == (1, 2) and cfg.base_channels == base.base_channels


def test_bad_config_messages():
    with pytest.raises(ValueError, match="powers of two"):
        BenchConfig(factors=(3,))
    with pytest.raises(ValueError, match="unknown --preset"):
        BenchConfig(preset="nope")


def test_search_brackets_the_largest_fitting_batch():
    for limit in (1, 5, 37, 100):
        r = search_max_batch(lambda b, limit=limit: None if b <= limit else "OOM: fake", start=4, cap=1000)
        assert r.max_batch <= limit < r.failed_batch and r.failure == "OOM: fake"
        assert r.failed_batch - r.max_batch <= max(1, r.max_batch // 16)
    capped = search_max_batch(lambda b: None, start=3, cap=20)
    assert (capped.max_batch, capped.failed_batch) == (20, None)


def test_linear_fit_recovers_the_budget_batch():
    points = [(2, 100 + 2 * 10), (8, 100 + 8 * 10)]  # fixed 100 B, 10 B per item
    assert fit_max_batch(points, budget=1000, cap=10_000)["max_batch"] == 90
    capped = fit_max_batch(points, budget=1000, cap=50)
    assert capped["max_batch"] == 50 and capped["capped"]


def test_median_seconds_calls_warmup_plus_repeats():
    calls = []
    assert median_seconds(lambda: calls.append(1), warmup=2, repeats=3) >= 0 and len(calls) == 5


def _spec(task, batch, inject):
    return {"task": task, "unet": SMALL.to_dict(), "diffusion": PRESETS["fmnist-latent"][1].to_dict(),
            "batch": batch, "device": "cpu", "warmup": 0, "repeats": 1, "steps": 2, "decoder_dir": None,
            "budget_bytes": 2**40, "cap": 64, "inject_oom_batch": inject}


def test_injected_oom_is_a_result_not_a_crash():
    result = run(_spec("train", 4, inject=4))
    assert result["status"] == "oom" and "batch 4" in result["error"] and result["batch"] == 4
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")) and not is_oom(ValueError("x"))


def test_real_search_stops_at_the_injected_oom():
    result = run(_spec("search", 1, inject=3))
    assert result["status"] == "ok" and result["max_batch"] == 2 and result["failed_batch"] == 3
    assert result["failure"].startswith("OOM: ") and ["3", "ok"] not in result["tried"]


def test_failed_decoder_export_says_what_to_do(tmp_path, monkeypatch):
    commands = []

    def fake_run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1, "", "keras is broken")

    monkeypatch.setattr(decoders.subprocess, "run", fake_run)
    cases, _ = build_cases(BenchConfig(sizes=(32,), factors=(4, 8)), vae_preset("fashion_mnist"))
    with pytest.raises(RuntimeError, match="(?s)keras is broken.*--run DIR"):
        decoders.prepare_decoders(cases, tmp_path)
    assert len(commands) == 1 and commands[0][2] == "pipelines.bench.export_decoders"  # one subprocess, both jobs


def test_peak_rss_of_a_worker_is_its_own_not_its_parents():
    # ru_maxrss survives exec: a worker started by a process holding 512 MiB would report >= 512 MiB
    import subprocess
    import sys

    held = bytearray(512 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])  # resident
    code = "from pipelines.bench.memory import peak_rss_bytes; print(peak_rss_bytes())"
    child = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert child < 400 * 2**20 < len(held)
