"""Build models and processes from config dataclasses, like guided-diffusion's `script_util`.

    unet_cfg, diff_cfg = PRESETS["fmnist-latent"]
    model, diffusion = create_model_and_diffusion(unet_cfg, diff_cfg)

The process modules are imported inside `create_gaussian_diffusion`, so building a U-Net alone stays cheap.
"""

from __future__ import annotations

import math

from diffusion.config import DiffusionConfig, UNetConfig, attention_ds_for, channel_mult_for
from diffusion.encoder_unet import EncoderUNetModel
from diffusion.unet import UNetModel

__all__ = ["create_model", "create_classifier", "create_gaussian_diffusion", "create_model_and_diffusion"]


def create_model(cfg: UNetConfig) -> UNetModel:
    """The U-Net of `cfg`: out_channels = 2 * in_channels with learn_sigma; num_classes (+1 with null_class) rows."""
    channel_mult = channel_mult_for(cfg.image_size, cfg.channel_mult)
    num_classes = None
    if cfg.class_cond:
        num_classes = cfg.num_classes + 1 if cfg.null_class else cfg.num_classes
    return UNetModel(
        image_size=cfg.image_size,
        in_channels=cfg.in_channels,
        model_channels=cfg.num_channels,
        out_channels=2 * cfg.in_channels if cfg.learn_sigma else cfg.in_channels,
        num_res_blocks=cfg.num_res_blocks,
        attention_resolutions=attention_ds_for(cfg.image_size, cfg.attention_resolutions, channel_mult),
        dropout=cfg.dropout,
        channel_mult=channel_mult,
        num_classes=num_classes,
        use_checkpoint=cfg.use_checkpoint,
        use_fp16=cfg.use_fp16,
        num_heads=cfg.num_heads,
        num_head_channels=cfg.num_head_channels,
        num_heads_upsample=cfg.num_heads_upsample,
        use_scale_shift_norm=cfg.use_scale_shift_norm,
        resblock_updown=cfg.resblock_updown,
        use_new_attention_order=cfg.use_new_attention_order,
        time_embedding=(cfg.time_embedding, cfg.time_embedding_dims, cfg.time_embedding_max_frequency),
    )


def create_classifier(image_size: int = 64, in_channels: int = 3, num_classes: int = 1000,
                      classifier_use_fp16: bool = False, classifier_width: int = 128, classifier_depth: int = 2,
                      classifier_attention_resolutions: str = "32,16,8", classifier_use_scale_shift_norm: bool = True,
                      classifier_resblock_updown: bool = True, classifier_pool: str = "attention",
                      channel_mult: str = "") -> EncoderUNetModel:
    """The noisy-input classifier for classifier guidance; defaults are the reference's `classifier_defaults()`.

    `in_channels`, `num_classes` and `channel_mult` are ours (latents, small label sets, latent sizes).
    """
    mults = channel_mult_for(image_size, channel_mult)
    return EncoderUNetModel(
        image_size=image_size,
        in_channels=in_channels,
        model_channels=classifier_width,
        out_channels=num_classes,
        num_res_blocks=classifier_depth,
        attention_resolutions=attention_ds_for(image_size, classifier_attention_resolutions, mults),
        channel_mult=mults,
        use_fp16=classifier_use_fp16,
        num_head_channels=64,
        use_scale_shift_norm=classifier_use_scale_shift_norm,
        resblock_updown=classifier_resblock_updown,
        pool=classifier_pool,
    )


def create_gaussian_diffusion(cfg: DiffusionConfig, learn_sigma: bool = False, lambda_min: float = -math.inf):
    """A SpacedDiffusion as the reference builds it (the full chain when timestep_respacing is "").

    lambda_min: lay the respacing over the leading timesteps whose log-SNR is at least this (respace.usable_timesteps:
    samplers pass DEFAULT_LAMBDA_MIN); the default -inf keeps all of them, as the reference does.

    Loss: RESCALED_KL if use_kl (checked first, as in the reference), else RESCALED_MSE if
    rescale_learned_sigmas, else MSE. Mean: START_X / VELOCITY / EPSILON. Variance: LEARNED_RANGE with
    learn_sigma, else FIXED_SMALL (sigma_small) or FIXED_LARGE.
    """
    from diffusion.gaussian_diffusion import LossType, ModelMeanType, ModelVarType
    from diffusion.respace import SpacedDiffusion, space_timesteps, usable_timesteps
    from diffusion.schedules import get_named_beta_schedule

    if cfg.use_kl:
        loss_type = LossType.RESCALED_KL
    elif cfg.use_l1:
        loss_type = LossType.L1
    elif cfg.rescale_learned_sigmas:
        loss_type = LossType.RESCALED_MSE
    else:
        loss_type = LossType.MSE
    if cfg.predict_xstart:
        mean_type = ModelMeanType.START_X
    elif cfg.predict_v:
        mean_type = ModelMeanType.VELOCITY
    else:
        mean_type = ModelMeanType.EPSILON
    if learn_sigma:
        var_type = ModelVarType.LEARNED_RANGE
    else:
        var_type = ModelVarType.FIXED_SMALL if cfg.sigma_small else ModelVarType.FIXED_LARGE
    betas = get_named_beta_schedule(cfg.noise_schedule, cfg.diffusion_steps)
    steps = usable_timesteps(betas, lambda_min)
    return SpacedDiffusion(
        use_timesteps=space_timesteps(steps, cfg.timestep_respacing or [steps]),
        betas=betas,
        model_mean_type=mean_type,
        model_var_type=var_type,
        loss_type=loss_type,
        rescale_timesteps=cfg.rescale_timesteps,
        model_input=cfg.model_input,
    )


def create_model_and_diffusion(unet_cfg: UNetConfig, diff_cfg: DiffusionConfig):
    """(UNetModel, SpacedDiffusion) from the two configs; learn_sigma lives in the U-Net config."""
    return create_model(unet_cfg), create_gaussian_diffusion(diff_cfg, learn_sigma=unet_cfg.learn_sigma)
