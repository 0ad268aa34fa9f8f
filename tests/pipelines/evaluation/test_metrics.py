"""FID and KID against closed forms: Gaussians with known moments, identities, invariances, singular cases."""

import numpy as np
import pytest
from scipy import linalg
from scipy.stats import ortho_group

from pipelines.evaluation.metrics import GaussianStats, fid, frechet_distance, gaussian_stats, kid, mmd2_unbiased


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    got = frechet_distance(GaussianStats(mu_a, np.diag(var_a), 0), GaussianStats(mu_b, np.diag(var_b), 0))
    # Commuting covariances: Tr(Sa + Sb - 2 sqrt(Sa Sb)) = sum (sqrt(va) - sqrt(vb))^2.
    assert got == pytest.approx(np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2))


def test_frechet_distance_of_rotated_full_covariances_matches_the_definition():
    rng = np.random.default_rng(0)
    q = ortho_group.rvs(4, random_state=1)
    a = rng.normal(size=(4, 4))
    cov_a, cov_b = a @ a.T + np.eye(4), q @ np.diag([1.0, 2.0, 3.0, 4.0]) @ q.T
    # Same distance after rotating both Gaussians: the metric only sees the geometry.
    d = frechet_distance(GaussianStats(np.zeros(4), cov_a, 0), GaussianStats(np.ones(4), cov_b, 0))
    r = ortho_group.rvs(4, random_state=2)
    d_rot = frechet_distance(GaussianStats(np.zeros(4), r @ cov_a @ r.T, 0),
                             GaussianStats(r @ np.ones(4), r @ cov_b @ r.T, 0))
    root_b = linalg.sqrtm(cov_b).real  # Tr sqrt(Sa Sb) = Tr sqrt(sqrt(Sb) Sa sqrt(Sb)), a symmetric PSD root
    expected = 4.0 + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(linalg.sqrtm(root_b @ cov_a @ root_b).real)
    assert d == pytest.approx(expected, rel=1e-9) and d_rot == pytest.approx(expected, rel=1e-9)


def test_fid_from_large_samples_approaches_the_gaussian_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, size=(200_000, 2))
    y = rng.normal([3.0, 0.0], [2.0, 0.5], size=(200_000, 2))
    assert fid(x, y) == pytest.approx(9.0 + (1 - 2) ** 2 + (1 - 0.5) ** 2, rel=5e-3)  # 10.25


def test_fid_identities_and_shift_invariance():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(500, 8)), rng.gamma(2.0, size=(400, 8))
    shift = rng.normal(size=8)
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)
    assert fid(x + shift, x) == pytest.approx(shift @ shift, rel=1e-8)  # the covariance part vanishes
    assert fid(x + shift, y + shift) == pytest.approx(fid(x, y), rel=1e-9)
    assert fid(x, y) == pytest.approx(fid(y, x), rel=1e-9)
    stats = gaussian_stats(x)
    np.testing.assert_allclose(stats.cov, np.cov(x.T))
    assert stats.count == 500


def test_fid_with_fewer_features_than_dimensions_stays_finite():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 32)), rng.normal(size=(12, 32))  # rank <= 11 < 32: singular covariances
    value = fid(x, x + 1.0)
    assert np.isfinite(value) and value == pytest.approx(32.0, abs=1e-3)
    assert np.isfinite(fid(x, y))


def test_a_defective_covariance_product_falls_back_to_the_diagonal_offset():
    # [[0, 1], [0, 0]] @ I is nilpotent: its sqrtm is infinite, so eps is added to both diagonals (as pytorch-fid).
    a, b = GaussianStats(np.zeros(2), np.array([[0.0, 1.0], [0.0, 0.0]]), 0), GaussianStats(np.zeros(2), np.eye(2), 0)
    with pytest.warns(RuntimeWarning, match="singular"):
        value = frechet_distance(a, b, eps=1e-6)
    # sqrtm([[e, 1], [0, e]]) (e = eps for the product (A + e)(I + e) to first order) has trace 2 sqrt(e).
    assert np.isfinite(value) and value == pytest.approx(2.0 - 2 * 2 * np.sqrt(1e-6), abs=1e-4)


def test_kid_of_a_set_with_itself_is_the_diagonal_correction():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 6))
    k = (x @ x.T / 6 + 1.0) ** 3
    off = (k.sum() - np.trace(k)) / (50 * 49)
    # within terms are off-diagonal means, the cross term keeps the diagonal: 2 (off - mean diag) / n
    assert mmd2_unbiased(x, x) == pytest.approx(2 * (off - np.trace(k) / 50) / 50, rel=1e-10)


def test_kid_one_dimensional_gaussians_match_the_moment_closed_form():
    # d = 1: E k(x, y) = E[x^3]E[y^3] + 3 E[x^2]E[y^2] + 3 E[x]E[y] + 1, so
    # MMD^2 = (m3p - m3q)^2 + 3 (m2p - m2q)^2 + 3 (m1p - m1q)^2, which the unbiased estimator hits in expectation.
    rng = np.random.default_rng(4)
    mu = 0.5
    p, q = rng.normal(size=(3000, 1)), rng.normal(mu, 1.0, size=(3000, 1))
    expected = (mu**3 + 3 * mu) ** 2 + 3 * (mu**2) ** 2 + 3 * mu**2
    result = kid(p, q, block_size=3000)
    assert result.num_blocks == 1 and result.mean == pytest.approx(expected, rel=0.1)
    same = kid(p, rng.normal(size=(3000, 1)), block_size=3000)
    assert abs(same.mean) < 0.02 * expected  # two samples of one distribution: about zero


def test_kid_is_symmetric_and_averages_blocks():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 4)), rng.normal(0.3, 1.0, size=(250, 4))
    assert kid(x, y, seed=None).mean == pytest.approx(kid(y, x, seed=None).mean, rel=1e-12)
    blocks = kid(x, y, block_size=100, seed=None)
    per_block = [mmd2_unbiased(x[i * 100:(i + 1) * 100], y[i * 100:(i + 1) * 100]) for i in range(2)]
    assert (blocks.num_blocks, blocks.block_size) == (2, 100)  # 250 fills two whole blocks; the rest is left out
    assert blocks.mean == pytest.approx(np.mean(per_block)) and blocks.std == pytest.approx(np.std(per_block))


def test_kid_blocks_are_drawn_from_the_whole_set_even_when_it_is_sorted_by_class():
    """sample.py writes samples class by class: consecutive blocks would each hold a few classes only."""
    rng = np.random.default_rng(6)
    centres = rng.normal(scale=3.0, size=(10, 4))

    def sorted_by_class(n):
        return np.concatenate([c + rng.normal(size=(n // 10, 4)) for c in centres])

    real, generated = rng.permutation(sorted_by_class(2000)), sorted_by_class(2000)  # one distribution
    shuffled = kid(real, generated, block_size=200)
    in_order = kid(real, generated, block_size=200, seed=None)
    assert abs(shuffled.mean) < 0.05 * in_order.mean and shuffled.num_blocks == 10


def test_bad_features_are_explained():
    with pytest.raises(ValueError, match="feature dimensions differ"):
        kid(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fid(np.full((4, 3), np.nan), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"must be \(N >= 2, D\)"):
        gaussian_stats(np.zeros(5))
