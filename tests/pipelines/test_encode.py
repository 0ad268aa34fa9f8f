"""End-to-end: pipelines/encode.py in a subprocess on a run folder holding a (tiny, untrained) saved VAE."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from runfs import RunPaths, read_json
from vae.checkpoint import save_final
from vae.config import preset
from vae.trainer import VAETrainer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_with_vae(tmp_path_factory):
    """A run whose VAE (tiny preset, 16x16 gray) was trained on a folder of 20 PNGs in two class folders."""
    base = tmp_path_factory.mktemp("encode")
    rng = np.random.default_rng(0)
    for i in range(20):
        (base / "pngs" / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(base / "pngs" / f"class{i % 2}/{i}.png")
    cfg = preset("tiny").replace(data=str(base / "pngs"), val_fraction=0.25)
    keras.utils.set_random_seed(0)
    save_final(RunPaths(base / "run").vae, VAETrainer(cfg), {"step": 0, "epoch": 0})
    return base / "run"


def test_encode_writes_latents_with_meta(run_with_vae):
    result = subprocess.run([sys.executable, str(ROOT / "pipelines" / "encode.py"), "--run", str(run_with_vae),
                             "--batch-size", "8", "--no-progress"],
                            capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    latents = run_with_vae / "latents"
    meta = read_json(latents / "meta.json")
    assert meta["layout"] == "NCHW" and meta["latent_shape"] == [4, 4, 4]
    assert meta["counts"] == {"train": 15, "val": 5} and meta["class_names"] == ["class0", "class1"]
    mean = np.load(latents / "train_mean.npy")
    logvar = np.load(latents / "train_logvar.npy")
    assert mean.shape == (15, 4, 4, 4) and np.load(latents / "val_labels.npy").dtype == np.int64
    samples = mean + np.exp(0.5 * logvar) * np.random.default_rng(5).standard_normal(mean.shape)
    assert 0.9 <= np.std(samples * meta["scale_factor"]) <= 1.1
    assert "scale_factor" in result.stdout
    assert "encode train" not in result.stderr + result.stdout  # --no-progress: no bar


def test_encode_without_a_trained_vae_says_what_to_do(tmp_path):
    spec = importlib.util.spec_from_file_location("encode_script", ROOT / "pipelines" / "encode.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit, match="train one first"):
        script.main(["--run", str(tmp_path)])
