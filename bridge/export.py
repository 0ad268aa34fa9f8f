"""Keras VAE -> ONNX: the decoder (scaled NCHW latents in) and the encoder (NHWC images in), checked for parity.

This module needs Keras + TensorFlow + tf2onnx; the sampling path never imports it (see `bridge.runtime`).

The exported decoder takes the diffusion model's output as it is: `latents` (N, z, h, w) float32, NCHW, scaled as
(z - shift) * scale (runfs.latent_norm). The graph undoes that and transposes to NHWC before the Keras decoder, so
the scale is undone in exactly this one place. The export writes `decoder.onnx`, `encoder.onnx` and `bridge.json`
into one folder atomically, and only when onnxruntime reproduces Keras to `tolerance` on random and on real latents.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

from bridge.groupnorm import GroupNormSpec, fuse_group_norms
from bridge.spec import BRIDGE_JSON, DECODER_FILE, ENCODER_FILE, FORMAT_VERSION
from runfs import atomic_dir, file_digest, versions, write_json
from runfs.latent_norm import LatentNorm

PARITY_TOLERANCE = 1e-4
DEFAULT_OPSET = 17
BATCH_DIM = "batch"


class ParityError(RuntimeError):
    """onnxruntime does not reproduce the Keras model within the tolerance: nothing was written."""


def wrap_decoder(decoder: keras.Model, latent_norm: LatentNorm, latent_shape: tuple[int, int, int]) -> keras.Model:
    """Decoder over the diffusion model's output: `latents` (N, z, h, w) scaled NCHW -> images (N, S, S, C) NHWC."""
    latents = keras.Input(shape=tuple(latent_shape), name="latents", dtype="float32")
    # The one place the scale is undone (docs/design.md): the diffusion model works on (z - shift) * scale.
    nhwc = keras.ops.transpose(latents, (0, 2, 3, 1))  # (N, h, w, z)
    if latent_norm.mode == "global":  # one Div by a scalar, as before per-channel norms existed
        unscaled = nhwc / np.float32(latent_norm.scale[0])
    else:
        # Per channel on the last axis: a (1, z, 1, 1) constant added to NCHW latents came out of Keras 3.15's
        # graph broadcast along the last axis instead (measured; the parity check caught it).
        shift, scale = (np.asarray(v, np.float32) for v in (latent_norm.shift, latent_norm.scale))
        unscaled = nhwc / scale + shift
    return keras.Model(latents, decoder(unscaled), name="bridge_decoder")


def wrap_encoder(encoder: keras.Model, image_size: int, channels: int) -> keras.Model:
    """Encoder as exported: `images` (N, S, S, C) NHWC in [-1, 1] -> (mean, logvar) each (N, z, h, w) NCHW, unscaled."""
    images = keras.Input(shape=(image_size, image_size, channels), name="images", dtype="float32")
    mean, logvar = encoder(images)
    to_nchw = (0, 3, 1, 2)
    return keras.Model(images, [keras.ops.transpose(mean, to_nchw), keras.ops.transpose(logvar, to_nchw)])


def _rename_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """Give the graph outputs stable names (tf2onnx calls them `Identity:0`, ...) and name the batch axis."""
    graph = model.graph
    if len(graph.output) != len(names):
        raise RuntimeError(f"the converted graph has {len(graph.output)} outputs, expected {len(names)} ({names})")
    renames = {out.name: new for out, new in zip(graph.output, names, strict=True)}
    for node in graph.node:
        node.output[:] = [renames.get(n, n) for n in node.output]
        node.input[:] = [renames.get(n, n) for n in node.input]
    for value in list(graph.output) + list(graph.input):
        value.name = renames.get(value.name, value.name)
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIM


def to_onnx(model: keras.Model, output_names: list[str], opset: int = DEFAULT_OPSET,
            fuse_norms: bool = True) -> onnx.ModelProto:
    """Convert a single-input functional Keras model (batch axis dynamic); the input keeps the Keras input's name.

    With `fuse_norms`, each GroupNormalization becomes one InstanceNormalization kernel (bridge.groupnorm)."""
    spec = model.inputs[0]
    signature = [tf.TensorSpec((None, *spec.shape[1:]), tf.float32, name=spec.name)]

    @tf.function(input_signature=signature)
    def forward(x: tf.Tensor) -> list[tf.Tensor]:
        outputs = model(x, training=False)
        return list(outputs) if isinstance(outputs, list | tuple) else [outputs]

    norms = _group_norm_layers(model) if fuse_norms else []
    with _traced_names(norms):
        proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=opset)
        specs = [_group_norm_spec(layer) for layer in norms]
    _rename_outputs(proto, output_names)
    fuse_group_norms(proto, specs)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _group_norm_layers(model: keras.Model) -> list[keras.layers.GroupNormalization]:
    """Every channels-last GroupNormalization layer inside `model`, nested models included."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.GroupNormalization) and layer.axis in (-1, 3)]


@contextlib.contextmanager
def _traced_names(layers: list[keras.layers.Layer]):
    """Give `layers` names that no other layer's TensorFlow name scope can be mistaken for while tracing
    (Keras' own "group_normalization" and "group_normalization_1" are ambiguous once TF appends "_1")."""
    original = [layer.name for layer in layers]
    try:
        for i, layer in enumerate(layers):
            layer.name = f"groupnorm{i}x"
        yield
    finally:
        for layer, name in zip(layers, original, strict=True):
            layer.name = name


def _group_norm_spec(layer: keras.layers.GroupNormalization) -> GroupNormSpec:
    channels = int(layer.input.shape[-1])
    gamma = layer.gamma.numpy() if layer.scale else np.ones(channels, np.float32)
    beta = layer.beta.numpy() if layer.center else np.zeros(channels, np.float32)
    return GroupNormSpec(layer.name, int(layer.groups), float(layer.epsilon), np.asarray(gamma), np.asarray(beta))


def _predict(model: keras.Model, x: np.ndarray, batch: int) -> list[np.ndarray]:
    out = model.predict(x, batch_size=batch, verbose=0)
    return [np.asarray(o) for o in out] if isinstance(out, list | tuple) else [np.asarray(out)]


def _max_abs_diff(path: Path, inputs: np.ndarray, expected: list[np.ndarray], batch: int) -> float:
    """Largest |onnxruntime (CPU) - expected| over every output, run in batches of `batch`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outputs = [session.run(None, {name: inputs[i : i + batch]}) for i in range(0, len(inputs), batch)]
    got = [np.concatenate([o[k] for o in outputs]) for k in range(len(expected))]
    return max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=True))


def export_bridge(
    encoder: keras.Model,
    decoder: keras.Model,
    out_dir: str | os.PathLike,
    *,
    latent_norm: LatentNorm,
    real_latents: np.ndarray,
    image_size: int,
    channels: int,
    vae_checkpoint: str,
    latents_digest: str = "",
    num_random: int = 64,
    tolerance: float = PARITY_TOLERANCE,
    opset: int = DEFAULT_OPSET,
    batch: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """Export encoder and decoder to `out_dir` (decoder.onnx, encoder.onnx, bridge.json) after a parity check.

    real_latents: (N, z, h, w) float32 NCHW, UNSCALED encoder means (e.g. a few hundred from latents/val_mean.npy).
    Decoder parity compares onnxruntime on `latent_norm.apply(latents)` with Keras `decoder(latents)` in NHWC, on
    `num_random` standard-normal latents (in the scaled space the diffusion model samples) and on `real_latents`.
    Encoder parity uses uniform random images in [-1, 1] and the decoder's images of the real latents.
    Raises ParityError (and writes nothing) when any difference exceeds `tolerance`. Returns bridge.json's dict.
    """
    real_latents = np.ascontiguousarray(real_latents, dtype=np.float32)
    if real_latents.ndim != 4 or len(real_latents) == 0:
        raise ValueError(f"real_latents must be (N, z, h, w) NCHW with N > 0, got shape {real_latents.shape}")
    latent_shape = tuple(int(d) for d in real_latents.shape[1:])
    if latent_norm.channels != latent_shape[0]:
        raise ValueError(f"latent_norm has {latent_norm.channels} channels, the latents {latent_shape[0]}")
    rng = np.random.default_rng(seed)

    def keras_decode(unscaled_nchw: np.ndarray) -> np.ndarray:  # the reference: Keras on NHWC, unscaled latents
        return _predict(decoder, np.ascontiguousarray(unscaled_nchw.transpose(0, 2, 3, 1)), batch)[0]

    random_scaled = rng.standard_normal((num_random, *latent_shape), dtype=np.float32)
    real_images = keras_decode(real_latents)
    random_images = rng.uniform(-1.0, 1.0, (num_random, image_size, image_size, channels)).astype(np.float32)

    def keras_encode(images: np.ndarray) -> list[np.ndarray]:
        return [np.ascontiguousarray(o.transpose(0, 3, 1, 2)) for o in _predict(encoder, images, batch)]

    encoder_onnx = to_onnx(wrap_encoder(encoder, image_size, channels), ["mean", "logvar"], opset)
    decoder_onnx = to_onnx(wrap_decoder(decoder, latent_norm, latent_shape), ["images"], opset)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        onnx.save(decoder_onnx, tmp / DECODER_FILE)
        onnx.save(encoder_onnx, tmp / ENCODER_FILE)
        clipped_real = np.clip(real_images, -1.0, 1.0)
        parity = {
            "tolerance": tolerance,
            "provider": "CPUExecutionProvider",
            "num_random": num_random,
            "num_real": len(real_latents),
            "decoder_random": _max_abs_diff(
                tmp / DECODER_FILE, random_scaled, [keras_decode(latent_norm.undo(random_scaled))], batch
            ),
            "decoder_real": _max_abs_diff(tmp / DECODER_FILE, latent_norm.apply(real_latents), [real_images], batch),
            "encoder_random": _max_abs_diff(tmp / ENCODER_FILE, random_images, keras_encode(random_images), batch),
            "encoder_real": _max_abs_diff(tmp / ENCODER_FILE, clipped_real, keras_encode(clipped_real), batch),
        }
        failed = {k: v for k, v in parity.items() if k.startswith(("decoder_", "encoder_")) and not v <= tolerance}
        if failed:
            raise ParityError(
                f"ONNX export does not reproduce Keras: max abs differences {failed} exceed {tolerance:g}; "
                f"nothing was written to {out_dir}. Try another --opset, or report the layer that differs."
            )
        info = _bridge_info(tmp, latent_shape, latent_norm, image_size, channels, vae_checkpoint, opset, parity)
        info["latents_digest"] = latents_digest  # lineage: the latents whose scale the decoder applies
        info["ir_version"] = int(decoder_onnx.ir_version)
        write_json(tmp / BRIDGE_JSON, info)
    return info


def _bridge_info(
    folder: Path,
    latent_shape: tuple[int, int, int],
    latent_norm: LatentNorm,
    image_size: int,
    channels: int,
    vae_checkpoint: str,
    opset: int,
    parity: dict[str, Any],
) -> dict[str, Any]:
    image_shape = [None, image_size, image_size, channels]
    nchw_latents = [None, *latent_shape]
    return {
        "format_version": FORMAT_VERSION,
        "decoder": {
            "file": DECODER_FILE,
            "digest": file_digest(folder / DECODER_FILE),
            "inputs": {"latents": {"shape": nchw_latents, "layout": "NCHW", "scaled": True}},
            "outputs": {"images": {"shape": image_shape, "layout": "NHWC", "range": "about [-1, 1], not clipped"}},
        },
        "encoder": {
            "file": ENCODER_FILE,
            "digest": file_digest(folder / ENCODER_FILE),
            "inputs": {"images": {"shape": image_shape, "layout": "NHWC", "range": "[-1, 1]"}},
            "outputs": {
                "mean": {"shape": nchw_latents, "layout": "NCHW", "scaled": False},
                "logvar": {"shape": nchw_latents, "layout": "NCHW", "scaled": False},
            },
        },
        "dtype": "float32",
        **latent_norm.to_meta(),
        "latent_shape": list(latent_shape),
        "image_size": int(image_size),
        "channels": int(channels),
        "opset": int(opset),
        "vae_checkpoint": vae_checkpoint,
        "versions": versions("onnx", "onnxruntime", "tf2onnx", "keras", "tensorflow", "numpy"),
        "parity": parity,
    }
