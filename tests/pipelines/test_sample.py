"""pipelines/sample.py as a user runs it: no flags beyond --run, outputs, determinism, no TensorFlow, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def sample(run, *args, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    probe = ("import sys, runpy\nsys.argv = ['sample.py', *sys.argv[1:]]\ncode = 0\n"
             "try:\n    runpy.run_path('pipelines/sample.py', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('HEAVY', [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules])\nsys.exit(code)")
    out = subprocess.run([sys.executable, "-c", probe, "--run", str(run), "--no-progress", *args], cwd=ROOT,
                         capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_sample_with_only_run_writes_grid_npz_and_info_without_tensorflow(tiny_pipeline_run, tmp_path):
    out = sample(tiny_pipeline_run, "--num-samples", "6", "--batch-size", "4", "--timestep-respacing", "ddim5",
                 "--out", str(tmp_path / "a"))
    assert "HEAVY []" in out.stdout  # the sampling path never imported TensorFlow or Keras
    npz = np.load(tmp_path / "a" / "samples_6x16x16x1.npz")
    assert npz["arr_0"].dtype == np.uint8 and npz["arr_0"].shape == (6, 16, 16, 1)
    assert npz["arr_1"].tolist() == [0, 0, 1, 1, 2, 2]  # classes in equal blocks: one grid row per class
    assert (tmp_path / "a" / "grid.png").stat().st_size > 0
    info = json.loads((tmp_path / "a" / "info.json").read_text())
    assert info["decoder_provider"] == "CPUExecutionProvider" and info["weights"] == "ema_0.9.safetensors"
    from diffusion.config import DEFAULT_GUIDANCE_SCALE

    assert DEFAULT_GUIDANCE_SCALE > 1  # the model has a null class: classifier-free guidance by default
    assert info["guidance_scale"] == DEFAULT_GUIDANCE_SCALE
    from diffusion.respace import DEFAULT_LAMBDA_MIN

    assert info["lambda_min"] == DEFAULT_LAMBDA_MIN


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp", "ddpm"])
def test_same_seed_same_images(tiny_pipeline_run, tmp_path, sampler):
    args = ["--num-samples", "3", "--sampler", sampler, "--timestep-respacing", "6", "--eta", "0.5",
            "--class-label", "1", "--save-pngs"]
    sample(tiny_pipeline_run, *args, "--out", str(tmp_path / "x"))
    sample(tiny_pipeline_run, *args, "--out", str(tmp_path / "y"))
    sample(tiny_pipeline_run, *args, "--out", str(tmp_path / "z"), "--seed", "7")
    x, y, z = (np.load(tmp_path / d / "samples_3x16x16x1.npz")["arr_0"] for d in "xyz")
    np.testing.assert_array_equal(x, y)
    assert not np.array_equal(x, z)
    assert sorted(p.name for p in (tmp_path / "x" / "images").iterdir()) == [
        "00000_class1.png", "00001_class1.png", "00002_class1.png"]


def test_guidance_interval_is_recorded_and_checked(tiny_pipeline_run, tmp_path):
    sample(tiny_pipeline_run, "--num-samples", "2", "--timestep-respacing", "ddim5", "--guidance-scale", "3",
           "--guidance-interval", "10,30", "--out", str(tmp_path))
    assert json.loads((tmp_path / "info.json").read_text())["guidance_interval"] == [10.0, 30.0]
    sample(tiny_pipeline_run, "--num-samples", "2", "--timestep-respacing", "ddim5", "--lambda-min=-inf",
           "--out", str(tmp_path / "all"))
    assert json.loads((tmp_path / "all" / "info.json").read_text())["lambda_min"] is None  # every step: JSON null
    for text, message in (("600", "'600' is not LO,HI"), ("600,100", "need 0 <= LO <= HI")):
        bad = sample(tiny_pipeline_run, "--guidance-interval", text, check=False)
        assert bad.returncode == 2 and message in bad.stderr


def worse_guide(run, target):
    """A deliberately worse guide for `run`'s model: its newest checkpoint with the eps output biased by 0.2."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(next((run / "diffusion").glob("step_*")), target)
    weights = target / "ema_0.9.safetensors"
    save_file({k: v + 0.2 if k == "out.2.bias" else v for k, v in load_file(weights).items()}, weights)
    return target


def test_autoguidance_by_the_model_itself_is_the_unguided_model(tiny_pipeline_run, tmp_path):
    """--guide: bad + s (good - bad) with bad = good is the conditional model at any scale; a guide trained with
    other diffusion settings is refused with the difference named."""
    args = ["--num-samples", "4", "--timestep-respacing", "ddim4", "--seed", "2", "--guidance-scale", "1"]
    sample(tiny_pipeline_run, *args, "--out", str(tmp_path / "plain"))
    sample(tiny_pipeline_run, *args, "--guide-scale", "3", "--guide", str(tiny_pipeline_run / "diffusion"),
           "--out", str(tmp_path / "self"))
    other = worse_guide(tiny_pipeline_run, tmp_path / "other")
    sample(tiny_pipeline_run, *args, "--guide-scale", "3", "--guide", str(other), "--out", str(tmp_path / "worse"))
    plain, itself, worse = (np.load(tmp_path / d / "samples_4x16x16x1.npz")["arr_0"]
                            for d in ("plain", "self", "worse"))
    np.testing.assert_array_equal(itself, plain)
    assert np.abs(worse.astype(int) - plain).max() > 10  # a guide that differs moves the samples
    info = json.loads((tmp_path / "self" / "info.json").read_text())
    assert info["guide"].endswith("step_0000002") and info["guide_scale"] == 3 and info["guidance_scale"] == 1
    config = json.loads((other / "config.json").read_text())
    config["diffusion"]["predict_xstart"] = True
    (other / "config.json").write_text(json.dumps(config))
    bad = sample(tiny_pipeline_run, *args, "--guide", str(other), check=False)
    assert bad.returncode == 2 and "does not match" in bad.stderr and "prediction: eps vs x0" in bad.stderr


def test_a_runs_own_guide_is_used_by_default(tiny_pipeline_run, tmp_path):
    """DIR/guide, when present, guides with the default scales (classifier-free ones lowered to match);
    --guide none turns it off; --guide-scale without a guide is an error."""
    import shutil

    from diffusion.config import DEFAULT_GUIDANCE_SCALE, DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, DEFAULT_GUIDE_SCALE

    run = tmp_path / "run"
    shutil.copytree(tiny_pipeline_run, run)
    worse_guide(run, run / "guide" / "step_0000001")
    args = ["--num-samples", "2", "--timestep-respacing", "ddim4"]
    sample(run, *args, "--out", str(tmp_path / "auto"))
    info = json.loads((tmp_path / "auto" / "info.json").read_text())
    assert info["guide"] == str(run / "guide" / "step_0000001")
    assert (info["guide_scale"], info["guidance_scale"]) == (DEFAULT_GUIDE_SCALE, DEFAULT_GUIDANCE_SCALE_WITH_GUIDE)
    sample(run, *args, "--guide", "none", "--out", str(tmp_path / "off"))
    info = json.loads((tmp_path / "off" / "info.json").read_text())
    assert info["guide"] is None and (info["guide_scale"], info["guidance_scale"]) == (1.0, DEFAULT_GUIDANCE_SCALE)
    from pipelines.package_run import main as package  # the guide travels with a packed run

    assert package(["--run", str(run), "--out", str(tmp_path / "packed"), "--fp16"]) == 0
    sample(tmp_path / "packed", *args, "--out", str(tmp_path / "packed_samples"))
    info = json.loads((tmp_path / "packed_samples" / "info.json").read_text())
    assert info["guide"] == str(tmp_path / "packed" / "guide" / "step_0000001") and info["guide_scale"] > 1
    lonely = sample(tiny_pipeline_run, *args, "--guide-scale", "2", check=False)
    assert lonely.returncode == 2 and "guide_scale 2.0 needs a guide model" in lonely.stderr


def test_user_errors_are_explained(tiny_pipeline_run, tmp_path):
    bad_label = sample(tiny_pipeline_run, "--class-label", "7", check=False)
    assert bad_label.returncode == 2 and "class label(s) [7] out of range" in bad_label.stderr
    no_ckpt = sample(tmp_path, check=False)
    assert no_ckpt.returncode == 2 and "no checkpoint in" in no_ckpt.stderr and "train_diffusion.py" in no_ckpt.stderr
    no_classifier = sample(tiny_pipeline_run, "--classifier-scale", "1", check=False)
    assert no_classifier.returncode == 2 and "train_classifier.py" in no_classifier.stderr
    typo = sample(tiny_pipeline_run, "--checkpoint", str(tiny_pipeline_run / "diffusion" / "step_0002"), check=False)
    assert typo.returncode == 2 and "no checkpoint folder" in typo.stderr and "holds ['step_0000002']" in typo.stderr
    bad_ema = sample(tiny_pipeline_run, "--ema", "0.5", check=False)
    assert bad_ema.returncode == 2 and "no EMA weights for rate 0.5; available: ['0.9']" in bad_ema.stderr


def test_packed_run_samples_like_the_full_run(tiny_pipeline_run, tmp_path):
    """package_run.py keeps decoder + one EMA set (fp16 here); sampling it matches the full run closely."""
    from pipelines.package_run import main as package

    assert package(["--run", str(tiny_pipeline_run), "--out", str(tmp_path / "packed"), "--fp16"]) == 0
    provenance = tmp_path / "packed" / "latents_meta.json"  # how the latents were made travels with the weights
    assert provenance.read_text() == (tiny_pipeline_run / "latents" / "meta.json").read_text()
    args = ["--num-samples", "4", "--timestep-respacing", "ddim4", "--seed", "3"]
    sample(tiny_pipeline_run, *args, "--out", str(tmp_path / "full"))
    sample(tmp_path / "packed", *args, "--out", str(tmp_path / "small"))
    full = np.load(tmp_path / "full" / "samples_4x16x16x1.npz")["arr_0"].astype(int)
    small = np.load(tmp_path / "small" / "samples_4x16x16x1.npz")["arr_0"].astype(int)
    assert np.abs(full - small).max() <= 3  # float16 weights: a few grey levels at most
    raw = sample(tmp_path / "packed", "--ema", "none", check=False)
    assert raw.returncode == 2 and "model.safetensors does not exist" in raw.stderr


def test_onnx_backend_matches_torch(tiny_pipeline_run, tmp_path):
    """--backend onnx: the U-Net exported once and run in onnxruntime gives the torch backend's images."""
    args = ["--num-samples", "4", "--timestep-respacing", "ddim4", "--class-label", "2"]
    sample(tiny_pipeline_run, *args, "--out", str(tmp_path / "torch"))
    out = sample(tiny_pipeline_run, *args, "--backend", "onnx", "--out", str(tmp_path / "onnx"))
    assert "HEAVY []" in out.stdout
    a, b = (np.load(tmp_path / d / "samples_4x16x16x1.npz")["arr_0"].astype(int) for d in ("torch", "onnx"))
    assert np.abs(a - b).max() <= 1
    assert json.loads((tmp_path / "onnx" / "info.json").read_text())["backend"] == "onnx"
    # With a guide, the guide runs in onnxruntime too (a guide that moves the samples: sample.py's guide test).
    guide = worse_guide(tiny_pipeline_run, tmp_path / "guide")
    guided = [*args, "--guide", str(guide), "--guide-scale", "3"]
    sample(tiny_pipeline_run, *guided, "--out", str(tmp_path / "torch_guided"))
    # The guide's folder is a copy of the main checkpoint's, with its ema_0.9.onnx cached above from other weights.
    out = sample(tiny_pipeline_run, *guided, "--backend", "onnx", "--out", str(tmp_path / "onnx_guided"))
    assert f"{guide / 'ema_0.9.onnx'} was exported from other weights than ema_0.9.safetensors" in out.stdout
    c, d = (np.load(tmp_path / x / "samples_4x16x16x1.npz")["arr_0"].astype(int)
            for x in ("torch_guided", "onnx_guided"))
    assert np.abs(c - d).max() <= 1 and np.abs(c - a).max() > 10


def test_shipped_run_still_loads_and_samples(tmp_path):
    """pretrained/fmnist (shipped in the repository) must keep working with the current code and configs."""
    shipped = ROOT / "pretrained" / "fmnist"
    assert (shipped / "bridge" / "bridge.json").is_file(), "the shipped demo run is missing"
    out = sample(shipped, "--num-samples", "3", "--classes", "1,7,9", "--timestep-respacing", "ddim5",
                 "--guidance-scale", "3", "--out", str(tmp_path))
    assert "HEAVY []" in out.stdout
    npz = np.load(tmp_path / "samples_3x32x32x1.npz")
    assert npz["arr_1"].tolist() == [1, 7, 9] and npz["arr_0"].std() > 10  # decoded images, not a flat field


def test_shipped_rgb_run_samples_every_class_in_colour(tmp_path):
    """pretrained/openclipart64 (`make demo DATA=openclipart`): 64x64 RGB samples of its 22 classes."""
    shipped = ROOT / "pretrained" / "openclipart64"
    assert (shipped / "bridge" / "bridge.json").is_file(), "the shipped RGB run is missing"
    out = sample(shipped, "--num-samples", "22", "--batch-size", "22", "--timestep-respacing", "trailing5",
                 "--sampler", "dpmpp", "--out", str(tmp_path))
    assert "HEAVY []" in out.stdout
    npz = np.load(tmp_path / "samples_22x64x64x3.npz")
    images = npz["arr_0"].astype(int)
    assert npz["arr_1"].tolist() == list(range(22))  # one per class, in order
    assert images.std() > 10 and np.abs(images[..., 0] - images[..., 2]).mean() > 5  # pictures, in colour


def test_pixel_samples_go_beside_the_latent_ones_not_over_them(tiny_pipeline_run, tmp_path):
    """`--pixels` without --out writes RUN/pixel_samples: the latent model's RUN/samples stay as they were."""
    import shutil

    import torch

    from diffusion.training import PixelData, TrainConfig
    from diffusion.training.session import build_training
    from tests.conftest import TINY_DIFFUSION, TINY_UNET

    run = tmp_path / "run"
    shutil.copytree(tiny_pipeline_run, run)
    images = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 1)).astype(np.float32)
    torch.manual_seed(0)
    build_training("diffusion", out_dir=run / "pixel_diffusion", data=PixelData.from_arrays(images, None, None),
                   unet=TINY_UNET.replace(in_channels=1, attention_resolutions="4"), diffusion=TINY_DIFFUSION,
                   device="cpu", progress=False, train=TrainConfig(batch_size=8, max_steps=1, cfg_dropout=0)).loop.run()
    sample(run, "--num-samples", "4", "--timestep-respacing", "ddim5")
    latent = np.load(run / "samples" / "samples_4x16x16x1.npz")["arr_0"]
    sample(run, "--pixels", "--num-samples", "4", "--timestep-respacing", "ddim5")
    assert np.load(run / "pixel_samples" / "samples_4x8x8x1.npz")["arr_0"].shape == (4, 8, 8, 1)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["grid.png", "info.json", "samples_4x16x16x1.npz"]
    np.testing.assert_array_equal(np.load(run / "samples" / "samples_4x16x16x1.npz")["arr_0"], latent)
