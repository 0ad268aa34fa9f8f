"""The onnxruntime decoder fed from torch: equality with Keras, micro-batching, provider choice, every error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bridge.providers import CPU_EP, CUDA_EP, resolve_provider
from bridge.runtime import load_decoder
from bridge.spec import BridgeError
from tests.bridge.conftest import CHANNELS, IMAGE_SIZE, LATENT_SHAPE, SCALE, Z

FIX = r"python pipelines/export.py --run"


def _latents(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *LATENT_SHAPE), generator=torch.Generator().manual_seed(seed))


def test_cpu_decode_equals_keras_decoder(exported):
    decoder = load_decoder(exported.folder.parent, device="cpu")  # a run folder works: it holds bridge/
    assert decoder.provider == CPU_EP
    assert (decoder.latent_shape, decoder.image_size, decoder.channels) == (LATENT_SHAPE, IMAGE_SIZE, CHANNELS)
    assert decoder.latent_norm.mode == "global" and decoder.latent_norm.scale == pytest.approx((SCALE,) * Z)
    latents = _latents(6)
    images = decoder.decode(latents)
    want = exported.decoder.predict((latents.numpy() / SCALE).transpose(0, 2, 3, 1), verbose=0)
    assert images.dtype == torch.float32 and images.shape == (6, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    assert np.max(np.abs(images.numpy() - want)) <= 1e-4
    assert decoder.bound_from_device_memory is False


def test_micro_batches_match_one_batch(exported):
    latents = _latents(7, seed=1)
    whole = load_decoder(exported.folder, device="cpu", decode_batch=64).decode(latents)
    pieces = load_decoder(exported.folder, device="cpu", decode_batch=3).decode(latents)  # 3 + 3 + 1
    assert torch.equal(whole, pieces)


def test_decode_accepts_float64_and_non_contiguous_latents(exported):
    decoder = load_decoder(exported.folder, device="cpu")
    latents = _latents(4, seed=2)
    strided = latents.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # same values, NHWC memory order
    assert not strided.is_contiguous()
    assert torch.equal(decoder.decode(strided), decoder.decode(latents))
    assert torch.allclose(decoder.decode(latents.double()), decoder.decode(latents), atol=1e-6)


def test_wrong_latent_shape_names_expected_and_got(exported):
    decoder = load_decoder(exported.folder, device="cpu")
    z, h, w = LATENT_SHAPE
    with pytest.raises(ValueError, match=rf"expected \(N, {z}, {h}, {w}\) .*got \(2, {h}, {w}, {z}\)"):
        decoder.decode(torch.zeros(2, h, w, z))
    with pytest.raises(ValueError, match=r"got \(4, 4\)"):
        decoder.decode(torch.zeros(4, 4))


def test_provider_selection(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_provider("auto") == CPU_EP
    assert resolve_provider("cpu") == CPU_EP
    with pytest.raises(RuntimeError, match=r"--device cuda .*torch sees no CUDA GPU.*install a CUDA build of torch"):
        resolve_provider("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU_EP])
    assert resolve_provider("auto") == CPU_EP
    with pytest.raises(RuntimeError, match=r"has no CUDAExecutionProvider.*pip install onnxruntime-gpu"):
        resolve_provider("cuda")
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, CPU_EP])
    assert resolve_provider("auto") == CUDA_EP
    assert resolve_provider("cuda") == CUDA_EP
    with pytest.raises(ValueError, match=r"device must be one of \('auto', 'cpu', 'cuda'\), got 'gpu'"):
        resolve_provider("gpu")


def test_cuda_provider_that_fails_to_load(exported, monkeypatch):
    """torch 'sees' a GPU but the CUDA provider cannot start here: auto falls back to the CPU, cuda says why."""
    import onnxruntime as ort

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA_EP, CPU_EP])
    if hasattr(ort, "preload_dlls"):
        monkeypatch.setattr(ort, "preload_dlls", lambda *a, **k: None)
    monkeypatch.setattr(ort.InferenceSession, "get_providers", lambda self: [CPU_EP])  # what ORT reports on fallback
    with pytest.warns(RuntimeWarning, match=r"not CUDAExecutionProvider.*decoding on the CPU instead"):
        decoder = load_decoder(exported.folder, device="auto")
    assert decoder.provider == CPU_EP
    assert decoder.decode(_latents(2)).shape == (2, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    with pytest.raises(RuntimeError, match=r"opened decoder.onnx on CPUExecutionProvider, not CUDAExecutionProvider"):
        load_decoder(exported.folder, device="cuda")


@pytest.fixture
def bridge_copy(exported, tmp_path):
    folder = tmp_path / "run" / "bridge"
    shutil.copytree(exported.folder, folder)
    return folder


def test_missing_folder_and_files(bridge_copy, tmp_path):
    with pytest.raises(BridgeError, match=r"nowhere does not exist"):
        load_decoder(tmp_path / "nowhere")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(BridgeError, match=rf"no ONNX bridge in .*empty_run.*{FIX}"):
        load_decoder(tmp_path / "empty_run")
    (bridge_copy / "decoder.onnx").unlink()
    with pytest.raises(BridgeError, match=rf"decoder.onnx is missing.*{FIX}"):
        load_decoder(bridge_copy.parent)
    (bridge_copy / "bridge.json").unlink()
    (bridge_copy / "decoder.onnx").write_bytes(b"")
    with pytest.raises(BridgeError, match=rf"bridge.json is missing.*{FIX}"):
        load_decoder(bridge_copy)


def test_truncated_onnx(bridge_copy):
    data = (bridge_copy / "decoder.onnx").read_bytes()
    (bridge_copy / "decoder.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(BridgeError, match=rf"decoder.onnx is not a loadable ONNX model.*corrupt or truncated.*{FIX}"):
        load_decoder(bridge_copy, device="cpu")


def test_bridge_json_inconsistent_with_onnx(bridge_copy):
    info = json.loads((bridge_copy / "bridge.json").read_text())
    info["decoder"]["inputs"] = {"z": info["decoder"]["inputs"]["latents"]}
    (bridge_copy / "bridge.json").write_text(json.dumps(info))
    with pytest.raises(BridgeError, match=r"does not match .*bridge.json: the graph has inputs \[\('latents'"):
        load_decoder(bridge_copy, device="cpu")


def test_bridge_json_shapes_disagree(bridge_copy):
    info = json.loads((bridge_copy / "bridge.json").read_text())
    info["latent_shape"] = [3, 4, 4]
    (bridge_copy / "bridge.json").write_text(json.dumps(info))
    with pytest.raises(BridgeError, match=rf"inconsistent: latent_shape \[3, 4, 4\] vs decoder input shape.*{FIX}"):
        load_decoder(bridge_copy, device="cpu")


def test_bridge_json_from_before_latent_norm_loads_as_one_scale_factor(bridge_copy):
    info = json.loads((bridge_copy / "bridge.json").read_text())
    del info["latent_norm"]  # exports before per-channel norms wrote `scale_factor` alone
    (bridge_copy / "bridge.json").write_text(json.dumps(info))
    norm = load_decoder(bridge_copy, device="cpu").latent_norm
    assert norm.mode == "global" and norm.scale == pytest.approx((SCALE,) * Z) and norm.shift == (0.0,) * Z


def test_decoder_from_another_export(bridge_copy):
    shutil.copy(bridge_copy / "encoder.onnx", bridge_copy / "decoder.onnx")  # a valid ONNX file, the wrong one
    with pytest.raises(BridgeError, match=rf"decoder.onnx does not match bridge.json \(digest .*{FIX}"):
        load_decoder(bridge_copy, device="cpu")


def test_malformed_bridge_json(bridge_copy):
    (bridge_copy / "bridge.json").write_text('{"decoder": ')
    with pytest.raises(BridgeError, match=rf"bridge.json is not valid JSON.*{FIX}"):
        load_decoder(bridge_copy)
    (bridge_copy / "bridge.json").write_text('{"decoder": {}}')
    with pytest.raises(BridgeError, match=rf"bridge.json lacks a field or holds a bad value \(KeyError.*{FIX}"):
        load_decoder(bridge_copy)


def test_runtime_import_leaves_tensorflow_out():
    heavy = ("tensorflow", "keras", "tf2onnx")
    code = f"import sys, bridge.runtime; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_encoder_session_and_its_errors(bridge_copy, exported):
    from bridge.runtime import load_encoder
    from bridge.spec import BridgeSpec

    spec = BridgeSpec.read(bridge_copy)
    images = np.random.default_rng(2).uniform(-1, 1, (3, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)).astype(np.float32)
    encoder = load_encoder(bridge_copy, device="cpu", encode_batch=2)  # two batches: 2 + 1
    mean, logvar = encoder.posterior(images)
    want = exported.encoder.predict(images, verbose=0)[0].transpose(0, 3, 1, 2)
    assert mean.shape == logvar.shape == (3, *LATENT_SHAPE) and np.max(np.abs(mean - want)) <= 1e-4
    # encode() scales the mean as the latents were scaled: the bridge's latent_norm, nothing else.
    np.testing.assert_allclose(encoder.encode(images), spec.latent_norm.apply(mean), rtol=1e-6, atol=1e-6)
    drawn = encoder.encode(images, np.random.default_rng(0))
    noise = np.random.default_rng(0).standard_normal(mean.shape, dtype=np.float32)
    np.testing.assert_allclose(drawn, spec.latent_norm.apply(mean + np.exp(0.5 * logvar) * noise), atol=1e-5)
    with pytest.raises(ValueError, match=r"encodes images of shape \(N, .*\(NHWC\), got \(3, 5, 5, 1\)"):
        encoder.posterior(np.zeros((3, 5, 5, 1), np.float32))
    shutil.copy(bridge_copy / "decoder.onnx", bridge_copy / "encoder.onnx")
    with pytest.raises(BridgeError, match=rf"encoder.onnx does not match bridge.json \(digest .*{FIX}"):
        load_encoder(bridge_copy, device="cpu")
    (bridge_copy / "encoder.onnx").unlink()
    with pytest.raises(BridgeError, match=rf"encoder.onnx is missing: .*{FIX}"):
        load_encoder(bridge_copy, device="cpu")
