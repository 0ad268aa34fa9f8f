"""`LatentDiffusion`: a trained run as one object. Load it, call it, get images.

    pipe = LatentDiffusion.from_run("pretrained/fmnist")
    images, labels = pipe.sample(16, classes=[0, 3], seed=0)     # uint8 (16, 32, 32, 1), int64 (16,)

torch + onnxruntime only: loading and sampling never import TensorFlow or Keras. The command-line scripts
(`pipelines/sample.py`, `demo.py`, `tune_guidance.py`) go through this class, so there is one way a run is loaded,
guided and decoded.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffusion.checkpoints import latest_checkpoint
from diffusion.device import pick_device
from diffusion.respace import check_respacing, fit_default_respacing
from diffusion.sampling import (
    LoadedCheckpoint,
    check_guide,
    classifier_guidance,
    generate,
    load_classifier_checkpoint,
    load_diffusion_checkpoint,
    make_labels,
)
from diffusion.tuned_guidance import resolve_guidance
from keras_torch_ldm.settings import Samples, SampleSettings
from runfs import RunPaths
from runfs.errors import LineageError
from runfs.images import to_float, to_uint8
from runfs.lineage import check_bridge_for_model
from runfs.writable import check_writable, is_writable


class LatentDiffusion:
    """A run's diffusion model (EMA weights), its ONNX decoder and encoder, and its autoguidance model, if any.

    Build it with `from_run`. Attributes: `model` and `guide` (LoadedCheckpoint), `decoder` (bridge OnnxDecoder, or
    None for a pixel-space model), `device`, `backend`, `run`.
    """

    def __init__(self, model: LoadedCheckpoint, decoder, device: torch.device, run: RunPaths | None = None,
                 guide: LoadedCheckpoint | None = None, backend: str = "torch", device_name: str = "auto",
                 pixels: bool = False):
        self.model, self.decoder, self.device, self.run = model, decoder, device, run
        self.guide, self.backend, self.pixels = guide, backend, pixels
        self._device_name = device_name
        self._encoder = None
        self._classifier: LoadedCheckpoint | None = None

    @classmethod
    def from_run(cls, run: str | os.PathLike, *, device: str = "auto", backend: str = "torch",
                 checkpoint: str | os.PathLike | None = None, ema: str = "auto", guide: str | os.PathLike = "auto",
                 guide_ema: str = "auto", pixels: bool = False, decode_batch: int = 64,
                 allow_mismatch: bool = False) -> LatentDiffusion:
        """Load run folder `run` (a trained or a packed run such as pretrained/fmnist).

        device: "auto" (the GPU when torch sees one), "cpu", "cuda" or "cuda:N": the U-Net and the decoder.
        backend: "torch", or "onnx" to run the U-Net (and the guide) in onnxruntime, exported once and cached beside
            the checkpoint. checkpoint: a checkpoint folder (default: the newest in RUN/diffusion).
        ema: "auto" (the checkpoint's first EMA rate), a rate, or "none" (the raw weights).
        guide: "auto" (RUN/guide when the run has one), "none", or a checkpoint folder (autoguidance).
        pixels: a pixel-space model (RUN/pixel_diffusion): no decoder.
        allow_mismatch: warn instead of refusing when the bridge's VAE is not the one the model (or guide) was
            trained on (runfs.lineage).
        """
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        paths = RunPaths(run)
        if not paths.root.is_dir():
            raise FileNotFoundError(f"no run folder {paths.root}")
        torch_device = pick_device(device)
        root = paths.root / "pixel_diffusion" if pixels else paths.diffusion
        model = load_diffusion_checkpoint(checkpoint or root, ema=ema, device=torch_device)
        decoder = None if pixels else _load_decoder(paths, model, device, decode_batch)
        guide_model = _load_guide(guide, paths, model, torch_device, guide_ema, pixels)
        for loaded in (model, guide_model):
            _check_lineage(decoder, loaded, paths, allow_mismatch)
        if backend == "onnx":
            for loaded in (model, guide_model):
                if loaded is not None:
                    loaded.model = onnx_unet(loaded, device)
        return cls(model, decoder, torch_device, paths, guide_model, backend, device, pixels)

    # ---- sampling -------------------------------------------------------------------------------------------------

    def sample(self, num_samples: int, *, output: str = "numpy", **settings: Any) -> tuple[Any, np.ndarray | None]:
        """`num_samples` images -> (images, labels).

        images: uint8 (N, H, W, C) numpy, or a list of PIL images with output="pil"; labels: int64 (N,) or None
        (unconditional model). Settings (all optional, see SampleSettings): classes, class_label, sampler ("dpmpp",
        "ddim", "ddpm"), steps, timestep_respacing, eta, guidance_scale, guide_scale, guidance_interval,
        classifier_scale, seed, batch_size, lambda_min, progress. The same seed gives the same images.
        """
        if output not in ("numpy", "pil"):
            raise ValueError(f"output must be 'numpy' or 'pil', got {output!r}")
        result = self.generate(num_samples, **settings)
        if output == "pil":
            from PIL import Image

            return [Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x) for x in result.images], result.labels
        return result.images, result.labels

    def generate(self, num_samples: int, **settings: Any) -> Samples:
        """Like `sample`, returning a `Samples` record: images, labels, and what was done (`info`: the settings, the
        guidance and where it came from, the execution provider, seconds spent in the U-Net and the decoder)."""
        s = SampleSettings(**settings)
        self.check(num_samples, s)
        unet = self.model.unet
        labels = make_labels(num_samples, unet, s.class_label, s.classes)
        choice = self.guidance(s.guidance_scale, s.guide_scale)
        cond_fn = classifier_guidance(self.classifier(), s.classifier_scale, unet) if s.classifier_scale else None
        chunks, label_chunks, unet_s, decode_s = [], [], 0.0, 0.0
        tick = time.perf_counter()
        for x, y in generate(self.model, num_samples=num_samples, batch_size=s.batch_size, sampler=s.sampler,
                             timestep_respacing=self.respacing(s), eta=s.eta, labels=labels,
                             guidance_scale=choice.guidance_scale, guidance_interval=s.guidance_interval,
                             cond_fn=cond_fn, clip_denoised=self.pixels, seed=s.seed, device=self.device,
                             progress=s.progress, lambda_min=s.lambda_min, guide=self.guide,
                             guide_scale=choice.guide_scale):
            _sync(self.device)
            unet_s += time.perf_counter() - tick
            tick = time.perf_counter()
            chunks.append(to_uint8(self._to_images(x)))
            _sync(self.device)
            decode_s += time.perf_counter() - tick
            label_chunks.append(None if y is None else y.cpu().numpy())
            tick = time.perf_counter()
        info = {**s.describe(), "timestep_respacing": self.respacing(s), "guidance_scale": choice.guidance_scale,
                "guidance_source": choice.source,
                "guidance_note": choice.note, "guide_scale": choice.guide_scale, **self.info,
                "seconds": {"unet": unet_s, "decode": decode_s, "sampling_total": unet_s + decode_s}}
        return Samples(np.concatenate(chunks), None if labels is None else np.concatenate(label_chunks), info)

    def check(self, num_samples: int, settings: SampleSettings) -> None:
        """Refuse settings this pipeline cannot sample with, before any work (generate calls it)."""
        settings.check(num_samples)
        make_labels(num_samples, self.model.unet, settings.class_label, settings.classes)  # classes in range
        check_respacing(self.model.diffusion, self.respacing(settings), settings.lambda_min)
        if settings.guide_scale not in (None, 1.0) and self.guide is None:
            raise ValueError(f"guide_scale {settings.guide_scale} needs a guide model and this run has none (train "
                             "one with `python pipelines/train_diffusion.py --run DIR --guide`, or pass --guide "
                             "CHECKPOINT)")

    def respacing(self, settings: SampleSettings) -> str:
        """The respacing `settings` sample with on this model: as given, or the sampler's default with its step
        count capped at the timesteps the model has (a T=50 model samples "ddim46" at the default --lambda-min)."""
        if settings.steps is not None or settings.timestep_respacing is not None:
            return settings.respacing()
        return fit_default_respacing(self.model.diffusion, settings.respacing(), settings.lambda_min)

    def guidance(self, guidance_scale: float | None = None, guide_scale: float | None = None):
        """The scales sampling uses (diffusion.tuned_guidance.GuidanceChoice): those given, else the run's
        guidance.json (pipelines/tune_guidance.py) when it applies, else the built-in defaults."""
        # RUN/guidance.json is tuned for the latent model in RUN/diffusion, never for a pixel model.
        run_root = None if self.pixels or self.run is None else self.run.root
        return resolve_guidance(run_root, self.model.path.name, None if self.guide is None else self.guide.path.name,
                                self.model.unet.null_class, guidance_scale, guide_scale)

    def classifier(self) -> LoadedCheckpoint:
        """The run's noisy-input classifier (RUN/classifier, or RUN/pixel_classifier) for classifier guidance."""
        if self._classifier is None:
            if self.run is None:
                raise ValueError("classifier guidance needs a run folder holding a classifier")
            folder = self.run.root / ("pixel_classifier" if self.pixels else "classifier")
            self._classifier = load_classifier_checkpoint(folder, self.device)
        return self._classifier

    # ---- the autoencoder ------------------------------------------------------------------------------------------

    def decode(self, latents: torch.Tensor | np.ndarray) -> np.ndarray:
        """Scaled latents (N, z, h, w), as `encode` returns and the diffusion model samples -> uint8 (N, H, W, C)."""
        latents = torch.as_tensor(latents, dtype=torch.float32)
        return to_uint8(self._to_images(latents.to(self.device)))

    def encode(self, images: np.ndarray, sample_posterior: bool = False, seed: int = 0) -> np.ndarray:
        """uint8 (N, H, W, C) images (or float32 in [-1, 1]) -> scaled latents (N, z, h, w) through the exported
        encoder: the posterior mean, or a draw from the posterior (seeded) with sample_posterior=True."""
        if self.pixels or self.run is None:
            raise ValueError("encode needs a latent model's run with a bridge (RUN/bridge/encoder.onnx)")
        if self._encoder is None:
            from bridge.runtime import load_encoder  # torch + onnxruntime only

            self._encoder = load_encoder(self.run.root, self._device_name)
        images = np.asarray(images)
        floats = to_float(images) if images.dtype == np.uint8 else images.astype(np.float32)
        return self._encoder.encode(floats, np.random.default_rng(seed) if sample_posterior else None)

    def _to_images(self, x: torch.Tensor) -> np.ndarray:
        """Samples (N, C, H, W) -> float32 NHWC numpy in about [-1, 1]: decoded, or (pixel models) transposed."""
        if self.decoder is None:
            if not self.pixels:
                raise ValueError("this pipeline has no decoder")
            return x.permute(0, 2, 3, 1).float().cpu().numpy()
        return self.decoder.decode(x).float().cpu().numpy()

    @property
    def info(self) -> dict[str, Any]:
        """What was loaded: checkpoint, weights (EMA), guide, backend, device, decoder provider, latent shape."""
        unet, guide = self.model.unet, self.guide
        return {"checkpoint": str(self.model.path), "weights": self.model.weights, "backend": self.backend,
                "guide": None if guide is None else str(guide.path),
                "guide_weights": None if guide is None else guide.weights, "device": str(self.device),
                "decoder_provider": getattr(self.decoder, "provider", None),
                "decode_bound_from_device_memory": getattr(self.decoder, "bound_from_device_memory", None),
                "sample_shape": [unet.in_channels, unet.image_size, unet.image_size],
                "num_classes": unet.num_classes if unet.class_cond else None,
                "image_shape": None if self.decoder is None else
                [self.decoder.image_size, self.decoder.image_size, self.decoder.channels]}

    def __repr__(self) -> str:
        return f"LatentDiffusion({self.model.path}, device={self.device}, backend={self.backend})"


def _load_decoder(paths: RunPaths, model: LoadedCheckpoint, device: str, decode_batch: int):
    """The run's ONNX decoder; it must decode the latents the model samples."""
    from bridge.runtime import load_decoder  # torch + onnxruntime only

    decoder = load_decoder(paths.root, device=device, decode_batch=decode_batch)
    unet = model.unet
    expected = (unet.in_channels, unet.image_size, unet.image_size)
    if tuple(decoder.latent_shape) != expected:
        raise ValueError(f"{paths.bridge}/bridge.json decodes latents of shape {tuple(decoder.latent_shape)} "
                         f"but {model.path} samples {expected}: the diffusion model was trained on other "
                         "latents; re-export the bridge of the VAE that made them, or pick the right --run")
    return decoder


def _load_guide(spec: str | os.PathLike, paths: RunPaths, model: LoadedCheckpoint, device: torch.device,
                ema: str = "auto", pixels: bool = False) -> LoadedCheckpoint | None:
    """The autoguidance model of `spec`: a checkpoint, RUN/guide for 'auto' when it holds one (never for a pixel
    model), or None ('none')."""
    if spec == "none" or (spec == "auto" and (pixels or latest_checkpoint(paths.guide) is None)):
        return None
    guide = load_diffusion_checkpoint(paths.guide if spec == "auto" else spec, ema=ema, device=device)
    check_guide(model, guide)
    return guide


def _check_lineage(decoder, loaded: LoadedCheckpoint | None, paths: RunPaths, allow_mismatch: bool) -> None:
    """Refuse a bridge whose VAE or latent scale is not the one checkpoint `loaded` learnt (runfs.lineage); with
    `allow_mismatch` warn instead. No-op for pixel models (decoder None) or no guide."""
    if decoder is None or loaded is None:
        return
    try:
        check_bridge_for_model(decoder.spec.raw, decoder.spec.folder / "bridge.json", loaded.config, loaded.path,
                               paths.root)
    except LineageError as e:
        if not allow_mismatch:
            raise
        warnings.warn(f"allow_mismatch: {e}", RuntimeWarning, stacklevel=3)


def onnx_unet(loaded: LoadedCheckpoint, device: str):
    """The checkpoint's U-Net in onnxruntime, exported on first use to CHECKPOINT/<weights>.onnx and again whenever
    the weights file changed since (the export records the weights' digest)."""
    from bridge.unet_onnx import OnnxUNet, export_unet_onnx
    from runfs import file_digest

    unet = loaded.unet
    path = loaded.path / (loaded.weights.removesuffix(".safetensors") + ".onnx")
    digest = file_digest(loaded.path / loaded.weights)
    if not is_writable(loaded.path) and not path.is_file():  # a read-only checkpoint: cache in the user's cache
        path = check_writable(onnx_cache_dir(), "the ONNX export") / f"{loaded.path.name}_{digest}_{path.name}"
        print(f"{loaded.path} is not writable: caching the export in {path}", flush=True)
    if path.is_file():
        cached = OnnxUNet(path, device=device)
        if cached.source == digest:
            return cached
        print(f"{path} was exported from other weights than {loaded.weights}: re-exporting", flush=True)
    rows = (unet.num_classes + int(unet.null_class)) if unet.class_cond else None
    print(f"exporting the U-Net to {path} (once) ...", flush=True)
    export_unet_onnx(loaded.model.float(), path, (2, unet.in_channels, unet.image_size, unet.image_size), rows,
                     source=digest)
    return OnnxUNet(path, device=device)


def onnx_cache_dir() -> Path:
    """Where backend "onnx" caches the export of a read-only checkpoint: $XDG_CACHE_HOME/keras-torch-ldm/onnx."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "keras-torch-ldm" / "onnx"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)

