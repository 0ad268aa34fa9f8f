"""A run's own guidance defaults: RUN/guidance.json, written by pipelines/tune_guidance.py, read by sample.py.

The built-in defaults (`diffusion.config.DEFAULT_GUIDANCE_SCALE` and friends) were tuned on the shipped 2,600-step
Fashion-MNIST model. A model trained longer, or on other data, is best at other scales: the same recipe trained to
5,200 steps scores FID 1.12 at the built-in defaults and 0.51 at its own (docs/benchmarks.md). So a run may carry
the scales measured best for it, and sample.py takes them when no guidance flag is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion.config import DEFAULT_GUIDANCE_SCALE, DEFAULT_GUIDANCE_SCALE_WITH_GUIDE, DEFAULT_GUIDE_SCALE

GUIDANCE_FILE = "guidance.json"
TUNE_HINT = "python pipelines/tune_guidance.py --run {run}"


@dataclass(frozen=True)
class GuidanceChoice:
    """The scales to sample with and where they came from ('flags', the guidance.json path, or 'built-in')."""

    guidance_scale: float
    guide_scale: float
    source: str
    note: str | None = None  # something the user should know (a stale or inapplicable guidance.json)


def builtin_scales(null_class: bool, has_guide: bool) -> tuple[float, float]:
    """(classifier-free scale, autoguidance scale) built in: 2.25 alone, 2 + 1.2 with a guide; 1 where not possible."""
    guidance = (DEFAULT_GUIDANCE_SCALE_WITH_GUIDE if has_guide else DEFAULT_GUIDANCE_SCALE) if null_class else 1.0
    return guidance, DEFAULT_GUIDE_SCALE if has_guide else 1.0


def read_tuned(run_root: str | os.PathLike) -> dict[str, Any] | None:
    """RUN/guidance.json, or None when the run has none. A malformed file is an error that says how to remake it."""
    from runfs import read_json

    path = Path(run_root) / GUIDANCE_FILE
    if not path.is_file():
        return None
    tuned = read_json(path)
    needed = ("guidance_scale", "guide_scale", "checkpoint", "guide")
    if not isinstance(tuned, dict) or any(k not in tuned for k in needed):
        raise ValueError(f"{path} is not a guidance file of tune_guidance.py (it needs {', '.join(needed)}): delete "
                         f"it, or remake it with `{TUNE_HINT.format(run=Path(run_root))}`")
    return tuned


def resolve_guidance(run_root: str | os.PathLike | None, checkpoint: str, guide: str | None, null_class: bool,
                     guidance_scale: float | None = None, guide_scale: float | None = None) -> GuidanceChoice:
    """The scales for sampling the checkpoint folder named `checkpoint` (e.g. step_0002600), with the guide
    checkpoint named `guide` or None. A scale given (not None) wins; the others come from RUN/guidance.json when it
    was tuned for the same setting (with a guide or without one), else from the built-in defaults. A guidance.json
    tuned on another checkpoint is still used (it is closer than the built-in values), with a note to re-tune.
    run_root None: no guidance.json applies (the run's file is about its latent model, not e.g. its pixel model)."""
    base_w, base_s = builtin_scales(null_class, guide is not None)
    tuned, note, source = None if run_root is None else read_tuned(run_root), None, "built-in"
    path = Path(run_root or ".") / GUIDANCE_FILE
    if tuned is not None and (guidance_scale is None or guide_scale is None):
        if (tuned["guide"] is None) != (guide is None):
            note = (f"{path} was tuned {'with' if tuned['guide'] else 'without'} a guide model and this sampling "
                    f"runs {'with' if guide else 'without'} one: its scales do not apply, the built-in ones are "
                    f"used (re-tune for this setting: {TUNE_HINT.format(run=Path(run_root))})")
        else:
            base_w, base_s, source = float(tuned["guidance_scale"]), float(tuned["guide_scale"]), str(path)
            if tuned["checkpoint"] != checkpoint or tuned["guide"] != guide:
                note = (f"{path} was tuned on {tuned['checkpoint']}" + (f" with guide {tuned['guide']}" if guide
                        else "") + f", this is {checkpoint}" + (f" with guide {guide}" if guide else "")
                        + f": its scales are used, but re-tune after further training "
                        f"({TUNE_HINT.format(run=Path(run_root))})")
    if guidance_scale is not None and guide_scale is not None:
        source = "flags"
    elif guidance_scale is not None or guide_scale is not None:
        source = f"flags and {source}"
    return GuidanceChoice(base_w if guidance_scale is None else float(guidance_scale),
                          base_s if guide_scale is None else float(guide_scale), source, note)
