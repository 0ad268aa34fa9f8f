"""VAE reconstruction quality through the exported ONNX encoder + decoder (torch + onnxruntime, no TensorFlow).

images -> encoder.onnx (posterior mean, unscaled) -> scaled (latent_norm) -> decoder.onnx -> images; PSNR and SSIM
(skimage.metrics) per image on uint8 pixels, averaged: what the sampling path's decoder can reproduce at best.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from tqdm import tqdm

from bridge.runtime import load_decoder, load_encoder
from runfs.images import to_float, to_uint8

PSNR_CAP_DB = 100.0


@dataclass(frozen=True)
class ReconResult:
    """Mean (and std over images) PSNR in dB and SSIM of `num_images` reconstructions."""

    psnr: float
    psnr_std: float
    ssim: float
    ssim_std: float
    num_images: int

    def to_dict(self) -> dict:
        return asdict(self)


def reconstruct(run_dir: str | os.PathLike, images: np.ndarray, device: str = "auto", batch_size: int = 256,
                progress: bool = True) -> np.ndarray:
    """uint8 (N, S, S, C) -> uint8 (N, S, S, C) through DIR/bridge/encoder.onnx and decoder.onnx."""
    decoder = load_decoder(run_dir, device=device, decode_batch=batch_size)
    spec = decoder.spec
    expected = (spec.image_size, spec.image_size, spec.channels)
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"the VAE in {spec.folder} takes {expected} images but the real images are "
                         f"{tuple(images.shape[1:])}: evaluate with the dataset and size the VAE was trained on")
    encoder = load_encoder(run_dir, device, encode_batch=batch_size)
    out = []
    for s in tqdm(range(0, len(images), batch_size), desc="reconstructing", unit="batch", leave=False,
                  disable=not progress):
        scaled = encoder.encode(to_float(images[s:s + batch_size]))  # the posterior mean, scaled as the latents
        out.append(to_uint8(decoder.decode(torch.from_numpy(scaled)).cpu().numpy()))
    return np.concatenate(out)


def reconstruction_metrics(originals: np.ndarray, reconstructions: np.ndarray) -> ReconResult:
    """Per-image PSNR (data range 255) and SSIM (7x7 window, or the image size when smaller; odd) averaged."""
    side = min(originals.shape[1:3])
    window = min(7, side if side % 2 else side - 1)
    with np.errstate(divide="ignore"):  # an exact copy: MSE 0, capped below
        psnr = np.array([peak_signal_noise_ratio(a, b, data_range=255)
                         for a, b in zip(originals, reconstructions, strict=True)])
    ssim = np.array([structural_similarity(a, b, data_range=255, channel_axis=-1, win_size=window)
                     for a, b in zip(originals, reconstructions, strict=True)])
    psnr = np.minimum(psnr, PSNR_CAP_DB)  # an exact copy has infinite PSNR; keep the mean finite
    return ReconResult(float(psnr.mean()), float(psnr.std()), float(ssim.mean()), float(ssim.std()), len(psnr))
