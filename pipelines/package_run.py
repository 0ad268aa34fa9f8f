"""Pack a trained run into a small, self-contained folder for sampling (what pretrained/fmnist ships).

Copies the ONNX decoder and encoder with bridge.json, and from the newest diffusion checkpoint (and the newest guide
checkpoint for autoguidance, when the run has one) its config.json, meta.json and ONE set of EMA weights (optionally
in float16: half the size; the U-Net computes in float32), the run's tuned guidance scales (guidance.json, when
pipelines/tune_guidance.py wrote one), plus the VAE's config and metrics and the latents' meta.json as provenance.
`python pipelines/sample.py --run OUT` then works as on the full run. Written atomically.

    python pipelines/package_run.py --run runs/demo-train --out pretrained/fmnist --fp16
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffusion import checkpoints as ckpt
from diffusion.sampling import find_checkpoint
from diffusion.tuned_guidance import GUIDANCE_FILE
from pipelines.cli import make_parser, run_main
from runfs import RunPaths, atomic_dir, read_json, write_json

# Kept beside the weights so a packed run still says how it was made: packed name -> path in the run folder.
PROVENANCE = {"vae_config.json": "vae/config.json", "vae_metrics.json": "vae/metrics.json",
              "latents_meta.json": "latents/meta.json"}


def package(run: RunPaths, out: Path, ema: str | None, fp16: bool) -> int:
    """Returns the packed size in bytes."""
    source = find_checkpoint(run.diffusion, "train_diffusion")
    guide = ckpt.latest_checkpoint(run.guide)  # the autoguidance model, when the run has one
    with atomic_dir(out) as tmp:
        (tmp / "bridge").mkdir()
        spec = read_json(run.bridge / "bridge.json")
        for part in ("decoder", "encoder"):
            shutil.copy2(run.bridge / spec[part]["file"], tmp / "bridge" / spec[part]["file"])
        write_json(tmp / "bridge" / "bridge.json", spec)
        pack_checkpoint(source, tmp / "diffusion", ema, fp16)
        if guide is not None:
            pack_checkpoint(guide, tmp / "guide", None, fp16)
        if (run.root / GUIDANCE_FILE).is_file():  # sample.py's defaults for this model (same checkpoint names)
            shutil.copy2(run.root / GUIDANCE_FILE, tmp / GUIDANCE_FILE)
        for name, provenance in PROVENANCE.items():  # how the VAE and the latents were made (not needed to sample)
            if (run.root / provenance).is_file():
                shutil.copy2(run.root / provenance, tmp / name)
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def pack_checkpoint(source: Path, root: Path, ema: str | None, fp16: bool) -> None:
    """root/<source's step folder>: config.json, meta.json and one EMA rate's weights (default: the first)."""
    meta = read_json(source / "meta.json")
    rate = ema or str(meta["ema_rates"][0])
    weights = ckpt.load_weights(source / f"ema_{rate}.safetensors")
    if fp16:
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    step_dir = root / source.name
    step_dir.mkdir(parents=True)
    shutil.copy2(source / "config.json", step_dir / "config.json")
    write_json(step_dir / "meta.json", {**meta, "ema_rates": [float(rate)], "packed_from": str(source),
                                        "weights_dtype": "float16" if fp16 else "float32"})
    save_file({k: v.contiguous() for k, v in weights.items()}, step_dir / f"ema_{rate}.safetensors")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(__doc__)
    parser.add_argument("--run", required=True, help="a complete run folder (bridge/ and diffusion/)")
    parser.add_argument("--out", required=True, help="the packed folder to write")
    parser.add_argument("--ema", default=None, help="EMA rate to keep (default: the checkpoint's first)")
    parser.add_argument("--fp16", action="store_true", help="store the weights in float16")
    args = parser.parse_args(argv)
    try:
        size = package(RunPaths(args.run), Path(args.out), args.ema, args.fp16)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"packed {args.run} -> {args.out}: {size / 2**20:.1f} MiB ({torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
