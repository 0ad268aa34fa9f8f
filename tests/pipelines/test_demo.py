"""pipelines/demo.py --train's stage plan: the demo's time budget, resume, and skipping completed stages."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from pipelines.demo import run_stage, stages
from runfs import RunPaths


def _commands(root):
    return {name: command for name, command, _ in stages(RunPaths(root), SimpleNamespace(guidance_scale=3.0))}


def test_vae_stage_gets_the_demo_budget_and_resumes_only_from_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # stage 2 on this CPU
    # stage 2 in bf16 (~12-15 min) or fp32 (~17.5): the VAE gets the rest
    for native, minutes in ((True, "11"), (False, "8")):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda native=native: native, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda native=native: native, raising=False)
        fresh = _commands(tmp_path)["vae"]
        assert fresh[-2:] == ["--max-train-minutes", minutes] and "--resume" not in fresh
    (tmp_path / "vae" / "checkpoint").mkdir(parents=True)
    assert _commands(tmp_path)["vae"][-1] == "--resume"
    assert list(_commands(tmp_path)) == ["vae", "encode", "export", "diffusion", "sample"]


def test_a_completed_stage_is_skipped_without_running(tmp_path, capsys):
    marker = tmp_path / "done.json"
    marker.write_text("{}")
    assert run_stage("encode", ["no_such_script.py"], marker, force=False) is None
    assert "skipped" in capsys.readouterr().out
