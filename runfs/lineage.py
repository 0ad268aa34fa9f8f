"""Lineage: which VAE and which latents each stage of a run was built from, and the checks that they agree.

What each stage records (docs/reliability.md):
- latents/meta.json    `vae_checkpoint`: the digest of the VAE model folder that encoded them;
- bridge/bridge.json   `vae_checkpoint` (the latents'), `latents_digest` (digest of the latents' meta.json, whose
                       scale the decoder applies) and the latent norm (`latent_norm`, `scale_factor`, ...);
- diffusion, guide and classifier checkpoints' config.json `data`: the same three, for the latents they learnt.
A VAE's identity is the digest of its model folder; the latents' is the digest of their meta.json (it records the
VAE, the scale and the time of encoding). Records missing from older runs are not checked. Stdlib only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from runfs.atomic import read_json
from runfs.errors import LineageError
from runfs.layout import RunPaths, file_digest
from runfs.leftovers import recover

VAE_FILES = ("encoder.keras", "decoder.keras")
NORM_KEYS = ("latent_norm", "scale_factor", "shift_factor")


def vae_model_dir(vae_dir: str | os.PathLike) -> Path | None:
    """RUN/vae/model (the final model) or else RUN/vae/checkpoint, whichever holds both Keras files; None if neither
    (a packed run has no VAE)."""
    for sub in ("model", "checkpoint"):
        folder = Path(vae_dir) / sub
        recover(folder)
        if all((folder / name).is_file() for name in VAE_FILES):
            return folder
    return None


def vae_digest(run_root: str | os.PathLike) -> str | None:
    """The digest of the run's current VAE (what encode.py records as `vae_checkpoint`), None without one."""
    folder = vae_model_dir(RunPaths(run_root).vae)
    return None if folder is None else file_digest(folder)


def latents_digest(latents_dir: str | os.PathLike) -> str | None:
    """The identity of one encoding: the digest of latents/meta.json; None when there are no latents."""
    meta = Path(latents_dir) / "meta.json"
    return file_digest(meta) if meta.is_file() else None


def with_latents_digest(data_meta: dict[str, Any]) -> dict[str, Any]:
    """A training data record (diffusion config's `data`) with the digest of the latents it names added."""
    if data_meta.get("kind") != "latent" or not data_meta.get("latents_dir"):
        return data_meta
    return {**data_meta, "latents_digest": latents_digest(data_meta["latents_dir"])}


def _norm(record: dict[str, Any]) -> tuple[str, list[float], list[float]] | None:
    if "scale_factor" not in record:
        return None
    scale = record["scale_factor"]
    scale = [float(v) for v in scale] if isinstance(scale, list) else [float(scale)]
    shift = [float(v) for v in record.get("shift_factor") or [0.0] * len(scale)]
    return record.get("latent_norm", "global"), scale, shift


def _norm_differs(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """'scale X vs Y' when both records hold a latent norm and they differ (relative 1e-6), else None."""
    na, nb = _norm(a), _norm(b)
    if na is None or nb is None:
        return None
    if na[0] == nb[0] and len(na[1]) == len(nb[1]) and all(
            math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9) for x, y in zip(na[1] + na[2], nb[1] + nb[2], strict=True)):
        return None
    return f"latent norm {na[0]} scale {na[1]} shift {na[2]} vs {nb[0]} scale {nb[1]} shift {nb[2]}"


def _vae_differs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    va, vb = a.get("vae_checkpoint"), b.get("vae_checkpoint")
    return bool(va) and bool(vb) and va != vb


def check_bridge_for_model(bridge: dict[str, Any], bridge_file: str | os.PathLike, model_config: dict[str, Any],
                           model_dir: str | os.PathLike, run_root: str | os.PathLike) -> None:
    """Sampling: the bridge must decode the latents the diffusion (or guide) model at `model_dir` learnt, i.e. come
    from the same VAE and apply the same latent norm. LineageError naming both and the fix otherwise."""
    data = model_config.get("data") or {}
    if data.get("kind", "latent") != "latent":
        return
    run = RunPaths(run_root)
    if _vae_differs(bridge, data):
        current = vae_digest(run.root)
        if current == data["vae_checkpoint"]:
            fix = (f"{run.vae} still holds that VAE: re-export the bridge with `python pipelines/export.py --run "
                   f"{run.root}` (re-encode first with `python pipelines/encode.py --run {run.root}` if export asks)")
        else:
            fix = (f"the run's VAE is now {current or 'absent'}: train the diffusion model again on the current "
                   f"latents (`python pipelines/train_diffusion.py --run NEW_RUN`), or sample with the bridge "
                   f"exported from VAE {data['vae_checkpoint']}")
        raise LineageError(
            f"{bridge_file} decodes latents of VAE {bridge['vae_checkpoint']}, but {model_dir} was trained on latents "
            f"of VAE {data['vae_checkpoint']}: its samples would go through the wrong decoder. {fix}; "
            "--allow-mismatch samples anyway")
    differs = _norm_differs(bridge, data)
    if differs:
        current = latents_digest(run.latents)
        same_latents = current is not None and current == data.get("latents_digest")
        fix = (f"re-export the bridge from them: `python pipelines/export.py --run {run.root}`" if same_latents else
               "re-export the bridge from the latents the model was trained on, or train the model again on the "
               "current ones")
        raise LineageError(
            f"{bridge_file} and {model_dir} scale the latents differently ({differs}; bridge vs model): the latents "
            f"were re-encoded after the bridge or the model was made. {fix}; --allow-mismatch samples anyway")


def check_resume(stored: dict[str, Any], new: dict[str, Any], checkpoint: str | os.PathLike) -> None:
    """Resuming training: the data of the stored checkpoint (`stored`, its config's `data`) and of this run (`new`)
    must be latents of the same VAE with the same latent norm."""
    where = new.get("latents_dir", "the latents")
    fix = (f"Continuing would train the old weights on other latents: start a new model (use a new --run, or move "
           f"{Path(checkpoint).parent} away), or restore the latents it was trained on")
    if _vae_differs(stored, new):
        raise LineageError(f"{checkpoint} was trained on latents of VAE {stored['vae_checkpoint']}, but {where} now "
                           f"holds latents of VAE {new['vae_checkpoint']} (re-encoded after the VAE changed). {fix}")
    differs = _norm_differs(stored, new)
    if differs and stored.get("kind", "latent") == "latent":
        raise LineageError(f"{checkpoint} was trained on latents scaled otherwise than {where} now ({differs}; "
                           f"checkpoint vs now). {fix}")


def check_export(latents_meta: dict[str, Any], latents_dir: str | os.PathLike, run_root: str | os.PathLike) -> None:
    """Export: the latents (whose scale the bridge applies) must come from the VAE being exported."""
    current = vae_digest(run_root)
    recorded = latents_meta.get("vae_checkpoint")
    if current and recorded and recorded != current:
        raise LineageError(
            f"{latents_dir} were encoded by VAE {recorded}, but {RunPaths(run_root).vae} now holds VAE {current}: "
            f"the bridge would apply the other VAE's latent scale. Re-encode first: `python pipelines/encode.py "
            f"--run {run_root}`, then export")


def _newest_config(root: Path) -> tuple[Path, dict[str, Any]] | None:
    steps = sorted(p for p in root.glob("step_*") if (p / "config.json").is_file() and (p / "meta.json").is_file())
    return (steps[-1], read_json(steps[-1] / "config.json")) if steps else None


def stale_downstream(run_root: str | os.PathLike) -> list[str]:
    """One line per folder of the run that was built from another VAE or other latents than the run holds now (what
    to rerun, each): what a re-encode or a retrained VAE leaves stale."""
    run, lines = RunPaths(run_root), []
    current_vae = vae_digest(run.root)
    latents = read_json(run.latents / "meta.json") if (run.latents / "meta.json").is_file() else None
    if latents and current_vae and latents.get("vae_checkpoint") not in (None, "", current_vae):
        lines.append(f"{run.latents}: encoded by VAE {latents['vae_checkpoint']}, {run.vae} now holds "
                     f"{current_vae}: rerun `python pipelines/encode.py --run {run.root}`")
    reference = latents or ({"vae_checkpoint": current_vae} if current_vae else None)
    if reference is None:
        return lines
    if (run.bridge / "bridge.json").is_file():
        bridge = read_json(run.bridge / "bridge.json")
        if _vae_differs(bridge, reference) or _norm_differs(bridge, reference):
            lines.append(f"{run.bridge}: exported from VAE {bridge.get('vae_checkpoint')} or other latents: rerun "
                         f"`python pipelines/export.py --run {run.root}`")
    for root in (run.diffusion, run.guide, run.classifier):
        found = _newest_config(root)
        if found is None:
            continue
        data = found[1].get("data") or {}
        if data.get("kind", "latent") == "latent" and (_vae_differs(data, reference) or
                                                       _norm_differs(data, reference)):
            lines.append(f"{found[0]}: trained on latents of VAE {data.get('vae_checkpoint')} (or scaled otherwise); "
                         f"it no longer matches {run.latents}: train it again in a new run folder, or restore the "
                         "latents it was trained on")
    return lines


def print_stale(run_root: str | os.PathLike) -> list[str]:
    """Print `stale_downstream(run_root)` as notes on stderr (what a stage just made out of date); returns them."""
    import sys

    lines = stale_downstream(run_root)
    for line in lines:
        print(f"note: now stale: {line}", file=sys.stderr)
    return lines
