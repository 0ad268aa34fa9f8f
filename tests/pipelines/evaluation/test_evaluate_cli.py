"""pipelines/evaluate.py end to end on a tiny run (project-made VAE + bridge) and a folder of labelled images."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.evaluate import main
from pipelines.evaluation import load_or_train
from pipelines.evaluation.features import INCEPTION_FILE
from vae.data import load_dataset

ROOT = Path(__file__).resolve().parents[3]


def write_npz(path, images, labels=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **({"arr_0": images} if labels is None else {"arr_0": images, "arr_1": labels}))
    return path


def test_samples_equal_to_the_reference_score_zero_without_tensorflow(tiny_pipeline_run, banded_folder, tmp_path):
    data = load_dataset(str(banded_folder), image_size=16, channels=1)
    # The "samples" are the reference images themselves: FID 0, and class accuracy is the classifier's own.
    samples = write_npz(tmp_path / "s" / "samples_270x16x16x1.npz", data.train_images, data.train_labels)
    cache, out = tmp_path / "cache", tmp_path / "eval"
    probe = ("import sys, runpy\nsys.argv = ['evaluate.py', *sys.argv[1:]]\ncode = 0\n"
             "try:\n    runpy.run_path('pipelines/evaluate.py', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('HEAVY', [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules])\nsys.exit(code)")
    args = ["--run", str(tiny_pipeline_run), "--samples", str(samples), "--data", str(banded_folder),
            "--reference", "train", "--cache-dir", str(cache), "--out", str(out), "--no-progress", "--kid-block", "90"]
    proc = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout  # torch + onnxruntime only: the default path never imports TensorFlow
    result = json.loads((out / "eval.json").read_text())
    assert result["fid"] == pytest.approx(0.0, abs=1e-6)
    # Identical blocks: KID = 2 (mean off-diagonal - mean diagonal kernel) / n, which a PSD kernel keeps <= 0.
    assert result["kid"]["num_blocks"] == 3 and -1e-3 < result["kid"]["mean"] <= 0
    assert result["feature_net"]["kind"] == "classifier" and result["feature_net"]["trained_now"]
    classifier = load_or_train(data, cache, progress=False)  # reloaded from the cache the run filled
    assert not classifier.retrained
    own = float((classifier.predict(data.train_images) == data.train_labels).mean())
    assert result["class_accuracy"]["samples"] == pytest.approx(own)
    assert result["class_accuracy"]["real_test"] == classifier.meta["test_accuracy"]
    assert set(result["class_accuracy"]["per_class"]) == {"a", "b", "c"}
    recon = result["reconstruction"]
    assert recon["num_images"] == len(data.val_images) and 0 < recon["psnr"] < 100 and -1 <= recon["ssim"] <= 1
    report = (out / "eval.md").read_text()
    assert "FID" in report and "classifier eval_classifier_" in report and "PSNR" in report


def test_floor_and_samples_from_the_run_folder(tiny_pipeline_run, banded_folder, tmp_path, capsys):
    rng = np.random.default_rng(0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "bridge").symlink_to(Path(tiny_pipeline_run) / "bridge")
    write_npz(run / "samples" / "samples_40x16x16x1.npz", rng.integers(0, 256, (40, 16, 16, 1), dtype=np.uint8))
    common = ["--data", str(banded_folder), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
              "--kid-block", "20"]
    assert main(["--run", str(run), "--num-recon", "0", *common]) == 0
    result = json.loads((run / "eval" / "eval.json").read_text())
    assert result["samples"].endswith("samples_40x16x16x1.npz") and result["class_accuracy"] is None
    assert result["reconstruction"] == {"skipped": "--num-recon 0"} and result["fid"] > 0
    assert main(["--run", str(run), "--floor", "--num-real", "30", *common]) == 0
    floor = json.loads((run / "eval" / "floor.json").read_text())
    assert floor["mode"] == "floor" and floor["num_real"] == floor["num_generated"] == 30
    assert not floor["feature_net"]["trained_now"]  # the first call cached it
    assert 0 <= floor["fid"] < result["fid"]  # real vs real beats uniform noise
    assert "Floor: real train vs real test images" in (run / "eval" / "floor.md").read_text()
    # The same 30 training images, through the run's (barely trained) VAE first: further from the test images.
    assert main(["--run", str(run), "--vae-floor", "--num-real", "30", *common]) == 0
    vae_floor = json.loads((run / "eval" / "vae_floor.json").read_text())
    assert vae_floor["mode"] == "vae_floor" and vae_floor["num_generated"] == 30
    assert vae_floor["samples"].endswith(f"through the VAE of {run}")
    assert vae_floor["fid"] > floor["fid"]
    assert vae_floor["class_accuracy"]["real_test"] == floor["feature_net"]["test_accuracy"]
    assert 0 <= vae_floor["class_accuracy"]["samples"] <= 1
    assert "VAE floor" in (run / "eval" / "vae_floor.md").read_text()
    assert "FID" in capsys.readouterr().out


def test_user_errors_are_explained(tiny_pipeline_run, banded_folder, tmp_path, capsys, monkeypatch):
    common = ["--data", str(banded_folder), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
              "--out", str(tmp_path / "out")]

    def error(*args):
        assert main([*args, *common]) == 2
        return capsys.readouterr().err

    assert "no samples_NxHxWxC.npz in" in error("--run", str(tmp_path))
    assert "does not exist" in error("--samples", str(tmp_path / "missing.npz"))
    small = write_npz(tmp_path / "small.npz", np.zeros((4, 8, 8, 1), np.uint8))
    err = error("--run", str(tiny_pipeline_run), "--samples", str(small))
    assert "are 8x8x1 but the real images are 16x16x1" in err
    floats = write_npz(tmp_path / "floats.npz", np.zeros((4, 16, 16, 1), np.float32))
    assert "arr_0 must be uint8" in error("--samples", str(floats))
    bad_labels = write_npz(tmp_path / "labels.npz", np.zeros((4, 16, 16, 1), np.uint8), np.array([0, 1, 2, 7]))
    assert "sample labels span 0..7 but" in error("--samples", str(bad_labels), "--feature", "classifier")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    err = error("--samples", str(bad_labels), "--feature", "inception")
    assert "no weights file is on this disk" in err and INCEPTION_FILE in err and "--feature classifier" in err
    assert "give --run DIR with DIR/bridge/bridge.json" in error("--vae-floor", "--run", str(tmp_path))
    err = error("--floor", "--vae-floor", "--run", str(tiny_pipeline_run))
    assert "two separate measurements" in err
    assert main(["--floor", "--data", str(banded_folder), "--no-progress"]) == 2
    assert "give --run DIR (writes DIR/eval) or --out FOLDER" in capsys.readouterr().err
