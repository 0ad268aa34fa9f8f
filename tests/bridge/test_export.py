"""Keras -> ONNX export: parity, checker, bridge.json, loud failure with nothing written."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from runfs.latent_norm import LatentNorm
from tests.bridge.conftest import CHANNELS, IMAGE_SIZE, LATENT_SHAPE, SCALE, Z, build_tiny_vae


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_files_pass_checker_and_have_contract_names(exported):
    contract = [("decoder.onnx", ["latents"], ["images"]), ("encoder.onnx", ["images"], ["mean", "logvar"])]
    for name, inputs, outputs in contract:
        model = onnx.load(exported.folder / name)
        onnx.checker.check_model(model, full_check=True)
        assert [i.name for i in model.graph.input] == inputs
        assert [o.name for o in model.graph.output] == outputs
        assert model.ir_version == exported.info["ir_version"]
        assert any(op.domain in ("", "ai.onnx") and op.version == exported.info["opset"] for op in model.opset_import)


def test_decoder_on_scaled_nchw_equals_keras_on_unscaled_nhwc(exported):
    rng = np.random.default_rng(5)
    scaled = rng.standard_normal((5, *LATENT_SHAPE), dtype=np.float32)  # batch 5: not a size seen at export
    (got,) = _session(exported.folder / "decoder.onnx").run(None, {"latents": scaled})
    want = exported.decoder.predict((scaled / SCALE).transpose(0, 2, 3, 1), verbose=0)
    assert got.shape == (5, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
    assert np.max(np.abs(got - want)) <= 1e-4
    # The scale really is inside the graph: feeding unscaled latents gives different images.
    (unscaled_out,) = _session(exported.folder / "decoder.onnx").run(None, {"latents": scaled / SCALE})
    assert np.max(np.abs(unscaled_out - want)) > 1e-3


def test_encoder_outputs_nchw_mean_and_logvar(exported):
    images = np.random.default_rng(6).uniform(-1, 1, (3, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)).astype(np.float32)
    mean, logvar = _session(exported.folder / "encoder.onnx").run(["mean", "logvar"], {"images": images})
    want_mean, want_logvar = exported.encoder.predict(images, verbose=0)
    assert mean.shape == (3, *LATENT_SHAPE)
    np.testing.assert_allclose(mean, want_mean.transpose(0, 3, 1, 2), atol=1e-4)
    np.testing.assert_allclose(logvar, want_logvar.transpose(0, 3, 1, 2), atol=1e-4)


def test_bridge_json_fields(exported):
    from runfs import file_digest, read_json

    info = read_json(exported.folder / "bridge.json")
    assert info == exported.info
    assert (info["latent_norm"], info["scale_factor"]) == ("global", pytest.approx(SCALE))
    assert info["latent_shape"] == list(LATENT_SHAPE)
    assert (info["image_size"], info["channels"], info["vae_checkpoint"]) == (IMAGE_SIZE, CHANNELS, "tiny-test")
    assert info["decoder"]["inputs"] == {"latents": {"shape": [None, *LATENT_SHAPE], "layout": "NCHW", "scaled": True}}
    assert info["decoder"]["outputs"]["images"]["shape"] == [None, IMAGE_SIZE, IMAGE_SIZE, CHANNELS]
    assert info["decoder"]["digest"] == file_digest(exported.folder / "decoder.onnx")
    assert info["versions"]["onnx"] == onnx.__version__ and info["versions"]["onnxruntime"] == ort.__version__
    parity = info["parity"]
    assert parity["num_real"] == len(exported.real_latents)
    for key in ("decoder_random", "decoder_real", "encoder_random", "encoder_real"):
        assert 0 <= parity[key] <= 1e-4, key


def test_parity_failure_is_loud_and_writes_nothing(tmp_path, monkeypatch):
    """A converter that perturbs one decoder weight must be caught by the parity check; the old export survives."""
    import bridge.export as export

    real_to_onnx = export.to_onnx

    def corrupted(model, output_names, opset=export.DEFAULT_OPSET):
        proto = real_to_onnx(model, output_names, opset)
        if output_names == ["images"]:
            weight = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
            array = onnx.numpy_helper.to_array(weight) + np.float32(0.05)
            weight.CopyFrom(onnx.numpy_helper.from_array(array, weight.name))
        return proto

    encoder, decoder = build_tiny_vae(seed=3)
    folder = tmp_path / "bridge"
    folder.mkdir()
    (folder / "bridge.json").write_text("previous export")
    monkeypatch.setattr(export, "to_onnx", corrupted)
    real = np.random.default_rng(0).standard_normal((4, *LATENT_SHAPE), dtype=np.float32)
    with pytest.raises(export.ParityError, match=r"decoder_random.*exceed 0.0001; nothing was written to .*bridge"):
        export.export_bridge(
            encoder, decoder, folder, latent_norm=LatentNorm.uniform(SCALE, Z), real_latents=real,
            image_size=IMAGE_SIZE, channels=CHANNELS, vae_checkpoint="x", num_random=4, batch=4,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge"]  # no temporary folder left behind
    assert [p.name for p in folder.iterdir()] == ["bridge.json"]
    assert (folder / "bridge.json").read_text() == "previous export"


def test_bad_real_latents_are_rejected(tmp_path):
    from bridge.export import export_bridge

    with pytest.raises(ValueError, match=r"real_latents must be \(N, z, h, w\) NCHW"):
        export_bridge(None, None, tmp_path / "b", latent_norm=LatentNorm.identity(2), real_latents=np.zeros((3, 4)),
                      image_size=16, channels=1, vae_checkpoint="x")


def test_a_vae_without_groupnorm_exports_with_parity(tmp_path):
    """The project's own VAE builders with norm="none" (the fashion_mnist preset): nothing to fuse, same contract."""
    import keras

    from bridge.export import export_bridge
    from vae.config import VAEConfig
    from vae.model import build_decoder, build_encoder

    cfg = VAEConfig(image_size=IMAGE_SIZE, base_channels=4, channel_mult=(1, 2, 2), z_channels=LATENT_SHAPE[0],
                    norm="none")
    keras.utils.set_random_seed(7)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    images = np.random.default_rng(8).uniform(-1, 1, (8, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)).astype(np.float32)
    real = np.ascontiguousarray(encoder.predict(images, verbose=0)[0].transpose(0, 3, 1, 2))
    info = export_bridge(encoder, decoder, tmp_path / "bridge", latent_norm=LatentNorm.uniform(SCALE, Z),
                         real_latents=real, image_size=IMAGE_SIZE, channels=CHANNELS, vae_checkpoint="plain",
                         num_random=8, batch=8)
    assert info["latent_shape"] == list(LATENT_SHAPE)
    graph = onnx.load(tmp_path / "bridge" / "decoder.onnx").graph
    assert not {n.op_type for n in graph.node} & {"InstanceNormalization", "GroupNormalization", "ReduceMean"}
    scaled = np.random.default_rng(9).standard_normal((3, *LATENT_SHAPE), dtype=np.float32)
    (got,) = _session(tmp_path / "bridge" / "decoder.onnx").run(None, {"latents": scaled})
    want = decoder.predict((scaled / SCALE).transpose(0, 2, 3, 1), verbose=0)
    assert np.max(np.abs(got - want)) <= 1e-4


def test_a_per_channel_latent_norm_is_undone_inside_the_decoder_graph(tmp_path):
    """`channel` norm: the exported decoder takes (z - shift) * scale and must equal Keras on z, channel by channel.
    Latents (4, 4, 4), as many channels as columns: a per-channel constant broadcast along the wrong axis (which
    Keras 3.15 did to a (1, z, 1, 1) constant on NCHW latents) would still have the right shape."""
    import keras

    from bridge.export import export_bridge
    from bridge.spec import BridgeSpec
    from vae.config import VAEConfig
    from vae.model import build_decoder, build_encoder

    cfg = VAEConfig(image_size=IMAGE_SIZE, base_channels=4, channel_mult=(1, 2, 2), z_channels=4, norm_groups=2)
    keras.utils.set_random_seed(5)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    scale, shift = (0.5, 4.0, 1.0, 2.0), (1.5, -0.25, 0.0, -2.0)
    norm = LatentNorm("channel", scale=scale, shift=shift)
    per_channel = [np.float32(v)[None, :, None, None] for v in (scale, shift)]
    real = np.random.default_rng(10).standard_normal((6, 4, 4, 4), dtype=np.float32) / per_channel[0] + per_channel[1]
    info = export_bridge(encoder, decoder, tmp_path / "bridge", latent_norm=norm, real_latents=real,
                         image_size=IMAGE_SIZE, channels=CHANNELS, vae_checkpoint="channel", num_random=8, batch=8)
    assert (info["latent_norm"], info["scale_factor"], info["shift_factor"]) == ("channel", list(scale), list(shift))
    assert BridgeSpec.read(tmp_path / "bridge").latent_norm == norm
    scaled = np.random.default_rng(11).standard_normal((3, 4, 4, 4), dtype=np.float32)
    (got,) = _session(tmp_path / "bridge" / "decoder.onnx").run(None, {"latents": scaled})
    want = decoder.predict((scaled / per_channel[0] + per_channel[1]).transpose(0, 2, 3, 1), verbose=0)
    assert np.max(np.abs(got - want)) <= 1e-4
    with pytest.raises(ValueError, match="latent_norm has 3 channels, the latents 4"):
        export_bridge(encoder, decoder, tmp_path / "b3", latent_norm=LatentNorm.identity(3), real_latents=real,
                      image_size=IMAGE_SIZE, channels=CHANNELS, vae_checkpoint="x")
