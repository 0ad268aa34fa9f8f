"""Fault injection: run each stage on tiny data, SIGKILL it at random moments, rerun the same command, and check
that the result equals an uninterrupted run's and that nothing is left behind (docs/reliability.md).

For every stage the run folder as it was before the stage is copied; the stage runs once uninterrupted (the
reference), then in the copy it is killed `--kills` times (seeded: a random time, or a random visit of an atomic
write's fault point) and rerun to the end. The stage's outputs are compared array by array (0 = bit-exact) and the
copy is searched for temporaries and .old folders.

  python pipelines/fault_injection.py                       # every stage, 3 kills each
  python pipelines/fault_injection.py --stages diffusion,sample --kills 5 --seed 1
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipelines.cli import make_parser, non_negative_int, run_main
from pipelines.fault_harness import kill_and_rerun, leftovers, run_once
from runfs import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
       "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


@dataclass
class Stage:
    name: str
    command: Callable[[Path, Path], list[str]]  # (run folder, data folder) -> argv after the interpreter
    compare: Callable[[Path, Path], float]  # (reference run, killed run) -> max abs difference of the results
    exact: bool  # whether the stage is deterministic on the CPU (difference 0 required)


@dataclass
class StageReport:
    stage: str
    kills: int
    attempts: list[str]
    leftovers: list[str]
    max_abs_diff: float
    exact: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.leftovers and (self.max_abs_diff == 0.0 if self.exact else self.max_abs_diff <= 1e-5)


def _max_diff(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> float:
    if a.keys() != b.keys():
        raise AssertionError(f"{what}: the killed run has {sorted(set(b) - set(a))[:5]} that the reference has not, "
                             f"and lacks {sorted(set(a) - set(b))[:5]}")
    diffs = [float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)))) if a[k].size else 0.0
             for k in a if a[k].shape == b[k].shape]
    if len(diffs) != len(a):
        raise AssertionError(f"{what}: array shapes differ")
    return max(diffs, default=0.0)


def _keras_weights(folder: Path) -> dict[str, np.ndarray]:
    """Every weight array in the .keras files of `folder`, read from their HDF5 weights (no Keras needed)."""
    import io
    import zipfile

    import h5py

    arrays = {}
    for path in sorted(folder.glob("*.keras")):
        with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as h5:
            h5.visititems(lambda name, obj, p=path: arrays.__setitem__(f"{p.name}/{name}", obj[()])
                          if isinstance(obj, h5py.Dataset) else None)
    return arrays


def compare_vae(ref: Path, run: Path) -> float:
    return _max_diff(_keras_weights(ref / "vae" / "model"), _keras_weights(run / "vae" / "model"), "vae/model")


def compare_latents(ref: Path, run: Path) -> float:
    def arrays(r):
        return {p.name: np.load(p) for p in sorted((r / "latents").glob("*.npy"))}

    def meta(r):
        return {k: v for k, v in read_json(r / "latents" / "meta.json").items() if k != "created"}

    if meta(ref) != meta(run):
        raise AssertionError("latents/meta.json differs from the reference")
    return _max_diff(arrays(ref), arrays(run), "latents")


def compare_bridge(ref: Path, run: Path) -> float:
    """The two exports' outputs on the same inputs (tf2onnx names and folds constants differently run to run) and
    bridge.json's lineage and scale."""
    import onnxruntime as ort

    keys = ("vae_checkpoint", "latents_digest", "latent_norm", "scale_factor", "latent_shape", "image_size")
    spec = read_json(ref / "bridge" / "bridge.json")
    if {k: spec.get(k) for k in keys} != {k: read_json(run / "bridge" / "bridge.json").get(k) for k in keys}:
        raise AssertionError("bridge.json differs from the reference")
    rng = np.random.default_rng(0)
    size, channels = spec["image_size"], spec["channels"]
    inputs = {"decoder.onnx": rng.standard_normal((4, *spec["latent_shape"]), dtype=np.float32),
              "encoder.onnx": rng.uniform(-1, 1, (4, size, size, channels)).astype(np.float32)}

    def outputs(r):
        found = {}
        for name, x in inputs.items():
            session = ort.InferenceSession(str(r / "bridge" / name), providers=["CPUExecutionProvider"])
            for i, y in enumerate(session.run(None, {session.get_inputs()[0].name: x})):
                found[f"{name}/{i}"] = y
        return found

    return _max_diff(outputs(ref), outputs(run), "bridge")


def compare_diffusion(ref: Path, run: Path) -> float:
    from safetensors.numpy import load_file

    def newest(r):
        return sorted(p for p in (r / "diffusion").glob("step_*") if (p / "meta.json").is_file())[-1]

    a, b = newest(ref), newest(run)
    if a.name != b.name:
        raise AssertionError(f"the killed run ended at {b.name}, the reference at {a.name}")
    tensors = {f"{p.name}/{k}": v for p in sorted(a.glob("*.safetensors")) for k, v in load_file(p).items()}
    other = {f"{p.name}/{k}": v for p in sorted(b.glob("*.safetensors")) for k, v in load_file(p).items()}

    def losses(r):  # the log holds every step once; its timing columns differ by nature
        lines = (r / "diffusion" / "log.csv").read_text().splitlines()
        header = lines[0].split(",")
        keep = [i for i, name in enumerate(header) if name not in ("steps_per_sec",)]
        cells = [[line.split(",")[i] for i in keep] for line in lines[1:]]
        return {"log": np.array([[float(c) if c else -1e30 for c in row] for row in cells])}  # '': no such t

    return max(_max_diff(tensors, other, b.name), _max_diff(losses(ref), losses(run), "log.csv"))


def compare_samples(ref: Path, run: Path) -> float:
    def arrays(r):
        (npz,) = sorted((r / "samples").glob("samples_*.npz"))
        with np.load(npz) as f:
            return {k: f[k] for k in f.files}

    return _max_diff(arrays(ref), arrays(run), "samples")


def stages(tiny_unet: list[str] | None = None) -> dict[str, Stage]:
    """The five stages at toy size: the `tiny` VAE on a folder of 16x16 PNGs, a 32-wide U-Net of T = 50."""
    unet = tiny_unet or ["--num-channels", "32", "--num-res-blocks", "1", "--ema-rate", "0.9", "--diffusion-steps",
                         "50", "--batch-size", "8", "--max-steps", "24", "--save-interval", "3", "--precision", "fp32"]
    return {
        "vae": Stage("vae", lambda r, d: ["pipelines/train_vae.py", "--run", str(r), "--preset", "tiny", "--data",
                                          str(d), "--channels", "1", "--batch-size", "8", "--epochs", "3",
                                          "--checkpoint-minutes", "0.003", "--no-progress"], compare_vae, True),
        "encode": Stage("encode", lambda r, d: ["pipelines/encode.py", "--run", str(r), "--batch-size", "8",
                                                "--no-progress"], compare_latents, True),
        "export": Stage("export", lambda r, d: ["pipelines/export.py", "--run", str(r), "--num-real", "8",
                                                "--num-random", "8", "--batch", "8"], compare_bridge, True),
        "diffusion": Stage("diffusion", lambda r, d: ["pipelines/train_diffusion.py", "--run", str(r), *unet,
                                                      "--log-interval", "1", "--device", "cpu", "--threads", "1",
                                                      "--no-progress"], compare_diffusion, True),
        "sample": Stage("sample", lambda r, d: ["pipelines/sample.py", "--run", str(r), "--num-samples", "8",
                                                "--batch-size", "4", "--timestep-respacing", "trailing5", "--device",
                                                "cpu", "--save-pngs", "--no-progress"], compare_samples, True),
    }


def write_pngs(folder: Path, n: int = 48) -> Path:
    """n random 16x16 grayscale PNGs in two class sub-folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"c{i % 2}" / f"{i}.png")
    return folder


def inject(stage: Stage, before: Path, work: Path, data: Path, kills: int, rng: random.Random) -> StageReport:
    """Run `stage` on copies of the run folder `before`: once straight (work/ref_NAME), once killed `kills` times and
    rerun (work/killed_NAME); compare the two and search the killed copy for leftovers."""
    ref, killed = work / f"ref_{stage.name}", work / f"killed_{stage.name}"
    for folder in (ref, killed):
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(before, folder, symlinks=True)
    argv = [sys.executable]
    log_path = work / f"{stage.name}.log"
    seconds, visits = run_once([*argv, *stage.command(ref, data)], cwd=ROOT, env=ENV, log_path=log_path)
    log = kill_and_rerun([*argv, *stage.command(killed, data)], cwd=ROOT, env=ENV, kills=kills,
                         window=(0.3 * seconds, 0.95 * seconds), visits=visits, rng=rng, log_path=log_path)
    return StageReport(stage.name, log.killed, log.attempts, leftovers(killed), stage.compare(ref, killed),
                       stage.exact, round(log.seconds, 1))


def run_all(work: Path, names: list[str], kills: int, seed: int, start: Path | None = None) -> list[StageReport]:
    """Each stage of `names` in order, every one starting from the reference result of the ones before it (or from
    the run folder `start`)."""
    work.mkdir(parents=True, exist_ok=True)
    data = write_pngs(work / "pngs") if "vae" in names else work / "pngs"
    before = work / "start"
    shutil.rmtree(before, ignore_errors=True)
    if start:
        shutil.copytree(start, before, symlinks=True)
    else:
        before.mkdir()
    rng, reports = random.Random(seed), []
    for name in names:
        reports.append(inject(stages()[name], before, work, data, kills, rng))
        before = work / f"ref_{name}"
    return reports


def table(reports: list[StageReport]) -> str:
    rows = ["| stage | kills survived | attempts | leftovers found | max abs difference | seconds |",
            "|---|---|---|---|---|---|"]
    for r in reports:
        diff = "0 (bit-exact)" if r.max_abs_diff == 0 else f"{r.max_abs_diff:.2g}"
        rows.append(f"| {r.stage} | {r.kills} | {len(r.attempts)} | {len(r.leftovers)} | {diff} | {r.seconds} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = make_parser(__doc__)
    p.add_argument("--stages", default="vae,encode,export,diffusion,sample", help="comma list, in pipeline order")
    p.add_argument("--kills", type=non_negative_int, default=3, help="SIGKILLs per stage before the final rerun")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the kill moments")
    p.add_argument("--work", default="runs/fault_injection", help="scratch folder (replaced)")
    p.add_argument("--start", default=None, help="run folder to start from (default: empty; needed when the first "
                                                 "stage is not vae)")
    p.add_argument("--json", default=None, help="also write the reports here")
    args = p.parse_args(argv)
    names = args.stages.split(",")
    unknown = sorted(set(names) - set(stages()))
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; choose from {list(stages())}")
    reports = run_all(Path(args.work), names, args.kills, args.seed, Path(args.start) if args.start else None)
    print(table(reports))
    for r in reports:
        print(f"{r.stage}: " + "; ".join(r.attempts) + (f"; LEFT BEHIND {r.leftovers}" if r.leftovers else ""))
    if args.json:
        write_json(args.json, [asdict(r) for r in reports])
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(run_main(main))
