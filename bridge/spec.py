"""The bridge folder's contract: file names and `bridge.json`, read and checked (stdlib + runfs only, no TF).

`DIR/bridge/` holds decoder.onnx, encoder.onnx and bridge.json (written by `bridge.export.export_bridge`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runfs import RunPaths, read_json
from runfs.latent_norm import LatentNorm
from runfs.leftovers import recover

DECODER_FILE = "decoder.onnx"
ENCODER_FILE = "encoder.onnx"
BRIDGE_JSON = "bridge.json"
FORMAT_VERSION = 1
EXPORT_HINT = "run `python pipelines/export.py --run RUN_DIR` (after training the VAE and encoding the latents)"


class BridgeError(RuntimeError):
    """The bridge folder is missing, incomplete, corrupt or inconsistent; the message names the file and the fix."""


def resolve_bridge_dir(path: str | os.PathLike) -> Path:
    """Accept a bridge folder (holding bridge.json) or a run folder (holding bridge/); return the bridge folder."""
    path = Path(path)
    recover(path)  # a replace killed halfway leaves .bridge.old: put it back
    if (path / BRIDGE_JSON).is_file() or (path / DECODER_FILE).is_file():
        return path
    bridge = RunPaths(path).bridge
    recover(bridge)
    if bridge.is_dir():
        return bridge
    if not path.exists():
        raise BridgeError(f"{path} does not exist: give a run folder (with bridge/) or a bridge folder")
    raise BridgeError(f"no ONNX bridge in {path} (neither {bridge} nor {path / BRIDGE_JSON} exists): {EXPORT_HINT}")


@dataclass(frozen=True)
class BridgeSpec:
    """What bridge.json promises about the exported decoder.

    latent_shape: (z, h, w) of the decoder input `latents` (N, z, h, w), NCHW, scaled by `latent_norm`.
    Output `images` is (N, image_size, image_size, channels) NHWC in about [-1, 1].
    """

    folder: Path
    decoder_file: str
    decoder_digest: str
    input_name: str
    output_name: str
    latent_shape: tuple[int, int, int]
    latent_norm: LatentNorm
    image_size: int
    channels: int
    vae_checkpoint: str
    raw: dict[str, Any]

    @property
    def decoder_path(self) -> Path:
        return self.folder / self.decoder_file

    @classmethod
    def read(cls, folder: str | os.PathLike) -> BridgeSpec:
        """Read `folder/bridge.json`; a clear BridgeError when it is missing, malformed or incomplete."""
        folder = Path(folder)
        path = folder / BRIDGE_JSON
        if not path.is_file():
            raise BridgeError(f"{path} is missing (the bridge folder is incomplete): {EXPORT_HINT}")
        try:
            raw = read_json(path)
        except ValueError as e:
            raise BridgeError(f"{e}; {EXPORT_HINT}") from e
        try:
            decoder = raw["decoder"]
            (input_name, input_info), = decoder["inputs"].items()
            (output_name, _), = decoder["outputs"].items()
            spec = cls(
                folder=folder,
                decoder_file=str(decoder["file"]),
                decoder_digest=str(decoder["digest"]),
                input_name=str(input_name),
                output_name=str(output_name),
                latent_shape=tuple(int(d) for d in raw["latent_shape"]),
                latent_norm=LatentNorm.from_meta(raw, int(raw["latent_shape"][0])),
                image_size=int(raw["image_size"]),
                channels=int(raw["channels"]),
                vae_checkpoint=str(raw.get("vae_checkpoint", "")),
                raw=raw,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            problem = f"{type(e).__name__}: {e}"
            raise BridgeError(f"{path} lacks a field or holds a bad value ({problem}): {EXPORT_HINT}") from e
        if len(spec.latent_shape) != 3 or list(input_info["shape"][1:]) != list(spec.latent_shape):
            raise BridgeError(
                f"{path} is inconsistent: latent_shape {list(spec.latent_shape)} vs decoder input shape "
                f"{input_info['shape']}; {EXPORT_HINT}"
            )
        return spec
