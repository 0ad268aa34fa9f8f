"""Data at scale: peak memory of every stage on 2,000 vs 50,000 images, and streaming vs in-memory throughput.

Generates 64x64 RGB images (smooth colour fields with random shapes; PNG and JPEG alternating) into --workdir
(kept for later runs), then runs each stage as a user would, in its own process, and reads that process's peak
RSS (ru_maxrss from wait4):
- train_vae.py (photos64 preset, --max-steps, streamed: --cache off; and the 50,000 once more with --cache on),
- encode.py (the latents of those images),
- train_diffusion.py on the resulting latents (fmnist-latent's U-Net, --max-steps).
Then pipelines.bench.data_throughput times the streaming, cached and in-memory input paths back to back, on
Fashion-MNIST (its 60,000 training images written as 32x32 PNG files) and on the RGB folder. Prints JSON lines and
markdown tables. Targets (issue 28): peak grows by at most 300 MB from 2,000 to 50,000; streaming >= 0.9x in-memory.

  python -m pipelines.bench.data_scale --sizes 2000,50000 --vae-steps 100 --diffusion-steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from pipelines.cli import positive_int

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}


def synthetic_image(i: int, size: int = 64) -> Image.Image:
    """Image i: a smooth two-colour gradient with three random ellipses or rectangles (seeded by i)."""
    rng = np.random.default_rng(i)
    a, b = rng.integers(0, 256, (2, 3))
    ramp = np.linspace(0, 1, size)[:, None, None] * np.linspace(0.3, 1, size)[None, :, None]
    image = Image.fromarray((a + (b - a) * ramp).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.integers(0, size - 8, 2)
        x1, y1 = np.array([x0, y0]) + rng.integers(6, size // 2, 2)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((int(x0), int(y0), int(x1), int(y1)), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def _write_range(folder: str, start: int, stop: int) -> None:
    for i in range(start, stop):
        path = Path(folder) / f"{i:06d}.{'png' if i % 2 == 0 else 'jpg'}"
        if path.exists():
            continue
        if path.suffix == ".jpg":
            synthetic_image(i).save(path, quality=90)
        else:
            synthetic_image(i).save(path)


def rgb_folder(workdir: Path, n: int) -> Path:
    """workdir/rgb_N: images 0..n-1 (made once; a smaller set hard-links the larger one's files where it can)."""
    folder = workdir / f"rgb_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    bigger = sorted((p for p in workdir.glob("rgb_*") if int(p.name[4:]) > n), key=lambda p: int(p.name[4:]))
    for i in range(n):
        name = f"{i:06d}.{'png' if i % 2 == 0 else 'jpg'}"
        if bigger and not (folder / name).exists() and (bigger[0] / name).exists():
            os.link(bigger[0] / name, folder / name)
    chunks = [(str(folder), s, min(n, s + 2000)) for s in range(0, n, 2000)]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write_range, *zip(*chunks, strict=True)))
    return folder


def fmnist_folder(workdir: Path) -> Path:
    """workdir/fmnist_png: Fashion-MNIST's 60,000 training images as 32x32 PNG files (padded as the loader does)."""
    folder = workdir / "fmnist_png"
    if not (folder / "059999.png").exists():
        from vae.data import load_dataset

        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(load_dataset("fashion_mnist").train_images):
            Image.fromarray(image[..., 0]).save(folder / f"{i:06d}.png")
    return folder


def peak_of(args: list[str], log: Path) -> dict:
    """Run `python args...` to the end; its peak RSS (MiB, from wait4) and wall time; raise on failure."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}); see {log}")
    return {"peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "wall_s": round(time.perf_counter() - start, 1)}


def stage_peaks(workdir: Path, n: int, vae_steps: int, diffusion_steps: int) -> dict:
    run = workdir / f"run_{n}"
    shutil.rmtree(run, ignore_errors=True)
    data = rgb_folder(workdir, n)
    vae = ["pipelines/train_vae.py", "--run", str(run), "--preset", "photos64", "--data", str(data),
           "--max-steps", str(vae_steps), "--eval-images", "256", "--no-progress"]
    result = {"images": n, "train_vae": peak_of([*vae, "--cache", "off"], workdir / f"train_vae_{n}.log")}
    result["encode"] = peak_of(["pipelines/encode.py", "--run", str(run), "--cache", "off", "--no-progress"],
                               workdir / f"encode_{n}.log")
    result["train_diffusion"] = peak_of(
        ["pipelines/train_diffusion.py", "--run", str(run), "--max-steps", str(diffusion_steps), "--cfg-dropout", "0",
         "--attention-resolutions", "8",
         "--save-interval", str(diffusion_steps), "--no-progress", "--device", "cpu"], workdir / f"diffusion_{n}.log")
    access = [line for line in (workdir / f"diffusion_{n}.log").read_text().splitlines() if line.startswith("latents")]
    result["latents_access"] = access[0] if access else "?"
    shutil.rmtree(run / "vae", ignore_errors=True)
    result["train_vae_cached"] = peak_of([*vae, "--cache", "on", "--overwrite"], workdir / f"train_vae_cached_{n}.log")
    return result


def throughput(source: str, folder: Path, preset: str, log: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", "pipelines.bench.data_throughput", "--source", source, "--folder",
                          str(folder), "--preset", preset], cwd=ROOT, env=ENV, capture_output=True, text=True)
    log.write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"data_throughput {source} failed; see {log}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def peak_table(peaks: list[dict]) -> str:
    lines = ["| stage | " + " | ".join(f"{p['images']:,} images: peak RSS MiB (wall s)" for p in peaks)
             + " | growth MiB |", "|---|" + "---|" * (len(peaks) + 1)]
    for stage in ("train_vae", "train_vae_cached", "encode", "train_diffusion"):
        cells = [f"{p[stage]['peak_rss_mib']:,.0f} ({p[stage]['wall_s']:.0f})" for p in peaks]
        growth = peaks[-1][stage]["peak_rss_mib"] - peaks[0][stage]["peak_rss_mib"]
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {growth:+,.0f} |")
    return "\n".join(lines + [f"\nstage 2 latents: {p['latents_access']}" for p in peaks])


def rate_table(rates: list[dict]) -> str:
    lines = ["| source | path | pipeline img/s, 1 thread | pipeline img/s, all | training img/s (rounds) | "
              "training vs in memory |", "|---|---|---|---|---|---|"]
    for r in rates:
        base = np.median(r["training_images_per_s"]["in memory"])
        for name, values in r["training_images_per_s"].items():
            pipe = r["pipeline_images_per_s"][name]
            lines.append(f"| {r['source']} | {name} | {pipe['threads 1']:,.0f} | {pipe['threads default']:,.0f} | "
                         f"{', '.join(f'{v:.0f}' for v in values)} | {np.median(values) / base:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="2000,50000", help="image counts to compare (comma list, ascending)")
    p.add_argument("--vae-steps", type=positive_int, default=100, help="train_vae.py --max-steps")
    p.add_argument("--diffusion-steps", type=positive_int, default=50, help="train_diffusion.py --max-steps")
    p.add_argument("--workdir", default="/tmp/data_scale", help="where images, runs and logs go")
    p.add_argument("--skip-peaks", action="store_true", help="only the throughput comparison")
    p.add_argument("--skip-throughput", action="store_true", help="only the peak-memory comparison")
    args = p.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    peaks, rates = [], []
    if not args.skip_peaks:
        for n in sizes:
            peaks.append(stage_peaks(workdir, n, args.vae_steps, args.diffusion_steps))
            print(json.dumps(peaks[-1]), flush=True)
    if not args.skip_throughput:
        for source, folder, preset in (("fashion_mnist", fmnist_folder(workdir), "fashion_mnist"),
                                       (str(rgb_folder(workdir, sizes[0])), rgb_folder(workdir, sizes[0]),
                                        "photos64")):
            rates.append(throughput(source, folder, preset, workdir / f"throughput_{preset}.log"))
            print(json.dumps(rates[-1]), flush=True)
    if peaks:
        print(peak_table(peaks))
    if rates:
        print(rate_table(rates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
