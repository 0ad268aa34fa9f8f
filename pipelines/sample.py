"""Sample images: noise -> respaced denoising (torch) -> decode (onnxruntime). No TensorFlow in this process.

`python pipelines/sample.py --run DIR` needs no other flag: it loads the newest checkpoint in DIR/diffusion (EMA
weights), the ONNX decoder in DIR/bridge, and writes DIR/samples/grid.png (a preview: one row per class for a
class-conditional model, at most 16 samples per row), samples_NxHxWxC.npz (arr_0 uint8 NHWC, arr_1 labels;
guided-diffusion's evaluator format) and info.json (settings, timings, execution provider). Same --seed, same images.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from diffusion.config import DEFAULT_GUIDANCE_SCALE, DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, DEFAULT_GUIDE_SCALE
from diffusion.respace import DEFAULT_LAMBDA_MIN
from diffusion.sampling import DEFAULT_RESPACING
from diffusion.tuned_guidance import GUIDANCE_FILE
from keras_torch_ldm import LatentDiffusion, SampleSettings
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
from runfs.writable import check_writable


def parse_args(argv: list[str] | None = None):
    p = make_parser(__doc__)
    p.add_argument("--run", required=True, help="run folder (DIR/diffusion, DIR/bridge)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: newest in DIR/diffusion)")
    p.add_argument("--num-samples", type=positive_int, default=64)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--sampler", default="ddim", choices=sorted(DEFAULT_RESPACING))
    p.add_argument("--timestep-respacing", default=None, type=respacing,
                   help="e.g. ddim50, 250, 10,10,10, trailing20 (default: ddim50 / every step for ddpm / "
                        "trailing20 for dpmpp, capped at the steps the model has)")
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
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (the U-Net and the decoder)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="run the U-Net (and the guide) in torch, or export each to ONNX once (cached beside its "
                        "checkpoint) and run it in onnxruntime: sampling with onnxruntime alone")
    p.add_argument("--decode-batch", type=positive_int, default=64, help="decoder micro-batch (bounds memory)")
    p.add_argument("--pixels", action="store_true", help="a pixel-space model (DIR/pixel_diffusion), no decoder")
    p.add_argument("--out", default=None, help="output folder (default: DIR/samples; with --pixels DIR/pixel_samples)")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="sample even when the bridge comes from another VAE or latent scale than the diffusion model "
                        "learnt (a warning instead of an error; for experts)")
    p.add_argument("--save-pngs", action="store_true", help="also write one PNG per sample")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run, started = RunPaths(args.run), time.perf_counter()
    args.out = args.out or (run.pixel_samples if args.pixels else run.samples)
    try:
        check_writable(args.out, "the samples")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            pipe = LatentDiffusion.from_run(run.root, device=args.device, backend=args.backend,
                                            checkpoint=args.checkpoint, ema=args.ema, guide=args.guide,
                                            guide_ema=args.guide_ema, pixels=args.pixels,
                                            decode_batch=args.decode_batch, allow_mismatch=args.allow_mismatch)
        for w in caught:  # the lineage mismatches --allow-mismatch let through
            print(f"warning (--allow-mismatch): {str(w.message).removeprefix('allow_mismatch: ')}", file=sys.stderr)
        settings = SampleSettings(
            classes=[int(c) for c in args.classes.split(",")] if args.classes else None, class_label=args.class_label,
            sampler=args.sampler, timestep_respacing=args.timestep_respacing, eta=args.eta,
            guidance_scale=args.guidance_scale, guide_scale=args.guide_scale, guidance_interval=args.guidance_interval,
            classifier_scale=args.classifier_scale, seed=args.seed, batch_size=args.batch_size,
            lambda_min=args.lambda_min, progress=not args.no_progress)
        pipe.check(args.num_samples, settings)
        if args.classifier_scale:
            pipe.classifier()  # a missing or mismatched classifier fails here, before sampling
        note = pipe.guidance(args.guidance_scale, args.guide_scale).note
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if note:
        print(f"note: {note}", file=sys.stderr)
    ready = time.perf_counter()
    result = pipe.generate(args.num_samples, **vars(settings))
    info = result.info
    info["seconds"]["startup"] = ready - started
    unet = pipe.model.unet
    out = save_samples(args.out, result.images, result.labels, info,
                       unet.num_classes if result.labels is not None else None, args.save_pngs)
    s = info["seconds"]
    print(f"{len(result.images)} samples in {s['sampling_total']:.2f} s after {s['startup']:.2f} s start-up "
          f"(U-Net {s['unet']:.2f} s, decode {s['decode']:.2f} s on {info['decoder_provider'] or info['device']}) "
          f"-> {out}")
    return 0


def _interval(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not LO,HI (two timesteps, e.g. 100,600)") from None
    if not 0 <= lo <= hi:
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= LO <= HI")
    return lo, hi


if __name__ == "__main__":
    sys.exit(run_main(main))
