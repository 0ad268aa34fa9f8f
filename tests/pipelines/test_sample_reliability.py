"""sample.py refuses a bridge of another VAE, checks its output before any work, and says what a wrong
--checkpoint/--guide is (issue 33, items 1 and 5)."""

import json
import shutil
from pathlib import Path

import pytest

from pipelines.sample import main


@pytest.fixture
def run_copy(tiny_pipeline_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_pipeline_run, run)
    return run


def sample(run, *args, out):
    return main(["--run", str(run), "--num-samples", "2", "--timestep-respacing", "ddim5", "--no-progress",
                 "--out", str(out), *args])


def test_a_bridge_from_another_vae_is_refused_unless_allowed(run_copy, tmp_path, capsys):
    bridge_json = run_copy / "bridge" / "bridge.json"
    bridge = json.loads(bridge_json.read_text())
    bridge_json.write_text(json.dumps({**bridge, "vae_checkpoint": "0123456789abcdef"}))  # copied from another run
    assert sample(run_copy, out=tmp_path / "refused") == 2
    err = capsys.readouterr().err
    assert (f"error: {bridge_json} decodes latents of VAE 0123456789abcdef, but {run_copy / 'diffusion'}/step_0000002 "
            f"was trained on latents of VAE {bridge['vae_checkpoint']}") in err
    assert "re-export the bridge with `python pipelines/export.py --run" in err and "--allow-mismatch" in err
    assert not (tmp_path / "refused").exists()
    assert sample(run_copy, "--allow-mismatch", out=tmp_path / "allowed") == 0
    assert "warning (--allow-mismatch):" in capsys.readouterr().err
    assert (tmp_path / "allowed" / "grid.png").is_file()


def test_an_unwritable_output_fails_before_anything_is_loaded(tiny_pipeline_run, capsys):
    from pipelines.cli import run_main

    assert run_main(lambda: sample(tiny_pipeline_run, out="/sys/ktldm-samples")) == 2
    assert "error: cannot write the samples to /sys/ktldm-samples (Permission denied in /sys); nothing was started" \
        in capsys.readouterr().err


def test_a_wrong_checkpoint_or_guide_path_says_what_it_is(tiny_pipeline_run, tmp_path, capsys):
    assert sample(tiny_pipeline_run, "--checkpoint", str(tiny_pipeline_run), out=tmp_path / "a") == 2
    assert f"{tiny_pipeline_run} is a run folder, not a checkpoint: give {tiny_pipeline_run / 'diffusion'}" in \
        capsys.readouterr().err
    assert sample(tiny_pipeline_run, "--guide", str(tmp_path / "nope"), out=tmp_path / "b") == 2
    assert f"no checkpoint in {tmp_path / 'nope'} (it does not exist)" in capsys.readouterr().err


def test_onnx_backend_caches_a_read_only_checkpoints_export_elsewhere(run_copy, tmp_path, monkeypatch, capsys):
    from diffusion.sampling import load_diffusion_checkpoint
    from keras_torch_ldm import pipeline as sample_module

    loaded = load_diffusion_checkpoint(run_copy / "diffusion")
    for cached in loaded.path.glob("*.onnx"):  # an export another test cached in the shared run
        cached.unlink()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(sample_module, "is_writable", lambda folder: Path(folder) != loaded.path)  # read-only
    sample_module.onnx_unet(loaded, "cpu")
    cached = list((tmp_path / "cache" / "keras-torch-ldm" / "onnx").glob("step_0000002_*_ema_0.9.onnx"))
    assert len(cached) == 1 and not list(loaded.path.glob("*.onnx"))
    assert f"{loaded.path} is not writable: caching the export in {cached[0]}" in capsys.readouterr().out
    sample_module.onnx_unet(loaded, "cpu")  # the second time the cached export is used as it is
    assert "exporting" not in capsys.readouterr().out
