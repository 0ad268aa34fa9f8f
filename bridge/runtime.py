"""The exported VAE decoder under onnxruntime, fed from torch tensors (torch + onnxruntime + numpy only).

Importing this module never imports TensorFlow or Keras: it is the decode step of the sampling path.
The latents are bound by IOBinding straight from the torch tensor's memory into a pre-allocated torch output
(`bridge.binding.run_bound`): on CUDA no copy goes through host memory, on the CPU there is no copy at all.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

# torch must be imported before onnxruntime (see bridge.providers)
# isort: off
import torch
import onnxruntime as ort

# isort: on

from bridge.binding import run_bound
from bridge.providers import CPU_EP, CUDA_EP, ProviderError, open_session, resolve_provider
from bridge.spec import ENCODER_FILE, EXPORT_HINT, BridgeError, BridgeSpec, resolve_bridge_dir
from runfs import file_digest


class OnnxDecoder:
    """Decode SCALED NCHW latents (the diffusion model's output as it is) to NHWC images with onnxruntime.

    Attributes: `provider` (the execution provider really in use), `latent_shape` (z, h, w), `latent_norm`,
    `image_size`, `channels`, `bound_from_device_memory` (True when the last decode bound the caller's CUDA
    tensor by IOBinding, i.e. no copy through host memory).
    """

    def __init__(self, spec: BridgeSpec, session: ort.InferenceSession, decode_batch: int, device_id: int = 0):
        if decode_batch < 1:
            raise ValueError(f"decode_batch must be >= 1, got {decode_batch}")
        self.spec = spec
        self.session = session
        self.decode_batch = decode_batch
        self.device_id = device_id
        self.provider: str = session.get_providers()[0]
        self.latent_shape = spec.latent_shape
        self.latent_norm = spec.latent_norm
        self.image_size = spec.image_size
        self.channels = spec.channels
        self.bound_from_device_memory = False
        _check_session(spec, session)

    def _check_shape(self, latents: torch.Tensor) -> None:
        if latents.ndim != 4 or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"latents of shape {tuple(latents.shape)} do not fit the decoder in {self.spec.folder}: expected "
                f"(N, {', '.join(map(str, self.latent_shape))}) (NCHW, scaled), got {tuple(latents.shape)}. "
                "The diffusion model and the bridge come from different VAEs, or the layout is NHWC."
            )
        if not latents.is_floating_point():
            raise TypeError(f"latents must be a floating-point tensor, got {latents.dtype}")

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(N, z, h, w) scaled latents -> (N, S, S, C) float32 NHWC images (about [-1, 1]) on the latents' device."""
        self._check_shape(latents)
        on_cuda = self.provider == CUDA_EP
        device = torch.device(f"cuda:{self.device_id}") if on_cuda else torch.device("cpu")
        # A no-op (no copy) for a contiguous float32 tensor already on `device`: the usual case.
        x = latents.detach().to(device=device, dtype=torch.float32).contiguous()
        out = torch.empty((len(x), self.image_size, self.image_size, self.channels), dtype=torch.float32, device=device)
        for start in range(0, len(x), self.decode_batch):
            stop = min(start + self.decode_batch, len(x))
            # Dim-0 slices of contiguous tensors stay contiguous: bound in place, no copy.
            run_bound(self.session, {self.spec.input_name: x[start:stop]}, {self.spec.output_name: out[start:stop]})
        self.bound_from_device_memory = on_cuda and latents.is_cuda
        return out.to(latents.device)

    def __repr__(self) -> str:
        return (
            f"OnnxDecoder({self.spec.decoder_path}, provider={self.provider}, latent_shape={self.latent_shape}, "
            f"{self.latent_norm.describe()}, images={self.image_size}x{self.image_size}x{self.channels})"
        )


def _check_session(spec: BridgeSpec, session: ort.InferenceSession) -> None:
    """bridge.json and the ONNX graph must agree on names and shapes (a file swapped in from another export)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    got_in = [(i.name, list(i.shape[1:])) for i in inputs]
    want_in = [(spec.input_name, list(spec.latent_shape))]
    got_out = [o.name for o in outputs]
    if got_in != want_in or got_out != [spec.output_name]:
        raise BridgeError(
            f"{spec.decoder_path} does not match {spec.folder / 'bridge.json'}: the graph has inputs {got_in} and "
            f"outputs {got_out}, bridge.json promises {want_in} -> {[spec.output_name]}; {EXPORT_HINT}"
        )


def load_decoder(
    bridge_or_run_dir: str | os.PathLike,
    device: str = "auto",
    decode_batch: int = 64,
    intra_op_threads: int | None = None,
) -> OnnxDecoder:
    """Open DIR/bridge/decoder.onnx (or BRIDGE_DIR/decoder.onnx) on `device` ("auto", "cpu" or "cuda").

    "auto" takes the CUDA provider when torch sees a GPU and onnxruntime has it, else the CPU; it falls back to the
    CPU with a warning when the CUDA provider fails to load. "cuda" raises instead, saying what is missing.
    """
    spec = BridgeSpec.read(resolve_bridge_dir(bridge_or_run_dir))
    path = spec.decoder_path
    if not path.is_file():
        raise BridgeError(f"{path} is missing (bridge.json is there, the decoder is not): {EXPORT_HINT}")
    provider = resolve_provider(device)
    device_id = torch.cuda.current_device() if provider == CUDA_EP else 0
    try:
        session = _open(path, provider, device_id, intra_op_threads)
    except ProviderError as e:
        if device != "auto" or provider == CPU_EP:
            raise
        warnings.warn(f"{e}; decoding on the CPU instead", RuntimeWarning, stacklevel=2)
        provider, session = CPU_EP, _open(path, CPU_EP, 0, intra_op_threads)
    # After opening: a truncated file gets the clearer "corrupt" message from _open.
    _check_digest(path, spec.decoder_digest)
    return OnnxDecoder(spec, session, decode_batch, device_id)


def load_encoder(bridge_or_run_dir: str | os.PathLike, device: str = "auto",
                 encode_batch: int = 64) -> OnnxEncoder:
    """Open the bridge's encoder.onnx (checked against bridge.json like the decoder) on `device`."""
    spec = BridgeSpec.read(resolve_bridge_dir(bridge_or_run_dir))
    path = spec.folder / spec.raw.get("encoder", {}).get("file", ENCODER_FILE)
    if not path.is_file():
        raise BridgeError(f"{path} is missing: {EXPORT_HINT}")
    session = _open(path, resolve_provider(device), 0, None)
    _check_digest(path, spec.raw["encoder"].get("digest"))
    return OnnxEncoder(spec, session, encode_batch)


class OnnxEncoder:
    """Encode NHWC images to SCALED NCHW latents (what the diffusion model works on) with onnxruntime.

    The graph gives the posterior's mean and log-variance (N, z, h, w), unscaled; `encode` scales them with the
    bridge's latent normalisation, the same one the latents the diffusion model was trained on carry.
    """

    def __init__(self, spec: BridgeSpec, session: ort.InferenceSession, encode_batch: int = 64):
        if encode_batch < 1:
            raise ValueError(f"encode_batch must be >= 1, got {encode_batch}")
        self.spec, self.session, self.encode_batch = spec, session, encode_batch
        self.provider: str = session.get_providers()[0]

    def posterior(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """float32 (N, S, S, C) NHWC in [-1, 1] -> (mean, logvar), each (N, z, h, w), unscaled."""
        expected = (self.spec.image_size, self.spec.image_size, self.spec.channels)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"the VAE in {self.spec.folder} encodes images of shape (N, {shape}) (NHWC), got "
                             f"{tuple(images.shape)}: use the image size and channels the VAE was trained on")
        means, logvars = [], []
        for start in range(0, len(images), self.encode_batch):
            batch = np.ascontiguousarray(images[start:start + self.encode_batch], dtype=np.float32)
            mean, logvar = self.session.run(["mean", "logvar"], {"images": batch})
            means.append(mean)
            logvars.append(logvar)
        return np.concatenate(means), np.concatenate(logvars)

    def encode(self, images: np.ndarray, generator: np.random.Generator | None = None) -> np.ndarray:
        """float32 NHWC images in [-1, 1] -> scaled latents (N, z, h, w): the posterior mean, or a draw from the
        posterior when a `generator` is given."""
        mean, logvar = self.posterior(images)
        if generator is not None:
            mean = mean + np.exp(0.5 * logvar) * generator.standard_normal(mean.shape, dtype=np.float32)
        return self.spec.latent_norm.apply(mean).astype(np.float32)


def _check_digest(path: Path, expected: str | None) -> None:
    digest = file_digest(path)
    if digest != expected:
        raise BridgeError(
            f"{path} does not match bridge.json (digest {digest} != {expected}): the file was "
            f"changed or comes from another export; {EXPORT_HINT}"
        )


def _open(path: Path, provider: str, device_id: int, intra_op_threads: int | None) -> ort.InferenceSession:
    try:
        return open_session(path, provider, device_id, intra_op_threads)
    except ProviderError:
        raise
    except Exception as e:  # onnxruntime's InvalidProtobuf / Fail / InvalidGraph for a damaged file
        raise BridgeError(
            f"{path} is not a loadable ONNX model ({type(e).__name__}: {str(e).strip()[:300]}): the file is "
            f"corrupt or truncated; {EXPORT_HINT}"
        ) from e
