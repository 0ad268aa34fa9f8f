"""GroupNorm -> InstanceNormalization fusion of the exported graphs: complete, exact, and safe when it can't match."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from bridge.groupnorm import GroupNormSpec, fuse_group_norms
from runfs.latent_norm import LatentNorm
from tests.bridge.conftest import LATENT_SHAPE, SCALE, Z, build_tiny_vae


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _tiny_decoder_onnx(fuse: bool):
    """The tiny decoder's graph (fused or not) and its GroupNorm specs, traced under the export's layer names."""
    from bridge.export import _group_norm_layers, _group_norm_spec, _traced_names, to_onnx, wrap_decoder

    _, decoder = build_tiny_vae()
    wrapped = wrap_decoder(decoder, LatentNorm.uniform(SCALE, Z), LATENT_SHAPE)
    layers = _group_norm_layers(wrapped)
    with _traced_names(layers):
        return to_onnx(wrapped, ["images"], fuse_norms=fuse), [_group_norm_spec(layer) for layer in layers]


def test_every_group_norm_of_the_exported_halves_is_one_instance_norm(exported):
    for name, layers in (("decoder.onnx", 2), ("encoder.onnx", 2)):
        ops = _ops(onnx.load(exported.folder / name))
        assert ops.count("InstanceNormalization") == layers
        assert "ReduceMean" not in ops and "Sqrt" not in ops  # nothing of the primitive GroupNorm is left


def test_fused_graph_computes_the_same_images_with_fewer_nodes():
    plain, specs = _tiny_decoder_onnx(fuse=False)
    fused, _ = _tiny_decoder_onnx(fuse=True)
    assert len(specs) == 2 and any(np.abs(s.gamma - 1).max() > 0.1 for s in specs)  # real affine weights
    x = np.random.default_rng(3).standard_normal((7, *LATENT_SHAPE), dtype=np.float32)
    np.testing.assert_allclose(_run(fused, x), _run(plain, x), atol=1e-5, rtol=0)
    assert "ReduceMean" in _ops(plain) and "ReduceMean" not in _ops(fused)
    assert _ops(fused).count("InstanceNormalization") == len(specs)
    assert len(fused.graph.node) <= len(plain.graph.node) - 8 * len(specs)  # ~20 primitive ops become 8
    onnx.checker.check_model(fused, full_check=True)


def test_a_layer_that_does_not_match_is_left_as_it_was():
    plain, specs = _tiny_decoder_onnx(fuse=False)
    before = plain.SerializeToString()
    unknown = GroupNormSpec("no_such_layer", 4, 1e-3, np.ones(8, np.float32), np.zeros(8, np.float32))
    wrong_groups = GroupNormSpec(specs[0].name, 2, specs[0].epsilon, specs[0].gamma, specs[0].beta)
    assert fuse_group_norms(plain, [unknown, wrong_groups]) == []
    assert plain.SerializeToString() == before
    assert fuse_group_norms(plain, specs) == [s.name for s in specs]
