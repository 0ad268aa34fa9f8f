"""UNetConfig / DiffusionConfig: round trips, unknown keys, validation, channel_mult and attention parsing."""

import json

import pytest

from diffusion.config import PRESETS, DiffusionConfig, UNetConfig, attention_ds_for, channel_mult_for, preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_dict_and_json(name, tmp_path):
    for cfg in PRESETS[name]:
        assert type(cfg).from_dict(cfg.to_dict()) == cfg
        assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
        cfg.save(tmp_path / f"{name}.json")
        assert type(cfg).load(tmp_path / f"{name}.json") == cfg


def test_defaults_are_the_reference_defaults():
    unet, diff = UNetConfig(), DiffusionConfig()
    assert (unet.image_size, unet.num_channels, unet.num_res_blocks, unet.num_heads) == (64, 128, 2, 4)
    assert (unet.attention_resolutions, unet.channel_mult, unet.use_scale_shift_norm) == ("16,8", "", True)
    assert (diff.diffusion_steps, diff.noise_schedule, diff.timestep_respacing) == (1000, "linear", "")


@pytest.mark.parametrize("cls", [UNetConfig, DiffusionConfig])
def test_unknown_keys_are_rejected_with_the_valid_ones(cls):
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['num_chanels'\]; valid keys are \[.*'dropout'"
                       if cls is UNetConfig else r"unknown key\(s\) \['num_chanels'\]; valid keys are \[.*'use_kl'"):
        cls.from_dict({**cls().to_dict(), "num_chanels": 3})


def test_validation_messages():
    with pytest.raises(ValueError, match="null_class=True needs class_cond=True"):
        UNetConfig(null_class=True)
    with pytest.raises(ValueError, match="predict_xstart and predict_v are exclusive"):
        DiffusionConfig(predict_xstart=True, predict_v=True)
    with pytest.raises(ValueError, match=r"unknown noise_schedule 'cosin'; use one of \('linear', 'cosine', 'signal_"):
        DiffusionConfig(noise_schedule="cosin")
    with pytest.raises(ValueError, match="unknown preset 'mnist'"):
        preset("mnist")


def test_null_label_is_the_extra_row():
    unet, _ = preset("fmnist-latent")
    assert unet.null_class and unet.null_label == unet.num_classes == 10
    assert UNetConfig().null_label is None


def test_channel_mult_defaults_and_strings():
    assert channel_mult_for(64) == (1, 2, 3, 4)  # the reference's
    assert channel_mult_for(512) == (0.5, 1, 1, 2, 2, 4, 4)
    assert channel_mult_for(8) == (1, 2) and channel_mult_for(16) == (1, 2, 2) and channel_mult_for(32) == (1, 2, 2, 2)
    assert channel_mult_for(8, "1,2,2") == (1, 2, 2)
    assert channel_mult_for(64, "0.5,1") == (0.5, 1)
    with pytest.raises(ValueError, match=r"no default channel_mult for image_size 24; .*pass channel_mult"):
        channel_mult_for(24)
    with pytest.raises(ValueError, match="not a comma-separated list of numbers"):
        channel_mult_for(8, "1;2")
    with pytest.raises(ValueError, match="image_size must be divisible by 8; got 12"):
        channel_mult_for(12, "1,2,2,2")


def test_attention_resolutions_are_pixels_of_the_unet_input():
    assert attention_ds_for(64, "32,16,8", (1, 2, 3, 4)) == (2, 4, 8)  # as the reference's image_size // res
    assert attention_ds_for(8, "4", (1, 2)) == (2,)
    assert attention_ds_for(8, "", (1, 2)) == ()
    with pytest.raises(ValueError, match=r"attention resolution '2' is not one the U-Net reaches; .* are \[8, 4\]"):
        attention_ds_for(8, "4,2", (1, 2))
