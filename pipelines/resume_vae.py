"""train_vae.py's resume rule: rerunning the same command continues RUN/vae/checkpoint (no --resume needed)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

STOPPING_FLAGS = ("epochs", "max_steps", "max_train_minutes")


def decide_resume(args: argparse.Namespace, config_flags: Iterable[str]) -> bool:
    """Whether train_vae.py continues RUN/vae/checkpoint: with --resume; and without it when a complete checkpoint is
    there and --overwrite is not given (a line says so). SystemExit when a flag the user set contradicts the saved
    config (only the stopping flags may change when resuming)."""
    from runfs import RunPaths, read_json
    from vae.checkpoint import CHECKPOINT, has_checkpoint

    vae_dir = RunPaths(args.run).vae
    if args.resume or args.overwrite or not has_checkpoint(vae_dir):
        return args.resume
    saved = read_json(vae_dir / "config.json") if (vae_dir / "config.json").is_file() else {}
    conflicts = []
    for name in config_flags:
        given = getattr(args, name, None)
        if name in STOPPING_FLAGS or given is None or name not in saved:
            continue
        value = list(given) if isinstance(given, tuple) else given
        if value != saved[name]:
            conflicts.append(f"--{name.replace('_', '-')} {value} (the checkpoint has {saved[name]})")
    if conflicts:
        raise SystemExit(f"{vae_dir} holds a checkpoint trained with other settings: {'; '.join(conflicts)}. Rerun "
                         "the command that made it to continue (only --epochs, --max-steps and --max-train-minutes "
                         "may change), --overwrite to start again, or choose a new --run folder")
    step = read_json(vae_dir / CHECKPOINT / "meta.json").get("step")
    print(f"resuming {Path(vae_dir) / CHECKPOINT} at step {step} with its saved config (--overwrite starts again)",
          flush=True)
    return True
