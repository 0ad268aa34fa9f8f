"""The decoder of each latent case: the run's trained ONNX decoder where its shapes match the case, otherwise a
fresh decoder of the same design exported once into a cache folder by a subprocess (the only place the
benchmark touches Keras, so this process never imports TensorFlow)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bridge.spec import BridgeSpec, resolve_bridge_dir
from pipelines.bench.cases import Case
from runfs import read_json, write_json
from vae.config import VAEConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_vae_config(run_dir: str | os.PathLike) -> VAEConfig | None:
    """The VAE config saved in RUN/vae/model (or checkpoint), read as JSON (no Keras import); None if absent."""
    for sub in ("model", "checkpoint"):
        path = Path(run_dir) / "vae" / sub / "config.json"
        if path.is_file():
            return VAEConfig.from_dict(read_json(path))
    return None


def trained_bridge(run_dir: str | os.PathLike | None) -> BridgeSpec | None:
    if run_dir is None:
        return None
    try:
        return BridgeSpec.read(resolve_bridge_dir(run_dir))
    except Exception:
        return None


def cache_key(cfg: VAEConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]


def prepare_decoders(cases: list[Case], cache_dir: Path, run_dir: str | os.PathLike | None = None,
                     timeout_s: float = 1800) -> dict[str, dict]:
    """{case name: {"dir": bridge folder, "source": "trained" | "fresh"}} for every latent case."""
    spec = trained_bridge(run_dir)
    chosen, jobs = {}, []
    for case in cases:
        if case.vae is None:
            continue
        c, h, w = case.input_shape
        if spec is not None and spec.latent_shape == (c, h, w) and (spec.image_size, spec.channels) == (
                case.size, case.vae.channels):
            chosen[case.name] = {"dir": str(spec.folder), "source": f"trained decoder of {run_dir}"}
            continue
        out = cache_dir / f"decoder-{cache_key(case.vae)}"
        chosen[case.name] = {"dir": str(out), "source": "fresh decoder (random weights) of the same design",
                             "vae_channel_mult": list(case.vae.channel_mult)}
        if not (out / "bridge.json").is_file() and all(j["out"] != str(out) for j in jobs):
            jobs.append({"vae": case.vae.to_dict(), "out": str(out)})
    if jobs:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            write_json(Path(tmp) / "jobs.json", jobs)
            command = [sys.executable, "-m", "pipelines.bench.export_decoders", str(Path(tmp) / "jobs.json")]
            proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"exporting the fresh decoders failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}\n"
                               "pass --run DIR with an exported bridge, or check that Keras/TensorFlow work")
    return chosen
