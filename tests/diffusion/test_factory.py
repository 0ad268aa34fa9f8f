"""create_model / create_classifier / create_gaussian_diffusion / create_model_and_diffusion from configs."""

import numpy as np
import pytest
import torch

from diffusion.config import PRESETS, DiffusionConfig, UNetConfig, preset
from diffusion.factory import create_classifier, create_gaussian_diffusion, create_model, create_model_and_diffusion
from diffusion.gaussian_diffusion import LossType, ModelMeanType, ModelVarType


@pytest.mark.parametrize("name", ["fmnist-latent", "fmnist-pixel", "rgb-latent", "rgb-pixel"])
def test_small_presets_build_and_run(name):
    unet_cfg, diff_cfg = preset(name)
    model, diffusion = create_model_and_diffusion(unet_cfg, diff_cfg)
    x = torch.randn(2, unet_cfg.in_channels, unet_cfg.image_size, unet_cfg.image_size)
    out = model(x, torch.tensor([0, 999]), torch.tensor([3, unet_cfg.null_label]))
    assert out.shape == x.shape  # learn_sigma off: eps only
    assert diffusion.num_timesteps == diff_cfg.diffusion_steps


def test_guided64_is_the_reference_architecture():
    unet_cfg, diff_cfg = PRESETS["guided64"]
    with torch.device("meta"):  # construct the ~300M-parameter model without allocating or running it
        model, diffusion = create_model_and_diffusion(unet_cfg, diff_cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["input_blocks.0.0.weight"] == (192, 3, 3, 3)
    assert shapes["label_emb.weight"] == (1000, 768)  # no null row: the reference's 1000 classes
    assert shapes["out.2.weight"] == (6, 192, 3, 3)  # learn_sigma doubles the output channels
    assert shapes["middle_block.1.qkv.weight"] == (3 * 768, 768, 1)  # last level 192 * 4 channels
    assert model.middle_block[1].num_heads == 768 // 64
    assert sum(k.startswith("output_blocks.") and k.endswith(".in_layers.2.weight") for k in shapes) == 4 * 4 + 3
    assert diffusion.model_var_type == ModelVarType.LEARNED_RANGE


def test_null_class_adds_one_embedding_row():
    cfg = UNetConfig(image_size=8, in_channels=4, num_channels=32, num_res_blocks=1, attention_resolutions="4",
                     class_cond=True, num_classes=5, null_class=True)
    model = create_model(cfg)
    assert model.label_emb.weight.shape[0] == 6 and cfg.null_label == 5
    x = torch.randn(2, 4, 8, 8)
    model(x, torch.tensor([1, 2]), torch.tensor([0, 5]))  # the null label is a valid input
    with pytest.raises(ValueError, match=r"valid labels are 0\.\.5"):
        model(x, torch.tensor([1, 2]), torch.tensor([0, 6]))
    assert create_model(cfg.replace(null_class=False)).label_emb.weight.shape[0] == 5


def test_learn_sigma_doubles_out_channels_and_unconditional_has_no_label_embedding():
    cfg = UNetConfig(image_size=8, in_channels=4, num_channels=32, num_res_blocks=1, attention_resolutions="",
                     learn_sigma=True)
    model = create_model(cfg)
    assert model.out_channels == 8 and not hasattr(model, "label_emb")
    assert model(torch.randn(1, 4, 8, 8), torch.tensor([5])).shape == (1, 8, 8, 8)


@pytest.mark.parametrize("pool", ["adaptive", "attention", "spatial", "spatial_v2"])
def test_classifier_for_latents(pool):
    clf = create_classifier(image_size=8, in_channels=4, num_classes=10, classifier_width=64, classifier_depth=1,
                            classifier_attention_resolutions="4", classifier_pool=pool)
    assert clf(torch.randn(3, 4, 8, 8), torch.tensor([0, 10, 999])).shape == (3, 10)


def test_classifier_defaults_are_the_reference_classifier():
    with torch.device("meta"):
        clf = create_classifier()
    assert clf.model_channels == 128 and clf.num_res_blocks == 2 and clf.pool == "attention"
    assert clf.out[2].c_proj.weight.shape == (1000, 512, 1)  # 64 px -> channel_mult (1,2,3,4) -> 512 channels


@pytest.mark.parametrize(
    "flags,mean,var,loss",
    [
        ({}, ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE, LossType.MSE),
        ({"sigma_small": True, "predict_xstart": True}, ModelMeanType.START_X, ModelVarType.FIXED_SMALL, LossType.MSE),
        ({"predict_v": True, "use_kl": True}, ModelMeanType.VELOCITY, ModelVarType.FIXED_LARGE, LossType.RESCALED_KL),
        ({"rescale_learned_sigmas": True}, ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE, LossType.RESCALED_MSE),
        ({"use_kl": True, "rescale_learned_sigmas": True}, ModelMeanType.EPSILON, ModelVarType.FIXED_LARGE,
         LossType.RESCALED_KL),  # use_kl wins, as in the reference
    ],
)
def test_diffusion_flags_map_like_the_reference(flags, mean, var, loss):
    diffusion = create_gaussian_diffusion(DiffusionConfig(**flags))
    assert (diffusion.model_mean_type, diffusion.model_var_type, diffusion.loss_type) == (mean, var, loss)
    assert create_gaussian_diffusion(DiffusionConfig(**flags), learn_sigma=True).model_var_type == \
        ModelVarType.LEARNED_RANGE


def test_respacing_keeps_the_original_timesteps():
    full = create_gaussian_diffusion(DiffusionConfig(diffusion_steps=100, noise_schedule="cosine"))
    spaced = create_gaussian_diffusion(DiffusionConfig(diffusion_steps=100, noise_schedule="cosine",
                                                       timestep_respacing="10", rescale_timesteps=True))
    assert full.num_timesteps == 100 and list(full.timestep_map) == list(range(100))
    assert spaced.num_timesteps == 10 and spaced.rescale_timesteps
    # The kept steps reproduce the full chain's alpha_bar at the original timesteps.
    np.testing.assert_allclose(spaced.alphas_cumprod, full.alphas_cumprod[spaced.timestep_map], rtol=1e-9)
