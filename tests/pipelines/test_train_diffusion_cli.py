"""The stage-2 scripts as a user runs them: CLI, resume by rerunning, torchrun DDP == one process, no TensorFlow."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--num-channels", "32", "--num-res-blocks", "1", "--num-head-channels", "16", "--diffusion-steps", "50",
        "--batch-size", "8", "--log-interval", "1", "--save-interval", "100", "--no-progress", "--device", "cpu",
        "--cfg-dropout", "0", "--ema-rate", "0.9"]


def run_script(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
                          **kw)


@pytest.fixture
def run_dir(tmp_path, tiny):
    tiny[2](tmp_path)
    return tmp_path


def weights(path):
    from safetensors.torch import load_file

    return load_file(path)


def test_cli_trains_resumes_and_never_imports_tensorflow(run_dir):
    args = ["pipelines/train_diffusion.py", "--run", str(run_dir), *TINY]
    first = run_script([*args, "--max-steps", "2"])
    assert first.returncode == 0, first.stderr
    assert "done: step 2" in first.stdout
    again = run_script([*args, "--max-steps", "3", "--resume"])
    assert again.returncode == 0, again.stderr
    assert "done: step 3" in again.stdout
    assert (run_dir / "diffusion" / "step_0000003" / "model.safetensors").is_file()
    probe = ("import sys, runpy; sys.argv = ['train_diffusion.py', '--run', sys.argv[1], *sys.argv[2:]]\n"
             "try:\n    runpy.run_path('pipelines/train_diffusion.py', run_name='__main__')\n"
             "except SystemExit:\n    pass\n"
             "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
             "print('IMPORTED', bad)")
    out = run_script(["-c", probe, str(run_dir), *TINY, "--max-steps", "4"])
    assert "IMPORTED []" in out.stdout, out.stdout + out.stderr


def test_cli_errors(run_dir, tmp_path):
    missing = run_script(["pipelines/train_diffusion.py", "--run", str(tmp_path / "nowhere"), *TINY])
    assert missing.returncode == 2 and "run `python pipelines/encode.py --run" in missing.stderr
    bad = run_script(["pipelines/train_diffusion.py", "--run", str(run_dir), *TINY, "--precision", "fp16"])
    assert bad.returncode == 2 and "precision must be 'fp32', 'bf16' or 'auto'" in bad.stderr


def test_torchrun_two_processes_match_one(run_dir, tmp_path):
    """2 CPU ranks (gloo) with a global batch of 8 give the weights of 1 process with a batch of 8."""
    single, double = tmp_path / "one", tmp_path / "two"
    for dest in (single, double):
        dest.mkdir()
        (dest / "latents").symlink_to(run_dir / "latents")
    # The reference's lr and plain mse, not the preset's: Adam turns float-level differences in near-zero gradients
    # (zero-initialised output convs after 2 steps) into parameter differences of order lr * 2%, which at the
    # preset's lr 1e-3 with min-SNR weighting exceed the tolerance although the gradients agree.
    # fp32, not the preset's `auto`: bf16 round-off differs between a batch of 8 and two of 4.
    common = ["pipelines/train_diffusion.py", *TINY, "--max-steps", "2", "--lr", "1e-4", "--snr-gamma", "0",
              "--precision", "fp32"]
    one = run_script([*common, "--run", str(single)])
    assert one.returncode == 0, one.stderr
    two = run_script(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                      *common, "--run-dir", str(double)])
    assert two.returncode == 0, two.stderr
    a = weights(single / "diffusion" / "step_0000002" / "model.safetensors")
    b = weights(double / "diffusion" / "step_0000002" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)


def test_classifier_cli_trains_on_noised_latents(run_dir):
    out = run_script(["pipelines/train_classifier.py", "--run", str(run_dir), "--diffusion-steps", "50",
                      "--classifier-width", "32", "--classifier-depth", "1", "--batch-size", "8",
                      "--max-steps", "2", "--log-interval", "1", "--device", "cpu", "--no-progress"])
    assert out.returncode == 0, out.stderr
    ckpt = run_dir / "classifier" / "step_0000002"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "config.json").is_file()
    assert "acc" in (run_dir / "classifier" / "log.csv").read_text().splitlines()[0]


def test_threads_flag_sets_torch_threads_and_rejects_zero(run_dir, monkeypatch, capsys):
    from pipelines.train_diffusion import main

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    assert main(["--run", str(run_dir), *TINY, "--max-steps", "1", "--threads", "1"]) == 0
    assert calls == [1]
    with pytest.raises(SystemExit) as exit_info:
        main(["--run", str(run_dir), *TINY, "--max-steps", "1", "--threads", "0"])
    assert exit_info.value.code == 2 and "argument --threads: 0 is out of range: need >= 1" in capsys.readouterr().err
    assert calls == [1]


def test_guide_flag_trains_the_smaller_guide_into_its_own_folder(run_dir, capsys):
    import json

    from diffusion.config import PRESETS
    from pipelines.train_diffusion import main

    common = ["--run", str(run_dir), "--diffusion-steps", "50", "--batch-size", "8", "--no-progress", "--device",
              "cpu", "--max-steps", "2"]
    assert main([*common, "--guide"]) == 0
    assert not (run_dir / "diffusion").exists()  # the main model's folder is untouched
    config = json.loads((run_dir / "guide" / "step_0000002" / "config.json").read_text())
    unet = PRESETS["fmnist-latent"][0]
    assert (config["model"]["num_channels"], config["model"]["num_res_blocks"]) == (unet.num_channels // 2, 1)
    assert config["train"]["ema_rate"] == "0.99"  # GUIDE_TRAINING over the preset; --max-steps still wins
    assert (run_dir / "guide" / "step_0000002" / "ema_0.99.safetensors").is_file()
    assert main([*common, "--guide", "--pixels"]) == 2
    assert "--guide trains a latent run's guide" in capsys.readouterr().err


def test_help_shows_the_values_each_preset_trains_with(script_help):
    """--help names what a run really gets (the preset's value), not the config dataclass's own default."""
    from diffusion.config import PRESETS
    from diffusion.training import TRAIN_PRESETS
    from pipelines.train_diffusion import parse_args

    lines = script_help(parse_args)
    unet, _ = PRESETS["fmnist-latent"]
    assert f"fmnist-latent {unet.num_channels}," in lines["--num-channels"]
    assert f"guided64 {PRESETS['guided64'][0].num_channels}," in lines["--num-channels"]
    assert f"fmnist-latent {TRAIN_PRESETS['fmnist-latent'].lr}," in lines["--lr"]
    assert f"fmnist-latent {TRAIN_PRESETS['fmnist-latent'].ema_rate!r}," in lines["--ema-rate"]
    assert unet.num_channels != PRESETS["guided64"][0].num_channels  # the check above can tell presets apart
    assert all("(default: None)" not in line for line in lines.values())


def test_preset_hint_collapses_equal_values():
    from types import SimpleNamespace

    from pipelines.cli import preset_hint

    same = {"a": SimpleNamespace(x=1), "b": SimpleNamespace(x=1)}
    assert preset_hint("x", same) == "(default: 1)"
    differ = {"a": SimpleNamespace(x="1,2"), "b": SimpleNamespace(x="")}
    assert preset_hint("x", differ) == "(default: the preset's: a '1,2', b '')"


def test_no_architecture_flag_is_needed_for_unlabelled_16px_latents(tmp_path, tiny):
    """The default preset (8x8 labelled latents, classifier-free dropout) fits itself to 16x16x4 unlabelled latents:
    levels and attention by size, unconditional, no dropout; printed and recorded in the checkpoint."""
    import json

    tiny[2](tmp_path, shape=(4, 16, 16), labels=False)
    out = run_script(["pipelines/train_diffusion.py", "--run", str(tmp_path), "--max-steps", "1", "--batch-size", "4",
                      "--no-progress", "--device", "cpu"])
    assert out.returncode == 0, out.stderr
    assert "U-Net: 16x16x4 input, 64 channels x (1,2,2)" in out.stdout and "unconditional" in out.stdout
    assert "cfg_dropout 0.1 -> 0.0 (no null class: unlabelled data)" in out.stdout
    config = json.loads((tmp_path / "diffusion" / "step_0000001" / "config.json").read_text())
    assert config["model"]["channel_mult"] == "1,2,2" and config["model"]["attention_resolutions"] == "4"
    assert config["model"]["class_cond"] is False and config["train"]["cfg_dropout"] == 0.0


def test_pixel_baseline_takes_the_runs_image_shape(tmp_path, tiny):
    from diffusion.config import PRESETS
    from pipelines.train_diffusion import pixel_shape
    from runfs import RunPaths

    unet, _ = PRESETS["fmnist-pixel"]
    assert pixel_shape(RunPaths(tmp_path), unet, {}) == (32, 1)  # no latents: the preset's
    tiny[2](tmp_path)  # latents/meta.json: image_size 32, channels 1
    meta = json.loads((tmp_path / "latents" / "meta.json").read_text())
    meta.update(image_size=64, channels=3)
    (tmp_path / "latents" / "meta.json").write_text(json.dumps(meta))
    assert pixel_shape(RunPaths(tmp_path), unet, {}) == (64, 3)
    assert pixel_shape(RunPaths(tmp_path), unet, {"image_size": 48}) == (48, 3)


def test_the_default_preset_follows_the_runs_images(tmp_path, tiny):
    from pipelines.train_diffusion import default_preset
    from runfs import RunPaths

    assert default_preset(RunPaths(tmp_path), pixels=False) == "fmnist-latent"  # no latents yet: the default data
    tiny[2](tmp_path)  # grayscale (channels 1)
    assert default_preset(RunPaths(tmp_path), pixels=True) == "fmnist-pixel"
    meta = json.loads((tmp_path / "latents" / "meta.json").read_text())
    (tmp_path / "latents" / "meta.json").write_text(json.dumps({**meta, "channels": 3}))
    assert default_preset(RunPaths(tmp_path), pixels=False) == "rgb-latent"
    assert default_preset(RunPaths(tmp_path), pixels=True) == "rgb-pixel"
