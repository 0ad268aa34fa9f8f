"""A preset's U-Net fitted to other data: levels and attention keep the preset's intent, labels follow the data."""

import pytest
import torch

from diffusion.architecture import attention_from_bottom, default_channel_mult, fit_unet
from diffusion.config import PRESETS, channel_mult_for
from diffusion.factory import create_model

FMNIST, _ = PRESETS["fmnist-latent"]  # 8x8x8 latents, channel_mult 1,2, attention at 4 (the coarsest level)
GUIDED64, _ = PRESETS["guided64"]  # 64 px, channel_mult by size (1,2,3,4), attention at 32,16,8


@pytest.mark.parametrize(("size", "mult", "attention"), [
    (8, "1,2", "4"), (16, "1,2,2", "4"), (32, "1,2,2,2", "4"), (64, "1,2,3,4", "8")])
def test_the_fmnist_preset_keeps_attention_at_its_coarsest_level_at_every_latent_size(size, mult, attention):
    fitted, notes = fit_unet(FMNIST, (4, size, size), 10)
    assert (fitted.image_size, fitted.in_channels, fitted.channel_mult) == (size, 4, mult)
    assert fitted.attention_resolutions == attention
    assert attention_from_bottom(fitted) == [0]
    assert fitted.class_cond and fitted.null_class and fitted.num_classes == 10
    assert ("in_channels 8 -> 4" in notes) and (size == 8) == (len(notes) == 1)


def test_the_reference_64px_model_fitted_to_32px_keeps_its_three_coarsest_attention_levels():
    fitted, _ = fit_unet(GUIDED64, (3, 32, 32), 1000)
    assert fitted.channel_mult == "1,2,2,2" and fitted.attention_resolutions == "16,8,4"
    assert attention_from_bottom(fitted) == attention_from_bottom(GUIDED64) == [0, 1, 2]


@pytest.mark.parametrize("labelled", [True, False])
@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_fitted_models_build_and_run_on_their_data(size, labelled):
    small = FMNIST.replace(num_channels=32, num_head_channels=16, num_res_blocks=1)
    fitted, _ = fit_unet(small, (3, size, size), 5 if labelled else None)
    assert fitted.class_cond == labelled and fitted.null_class == labelled
    model = create_model(fitted).eval()
    y = torch.tensor([0, 4]) if labelled else None
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size), torch.tensor([1, 500]), y)
    assert out.shape == (2, 3, size, size)


def test_flags_the_user_gave_are_kept():
    fitted, notes = fit_unet(FMNIST, (4, 16, 16), None, keep={"attention_resolutions", "class_cond"})
    assert fitted.attention_resolutions == "4" and fitted.channel_mult == "1,2,2"
    assert fitted.class_cond and not any(n.startswith("class_cond") for n in notes)
    fitted, _ = fit_unet(FMNIST, (4, 16, 16), 10, keep={"channel_mult"})
    assert fitted.channel_mult == "1,2" and fitted.attention_resolutions == "8"  # the coarsest of 16, 8


def test_default_levels_for_sizes_outside_the_reference_table_end_at_four_pixels_or_an_odd_size():
    assert default_channel_mult(24) == "1,2,2"  # 24, 12, 6
    assert default_channel_mult(12) == "1,2"  # 12, 6
    assert default_channel_mult(5) == "1"
    for size in (8, 16, 32, 64, 128, 256):
        assert channel_mult_for(size, default_channel_mult(size)) == channel_mult_for(size)


def test_non_square_data_is_refused():
    with pytest.raises(ValueError, match="square inputs; the data is 16x8"):
        fit_unet(FMNIST, (4, 16, 8), None)
