import keras
import numpy as np
import pytest

from runfs import write_json
from vae.config import VAEConfig
from vae.model import build_decoder, build_encoder, load_vae, save_models


@pytest.mark.parametrize(
    ("channel_mult", "channels", "attention"),
    [((1, 2), 1, False), ((1, 1, 2), 3, True), ((1, 1, 2, 2), 1, False), ((1, 2, 2, 2), 3, False)],
)
def test_shapes_for_each_downsampling_factor(channel_mult, channels, attention):
    cfg = VAEConfig(image_size=16, channels=channels, base_channels=4, channel_mult=channel_mult, norm_groups=2,
                    z_channels=3, mid_attention=attention)
    f = cfg.downsample_factor
    assert f == 2 ** (len(channel_mult) - 1)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, channels)).astype(np.float32)
    mean, logvar = encoder(images)
    assert mean.shape == logvar.shape == (2, 16 // f, 16 // f, 3)
    assert decoder(mean).shape == (2, 16, 16, channels)


def _layer_types(model):
    return {type(layer).__name__ for layer in model.layers}


def test_norm_none_leaves_out_every_groupnorm_and_nothing_else():
    group = VAEConfig(image_size=16, base_channels=4, channel_mult=(1, 2), norm_groups=2, mid_attention=True)
    plain = group.replace(norm="none")
    for build in (build_encoder, build_decoder):
        with_norm, without = build(group), build(plain)
        norms = [layer for layer in with_norm.layers if isinstance(layer, keras.layers.GroupNormalization)]
        assert norms and "GroupNormalization" not in _layer_types(without)
        # The rest of the graph is the same layer for layer: only the norms' 2 * channels weights are gone.
        assert [layer.name for layer in without.layers] == [layer.name for layer in with_norm.layers
                                                            if layer not in norms]
        norm_params = sum(int(np.prod(w.shape)) for layer in norms for w in layer.weights)
        assert without.count_params() == with_norm.count_params() - norm_params
    images = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 1)).astype(np.float32)
    mean, _ = build_encoder(plain)(images)
    assert build_decoder(plain)(mean).shape == (2, 16, 16, 1)


def test_norm_encoder_keeps_groupnorm_in_the_encoder_only():
    cfg = VAEConfig(image_size=16, base_channels=4, channel_mult=(1, 2), norm_groups=2, norm="encoder")
    assert _layer_types(build_encoder(cfg)) == _layer_types(build_encoder(cfg.replace(norm="group")))
    assert _layer_types(build_decoder(cfg)) == _layer_types(build_decoder(cfg.replace(norm="none")))
    assert "GroupNormalization" in _layer_types(build_encoder(cfg))
    assert "GroupNormalization" not in _layer_types(build_decoder(cfg))


def test_logvar_is_clamped():
    cfg = VAEConfig(image_size=8, base_channels=4, channel_mult=(1, 2), norm_groups=2, logvar_min=-5.0, logvar_max=3.0)
    encoder = build_encoder(cfg)
    head = encoder.get_layer("logvar_raw")
    kernel, bias = head.get_weights()
    images = np.zeros((1, 8, 8, 1), np.float32)
    head.set_weights([kernel * 0, bias * 0 + 100.0])
    assert float(np.max(encoder(images)[1])) == 3.0
    head.set_weights([kernel * 0, bias * 0 - 100.0])
    assert float(np.min(encoder(images)[1])) == -5.0


def test_save_load_gives_identical_outputs(tmp_path, tiny_cfg):
    cfg = tiny_cfg.replace(mid_attention=True)
    keras.utils.set_random_seed(3)
    encoder, decoder = build_encoder(cfg), build_decoder(cfg)
    (tmp_path / "vae" / "model").mkdir(parents=True)
    save_models(tmp_path / "vae" / "model", encoder, decoder)
    write_json(tmp_path / "vae" / "model" / "config.json", cfg.to_dict())
    loaded_cfg, enc2, dec2 = load_vae(tmp_path)  # the run folder works as well as its vae/
    assert loaded_cfg == cfg
    images = np.random.default_rng(1).uniform(-1, 1, (3, 16, 16, 1)).astype(np.float32)
    for a, b in zip(encoder(images), enc2(images), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    latents = np.asarray(encoder(images)[0])
    np.testing.assert_array_equal(np.asarray(decoder(latents)), np.asarray(dec2(latents)))


def test_load_vae_without_a_model_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="train one first: python pipelines/train_vae.py"):
        load_vae(tmp_path)
