import math

import numpy as np
import pytest
import scipy.linalg
import torch

from pyrogen.metrics import feature_statistics, frechet_distance, frechet_distance_features


def random_spd(d, generator, jitter=0.1):
    a = torch.randn(d, d, generator=generator, dtype=torch.float64)
    return a @ a.T / d + jitter * torch.eye(d, dtype=torch.float64)


def random_rotation(d, generator):
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def scipy_reference(mu1, cov1, mu2, cov2):
    # the reference FID recipe: sqrtm of the non-symmetric C1 C2, real part
    root = scipy.linalg.sqrtm(cov1.numpy() @ cov2.numpy())
    root = np.real(root)
    diff = (mu1 - mu2).numpy()
    return float(diff @ diff + np.trace(cov1.numpy() + cov2.numpy() - 2 * root))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_equal_gaussians_are_at_distance_zero(gen):
    mu, cov = torch.randn(6, generator=gen, dtype=torch.float64), random_spd(6, gen)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-10)


def test_commuting_covariances_have_the_closed_form(gen):
    a, b = torch.rand(5, generator=gen) + 0.1, torch.rand(5, generator=gen) + 0.1
    mu1, mu2 = torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    expected = ((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    got = frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b))
    assert got == pytest.approx(expected.item(), rel=1e-6)
    # the same pair in a rotated basis still commutes: same value
    q = random_rotation(5, gen).float()
    rotated = frechet_distance(q @ mu1, q @ torch.diag(a) @ q.T, q @ mu2, q @ torch.diag(b) @ q.T)
    assert rotated == pytest.approx(expected.item(), rel=1e-5)


def test_one_dimensional_case():
    got = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]),
                           torch.tensor([-2.0]), torch.tensor([[0.25]]))
    assert got == pytest.approx((1 + 2) ** 2 + (2 - 0.5) ** 2, rel=1e-12)


def test_symmetry_and_rotation_invariance(gen):
    mu1 = torch.randn(7, generator=gen, dtype=torch.float64)
    mu2 = torch.zeros(7, dtype=torch.float64)
    cov1, cov2 = random_spd(7, gen), random_spd(7, gen)
    d12 = frechet_distance(mu1, cov1, mu2, cov2)
    assert d12 > 0.1
    assert frechet_distance(mu2, cov2, mu1, cov1) == pytest.approx(d12, rel=1e-9)
    q = random_rotation(7, gen)
    rotated = frechet_distance(q @ mu1, q @ cov1 @ q.T, q @ mu2, q @ cov2 @ q.T)
    assert rotated == pytest.approx(d12, rel=1e-9)


@pytest.mark.parametrize("d", [2, 10, 40])
def test_agrees_with_scipy_sqrtm(gen, d):
    mu1 = torch.randn(d, generator=gen, dtype=torch.float64)
    mu2 = torch.randn(d, generator=gen, dtype=torch.float64)
    cov1, cov2 = random_spd(d, gen), random_spd(d, gen)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(
        scipy_reference(mu1, cov1, mu2, cov2), rel=1e-8, abs=1e-9
    )


def test_singular_covariances_stay_real_and_non_negative(gen):
    # fewer samples than dimensions: rank-deficient covariances, where sqrtm(C1 C2) goes complex
    feats = torch.randn(5, 20, generator=gen, dtype=torch.float64)
    other = torch.randn(5, 20, generator=gen, dtype=torch.float64)
    assert frechet_distance_features(feats, feats) == pytest.approx(0.0, abs=1e-8)
    value = frechet_distance_features(feats, other)
    assert math.isfinite(value) and value > 0


def test_sample_estimate_approaches_the_closed_form(gen):
    d, n = 4, 200_000
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64)
    cov1, cov2 = random_spd(d, gen, jitter=0.5), random_spd(d, gen, jitter=0.5)
    exact = frechet_distance(mu1, cov1, mu2, cov2)
    a = mu1 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov1).T
    b = mu2 + torch.randn(n, d, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov2).T
    assert frechet_distance_features(a, b) == pytest.approx(exact, rel=0.02)


def test_feature_statistics_match_numpy(gen):
    feats = torch.randn(50, 3, generator=gen)
    mean, cov = feature_statistics(feats)
    assert mean.dtype == cov.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), feats.double().numpy().mean(0), rtol=1e-12)
    reference = np.cov(feats.double().numpy(), rowvar=False)
    np.testing.assert_allclose(cov.numpy(), reference, rtol=1e-10)


def test_bad_shapes_raise_value_error():
    mu, cov = torch.zeros(3), torch.eye(3)
    with pytest.raises(ValueError, match=r"mu1 must be a vector \(d,\), got shape \(1, 3\)"):
        frechet_distance(mu[None], cov, mu, cov)
    with pytest.raises(ValueError, match=r"cov2 must be a \(3, 3\) matrix"):
        frechet_distance(mu, cov, mu, torch.eye(4))
    with pytest.raises(ValueError, match="same dimension, got 3 and 2"):
        frechet_distance(mu, cov, torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match=r"features must be a matrix \(n, d\)"):
        feature_statistics(torch.zeros(4, 2, 2))
    with pytest.raises(ValueError, match="at least 2 vectors"):
        feature_statistics(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="same feature dimension, got 3 and 4"):
        frechet_distance_features(torch.randn(10, 3), torch.randn(10, 4))
    with pytest.raises(TypeError, match="mu1 must be a torch.Tensor"):
        frechet_distance(np.zeros(3), cov, mu, cov)
