"""Sample images: noise -> respaced denoising (torch) -> decode (onnxruntime). No TensorFlow in this process.

`python pipelines/sample.py --run DIR` needs no other flag: it loads the newest checkpoint in DIR/diffusion (EMA
weights), the ONNX decoder in DIR/bridge, and writes DIR/samples/grid.png (a preview: one row per class for a
class-conditional model, at most 16 samples per row), samples_NxHxWxC.npz (arr_0 uint8 NHWC, arr_1 labels;
guided-diffusion's evaluator format) and info.json (settings, timings, execution provider). Same --seed, same images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from diffusion.checkpoints import latest_checkpoint
from diffusion.config import DEFAULT_GUIDANCE_SCALE, DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, DEFAULT_GUIDE_SCALE
from diffusion.device import pick_device
from diffusion.respace import DEFAULT_LAMBDA_MIN, check_respacing
from diffusion.sampling import (
    DEFAULT_RESPACING,
    check_guide,
    classifier_guidance,
    generate,
    load_classifier_checkpoint,
    load_diffusion_checkpoint,
    make_labels,
)
from diffusion.tuned_guidance import GUIDANCE_FILE, resolve_guidance
from pipelines.cli import (
    class_list,
    finite_float,
    make_parser,
    non_negative_int,
    number,
    positive_int,
    probability,
    respacing,
    run_main,
)
from pipelines.sample_output import save_samples
from runfs import RunPaths
from runfs.errors import LineageError
from runfs.lineage import check_bridge_for_model
from runfs.writable import check_writable, is_writable


def parse_args(argv: list[str] | None = None):
    p = make_parser(__doc__)
    p.add_argument("--run", required=True, help="run folder (DIR/diffusion, DIR/bridge)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: newest in DIR/diffusion)")
    p.add_argument("--num-samples", type=positive_int, default=64)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--sampler", default="ddim", choices=sorted(DEFAULT_RESPACING))
    p.add_argument("--timestep-respacing", default=None, type=respacing,
                   help="e.g. ddim50, 250, 10,10,10, trailing20 (default: ddim50 / 1000 steps for ddpm / "
                        "trailing20 for dpmpp)")
    p.add_argument("--lambda-min", type=number(float, allow_inf=True), default=DEFAULT_LAMBDA_MIN,
                   help="start sampling no noisier than this log-SNR: the respacing covers only those timesteps. "
                        "The default keeps every step of a linear schedule and drops the last few of a cosine "
                        "one, where an eps model's x0 error is amplified 20,000-fold; --lambda-min=-inf keeps all "
                        "(the reference)")
    p.add_argument("--eta", type=probability, default=0.0,
                   help="DDIM noise, in [0, 1] (0: deterministic; 1: as much as DDPM; above 1 DDIM's update is NaN)")
    p.add_argument("--class-label", type=non_negative_int, default=None, help="sample this class only")
    p.add_argument("--classes", default=None, type=class_list, help="comma list of classes to spread the samples over")
    p.add_argument("--guidance-scale", type=finite_float, default=None,
                   help=f"classifier-free guidance scale (1: none; default: the run's {GUIDANCE_FILE} when "
                        "pipelines/tune_guidance.py wrote one, else "
                        f"{DEFAULT_GUIDANCE_SCALE} for models with a null class, {DEFAULT_GUIDANCE_SCALE_WITH_GUIDE} "
                        "with a guide, else 1)")
    p.add_argument("--guidance-interval", default=None, type=_interval, metavar="LO,HI",
                   help="apply the guidance only at timesteps LO..HI of the model's T (e.g. 100,600 of 1000), "
                        "the conditional output elsewhere (default: at every step)")
    p.add_argument("--guide", default="auto", metavar="CHECKPOINT",
                   help="autoguidance (Karras et al. 2024) by a weaker model of the same latents: a checkpoint "
                        "folder or a checkpoint root; 'auto' (default): DIR/guide when the run has one; 'none': off")
    p.add_argument("--guide-scale", type=finite_float, default=None,
                   help=f"autoguidance scale (1: none; default: the run's {GUIDANCE_FILE}, else "
                        f"{DEFAULT_GUIDE_SCALE} when there is a guide); it adds to the classifier-free guidance, "
                        f"whose built-in default is then {DEFAULT_GUIDANCE_SCALE_WITH_GUIDE}")
    p.add_argument("--guide-ema", default="auto", help="the guide's EMA rate, 'auto' or 'none'")
    p.add_argument("--classifier-scale", type=finite_float, default=0.0,
                   help="classifier guidance with the classifier in DIR/classifier (0: off)")
    p.add_argument("--ema", default="auto", help="EMA rate to load, 'auto' (the first one) or 'none' (raw)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (the U-Net and the decoder)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="run the U-Net (and the guide) in torch, or export each to ONNX once (cached beside its "
                        "checkpoint) and run it in onnxruntime: sampling with onnxruntime alone")
    p.add_argument("--decode-batch", type=positive_int, default=64, help="decoder micro-batch (bounds memory)")
    p.add_argument("--pixels", action="store_true", help="a pixel-space model (DIR/pixel_diffusion), no decoder")
    p.add_argument("--out", default=None, help="output folder (default: DIR/samples)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="sample even when the bridge comes from another VAE or latent scale than the diffusion model "
                        "learnt (a warning instead of an error; for experts)")
    p.add_argument("--save-pngs", action="store_true", help="also write one PNG per sample")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run, started = RunPaths(args.run), time.perf_counter()
    try:
        check_writable(args.out or run.samples, "the samples")
        device = pick_device(args.device)
        root = run.root / "pixel_diffusion" if args.pixels else run.diffusion
        loaded = load_diffusion_checkpoint(args.checkpoint or root, ema=args.ema, device=device)
        unet = loaded.unet
        if args.backend == "onnx":
            loaded.model = onnx_unet(loaded, args.device)
        decoder = None
        if not args.pixels:
            from bridge.runtime import load_decoder  # torch + onnxruntime only

            decoder = load_decoder(run.root, device=args.device, decode_batch=args.decode_batch)
            expected = (unet.in_channels, unet.image_size, unet.image_size)
            if tuple(decoder.latent_shape) != expected:
                raise ValueError(f"{run.bridge}/bridge.json decodes latents of shape {tuple(decoder.latent_shape)} "
                                 f"but {loaded.path} samples {expected}: the diffusion model was trained on other "
                                 "latents; re-export the bridge of the VAE that made them, or pick the right --run")
            check_lineage(decoder, loaded, run, args.allow_mismatch)
        classes = [int(c) for c in args.classes.split(",")] if args.classes else None
        labels = make_labels(args.num_samples, unet, args.class_label, classes)
        guide = load_guide(args.guide, run, loaded, device, args.guide_ema, args.pixels)
        check_lineage(decoder, guide, run, args.allow_mismatch)
        if args.backend == "onnx" and guide is not None:
            guide.model = onnx_unet(guide, args.device)
        if args.guide_scale not in (None, 1.0) and guide is None:
            raise ValueError(f"--guide-scale {args.guide_scale} needs a guide model: {args.guide!r} gives none "
                             "(train one with `python pipelines/train_diffusion.py --run DIR --guide`, or pass "
                             "--guide CHECKPOINT)")
        cond_fn = None
        if args.classifier_scale:
            classifier = load_classifier_checkpoint(run.root / ("pixel_classifier" if args.pixels else "classifier"),
                                                    device)
            cond_fn = classifier_guidance(classifier, args.classifier_scale, unet)
        # RUN/guidance.json is tuned for the latent model in RUN/diffusion, never for a pixel model.
        choice = resolve_guidance(None if args.pixels else run.root, loaded.path.name,
                                  None if guide is None else guide.path.name, unet.null_class, args.guidance_scale,
                                  args.guide_scale)
        check_respacing(loaded.diffusion, args.timestep_respacing or DEFAULT_RESPACING[args.sampler], args.lambda_min)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if choice.note:
        print(f"note: {choice.note}", file=sys.stderr)
    guidance, guide_scale = choice.guidance_scale, choice.guide_scale
    ready = time.perf_counter()
    images, labels_np, unet_s, decode_s = sample_images(
        loaded, decoder, device, num_samples=args.num_samples, batch_size=args.batch_size, sampler=args.sampler,
        timestep_respacing=args.timestep_respacing, eta=args.eta, labels=labels, guidance_scale=guidance,
        guidance_interval=args.guidance_interval, cond_fn=cond_fn, clip_denoised=args.pixels, seed=args.seed,
        progress=not args.no_progress, lambda_min=args.lambda_min, guide=guide, guide_scale=guide_scale)
    info = {"checkpoint": str(loaded.path), "weights": loaded.weights, "backend": args.backend,
            "sampler": args.sampler,
            "timestep_respacing": args.timestep_respacing or DEFAULT_RESPACING[args.sampler],
            "lambda_min": args.lambda_min if np.isfinite(args.lambda_min) else None, "eta": args.eta,
            "guidance_scale": guidance, "guidance_source": choice.source, "guidance_interval": args.guidance_interval,
            "guide": None if guide is None else str(guide.path), "guide_weights": getattr(guide, "weights", None),
            "guide_scale": guide_scale,
            "classifier_scale": args.classifier_scale, "seed": args.seed,
            "device": str(device), "decoder_provider": getattr(decoder, "provider", None),
            "decode_bound_from_device_memory": getattr(decoder, "bound_from_device_memory", None),
            "seconds": {"startup": ready - started, "unet": unet_s, "decode": decode_s,
                        "sampling_total": unet_s + decode_s}}
    out = save_samples(args.out or run.samples, images, labels_np, info, unet.num_classes if labels is not None
                       else None, args.save_pngs)
    s = info["seconds"]
    print(f"{len(images)} samples in {s['sampling_total']:.2f} s after {s['startup']:.2f} s start-up "
          f"(U-Net {s['unet']:.2f} s, decode {s['decode']:.2f} s on {info['decoder_provider'] or str(device)}) "
          f"-> {out}")
    return 0


def sample_images(loaded, decoder, device: torch.device, **kwargs) -> tuple[np.ndarray, np.ndarray | None, float,
                                                                           float]:
    """`generate(loaded, device=device, **kwargs)` batch by batch, each batch decoded as it comes (pixel models:
    decoder None) -> (float (N, H, W, C) images in [-1, 1], labels or None, U-Net seconds, decode seconds)."""
    chunks, label_chunks, unet_s, decode_s = [], [], 0.0, 0.0
    tick = time.perf_counter()
    for x, y in generate(loaded, device=device, **kwargs):
        _sync(device)
        unet_s += time.perf_counter() - tick
        tick = time.perf_counter()
        images = decoder.decode(x) if decoder is not None else x.permute(0, 2, 3, 1)  # NHWC in [-1, 1]
        _sync(device)
        decode_s += time.perf_counter() - tick
        chunks.append(images.float().cpu().numpy())
        label_chunks.append(None if y is None else y.cpu().numpy())
        tick = time.perf_counter()
    labels = None if label_chunks[0] is None else np.concatenate(label_chunks)
    return np.concatenate(chunks), labels, unet_s, decode_s


def load_guide(spec: str, run: RunPaths, loaded, device, ema: str = "auto", pixels: bool = False):
    """The autoguidance model of --guide `spec`: a checkpoint, RUN/guide for 'auto' when it holds one (never for a
    pixel model), or None ('none')."""
    if spec == "none" or (spec == "auto" and (pixels or latest_checkpoint(run.guide) is None)):
        return None
    guide = load_diffusion_checkpoint(run.guide if spec == "auto" else spec, ema=ema, device=device)
    check_guide(loaded, guide)
    return guide


def check_lineage(decoder, loaded, run: RunPaths, allow_mismatch: bool = False) -> None:
    """Refuse a bridge whose VAE or latent scale is not the one checkpoint `loaded` learnt (runfs.lineage); with
    `allow_mismatch` print the problem as a warning instead. No-op for pixel models (decoder None) or no guide."""
    if decoder is None or loaded is None:
        return
    try:
        check_bridge_for_model(decoder.spec.raw, decoder.spec.folder / "bridge.json", loaded.config, loaded.path,
                               run.root)
    except LineageError as e:
        if not allow_mismatch:
            raise
        print(f"warning (--allow-mismatch): {e}", file=sys.stderr)


def _interval(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO,HI (two timesteps, e.g. 100,600)") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LO <= HI")
    return lo, hi


def onnx_unet(loaded, device: str):
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
    """Where --backend onnx caches the export of a read-only checkpoint: $XDG_CACHE_HOME/keras-torch-ldm/onnx."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "keras-torch-ldm" / "onnx"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(run_main(main))
