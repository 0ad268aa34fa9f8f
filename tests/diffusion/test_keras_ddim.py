"""The Keras DDIM example's pieces: its signal-rate cosine schedule, its noise-variance embedding, the process
feeding the model noise variances, the L1 loss, and the presets built on them (pixels and latents)."""

import math

import numpy as np
import pytest
import torch

from diffusion.config import PRESETS, DiffusionConfig
from diffusion.factory import create_gaussian_diffusion, create_model
from diffusion.gaussian_diffusion import LossType
from diffusion.nn import keras_ddim_embedding
from diffusion.schedules import get_named_beta_schedule, parse_signal_cosine


@pytest.mark.parametrize("rates", [(0.02, 0.95), (0.1, 0.8)])
@pytest.mark.parametrize("steps", [2, 50, 1000])
def test_signal_cosine_ends_at_the_rates_squared_with_the_angle_linear_in_t(rates, steps):
    betas = get_named_beta_schedule(f"signal_cosine:{rates[0]},{rates[1]}", steps)
    alpha_bar = np.cumprod(1.0 - betas)
    assert alpha_bar[0] == pytest.approx(rates[1] ** 2, abs=1e-12)
    assert alpha_bar[-1] == pytest.approx(rates[0] ** 2, abs=1e-12)
    assert np.all(np.diff(alpha_bar) < 0) and np.all((betas > 0) & (betas < 1))
    angles = np.arccos(np.sqrt(alpha_bar))  # signal rate = cos(angle)
    np.testing.assert_allclose(np.diff(angles), (math.acos(rates[0]) - math.acos(rates[1])) / (steps - 1),
                               rtol=1e-9)


def test_signal_cosine_names_and_their_errors():
    assert parse_signal_cosine("signal_cosine") == (0.02, 0.95)
    assert parse_signal_cosine("cosine") is None
    np.testing.assert_array_equal(get_named_beta_schedule("signal_cosine", 100),
                                  get_named_beta_schedule("signal_cosine:0.02,0.95", 100))
    with pytest.raises(ValueError, match="need 0 < MIN < MAX < 1"):
        parse_signal_cosine("signal_cosine:0.9,0.1")
    with pytest.raises(ValueError, match="is not signal_cosine:MIN,MAX"):
        parse_signal_cosine("signal_cosine:fast")
    with pytest.raises(ValueError, match="unknown noise_schedule 'sigmoid'"):
        DiffusionConfig(noise_schedule="sigmoid")


def test_keras_ddim_embedding_is_the_examples_formula():
    values = torch.tensor([0.0, 0.0025, 0.3, 0.9996])
    got = keras_ddim_embedding(values, 32, 1000.0).double().numpy()
    freqs = np.exp(np.linspace(np.log(1.0), np.log(1000.0), 16))
    args = 2 * np.pi * freqs[None] * values.double().numpy()[:, None]
    # float32 arguments, as in the example: up to 2 pi 1000 = 6283, where one ulp is 4.9e-4.
    np.testing.assert_allclose(got, np.concatenate([np.sin(args), np.cos(args)], axis=1), atol=2e-3)
    np.testing.assert_allclose(got[:, :6], np.sin(args[:, :6]), atol=1e-5)  # low frequencies: float32-exact


def test_the_process_gives_the_model_the_noise_variance_of_the_original_step():
    cfg = DiffusionConfig(diffusion_steps=100, noise_schedule="signal_cosine", model_input="noise_variance",
                          timestep_respacing="ddim10")
    process = create_gaussian_diffusion(cfg)
    full = np.cumprod(1.0 - get_named_beta_schedule("signal_cosine", 100))
    seen = []

    def model(x, t, **kwargs):
        seen.append(t.clone())
        return torch.zeros_like(x)

    x = torch.zeros(3, 1, 2, 2)
    process.p_mean_variance(model, x, torch.tensor([0, 4, 9]))
    want = 1.0 - full[[process.timestep_map[i] for i in (0, 4, 9)]]
    assert seen[0].dtype == torch.float32
    np.testing.assert_allclose(seen[0].numpy(), want, rtol=1e-6)
    with pytest.raises(ValueError, match="rescale_timesteps rescales timesteps"):
        DiffusionConfig(model_input="noise_variance", rescale_timesteps=True)


def test_l1_loss_is_the_mean_absolute_error_of_the_noise_and_mse_is_still_reported():
    process = create_gaussian_diffusion(DiffusionConfig(diffusion_steps=50, use_l1=True))
    assert process.loss_type == LossType.L1
    x0, noise = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    terms = process.training_losses(lambda x, t: torch.full_like(x, 0.5), x0, torch.tensor([0, 10, 20, 49]),
                                    noise=noise)
    torch.testing.assert_close(terms["loss"], (noise - 0.5).abs().mean(dim=(1, 2, 3)))
    torch.testing.assert_close(terms["mse"], ((noise - 0.5) ** 2).mean(dim=(1, 2, 3)))


def test_the_default_unet_keeps_the_reference_state_dict_layout_and_keras_ddim_embeds_32_dims():
    default = create_model(PRESETS["fmnist-latent"][0]).state_dict()
    assert tuple(default["time_embed.0.weight"].shape) == (256, 64)  # Linear(model_channels, 4 * model_channels)
    keras = create_model(PRESETS["keras-ddim"][0]).state_dict()
    assert tuple(keras["time_embed.0.weight"].shape) == (128, 32)
    # No attention at any resolution, as the example; the middle block keeps the reference U-Net's one.
    assert {k.split(".")[0] for k in keras if "qkv" in k} == {"middle_block"}


@pytest.mark.parametrize("space", ["keras-ddim", "keras-ddim-latent"])
def test_keras_ddim_presets_train_a_few_steps(tmp_path, space, tiny):
    from diffusion.architecture import fit_unet
    from diffusion.checkpoints import latest_checkpoint, read_checkpoint_config
    from diffusion.training import TRAIN_PRESETS, LatentData, PixelData
    from diffusion.training.session import build_training

    unet, diffusion = PRESETS[space]
    if space == "keras-ddim":
        images = np.random.default_rng(0).uniform(-1, 1, (6, 64, 64, 3)).astype(np.float32)
        data = PixelData.from_arrays(images, None, None, meta={"data": "synthetic"})
    else:
        tiny[2](tmp_path, n=8, shape=(4, 16, 16), labels=False)
        data = LatentData.from_run(tmp_path / "latents")
    unet, _ = fit_unet(unet, data.shape, data.num_classes)
    train = TRAIN_PRESETS[space].replace(batch_size=2, max_steps=2, precision="fp32")
    session = build_training("diffusion", out_dir=tmp_path / "out", data=data, unet=unet, diffusion=diffusion,
                             train=train, device="cpu", progress=False)
    session.loop.run()
    config = read_checkpoint_config(latest_checkpoint(tmp_path / "out"))
    assert config["model"]["time_embedding"] == "keras_ddim" and config["diffusion"]["use_l1"]
    assert config["diffusion"]["noise_schedule"] == "signal_cosine:0.02,0.95"
    assert config["train"]["weight_decay"] == 1e-4 and config["train"]["ema_rate"] == "0.999"
