"""Diffusion in PyTorch with openai/guided-diffusion's semantics (torch only: never imports TensorFlow/Keras).

Names resolve lazily (PEP 562) so `import diffusion` stays cheap and each module loads when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GaussianDiffusion": "diffusion.gaussian_diffusion",
    "ModelMeanType": "diffusion.gaussian_diffusion",
    "ModelVarType": "diffusion.gaussian_diffusion",
    "LossType": "diffusion.gaussian_diffusion",
    "get_named_beta_schedule": "diffusion.schedules",
    "SpacedDiffusion": "diffusion.respace",
    "space_timesteps": "diffusion.respace",
    "usable_timesteps": "diffusion.respace",
    "UNetModel": "diffusion.unet",
    "EncoderUNetModel": "diffusion.unet",
    "UNetConfig": "diffusion.config",
    "DiffusionConfig": "diffusion.config",
    "create_model_and_diffusion": "diffusion.factory",
    "create_model": "diffusion.factory",
    "create_gaussian_diffusion": "diffusion.factory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffusion' has no attribute {name!r}")
