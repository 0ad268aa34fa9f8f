"""The evaluation's outputs: NAME.json (every figure) and NAME.md (a short human summary), written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runfs import atomic_path, write_json

TITLES = {"samples": "Sample quality", "floor": "Floor: real train vs real test images",
          "vae_floor": "VAE floor: real train images through the VAE vs real test images"}
NAMES = {"samples": "eval", "floor": "floor", "vae_floor": "vae_floor"}


def markdown(results: dict[str, Any]) -> str:
    """A short report: what was compared, with which features, and the figures."""
    net, k = results["feature_net"], results["kid"]
    h, w, c = results["image_shape"]
    title = TITLES[results["mode"]]
    lines = [
        f"# {title}", "",
        f"- generated: {results['samples']} ({results['num_generated']} images, {h}x{w}x{c})",
        f"- real: {results['num_real']} {results['data']} {results['reference']} images",
        f"- features: {net['name']} ({net['dim']}-d)", "",
        "| metric | value |", "|---|---|",
        f"| FID | {results['fid']:.4f} |",
        f"| KID | {k['mean']:.6f} +- {k['std']:.6f} ({k['num_blocks']} block(s) of {k['block_size']}) |",
    ]
    acc = results.get("class_accuracy")
    if acc:
        what = "conditional samples" if results["mode"] == "samples" else "images (their true labels)"
        lines.append(f"| class accuracy of {what} | {acc['samples']:.4f} |")
        lines.append(f"| classifier accuracy on real test images | {acc['real_test']:.4f} |")
    recon = results.get("reconstruction") or {}
    if "psnr" in recon:
        lines.append(f"| VAE reconstruction PSNR ({recon['num_images']} val images) | {recon['psnr']:.2f} dB |")
        lines.append(f"| VAE reconstruction SSIM | {recon['ssim']:.4f} |")
    elif "skipped" in recon:
        lines += ["", f"VAE reconstruction skipped: {recon['skipped']}."]
    if acc:
        lines += ["", "Per class (share assigned to the requested class): "
                  + ", ".join(f"{name} {v:.3f}" for name, v in acc["per_class"].items())]
    seconds = ", ".join(f"{name} {v:.1f} s" for name, v in results["seconds"].items())
    lines += ["", f"Time: {seconds}.", ""]
    return "\n".join(lines)


def write_report(out_dir: str | os.PathLike, results: dict[str, Any]) -> tuple[Path, Path]:
    """out_dir/eval.json + eval.md (floor.* or vae_floor.* in those modes); returns both paths."""
    out_dir = Path(out_dir)
    name = NAMES[results["mode"]]
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    write_json(json_path, results)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown(results))
    return json_path, md_path
