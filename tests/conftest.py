"""Test-wide settings (quiet TensorFlow, Keras on the TensorFlow backend) and small shared fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from diffusion.config import DiffusionConfig, UNetConfig  # noqa: E402
from runfs import write_json  # noqa: E402

TINY_UNET = UNetConfig(image_size=8, in_channels=4, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                       attention_resolutions="4", class_cond=True, num_classes=3, null_class=True,
                       num_head_channels=16)
TINY_DIFFUSION = DiffusionConfig(diffusion_steps=50)


def write_latents(run_dir, n=24, shape=(4, 8, 8), num_classes=3, seed=0, labels=True):
    """A stage-1 style DIR/latents/ folder with random posteriors."""
    rng = np.random.default_rng(seed)
    d = run_dir / "latents"
    d.mkdir(parents=True)
    for split, count in (("train", n), ("val", n // 4)):
        np.save(d / f"{split}_mean.npy", rng.normal(size=(count, *shape)).astype(np.float32))
        np.save(d / f"{split}_logvar.npy", np.full((count, *shape), -4.0, np.float32))
        if labels:
            np.save(d / f"{split}_labels.npy", rng.integers(0, num_classes, count).astype(np.int64))
    write_json(d / "meta.json", {"layout": "NCHW", "latent_shape": list(shape), "scale_factor": 0.5,
                                 "num_classes": num_classes if labels else None, "class_names": None,
                                 "image_size": 32, "channels": 1, "counts": {"train": n, "val": n // 4},
                                 "vae_checkpoint": "test", "data": "synthetic"})
    return d


@pytest.fixture
def script_help(monkeypatch, capsys):
    """script_help(parse_args) -> {flag: its whole --help entry on one line} (parse_args(["--help"]) exits)."""
    def read(parse_args) -> dict[str, str]:
        monkeypatch.setenv("COLUMNS", "400")
        with pytest.raises(SystemExit):
            parse_args(["--help"])
        entries: dict[str, str] = {}
        flag = None
        for line in capsys.readouterr().out.splitlines():
            if line.startswith("  -"):
                flag = line.split()[0].rstrip(",")
                entries[flag] = line.strip()
            elif flag and line.startswith("    "):
                entries[flag] += " " + line.strip()
            else:
                flag = None
        return entries
    return read


@pytest.fixture
def tiny():
    """(UNetConfig, DiffusionConfig, write_latents) for small, fast training runs."""
    return TINY_UNET, TINY_DIFFUSION, write_latents


@pytest.fixture
def latents_run(tmp_path):
    write_latents(tmp_path)
    return tmp_path


def make_tiny_vae_run(root):
    """RunPaths of a new run folder holding an untrained VAE at the `tiny` preset (16x16x1 -> 4x4x4) in vae/'s own
    checkpoint format; returns (run, config, encoder, decoder)."""
    from runfs import RunPaths
    from vae.config import preset
    from vae.model import build_decoder, build_encoder, save_models

    cfg = preset("tiny")
    run = RunPaths(root)
    model_dir = run.vae / "model"
    model_dir.mkdir(parents=True)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    save_models(model_dir, encoder, decoder)
    write_json(model_dir / "config.json", cfg.to_dict())
    return run, cfg, encoder, decoder


@pytest.fixture(scope="session")
def tiny_pipeline_run(tmp_path_factory):
    """A complete run folder made by the project's own code at toy size: a tiny VAE (16x16x1 -> 4x4x4),
    encoded labelled latents, the exported ONNX bridge, and a 2-step class-conditional diffusion checkpoint."""
    from diffusion.training import LatentData, TrainConfig
    from diffusion.training.session import build_training
    from pipelines.export import main as export_main
    from runfs import write_npy
    from runfs.lineage import vae_digest

    run, cfg, encoder, _ = make_tiny_vae_run(tmp_path_factory.mktemp("runs") / "tiny")
    rng = np.random.default_rng(0)
    moments = {}
    for split, n in (("train", 32), ("val", 16)):
        images = rng.uniform(-1, 1, (n, cfg.image_size, cfg.image_size, cfg.channels)).astype(np.float32)
        mean, logvar = encoder.predict(images, verbose=0)
        moments[split] = [np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.float32) for a in (mean, logvar)]
        write_npy(run.latents / f"{split}_mean.npy", moments[split][0])
        write_npy(run.latents / f"{split}_logvar.npy", moments[split][1])
        write_npy(run.latents / f"{split}_labels.npy", rng.integers(0, 3, n).astype(np.int64))
    shape = list(moments["train"][0].shape[1:])
    write_json(run.latents / "meta.json", {
        "layout": "NCHW", "latent_shape": shape, "scale_factor": float(1.0 / moments["train"][0].std()),
        "num_classes": 3, "class_names": ["a", "b", "c"], "image_size": cfg.image_size, "channels": cfg.channels,
        "counts": {"train": 32, "val": 16}, "vae_checkpoint": vae_digest(run.root), "data": "synthetic"})
    export_main(["--run", str(run.root), "--num-real", "8", "--num-random", "8", "--batch", "8"])
    unet = TINY_UNET.replace(image_size=shape[1], in_channels=shape[0], attention_resolutions="2")
    session = build_training("diffusion", out_dir=run.diffusion, data=LatentData.from_run(run.latents), unet=unet,
                             diffusion=TINY_DIFFUSION, device="cpu", progress=False,
                             train=TrainConfig(batch_size=8, max_steps=2, cfg_dropout=0.25, ema_rate="0.9"))
    session.loop.run()
    return run.root
