"""Distribution distances between two sets of features: FID (Heusel et al. 2017) and KID (Binkowski et al. 2018).

Both take float features (N, D) of real and generated images from the same feature network; numpy + scipy only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import linalg


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and covariance (D, D) of a feature set, float64; `count` features went into them."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


@dataclass(frozen=True)
class KIDResult:
    """KID averaged over `num_blocks` disjoint blocks of `block_size` features per set, and its spread."""

    mean: float
    std: float
    block_size: int
    num_blocks: int


def _as_features(features: np.ndarray, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"{name} must be (N >= 2, D) features, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError(f"{name} holds NaN or infinite values: the images or the feature network are broken")
    return features


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """(N, D) features -> their mean and unbiased covariance (rowvar=False, as pytorch-fid / the TTUR code)."""
    features = _as_features(features, "features")
    return GaussianStats(features.mean(axis=0), np.cov(features, rowvar=False), len(features))


def frechet_distance(a: GaussianStats, b: GaussianStats, eps: float = 1e-6) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)): the Frechet distance of two Gaussians (FID eq. 6).

    sqrtm of a singular product (fewer features than dimensions, dead units) is not finite: like the reference
    implementations, `eps` is then added to both diagonals. Its tiny imaginary part from round-off is dropped;
    a large one means the covariances are broken and raises.
    """
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature dimensions differ: {a.mean.shape[0]} vs {b.mean.shape[0]}")
    diff = a.mean - b.mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # singular products are handled just below
        covmean = linalg.sqrtm(a.cov @ b.cov)
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: the covariance product is singular; adding {eps:g} to the diagonals", RuntimeWarning,
                      stacklevel=2)
        offset = np.eye(len(a.cov)) * eps
        covmean = linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: sqrtm gave an imaginary component of {np.abs(covmean.imag).max():.3g}; "
                             "the feature covariances are not positive semi-definite")
        covmean = covmean.real
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(covmean))


def fid(real: np.ndarray, generated: np.ndarray) -> float:
    """FID between (N, D) and (M, D) features."""
    return frechet_distance(gaussian_stats(real), gaussian_stats(generated))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / D + 1)^3 for every pair: (N, D), (M, D) -> (N, M) (the KID kernel)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD with the polynomial kernel (Binkowski et al. eq. 1; the Keras DDIM example's KID):
    within-set kernel means leave out the diagonal, the cross-set mean keeps every pair."""
    n, m = len(x), len(y)
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(within_x + within_y - 2.0 * polynomial_kernel(x, y).mean())


def kid(real: np.ndarray, generated: np.ndarray, block_size: int = 1000, seed: int | None = 0) -> KIDResult:
    """KID between (N, D) and (M, D) features: the unbiased MMD^2 of equal-size blocks, averaged.

    Like the Keras DDIM example (one estimate per batch, averaged); blocks are min(N, M, block_size) long and the
    remainder that fills no whole block is left out. Both sets are shuffled first (seeded by `seed`), so that
    samples stored in class order (as sample.py writes them) still give blocks drawn from the whole set;
    `seed=None` keeps the given order.
    """
    real, generated = _as_features(real, "real features"), _as_features(generated, "generated features")
    if seed is not None:
        rng = np.random.default_rng(seed)
        real, generated = real[rng.permutation(len(real))], generated[rng.permutation(len(generated))]
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"feature dimensions differ: {real.shape[1]} vs {generated.shape[1]}")
    if block_size < 2:
        raise ValueError(f"KID block_size must be at least 2, got {block_size}")
    size = min(len(real), len(generated), block_size)
    blocks = min(len(real), len(generated)) // size
    values = np.array([mmd2_unbiased(real[i * size:(i + 1) * size], generated[i * size:(i + 1) * size])
                       for i in range(blocks)])
    return KIDResult(float(values.mean()), float(values.std()), size, blocks)
