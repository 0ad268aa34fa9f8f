"""Stage 1 on two logical CPU devices (tf.distribute.MirroredStrategy) gives the losses of one device.

Logical devices must be made before TensorFlow first uses a device, so each check runs in a fresh process.
Tolerance: relative 1e-5 on each step's loss (float summation order differs between one batch and two halves;
measured ~1e-7 over 6 steps of the tiny preset).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vae.distribute import is_chief, make_strategy, shares

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
       "PYTHONPATH": str(ROOT)}

STEPS = '''
import json, sys
import keras, numpy as np, tensorflow as tf
from vae.config import preset
from vae.distribute import make_strategy, make_train_fn
from vae.trainer import VAETrainer
mirrored = make_strategy("mirrored", ["/cpu:0", "/cpu:1"])
batches = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 16, 1)).astype(np.uint8)
batches[4, 15] = 0  # the last global batch is 15 images (8 + 7 on two replicas): the split need not be even
def run(strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        trainer = VAETrainer(preset("tiny"))
        trainer.compile(optimizer=trainer.make_optimizer())
        trainer.optimizer.build(trainer.trainable_variables)
    step = make_train_fn(trainer, strategy, jit_compile=False)
    losses = [float(step(tf.constant(b[:15] if i == 4 else b))) for i, b in enumerate(batches)]
    return {"losses": losses, "mean": float(trainer.loss_tracker.result()),
            "kernel": trainer.encoder.get_weights()[0].ravel()[:50].tolist()}
print(json.dumps({"one": run(tf.distribute.get_strategy()), "two": run(mirrored),
                  "replicas": mirrored.num_replicas_in_sync}))
'''


def test_two_logical_cpus_give_the_losses_of_one_device():
    proc = subprocess.run([sys.executable, "-c", STEPS], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    one, two = result["one"], result["two"]
    assert result["replicas"] == 2
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert two["mean"] == pytest.approx(one["mean"], rel=1e-5)  # running mean over images, across replicas
    assert two["kernel"] == pytest.approx(one["kernel"], rel=1e-3, abs=1e-6)  # the weights after 5 steps
    assert one["losses"][0] > one["losses"][-1]  # it trains


def test_train_vae_cli_mirrored_resumes_and_matches_one_device(tmp_path):
    data = tmp_path / "pngs"
    data.mkdir()
    rng = __import__("numpy").random.default_rng(0)
    from PIL import Image

    for i in range(40):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype="uint8")).save(data / f"{i:02d}.png")
    common = ["--preset", "tiny", "--data", data, "--channels", 1, "--batch-size", 8, "--epochs", 5,
              "--no-jit-compile", "--no-progress"]

    def train(run, *extra):
        proc = subprocess.run([sys.executable, str(ROOT / "pipelines" / "train_vae.py"), "--run", run,
                               *map(str, common), *map(str, extra)], cwd=ROOT, env=ENV, capture_output=True,
                              text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    mirrored = ("--strategy", "mirrored", "--devices", "/cpu:0,/cpu:1")
    first = train(tmp_path / "two", "--max-steps", 3, *mirrored)
    assert "strategy mirrored: 2 replicas" in first.stdout
    train(tmp_path / "two", "--max-steps", 5, "--resume", *mirrored)
    train(tmp_path / "one", "--max-steps", 5)
    two, one = (json.loads((tmp_path / r / "vae" / "metrics.json").read_text()) for r in ("two", "one"))
    assert two["final"]["step"] == one["final"]["step"] == 5
    assert two["final"]["val_psnr"] == pytest.approx(one["final"]["val_psnr"], abs=1e-3)
    assert two["epochs"][-1]["loss"] == pytest.approx(one["epochs"][-1]["loss"], rel=1e-4)


def test_strategy_errors_and_helpers(monkeypatch):
    with pytest.raises(ValueError, match="--strategy must be one of"):
        make_strategy("horovod")
    with pytest.raises(ValueError, match="--devices names the devices of --strategy mirrored"):
        make_strategy("none", ["/gpu:0"])
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multiworker")
    assert is_chief()
    cluster = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert is_chief()
    assert shares(15, 2) == [(0, 8), (8, 7)] and shares(8, 2) == [(0, 4), (4, 4)] and shares(1, 2) == [(0, 1), (1, 0)]
