"""runfs.latent_norm: the scale between the VAE's latents and the diffusion model's, checked against moments."""

from __future__ import annotations

import numpy as np
import pytest

from runfs.latent_norm import LatentNorm


def _moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel count / sum / sum of squares of NCHW latents, computed in one go (the encoder streams them)."""
    x = x.astype(np.float64)
    return np.full(x.shape[1], x.size // x.shape[1]), x.sum(axis=(0, 2, 3)), np.square(x).sum(axis=(0, 2, 3))


@pytest.fixture
def latents() -> np.ndarray:
    """Channels with very different means and spreads, as a VAE without a last GroupNorm gives them."""
    rng = np.random.default_rng(0)
    means, stds = np.array([0.0, 0.7, -0.6, 3.0]), np.array([0.5, 1.8, 1.0, 0.05])
    return (means[None, :, None, None] + stds[None, :, None, None] * rng.standard_normal((500, 4, 3, 3)))


def test_channel_norm_standardises_every_channel(latents):
    norm = LatentNorm.from_moments("channel", *_moments(latents))
    scaled = norm.apply(latents)
    np.testing.assert_allclose(scaled.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)  # float32 shift and scale
    np.testing.assert_allclose(scaled.std(axis=(0, 2, 3)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(norm.shift, latents.mean(axis=(0, 2, 3)), rtol=1e-9)


def test_global_norm_is_one_factor_without_shift(latents):
    norm = LatentNorm.from_moments("global", *_moments(latents))
    assert len(set(norm.scale)) == 1 and norm.shift == (0.0,) * 4
    assert norm.scale[0] == pytest.approx(1.0 / latents.std(), rel=1e-9)
    np.testing.assert_allclose(norm.apply(latents), latents * norm.scale[0], rtol=1e-6)


@pytest.mark.parametrize("mode", ["global", "channel"])
def test_undo_inverts_apply_and_meta_round_trips(latents, mode):
    norm = LatentNorm.from_moments(mode, *_moments(latents))
    np.testing.assert_allclose(norm.undo(norm.apply(latents)), latents, atol=1e-5)
    meta = norm.to_meta()
    assert LatentNorm.from_meta(meta, 4) == norm
    assert meta["latent_norm"] == mode and isinstance(meta["scale_factor"], float if mode == "global" else list)


def test_meta_from_before_latent_norm_reads_as_global():
    assert LatentNorm.from_meta({"scale_factor": 0.25}, 3) == LatentNorm("global", (0.25,) * 3, (0.0,) * 3)


def test_bad_values_are_explained():
    with pytest.raises(ValueError, match="latent_norm must be one of"):
        LatentNorm("pixel", (1.0,), (0.0,))
    with pytest.raises(ValueError, match="scales must be positive and finite"):
        LatentNorm("channel", (1.0, 0.0), (0.0, 0.0))
    with pytest.raises(ValueError, match="scales must be positive and finite"):  # a constant channel: std 0
        LatentNorm.from_moments("channel", np.full(2, 4.0), np.array([4.0, 8.0]), np.array([4.0, 16.0]))
    with pytest.raises(ValueError, match="holds 2 scales and 2 shifts for 3 latent channels"):
        LatentNorm.from_meta({"latent_norm": "channel", "scale_factor": [1, 2], "shift_factor": [0, 0]}, 3)
