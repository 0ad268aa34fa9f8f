"""Wire a training run together: configs resolved against the data, process group, model, process, loop."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from diffusion.checkpoints import latest_checkpoint
from diffusion.config import ClassifierConfig, DiffusionConfig, UNetConfig
from diffusion.device import resolve_precision
from diffusion.factory import create_classifier, create_gaussian_diffusion, create_model_and_diffusion
from diffusion.resample import create_named_schedule_sampler
from diffusion.training.config import TrainConfig
from diffusion.training.data import TrainData
from diffusion.training.distributed import DistInfo, setup_distributed
from diffusion.training.ema import warmup_note
from diffusion.training.loop import TrainLoop
from diffusion.training.objectives import classifier_objective, diffusion_objective
from runfs.lineage import with_latents_digest
from runfs.writable import check_writable


@dataclass
class TrainingSession:
    loop: TrainLoop
    dist: DistInfo
    model: torch.nn.Module
    diffusion: object


def resolve_unet(unet: UNetConfig, data: TrainData) -> UNetConfig:
    """The preset's U-Net with the data's shape and label set (unlabelled data -> unconditional model)."""
    channels, height, width = data.shape
    if height != width:
        raise ValueError(f"the U-Net needs square inputs; the data is {height}x{width}")
    if data.num_classes is None:
        return unet.replace(image_size=height, in_channels=channels, class_cond=False, null_class=False)
    return unet.replace(image_size=height, in_channels=channels, num_classes=data.num_classes)


def build_training(kind: str, *, out_dir: str | os.PathLike, data: TrainData, unet: UNetConfig,
                   diffusion: DiffusionConfig, train: TrainConfig, classifier: ClassifierConfig | None = None,
                   device: str = "auto", require_resume: bool = False, progress: bool = True,
                   tensorboard: bool = False) -> TrainingSession:
    """`kind` "diffusion" trains the U-Net; "classifier" the noisy-input classifier on the same data."""
    out_dir = check_writable(out_dir, "the checkpoints")  # before any step is trained
    if require_resume and latest_checkpoint(out_dir) is None:
        raise FileNotFoundError(f"--resume: no complete checkpoint in {out_dir} to continue from")
    dist = setup_distributed(device)
    torch.manual_seed(train.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    if train.precision == "auto":  # the run's config records what was used
        train = train.replace(precision=resolve_precision(train.precision, dist.device))
        if dist.is_main and progress:
            print(f"precision auto: {train.precision} on {dist.device.type} "
                  f"({'native' if train.precision == 'bf16' else 'no native'} bfloat16)", flush=True)
    note = warmup_note(train.ema_rates, train.max_steps) if train.ema_warmup else None
    if note and dist.is_main and progress:
        print(note, flush=True)
    common = {"train": train.to_dict(), "data": with_latents_digest(data.meta)}  # lineage: which latents
    if kind == "diffusion":
        unet = resolve_unet(unet, data)
        if train.cfg_dropout > 0 and unet.null_label is None:
            raise ValueError("--cfg-dropout needs a class-conditional model with a null class "
                             "(labelled data and --null-class)")
        model, process = create_model_and_diffusion(unet, diffusion)
        objective = diffusion_objective(process, train.snr_gamma)
        null_label, use_labels = unet.null_label, unet.class_cond
        run_config = {"kind": "diffusion", "model": unet.to_dict(), "diffusion": diffusion.to_dict(), **common}
    elif kind == "classifier":
        if data.num_classes is None:
            raise ValueError("the guidance classifier needs labelled data; these latents have no labels")
        classifier = classifier or ClassifierConfig()
        channels, size, _ = data.shape
        model = create_classifier(image_size=size, in_channels=channels, num_classes=data.num_classes,
                                  **classifier.to_dict())
        process = create_gaussian_diffusion(diffusion.replace(timestep_respacing=""))
        objective, null_label, use_labels = classifier_objective(process), None, True
        run_config = {"kind": "classifier", "model": classifier.to_dict(), "diffusion": diffusion.to_dict(),
                      "num_classes": data.num_classes, "image_size": size, "in_channels": channels, **common}
        train = train.replace(cfg_dropout=0.0)
    else:
        raise ValueError(f"unknown training kind {kind!r}")
    sampler = create_named_schedule_sampler(train.schedule_sampler, process.num_timesteps)
    loop = TrainLoop(model=model, objective=objective, sampler=sampler, data=data, config=train, out_dir=out_dir,
                     run_config=run_config, dist=dist, null_label=null_label, use_labels=use_labels,
                     progress=progress, tensorboard=tensorboard)
    return TrainingSession(loop=loop, dist=dist, model=model, diffusion=process)
