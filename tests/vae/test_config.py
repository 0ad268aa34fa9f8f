import pytest

from vae.config import PRESETS, VAEConfig, preset


def test_round_trip_and_derived_shapes():
    cfg = VAEConfig(image_size=64, channel_mult=(1, 2, 4, 4), z_channels=3)
    again = VAEConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.downsample_factor == 8 and cfg.latent_shape_hwc == (8, 8, 3)


def test_unknown_keys_rejected():
    with pytest.raises(ValueError, match=r"unknown VAEConfig keys \['bogus'\]"):
        VAEConfig.from_dict({**VAEConfig().to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 30}, "not divisible by the downsampling factor 4"),
        ({"channels": 2}, "channels must be 1"),
        ({"recon_loss": "l3"}, "recon_loss must be one of"),
        ({"base_channels": 12}, "not divisible by norm_groups=8"),
        ({"kl_weight": -1.0}, "kl_weight must be >= 0"),
        ({"ssim_weight": -0.5}, "ssim_weight must be >= 0"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of"),
        ({"norm": "batch"}, "norm must be one of"),
    ],
)
def test_invalid_configs_explain(changes, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig().replace(**changes)


def test_norm_none_does_not_constrain_widths_by_groups():
    assert VAEConfig(base_channels=12, norm="none").norm == "none"  # 12 channels and 8 groups: fine without GroupNorm
    with pytest.raises(ValueError, match="not divisible by norm_groups=8"):
        VAEConfig(base_channels=12, norm="encoder")


def test_configs_saved_before_the_norm_field_load_with_groupnorm():
    old = VAEConfig().to_dict()
    del old["norm"]
    assert VAEConfig.from_dict(old).norm == "group"


def test_presets_are_copies():
    assert set(PRESETS) >= {"fashion_mnist", "tiny", "photos64"}
    a = preset("fashion_mnist")
    a.extra["x"] = 1
    assert "x" not in preset("fashion_mnist").extra
    with pytest.raises(ValueError, match="unknown VAE preset 'nope'"):
        preset("nope")


def test_flowers64_is_the_keras_ddim_examples_data_at_f4():
    cfg = preset("flowers64")
    assert (cfg.data, cfg.image_size, cfg.channels) == ("tfds:oxford_flowers102", 64, 3)
    assert cfg.image_size // 2 ** (len(cfg.channel_mult) - 1) == 16  # the keras-ddim-latent preset's latent size


def test_rgb_presets_train_fast_and_fashion_mnist_keeps_its_measured_setup():
    for name in ("photos64", "photos128", "photos256", "flowers64"):
        cfg = preset(name)
        assert (cfg.norm, cfg.jit_compile, cfg.precision) == ("encoder", False, "auto"), name
    cfg = preset("fashion_mnist")  # bf16 measured no faster there (docs/benchmarks.md): fp32 with XLA
    assert (cfg.norm, cfg.jit_compile, cfg.precision) == ("encoder", True, "fp32")
