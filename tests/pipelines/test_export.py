"""pipelines/export.py on a tiny run folder built with vae/'s own builders and checkpoint format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runfs import write_json, write_npy
from runfs.lineage import latents_digest, vae_digest
from tests.conftest import make_tiny_vae_run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run, cfg, encoder, decoder = make_tiny_vae_run(tmp_path_factory.mktemp("runs") / "tiny")
    images = np.random.default_rng(0).uniform(-1, 1, (20, cfg.image_size, cfg.image_size, cfg.channels))
    mean = encoder.predict(images.astype(np.float32), verbose=0)[0].transpose(0, 3, 1, 2)  # NCHW, unscaled
    write_npy(run.latents / "val_mean.npy", np.ascontiguousarray(mean, dtype=np.float32))
    scale = float(1.0 / mean.std())
    write_json(run.latents / "meta.json", {"scale_factor": scale, "latent_shape": list(mean.shape[1:]),
                                           "layout": "NCHW", "vae_checkpoint": vae_digest(run.root)})
    return run, decoder, mean, scale


def test_export_pipeline_writes_a_bridge_the_runtime_reproduces(tiny_run, capsys):
    from bridge.runtime import load_decoder
    from pipelines.export import main

    run, keras_decoder, mean, scale = tiny_run
    info = main(["--run", str(run.root), "--num-real", "12", "--num-random", "8", "--batch", "8"])
    assert sorted(p.name for p in run.bridge.iterdir()) == ["bridge.json", "decoder.onnx", "encoder.onnx"]
    assert info["parity"]["num_real"] == 12 and info["vae_checkpoint"] == vae_digest(run.root)
    assert info["latents_digest"] == latents_digest(run.latents)  # lineage: the latents whose scale it applies
    assert info["scale_factor"] == pytest.approx(scale)
    out = capsys.readouterr().out
    assert f"wrote {run.bridge}/" in out and "parity" in out

    decoder = load_decoder(run.root, device="cpu", decode_batch=5)
    scaled = torch.from_numpy(mean[:7] * np.float32(scale))
    want = keras_decoder.predict(mean[:7].transpose(0, 2, 3, 1), verbose=0)
    assert np.max(np.abs(decoder.decode(scaled).numpy() - want)) <= 1e-4


def test_export_pipeline_needs_encoded_latents(tmp_path):
    from pipelines.export import main

    with pytest.raises(SystemExit, match=r"latents/meta.json is missing: .*python pipelines/encode.py --run"):
        main(["--run", str(tmp_path)])
    write_json(tmp_path / "latents" / "meta.json", {"scale_factor": 1.0, "latent_shape": [4, 8, 8], "layout": "NCHW"})
    with pytest.raises(SystemExit, match=r"no val_mean.npy or train_mean.npy in .*latents"):
        main(["--run", str(tmp_path)])
    write_npy(tmp_path / "latents" / "val_mean.npy", np.zeros((2, 8, 8, 4), np.float32))
    with pytest.raises(SystemExit, match=r"inconsistent: latents of shape \[8, 8, 4\], meta.json says \[4, 8, 8\]"):
        main(["--run", str(tmp_path)])
