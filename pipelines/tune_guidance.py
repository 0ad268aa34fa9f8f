"""Tune a run's guidance: sample at a grid of guidance scales, score each set, and keep the best as the run's default.

`python pipelines/tune_guidance.py --run DIR` samples --num-samples images (dpmpp 20, the same seed and labels at
every point, so the points differ only by their scales) for each classifier-free guidance scale in
--guidance-scales, and, when the run has an autoguidance model, each autoguidance scale in --guide-scales; it scores
every set with evaluate.py's FID / KID / class accuracy against the real test images, and writes the best point to
DIR/guidance.json (with the whole table), which sample.py and demo.py then use when no guidance flag is given.
"Best" is the lowest FID among the points whose class accuracy is within --max-accuracy-gap of the evaluation
classifier's accuracy on real images (over-guided samples are too easy to classify), or the lowest FID outright when
no point is. When the best point lies on the grid's edge, the grid is extended past that edge by one step (the
outermost spacing) and the new points sampled, up to --extend times. With --confirm K the K best points are sampled
again with --confirm-samples each (default 5,000) and the choice is made among those. Built-in scales were tuned on
the shipped 2,600-step model: a model trained longer wants less guidance (docs/benchmarks.md). Nothing is written
when interrupted; DIR/guidance.json is replaced atomically.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffusion.sampling import DEFAULT_RESPACING
from diffusion.tuned_guidance import GUIDANCE_FILE
from pipelines.cli import at_least_two, make_parser, non_negative_int, positive_int, probability
from pipelines.evaluation.features import KINDS
from runfs import RunPaths, write_json

DEFAULT_GUIDANCE_GRID = "1.25,1.5,1.75,2,2.25,2.5"
DEFAULT_GUIDE_GRID = "1,1.2,1.4"


@dataclass
class Point:
    """One grid point's scales and scores."""

    guidance_scale: float
    guide_scale: float
    fid: float
    kid: float
    class_accuracy: float | None
    seconds: float

    def row(self) -> str:
        acc = "" if self.class_accuracy is None else f"{self.class_accuracy:.3f}"
        return (f"| {self.guidance_scale:g} | {self.guide_scale:g} | {self.fid:.4f} | {self.kid:.5f} | {acc} "
                f"| {self.seconds:.1f} |")


def scales(text: str) -> list[float]:
    """'1.5,2,2.5' -> [1.5, 2.0, 2.5], each >= 0 (1: no guidance of that kind), without repeats."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of numbers (e.g. 1.5,2,2.5)") from None
    if not values or any(not np.isfinite(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more finite scales >= 0")
    return list(dict.fromkeys(values))


def parse_args(argv: list[str] | None = None):
    p = make_parser(__doc__)
    p.add_argument("--run", required=True, help="run folder (DIR/diffusion, DIR/bridge, DIR/guide if any)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder (default: newest in DIR/diffusion)")
    p.add_argument("--guidance-scales", type=scales, default=DEFAULT_GUIDANCE_GRID,
                   help="classifier-free guidance scales to try (models with a null class; else 1 only)")
    p.add_argument("--guide-scales", type=scales, default=None,
                   help=f"autoguidance scales to try when there is a guide (default {DEFAULT_GUIDE_GRID})")
    p.add_argument("--guide", default="auto", metavar="CHECKPOINT",
                   help="the autoguidance model, as sample.py: 'auto' (DIR/guide when there is one), 'none' or a "
                        "checkpoint")
    p.add_argument("--num-samples", type=at_least_two, default=1000,
                   help="samples per point (1,000: ~1 minute per point on a 2-core CPU for the Fashion-MNIST "
                        "model; FID differences under ~5%% are within the noise at this size)")
    p.add_argument("--extend", type=non_negative_int, default=1, metavar="N",
                   help="while the best point is on the grid's edge, add one more scale past it (at most N times; "
                        "0: never); the natural lower edge 1 (no guidance of that kind) is not passed")
    p.add_argument("--confirm", type=non_negative_int, default=0, metavar="K",
                   help="then sample the K best points again with --confirm-samples each and choose among those "
                        "(0: off): 1,000-sample FIDs of neighbouring points are often within their noise")
    p.add_argument("--confirm-samples", type=at_least_two, default=5000, help="samples per point when confirming")
    p.add_argument("--batch-size", type=positive_int, default=500)
    p.add_argument("--sampler", default="dpmpp", choices=sorted(DEFAULT_RESPACING))
    p.add_argument("--timestep-respacing", default=None, help="as sample.py (default: the sampler's)")
    p.add_argument("--max-accuracy-gap", type=probability, default=0.05,
                   help="only points whose class accuracy is within this of real images' may win (conditional "
                        "models; the issue's goal: 5 points)")
    p.add_argument("--data", default=None, help="real images, as evaluate.py (default: the images the run's VAE "
                                                "was trained on, else fashion_mnist)")
    p.add_argument("--num-real", type=at_least_two, default=10000, help="real test images to compare with")
    p.add_argument("--feature", default="auto", choices=KINDS,
                   help="feature network, as evaluate.py")
    p.add_argument("--cache-dir", default="runs/.cache", help="where the evaluation classifier is cached")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx"],
                   help="run the U-Net and the guide in torch or onnxruntime, as sample.py (the same images within "
                        "a grey level, so the tuned scales serve both)")
    p.add_argument("--out", default=None, help=f"where to write the result (default: DIR/{GUIDANCE_FILE}, which "
                                               "sample.py reads)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def within_gap(points: list[Point], real_accuracy: float | None, gap: float) -> list[Point]:
    """The points whose class accuracy is within `gap` of real images'; unconditional ones (None) all are."""
    return [p for p in points if p.class_accuracy is None or real_accuracy is None
            or abs(p.class_accuracy - real_accuracy) <= gap]


def choose(points: list[Point], real_accuracy: float | None, gap: float) -> tuple[Point, bool]:
    """(the lowest-FID point among those with class accuracy within `gap` of real images', True), or (the lowest-FID
    point of all, False) when none is within it."""
    within = within_gap(points, real_accuracy, gap)
    return min(within or points, key=lambda p: p.fid), bool(within)


def edge_notes(best: Point, w_grid: list[float], s_grid: list[float]) -> list[str]:
    """Where the best point lies on an edge of the grid that `beyond` could pass, the optimum may lie past it: say
    which way to extend the grid. Scale 1 (no guidance of that kind) is a natural lower edge and is not reported."""
    notes = []
    for name, flag, value, grid in (("guidance", "--guidance-scales", best.guidance_scale, w_grid),
                                    ("guide", "--guide-scales", best.guide_scale, s_grid)):
        past = beyond(value, grid)
        if past is not None:
            side, more = ("lowest", "lower") if past < value else ("highest", "higher")
            notes.append(f"the best {name} scale {value:g} is the {side} tried: add {more} ones to {flag}")
    return notes


def beyond(value: float, grid: list[float]) -> float | None:
    """The next scale past `value` when it is an edge of `grid`, one outermost spacing further out; None inside the
    grid, for a one-point grid, and at or below the natural lower edge 1 (no guidance of that kind)."""
    g = sorted(grid)
    if len(g) < 2:
        return None
    if value == g[0] and value > 1:
        return max(1.0, round(value - (g[1] - g[0]), 6))
    if value == g[-1]:
        return round(value + (g[-1] - g[-2]), 6)
    return None


def sweep(measure: Callable[[float, float, str], Point], w_grid: list[float], s_grid: list[float], extend: int,
          pick: Callable[[list[Point]], Point]) -> tuple[list[Point], list[float], list[float]]:
    """Measure every (w, s) of the grid; then, up to `extend` times while `pick`'s best point lies on an edge that
    `beyond` can pass, add the scale past it and measure the grid's new points. -> (points, w grid, s grid)."""
    grid = [(w, s) for w in w_grid for s in s_grid]
    points = [measure(w, s, f"{i}/{len(grid)}") for i, (w, s) in enumerate(grid, 1)]
    for round_ in range(1, extend + 1):
        best = pick(points)
        new_w, new_s = beyond(best.guidance_scale, w_grid), beyond(best.guide_scale, s_grid)
        if new_w is None and new_s is None:
            break
        w_grid = sorted([*w_grid, *([] if new_w is None else [new_w])])
        s_grid = sorted([*s_grid, *([] if new_s is None else [new_s])])
        done = {(p.guidance_scale, p.guide_scale) for p in points}
        new = [(w, s) for w in w_grid for s in s_grid if (w, s) not in done]
        print(f"the best point (guidance {best.guidance_scale:g}, guide {best.guide_scale:g}) is on the grid's "
              f"edge: extending it by {len(new)} points", flush=True)
        points += [measure(w, s, f"extend {round_}: {i}/{len(new)}") for i, (w, s) in enumerate(new, 1)]
    return sorted(points, key=lambda p: (p.guidance_scale, p.guide_scale)), w_grid, s_grid


def main(argv: list[str] | None = None) -> int:
    from keras_torch_ldm import LatentDiffusion

    args = parse_args(argv)
    run = RunPaths(args.run)
    args.data = run.data_source(args.data)  # the run's own real images unless --data names others
    try:  # --extend, --confirm and the sample counts are checked when parsed (pipelines.cli number types)
        pipe = LatentDiffusion.from_run(run.root, device=args.device, backend=args.backend,
                                        checkpoint=args.checkpoint, guide=args.guide)
        loaded, guide, unet = pipe.model, pipe.guide, pipe.model.unet
        if args.guide_scales is not None and guide is None:
            raise ValueError(f"--guide-scales needs a guide model: {args.guide!r} gives none (train one with "
                             "`python pipelines/train_diffusion.py --run DIR --guide`)")
        w_grid = args.guidance_scales if unet.null_class else [1.0]
        s_grid = (args.guide_scales or scales(DEFAULT_GUIDE_GRID)) if guide is not None else [1.0]
        if len(w_grid) * len(s_grid) < 2:
            raise ValueError("nothing to tune: this model has no null class (no classifier-free guidance) and the "
                             "run no guide model, or the grids hold one point; pass more scales")
        scorer = make_scorer(args, pipe.decoder, pipe.device)
        # What the choice compares class accuracy with: the evaluation classifier's on real test images.
        real_accuracy = scorer.classifier().meta["test_accuracy"] if unet.class_cond else None
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(w_grid) * len(s_grid)} points x {args.num_samples} samples ({args.sampler}) on {loaded.path}"
          + (f" with guide {guide.path}" if guide else ""), flush=True)

    def measure(w: float, s: float, num_samples: int, tag: str) -> Point:
        start = time.perf_counter()
        images, sample_labels = pipe.sample(
            num_samples, batch_size=args.batch_size, sampler=args.sampler, timestep_respacing=args.timestep_respacing,
            guidance_scale=w, guide_scale=s, seed=args.seed, progress=not args.no_progress)
        scores = scorer.score(images, sample_labels)
        acc = scores["class_accuracy"]
        point = Point(w, s, scores["fid"], scores["kid"]["mean"], None if acc is None else acc["samples"],
                      time.perf_counter() - start)
        print(f"[{tag}] guidance {w:g}, guide {s:g}: FID {point.fid:.4f}  KID {point.kid:.5f}"
              + ("" if acc is None else f"  class accuracy {acc['samples']:.3f}") + f"  ({point.seconds:.0f} s)",
              flush=True)
        return point

    def pick(points: list[Point]) -> Point:
        return choose(points, real_accuracy, args.max_accuracy_gap)[0]

    points, w_grid, s_grid = sweep(lambda w, s, tag: measure(w, s, args.num_samples, tag), w_grid, s_grid,
                                   args.extend, pick)
    best, within = choose(points, real_accuracy, args.max_accuracy_gap)
    notes = edge_notes(best, w_grid, s_grid)
    confirmed: list[Point] = []
    if args.confirm:
        finalists = sorted(within_gap(points, real_accuracy, args.max_accuracy_gap) or points,
                           key=lambda p: p.fid)[:args.confirm]
        print(f"confirming the best {len(finalists)} with {args.confirm_samples} samples each", flush=True)
        confirmed = [measure(p.guidance_scale, p.guide_scale, args.confirm_samples, f"confirm {i}/{len(finalists)}")
                     for i, p in enumerate(finalists, 1)]
        best, within = choose(confirmed, real_accuracy, args.max_accuracy_gap)
    result = {**report(args, loaded, guide, points, best, within, real_accuracy, scorer.describe()),
              "grid_edge_notes": notes, "confirmed": [vars(p) for p in confirmed],
              "confirm_samples": args.confirm_samples if confirmed else None}
    out = Path(args.out) if args.out else run.root / GUIDANCE_FILE
    write_json(out, result)
    print(table(points, best))
    if confirmed:
        print(f"\nconfirmed with {args.confirm_samples} samples:\n{table(confirmed, best)}")
    if not within:
        print(f"warning: no point had class accuracy within {args.max_accuracy_gap} of real images' "
              f"({real_accuracy:.3f}); the lowest FID was kept", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"best: guidance {best.guidance_scale:g}, guide {best.guide_scale:g} (FID {best.fid:.4f}) -> {out}")
    return 0


def make_scorer(args, decoder, device):
    """The evaluation's Scorer over the real test images the decoder's image shape implies."""
    from pipelines.evaluation.runner import Scorer, subset
    from vae.data import load_dataset

    size, channels = decoder.image_size, decoder.channels
    dataset = load_dataset(args.data, image_size=size, channels=channels, run_dir=args.run)
    reference = subset(dataset.images("val"), args.num_real, args.seed)
    return Scorer(dataset, reference, args.feature, args.cache_dir, device, progress=not args.no_progress)


def report(args, loaded, guide, points: list[Point], best: Point, within: bool, real_accuracy: float | None,
           feature_net: dict[str, Any]) -> dict[str, Any]:
    """guidance.json: the chosen scales (what sample.py reads), what they were tuned on, and the whole sweep."""
    return {
        "guidance_scale": best.guidance_scale, "guide_scale": best.guide_scale,
        "checkpoint": loaded.path.name, "weights": loaded.weights,
        "guide": None if guide is None else guide.path.name,
        "fid": best.fid, "kid": best.kid, "class_accuracy": best.class_accuracy,
        "real_class_accuracy": real_accuracy, "max_accuracy_gap": args.max_accuracy_gap,
        "chosen_within_gap": within,
        "backend": args.backend, "extend": args.extend,
        "sampler": args.sampler, "timestep_respacing": args.timestep_respacing or DEFAULT_RESPACING[args.sampler],
        "num_samples": args.num_samples, "num_real": args.num_real, "data": args.data, "seed": args.seed,
        "feature_net": feature_net["name"],
        "sweep": [vars(p) for p in points],
    }


def table(points: list[Point], best: Point) -> str:
    """A markdown table of the sweep, the chosen point in bold."""
    lines = ["| guidance | guide | FID | KID | class accuracy | seconds |", "|---|---|---|---|---|---|"]
    for p in points:
        row = p.row()
        lines.append(row.replace(f"| {p.fid:.4f} |", f"| **{p.fid:.4f}** |") if p is best else row)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
