"""Sampling from a trained checkpoint: load it (EMA weights by default), pick labels, guidance and a sampler,
and generate latents (or pixels) batch by batch. Torch only; decoding is the bridge's job."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffusion.checkpoints import find_checkpoint, load_weights, read_checkpoint_config, weights_file
from diffusion.config import ClassifierConfig, DiffusionConfig, UNetConfig
from diffusion.factory import create_classifier, create_gaussian_diffusion, create_model
from diffusion.guidance import Guidance, classifier_cond_fn
from diffusion.nn import to_preferred_format
from diffusion.respace import DEFAULT_LAMBDA_MIN

# Each sampler's respacing when none is given: the reference's DDIM spacing, a trailing grid for DPM-Solver++.
DEFAULT_RESPACING = {"ddpm": "", "ddim": "ddim50", "dpmpp": "trailing20"}


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    config: dict[str, Any]  # the checkpoint's config.json
    path: Path
    weights: str  # file the weights came from

    @property
    def unet(self) -> UNetConfig:
        return UNetConfig.from_dict(self.config["model"])

    @property
    def diffusion(self) -> DiffusionConfig:
        return DiffusionConfig.from_dict(self.config["diffusion"])


def load_diffusion_checkpoint(path: str | os.PathLike, ema: str = "auto",
                              device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Rebuild the U-Net from config.json and load its weights: EMA ("auto": the first rate), a rate, or "none"."""
    folder = find_checkpoint(path, "train_diffusion")
    config = read_checkpoint_config(folder)
    if config.get("kind") != "diffusion":
        raise ValueError(f"{folder} holds a {config.get('kind')!r} checkpoint, not a diffusion model")
    model = create_model(UNetConfig.from_dict(config["model"]))
    weights = weights_file(folder, ema)
    model.load_state_dict(load_weights(weights, device), strict=True)
    # channels_last on the CPU: the no-grad forward is several times faster (docs/bench/unet.md).
    return LoadedCheckpoint(to_preferred_format(model.to(device).eval()), config, folder, weights.name)


def load_classifier_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    folder = find_checkpoint(path, "train_classifier")
    config = read_checkpoint_config(folder)
    if config.get("kind") != "classifier":
        raise ValueError(f"{folder} holds a {config.get('kind')!r} checkpoint, not a classifier")
    shape_args = {k: config[k] for k in ("image_size", "in_channels", "num_classes")}
    model = create_classifier(**shape_args, **ClassifierConfig.from_dict(config["model"]).to_dict())
    weights = weights_file(folder, "auto")
    model.load_state_dict(load_weights(weights, device), strict=True)
    return LoadedCheckpoint(model.to(device).eval(), config, folder, weights.name)


def make_labels(num_samples: int, unet: UNetConfig, class_label: int | None = None,
                classes: list[int] | None = None) -> torch.Tensor | None:
    """Labels [N]: one class, or the chosen classes (default: all) in equal consecutive blocks, so that a grid
    with N / num_classes columns shows one class per row. None for an unconditional model."""
    if not unet.class_cond:
        if class_label is not None or classes:
            raise ValueError("--class-label/--classes need a class-conditional model; this one is unconditional")
        return None
    chosen = [class_label] if class_label is not None else (classes or list(range(unet.num_classes)))
    bad = [c for c in chosen if not 0 <= c < unet.num_classes]
    if bad:
        raise ValueError(f"class label(s) {bad} out of range: this model knows classes 0..{unet.num_classes - 1}")
    return torch.tensor([chosen[(i * len(chosen)) // num_samples] for i in range(num_samples)], dtype=torch.long)


def guided_model(loaded: LoadedCheckpoint, guidance_scale: float,
                 guidance_interval: tuple[float, float] | None = None, guide: LoadedCheckpoint | None = None,
                 guide_scale: float = 1.0) -> torch.nn.Module:
    """The U-Net, wrapped for classifier-free guidance at `guidance_scale` and autoguidance by the weaker model
    `guide` at `guide_scale` (only at timesteps in `guidance_interval`, when given); unwrapped when both are 1."""
    cfg = guidance_scale != 1.0
    auto = guide is not None and guide_scale != 1.0
    if not (cfg or auto):
        return loaded.model
    if cfg and loaded.unet.null_label is None:
        raise ValueError(f"--guidance-scale {guidance_scale} needs a model trained with a null class "
                         "(class-conditional, --cfg-dropout > 0); this one has none: use --guidance-scale 1")
    if auto:
        check_guide(loaded, guide)
    return Guidance(loaded.model, guidance_scale, loaded.unet.null_label if cfg else None,
                    guide.model if auto else None, guide_scale, guidance_interval)


def check_guide(loaded: LoadedCheckpoint, guide: LoadedCheckpoint) -> None:
    """Autoguidance compares two models' predictions of the same quantity on the same data: they must agree on the
    input shape, the classes, the noise schedule, the parameterisation and (latent models) the latents' scaling."""
    def facts(c: LoadedCheckpoint) -> dict[str, Any]:
        u, d, data = c.unet, c.diffusion, c.config.get("data", {})
        return {"input (channels, size)": (u.in_channels, u.image_size),
                "classes": u.num_classes if u.class_cond else None,
                "noise schedule": (d.noise_schedule, d.diffusion_steps),
                "prediction": "x0" if d.predict_xstart else "v" if d.predict_v else "eps",
                "rescale_timesteps": d.rescale_timesteps, "model input": d.model_input,
                "data": (data.get("kind"), data.get("latent_norm"), data.get("scale_factor"))}
    ours, theirs = facts(loaded), facts(guide)
    differ = [f"{k}: {ours[k]} vs {theirs[k]}" for k in ours if ours[k] != theirs[k]]
    if differ:
        raise ValueError(f"the guide model {guide.path} does not match {loaded.path} (" + "; ".join(differ) +
                         "): train the guide on the same latents with the same diffusion settings")


def classifier_guidance(classifier: LoadedCheckpoint, scale: float, unet: UNetConfig):
    """cond_fn for --classifier-scale: the classifier must know the diffusion model's classes and input shape."""
    expected = (unet.in_channels, unet.image_size)
    got = (classifier.config["in_channels"], classifier.config["image_size"])
    if got != expected:
        raise ValueError(f"{classifier.path} classifies inputs of {got} (channels, size); the diffusion model "
                         f"samples {expected}: train the classifier on the same run's latents")
    if unet.class_cond and classifier.config["num_classes"] != unet.num_classes:
        raise ValueError(f"{classifier.path} knows {classifier.config['num_classes']} classes, the diffusion "
                         f"model {unet.num_classes}")
    return classifier_cond_fn(classifier.model, scale)


def generate(loaded: LoadedCheckpoint, *, num_samples: int, batch_size: int, sampler: str = "ddim",
             timestep_respacing: str | None = None, eta: float = 0.0, labels: torch.Tensor | None = None,
             guidance_scale: float = 1.0, guidance_interval: tuple[float, float] | None = None, cond_fn=None,
             clip_denoised: bool = False, seed: int | None = 0, device: torch.device | str = "cpu",
             progress: bool = True, lambda_min: float = DEFAULT_LAMBDA_MIN,
             guide: LoadedCheckpoint | None = None, guide_scale: float = 1.0) -> Iterator[tuple[torch.Tensor, Any]]:
    """Yield (samples [B, C, H, W], labels [B] or None) batch by batch; the same seed gives the same samples.

    lambda_min: the respacing covers only the timesteps with log-SNR >= lambda_min (respace.DEFAULT_LAMBDA_MIN:
    every step of the linear schedule, all but the last few of the cosine one; -inf: all, as the reference).
    guide: a weaker model of the same task for autoguidance at `guide_scale`, on top of classifier-free guidance at
    `guidance_scale`."""
    if sampler not in DEFAULT_RESPACING:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(DEFAULT_RESPACING)}")
    respacing = DEFAULT_RESPACING[sampler] if timestep_respacing is None else timestep_respacing
    unet = loaded.unet
    process = create_gaussian_diffusion(loaded.diffusion.replace(timestep_respacing=respacing), unet.learn_sigma,
                                        lambda_min=lambda_min)
    model = guided_model(loaded, guidance_scale, guidance_interval, guide, guide_scale)
    generator = torch.Generator(device).manual_seed(seed) if seed is not None else None
    for start in range(0, num_samples, batch_size):
        n = min(batch_size, num_samples - start)
        y = None if labels is None else labels[start:start + n].to(device)
        shape = (n, unet.in_channels, unet.image_size, unet.image_size)
        common = dict(clip_denoised=clip_denoised, cond_fn=cond_fn, model_kwargs={} if y is None else {"y": y},
                      device=device, progress=progress, generator=generator)
        with torch.no_grad():
            if sampler == "ddpm":
                x = process.p_sample_loop(model, shape, **common)
            elif sampler == "ddim":
                x = process.ddim_sample_loop(model, shape, eta=eta, **common)
            else:
                x = process.dpm_solver_pp_sample_loop(model, shape, **common)
        yield x, y
