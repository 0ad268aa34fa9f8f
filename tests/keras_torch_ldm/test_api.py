"""The Python API (`LatentDiffusion`) end to end: sample, encode, decode, seeds, errors, and no TensorFlow."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_torch_ldm import LatentDiffusion

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "pretrained" / "fmnist"
# 4 samples of the shipped run (classes 0 and 3, DPM-Solver++ trailing20, seed 0, its default guidance) written by
# `pipelines/sample.py` at e887d73, before sampling went through the API.
REFERENCE = ROOT / "tests" / "data" / "shipped_fmnist_dpmpp20_seed0.npz"


@pytest.fixture(scope="module")
def pipe(tiny_pipeline_run):
    return LatentDiffusion.from_run(tiny_pipeline_run, device="cpu")


def test_sample_gives_uint8_images_in_class_blocks_and_the_same_seed_the_same_images(pipe):
    images, labels = pipe.sample(4, classes=[0, 2], sampler="ddim", steps=3, seed=0)
    assert images.dtype == np.uint8 and images.shape == (4, 16, 16, 1)
    assert labels.tolist() == [0, 0, 2, 2]
    again, _ = pipe.sample(4, classes=[0, 2], sampler="ddim", steps=3, seed=0)
    other, _ = pipe.sample(4, classes=[0, 2], sampler="ddim", steps=3, seed=1)
    np.testing.assert_array_equal(images, again)
    assert not np.array_equal(images, other)
    pictures, _ = pipe.sample(4, classes=[0, 2], sampler="ddim", steps=3, seed=0, output="pil")
    np.testing.assert_array_equal(np.stack([np.asarray(p) for p in pictures])[..., None], images)


def test_steps_map_to_each_samplers_respacing_and_info_says_what_ran(pipe):
    result = pipe.generate(2, sampler="dpmpp", steps=4, class_label=1, guidance_scale=1.5)
    info = result.info
    assert info["timestep_respacing"] == "trailing4" and info["sampler"] == "dpmpp"
    assert (info["guidance_scale"], info["guidance_source"]) == (1.5, "flags and built-in")
    assert info["decoder_provider"] == "CPUExecutionProvider" and info["weights"] == "ema_0.9.safetensors"
    assert info["sample_shape"] == [4, 4, 4] and info["image_shape"] == [16, 16, 1] and info["num_classes"] == 3
    assert result.labels.tolist() == [1, 1] and info["seconds"]["sampling_total"] > 0
    assert pipe.generate(1, sampler="ddim", steps=7).info["timestep_respacing"] == "ddim7"
    assert pipe.generate(1, sampler="ddpm", steps=3).info["timestep_respacing"] == "3"


def test_encode_then_decode_is_the_bridges_reconstruction(pipe, tiny_pipeline_run):
    import torch

    from bridge.runtime import load_decoder, load_encoder
    from runfs.images import to_float, to_uint8

    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    latents = pipe.encode(images)
    assert latents.shape == (3, 4, 4, 4) and latents.dtype == np.float32
    want = load_encoder(tiny_pipeline_run, "cpu").encode(to_float(images))
    np.testing.assert_array_equal(latents, want)
    recon = pipe.decode(latents)
    expected = to_uint8(load_decoder(tiny_pipeline_run, "cpu").decode(torch.from_numpy(want)).numpy())
    np.testing.assert_array_equal(recon, expected)
    drawn = pipe.encode(images, sample_posterior=True, seed=3)
    np.testing.assert_array_equal(drawn, pipe.encode(images, sample_posterior=True, seed=3))
    assert not np.array_equal(drawn, latents)


@pytest.mark.parametrize(("settings", "message"), [
    ({"num_samples": 0}, "num_samples must be a whole number >= 1, got 0"),
    ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
    ({"sampler": "euler"}, "unknown sampler 'euler'"),
    ({"steps": 5, "timestep_respacing": "ddim5"}, "give steps or timestep_respacing, not both"),
    ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number >= 0, got nan"),
    ({"eta": -5.0}, "eta must be a finite number >= 0, got -5.0"),
    ({"guide_scale": 2.0}, "guide_scale 2.0 needs a guide model and this run has none"),
    ({"class_label": 7}, r"class label\(s\) \[7\] out of range"),
    ({"output": "tensor"}, "output must be 'numpy' or 'pil'"),
])
def test_bad_settings_are_refused_before_sampling(pipe, settings, message):
    settings = {"num_samples": 2, **settings}
    with pytest.raises(ValueError, match=message):
        pipe.sample(settings.pop("num_samples"), **settings)


def test_from_run_errors_name_the_problem(tmp_path, tiny_pipeline_run):
    with pytest.raises(FileNotFoundError, match="no run folder"):
        LatentDiffusion.from_run(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="backend must be 'torch' or 'onnx'"):
        LatentDiffusion.from_run(tiny_pipeline_run, backend="tensorrt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint in .*train_diffusion.py"):
        LatentDiffusion.from_run(tmp_path / "empty")


def test_the_api_process_never_imports_tensorflow(tiny_pipeline_run):
    code = ("import sys\nfrom keras_torch_ldm import LatentDiffusion\n"
            f"pipe = LatentDiffusion.from_run({str(tiny_pipeline_run)!r}, device='cpu')\n"
            "images, _ = pipe.sample(2, steps=2)\npipe.decode(pipe.encode(images))\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_shipped_run_samples_what_sample_py_sampled_before_the_api():
    reference = np.load(REFERENCE)
    pipe = LatentDiffusion.from_run(SHIPPED, device="cpu")
    images, labels = pipe.sample(4, classes=[0, 3], sampler="dpmpp", timestep_respacing="trailing20", seed=0,
                                 batch_size=4)
    np.testing.assert_array_equal(labels, reference["arr_1"])
    # Bit-identical on this machine; allow one grey level for other CPUs' float reduction order.
    assert np.max(np.abs(images.astype(int) - reference["arr_0"].astype(int))) <= 1
