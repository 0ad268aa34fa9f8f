"""Evaluate samples: FID and KID against real images, class accuracy, VAE reconstruction PSNR/SSIM.

`python pipelines/evaluate.py --run DIR` compares the newest DIR/samples/samples_NxHxWxC.npz with the real test
images and writes DIR/eval/eval.json and eval.md. Features come from InceptionV3 when its Keras weights file is
already on this disk (never downloaded), else from the project's own classifier of the dataset's classes, trained
once and cached under --cache-dir (a few minutes on a CPU). `--floor` measures real train vs real test images with
the same features: the best score a model can reach; `--vae-floor` passes those train images through the run's VAE
first: the best a latent model with that VAE can reach. No TensorFlow in this process unless InceptionV3 is used.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipelines.cli import make_parser, non_negative_int, positive_int, run_main
from pipelines.evaluation import EvalConfig, evaluate, write_report
from pipelines.evaluation.features import KINDS
from runfs import RunPaths


def parse_args(argv: list[str] | None = None):
    p = make_parser(__doc__)
    p.add_argument("--run", default=None, help="run folder: samples from DIR/samples, VAE from DIR/bridge")
    p.add_argument("--samples", default=None, help="a samples npz (default: the newest in DIR/samples)")
    p.add_argument("--data", default=None, help="real images: fashion_mnist, openclipart, tfds:NAME or a folder "
                   "(default: the images the run's VAE was trained on, else fashion_mnist)")
    p.add_argument("--num-real", type=positive_int, default=10000,
                   help="real images to compare with (at most the split)")
    p.add_argument("--reference", default="test", choices=["test", "train"], help="split of the real images")
    p.add_argument("--feature", default="auto", choices=KINDS,
                   help="auto: InceptionV3 when its weights are on disk, else the dataset classifier")
    p.add_argument("--inception-weights", default=None,
                   help="InceptionV3 no-top weights .h5 (default: looked up in $KERAS_HOME/models or ~/.keras/models)")
    p.add_argument("--floor", action="store_true", help="real train vs real test images instead of samples")
    p.add_argument("--vae-floor", action="store_true",
                   help="real train images passed through the run's VAE (ONNX encoder -> decoder) vs real test "
                        "images: the best a latent model with this VAE can reach")
    p.add_argument("--num-recon", type=non_negative_int, default=None,
                   help="validation images for the VAE reconstruction (default: all; 0: skip)")
    p.add_argument("--kid-block", type=positive_int, default=1000,
                   help="KID is averaged over blocks of this many images")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="real image size (default: the run's bridge.json)")
    p.add_argument("--channels", type=positive_int, default=None, help="real image channels (default: the run's)")
    p.add_argument("--cache-dir", default="runs/.cache", help="where the evaluation classifier is cached")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="which real images are drawn when --num-real is smaller")
    p.add_argument("--out", default=None, help="output folder (default: DIR/eval)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or (RunPaths(args.run).root / "eval" if args.run else None)
    config = EvalConfig(run=args.run, samples=args.samples, data=args.data, num_real=args.num_real,
                        reference=args.reference, feature=args.feature, inception_weights=args.inception_weights,
                        floor=args.floor, vae_floor=args.vae_floor, num_recon=args.num_recon, kid_block=args.kid_block,
                        image_size=args.image_size, channels=args.channels, cache_dir=args.cache_dir,
                        device=args.device, seed=args.seed, progress=not args.no_progress)
    try:
        if out is None:
            raise ValueError("give --run DIR (writes DIR/eval) or --out FOLDER")
        results = evaluate(config)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    json_path, md_path = write_report(out, results)
    acc = results["class_accuracy"]
    print(f"FID {results['fid']:.4f}  KID {results['kid']['mean']:.6f}"
          + (f"  class accuracy {acc['samples']:.4f} (real {acc['real_test']:.4f})" if acc else "")
          + f"  [{results['feature_net']['name']}] -> {Path(json_path)}, {md_path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
