"""End-to-end: pipelines/train_vae.py in a subprocess on a small folder of PNGs (tiny preset, a few steps)."""

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runfs import read_json

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def run_script(name, *args, timeout=240):
    return subprocess.run([sys.executable, str(ROOT / "pipelines" / name), *map(str, args)], env=ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write_png_folder(folder: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 256, (20, 20), dtype=np.uint8)
        (folder / ("even" if i % 2 else "odd")).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / ("even" if i % 2 else "odd") / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """3 steps of training, then --resume to step 5: the run folder, both results."""
    base = tmp_path_factory.mktemp("train")
    data, run = write_png_folder(base / "pngs"), base / "run"
    common = ["--run", run, "--preset", "tiny", "--data", data, "--channels", 1, "--batch-size", 8, "--epochs", 5]
    first = run_script("train_vae.py", *common, "--max-steps", 3)
    assert first.returncode == 0, first.stderr[-3000:]
    metrics_after_first = read_json(run / "vae" / "metrics.json")
    second = run_script("train_vae.py", "--run", run, "--resume", "--max-steps", 5)
    return run, first, second, metrics_after_first


def test_train_writes_the_vae_folder(trained_run):
    run, first, _, metrics = trained_run
    vae = run / "vae"
    assert metrics["final"]["step"] == 3
    cfg = read_json(vae / "config.json")
    assert cfg["data"].endswith("pngs") and cfg["image_size"] == 16 and cfg["channels"] == 1
    for name in ("model/encoder.keras", "model/decoder.keras", "checkpoint/optimizer.npz", "recon_epoch000.png"):
        assert (vae / name).is_file(), name
    entry = metrics["epochs"][0]
    assert {"loss", "recon", "kl", "val_psnr", "val_ssim", "wall_s", "images_per_s"} <= set(entry)
    assert "val PSNR" in first.stdout


def test_resume_continues_at_the_saved_step(trained_run):
    run, _, second, _ = trained_run
    assert second.returncode == 0, second.stderr[-3000:]
    metrics = read_json(run / "vae" / "metrics.json")
    # 36 training images / batch 8 = 4 steps per epoch: the resumed run finishes epoch 0 at step 4.
    assert [e["step"] for e in metrics["epochs"]] == [3, 4, 5]
    assert metrics["final"]["step"] == 5
    assert read_json(run / "vae" / "checkpoint" / "meta.json")["step"] == 5


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_existing_run_with_other_settings_is_refused(trained_run):
    with pytest.raises(SystemExit, match=r"holds a checkpoint trained with other settings: --limit 40 \(the "
                                         r"checkpoint has None\).*--overwrite to start again"):
        load_script("train_vae").main(["--run", str(trained_run[0]), "--preset", "tiny", "--limit", "40"])


def test_missing_data_folder_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="data: data folder .*nope does not exist; pass --data fashion_mnist"):
        load_script("train_vae").main(["--run", str(tmp_path / "run"), "--data", str(tmp_path / "nope")])


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    data, run = write_png_folder(tmp_path / "pngs"), tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "pipelines" / "train_vae.py"), "--run", str(run), "--preset", "tiny",
         "--data", str(data), "--channels", "1", "--batch-size", "8", "--epochs", "100000"],
        env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until an epoch has ended (its line is printed), then interrupt mid-training.
    for line in proc.stdout:
        if line.startswith("epoch 0:"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "interrupted at step" in out and "Traceback" not in err
    step = read_json(run / "vae" / "checkpoint" / "meta.json")["step"]
    assert step >= 4  # 36 training images / batch 8 = 4 steps per epoch; epoch 0 is complete


def test_ema_run_scores_the_raw_weights_beside_the_ema_ones(tmp_path):
    data, run = write_png_folder(tmp_path / "pngs"), tmp_path / "run"
    done = run_script("train_vae.py", "--run", run, "--preset", "tiny", "--data", data, "--channels", 1,
                      "--batch-size", 8, "--max-steps", 6, "--lr", 3e-3, "--ema", "--ema-momentum", 0.5,
                      "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    final = read_json(run / "vae" / "metrics.json")["final"]
    assert final["ema"] is True and final["raw_weights"]["val_images"] == final["val_images"]
    # Six steps at lr 3e-3 move the weights; an average over the last few steps reconstructs differently.
    assert final["raw_weights"]["val_psnr"] != pytest.approx(final["val_psnr"], abs=1e-4)
    assert "EMA weights; raw weights" in done.stdout
    assert "train VAE" not in done.stderr + done.stdout and "epoch 0:" in done.stdout  # --no-progress: no bar


def test_help_names_each_presets_value(script_help):
    """An unset flag keeps the preset's value; --help says which (not argparse's None)."""
    from pipelines.train_vae import parse_args
    from vae.config import PRESETS

    lines = script_help(parse_args)
    assert f"fashion_mnist {PRESETS['fashion_mnist'].z_channels}, photos64 {PRESETS['photos64'].z_channels}," \
        in lines["--z-channels"]
    assert PRESETS["fashion_mnist"].z_channels != PRESETS["photos64"].z_channels  # the line tells presets apart
    assert f"(default: {PRESETS['fashion_mnist'].num_res_blocks})" in lines["--num-res-blocks"]  # equal: one value
    assert all("(default: None)" not in line for line in lines.values())
