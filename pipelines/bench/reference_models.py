"""The models the memory estimate covers: the project's presets and openai/guided-diffusion's published ImageNet
configurations, each exactly as its README's MODEL_FLAGS give it (fp32 weights: use_fp16 off, bf16 by autocast).

    64x64:   --attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --dropout 0.1 --image_size 64
             --learn_sigma True --noise_schedule cosine --num_channels 192 --num_head_channels 64 --num_res_blocks 3
             --resblock_updown True --use_new_attention_order True --use_fp16 True --use_scale_shift_norm True
    128x128: --attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 128
             --learn_sigma True --noise_schedule linear --num_channels 256 --num_heads 4 --num_res_blocks 2
             --resblock_updown True --use_fp16 True --use_scale_shift_norm True
    256x256: --attention_resolutions 32,16,8 --class_cond True --diffusion_steps 1000 --image_size 256
             --learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2
             --resblock_updown True --use_fp16 True --use_scale_shift_norm True
"""

from __future__ import annotations

from diffusion.config import PRESETS, DiffusionConfig, UNetConfig

_LINEAR = DiffusionConfig(diffusion_steps=1000, noise_schedule="linear")
_GUIDED_COMMON = {"in_channels": 3, "attention_resolutions": "32,16,8", "class_cond": True, "num_classes": 1000,
                  "learn_sigma": True, "use_scale_shift_norm": True, "resblock_updown": True}

MODELS: dict[str, tuple[UNetConfig, DiffusionConfig]] = {
    **PRESETS,  # fmnist-latent, fmnist-pixel, and guided64 (the reference's 64x64 flags)
    "guided128": (UNetConfig(image_size=128, num_channels=256, num_res_blocks=2, num_heads=4, **_GUIDED_COMMON),
                  _LINEAR),
    "guided256": (UNetConfig(image_size=256, num_channels=256, num_res_blocks=2, num_head_channels=64,
                             **_GUIDED_COMMON), _LINEAR),
}


def model(name: str) -> tuple[UNetConfig, DiffusionConfig]:
    """(UNetConfig, DiffusionConfig) of a preset or a guided-diffusion configuration by name."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the estimate knows {sorted(MODELS)}")
    return MODELS[name]
