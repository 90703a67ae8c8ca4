r"""
The Fréchet distance between Gaussians, and between feature sets summarised by Gaussians.

For :math:`\mathcal{N}(\mu_1, C_1)` and :math:`\mathcal{N}(\mu_2, C_2)` the squared 2-Wasserstein
(Fréchet) distance is [1, 2]

.. math::
    d^2 = \lVert \mu_1 - \mu_2 \rVert^2
        + \operatorname{tr}\Bigl(C_1 + C_2 - 2 \bigl(C_1^{1/2} C_2 C_1^{1/2}\bigr)^{1/2}\Bigr).

Computed on the penultimate features of a fixed classifier of real and generated images it is
the Fréchet Inception Distance of [3] (with Inception-v3 as the classifier); with another
network the numbers are comparable only among models scored by the same network.

The matrix square roots go through symmetric eigendecompositions in float64:
:math:`C_1^{1/2} = V \operatorname{diag}(\sqrt{\lambda}) V^\top`, and the trace term is
:math:`\sum_i \sqrt{\nu_i}` over the eigenvalues :math:`\nu_i` of the symmetric positive
semi-definite :math:`C_1^{1/2} C_2 C_1^{1/2}` (the same as those of :math:`C_1 C_2`). Rounding
makes tiny eigenvalues slightly negative; they are clipped at zero, so singular covariances
(fewer samples than dimensions) need no regularising offset, and no complex numbers appear, as
they do in ``scipy.linalg.sqrtm(C1 @ C2)``.

**References**

[1] D. C. Dowson, B. V. Landau, "The Fréchet distance between multivariate normal
distributions", Journal of Multivariate Analysis 12(3), 1982.

[2] M. Fréchet, "Sur la distance de deux lois de probabilité", C. R. Acad. Sci. Paris 244, 1957.

[3] M. Heusel, H. Ramsauer, T. Unterthiner, B. Nessler, S. Hochreiter, "GANs Trained by a Two
Time-Scale Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017.
"""

from __future__ import annotations

import torch


def _as_float64(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value.detach().to(device="cpu", dtype=torch.float64)


def _check_gaussian(mu: object, cov: object, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    mu, cov = _as_float64(mu, f"mu{index}"), _as_float64(cov, f"cov{index}")
    if mu.dim() != 1:
        raise ValueError(f"mu{index} must be a vector (d,), got shape {tuple(mu.shape)}")
    d = mu.shape[0]
    if tuple(cov.shape) != (d, d):
        raise ValueError(
            f"cov{index} must be a ({d}, {d}) matrix to match mu{index}, got shape "
            f"{tuple(cov.shape)}"
        )
    if not (torch.isfinite(mu).all() and torch.isfinite(cov).all()):
        raise ValueError(f"mu{index} and cov{index} must be finite")
    return mu, cov


def _sqrt_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a (numerically) positive semi-definite matrix."""
    eigvals, eigvecs = torch.linalg.eigh(0.5 * (matrix + matrix.T))
    return (eigvecs * eigvals.clamp(min=0).sqrt()) @ eigvecs.T


def frechet_distance(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> float:
    r"""
    The squared Fréchet distance :math:`d^2` between :math:`\mathcal{N}(\mu_1, C_1)` and
    :math:`\mathcal{N}(\mu_2, C_2)`, computed in float64 on the CPU.

    Example::

        >>> mu, cov = torch.zeros(3), torch.eye(3)
        >>> frechet_distance(mu, cov, mu + 1, 4 * cov)   # 3 * 1 + 3 * (2 - 1)^2
        6.0

    :param torch.Tensor mu1: the first mean, shape ``(d,)``.
    :param torch.Tensor cov1: the first covariance, shape ``(d, d)``, symmetric PSD.
    :param torch.Tensor mu2: the second mean, shape ``(d,)``.
    :param torch.Tensor cov2: the second covariance, shape ``(d, d)``, symmetric PSD.
    :returns: :math:`d^2 \ge 0`, a Python float.
    """
    mu1, cov1 = _check_gaussian(mu1, cov1, 1)
    mu2, cov2 = _check_gaussian(mu2, cov2, 2)
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"the two Gaussians must have the same dimension, got {mu1.shape[0]} and "
            f"{mu2.shape[0]}"
        )
    root1 = _sqrt_psd(cov1)
    middle = root1 @ cov2 @ root1
    trace_root = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp(min=0).sqrt().sum()
    distance = (mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * trace_root
    # the exact value is >= 0; rounding can leave it a hair below
    return max(float(distance), 0.0)


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    The mean and the unbiased covariance (divisor :math:`n - 1`, as ``numpy.cov``) of ``n``
    feature vectors, in float64 on the CPU.

    :param torch.Tensor features: shape ``(n, d)`` with ``n >= 2``.
    :returns: ``(mean, cov)`` of shapes ``(d,)`` and ``(d, d)``.
    """
    features = _as_float64(features, "features")
    if features.dim() != 2:
        raise ValueError(
            f"features must be a matrix (n, d) of n feature vectors, got shape "
            f"{tuple(features.shape)}"
        )
    if features.shape[0] < 2:
        raise ValueError(
            f"features must hold at least 2 vectors for a covariance, got {features.shape[0]}"
        )
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / (features.shape[0] - 1)


def frechet_distance_features(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    r"""
    The Fréchet distance between Gaussians fitted to two sets of feature vectors, e.g. a
    classifier's embeddings of real and of generated images (the FID of [3] when the
    classifier is Inception-v3).

    The estimate is biased upwards for finite samples (the bias shrinks like :math:`1/n`), so
    compare models only at equal sample sizes.

    Example::

        >>> clf = ImageClassifier((1, 28, 28), num_classes=10)   # trained beforehand
        >>> frechet_distance_features(clf.embed(real), clf.embed(vae.sample(len(real))))

    :param torch.Tensor feats_a: shape ``(n_a, d)``.
    :param torch.Tensor feats_b: shape ``(n_b, d)``.
    :returns: :math:`d^2 \ge 0`, a Python float.
    """
    mu_a, cov_a = feature_statistics(feats_a)
    mu_b, cov_b = feature_statistics(feats_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(
            f"feats_a and feats_b must have the same feature dimension, got "
            f"{mu_a.shape[0]} and {mu_b.shape[0]}"
        )
    return frechet_distance(mu_a, cov_a, mu_b, cov_b)
