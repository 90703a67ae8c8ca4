r"""
Sample-quality and representation metrics, measured in the feature space of a classifier
that pyrogen trains on the same data set (pretrained Inception weights cannot be downloaded
here), for any model that can sample.

* :func:`mode_coverage`: the share of classes generated and the KL divergence of the
  generated class histogram from the data's;
* :func:`precision_recall`: precision and recall of the generated distribution with
  k-nearest-neighbour manifolds [1];
* :func:`reconstruction_error`: an autoencoder's squared error against the error between
  random pairs of data points;
* :func:`linear_probe_accuracy`: how linearly decodable the classes are from the codes;
* :func:`sample_quality`: all of them, plus the Fréchet distance and its real-vs-real floor.

**References**

[1] T. Kynkäänniemi et al., "Improved Precision and Recall Metric for Assessing Generative
Models", NeurIPS 2019.

[2] T. Che et al., "Mode Regularized Generative Adversarial Networks", ICLR 2017.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from pyrogen.metrics.frechet import frechet_distance_features


def class_histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The relative frequency of each class among integer ``labels`` (float64, sums to 1)."""
    labels = torch.as_tensor(labels).reshape(-1).long().cpu()
    if labels.numel() == 0:
        raise ValueError("labels must not be empty")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    return torch.bincount(labels, minlength=num_classes).double() / labels.numel()


def mode_coverage(generated: torch.Tensor, data: torch.Tensor, num_classes: int,
                  threshold: float = 0.1) -> dict[str, float]:
    r"""
    How well the generated classes cover the data's [2].

    With :math:`g_c` and :math:`d_c` the frequencies of class :math:`c` among the generated
    points' predicted labels and among the data's labels:

    * ``classes_covered``: the share of the data's classes with :math:`g_c \ge`
      ``threshold`` :math:`\cdot d_c` (a class generated at least a tenth as often as it
      occurs, by default);
    * ``class_kl``: :math:`\mathrm{KL}(g \,\|\, d) = \sum_c g_c \log (g_c / d_c)`, 0 for a
      perfect match (infinite if a class is generated that the data lack);
    * ``min_class_share``: :math:`\min_c g_c` over the data's classes, the share of the
      rarest one among the generated points (0 if a class is missing), and ``rarest_class``,
      that class.

    :param generated: predicted labels of generated points ``(n,)``.
    :param data: labels of data points ``(m,)``.
    :param int num_classes: the number of classes.
    :param float threshold: the fraction of a class's data frequency that counts as covered.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    g, d = class_histogram(generated, num_classes), class_histogram(data, num_classes)
    present = d > 0
    covered = (g[present] >= threshold * d[present]).double().mean().item()
    if bool(((g > 0) & ~present).any()):
        kl = math.inf
    else:
        nz = g > 0
        kl = float((g[nz] * (g[nz] / d[nz]).log()).sum())
    shares = torch.where(present, g, torch.inf)
    return {"classes_covered": covered, "class_kl": kl, "min_class_share": float(g[present].min()),
            "rarest_class": int(shares.argmin())}


def _knn_radii(feats: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """The distance of each point to its k-th nearest other point of the same set."""
    radii = []
    for block in feats.split(chunk):
        d = torch.cdist(block, feats)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # k + 1: the point itself is at 0
    return torch.cat(radii)


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """Whether each point lies in the union of the balls ``(centres, radii)``."""
    inside = []
    for block in points.split(chunk):
        inside.append((torch.cdist(block, centres) <= radii).any(dim=1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, generated: torch.Tensor, k: int = 3,
                     chunk: int = 1024) -> dict[str, float]:
    r"""
    Precision and recall with k-nearest-neighbour manifolds [1]: each set's manifold is the
    union of balls around its points, each reaching the point's ``k``-th nearest neighbour
    in the same set.

    * ``precision``: the share of generated points inside the real manifold (are samples
      realistic?);
    * ``recall``: the share of real points inside the generated manifold (is the data's
      variety produced?).

    :param torch.Tensor real: features ``(n, d)``.
    :param torch.Tensor generated: features ``(m, d)``.
    :param int k: the neighbour that sets each radius (Kynkäänniemi et al.: 3).
    """
    real, generated = real.double().cpu(), generated.double().cpu()
    if real.dim() != 2 or generated.dim() != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real and generated must be (n, d) matrices with the same d, got "
                         f"{tuple(real.shape)} and {tuple(generated.shape)}")
    if min(len(real), len(generated)) <= k:
        raise ValueError(f"each set needs more than k={k} points, got {len(real)} and {len(generated)}")
    real_radii, gen_radii = _knn_radii(real, k, chunk), _knn_radii(generated, k, chunk)
    precision = _covered(generated, real, real_radii, chunk).double().mean().item()
    recall = _covered(real, generated, gen_radii, chunk).double().mean().item()
    return {"precision": precision, "recall": recall}


def reconstruction_error(x: torch.Tensor, reconstruction: torch.Tensor,
                         generator: torch.Generator | None = None) -> dict[str, float]:
    r"""
    The mean squared reconstruction error per data point,
    :math:`\frac1N \sum_n \|x_n - \hat x_n\|^2`, against the same error between each point
    and a random other data point (``random_pair_error``: what an autoencoder that ignores its
    input would score), and their ratio (0 is perfect, about 1 is no better than chance).
    """
    if x.shape != reconstruction.shape or len(x) < 2:
        raise ValueError(f"x and reconstruction must have the same shape with at least 2 points, "
                         f"got {tuple(x.shape)} and {tuple(reconstruction.shape)}")
    x, reconstruction = x.double().cpu(), reconstruction.double().cpu()
    n = len(x)
    shift = torch.randint(1, n, (n,), generator=generator)
    other = x[(torch.arange(n) + shift) % n]  # never the point itself
    err = (x - reconstruction).pow(2).reshape(n, -1).sum(1).mean().item()
    base = (x - other).pow(2).reshape(n, -1).sum(1).mean().item()
    return {"reconstruction_error": err, "random_pair_error": base, "reconstruction_ratio": err / base}


def linear_probe_accuracy(train_codes: torch.Tensor, train_labels: torch.Tensor,
                          test_codes: torch.Tensor, test_labels: torch.Tensor,
                          max_iter: int = 1000) -> float:
    r"""
    The test accuracy of a multinomial logistic regression (scikit-learn's
    ``LogisticRegression`` on standardised codes) fitted to the training codes: how much of
    the class information an encoder keeps linearly decodable.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def numpy(t: torch.Tensor) -> np.ndarray:
        return torch.as_tensor(t).detach().cpu().double().numpy()

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(numpy(train_codes), numpy(train_labels).astype(int))
    return float(probe.score(numpy(test_codes), numpy(test_labels).astype(int)))


@torch.no_grad()
def sample_quality(model: Any, classifier: Any, real: torch.Tensor, real_labels: torch.Tensor,
                   reference: torch.Tensor, num_classes: int, num_samples: int | None = None,
                   k: int = 3, batch_size: int = 500) -> dict[str, float]:
    r"""
    Every sample-quality metric of ``model`` (anything with ``sample(n)``) in the feature space
    of ``classifier`` (an :class:`~pyrogen.models.ImageClassifier`):

    * ``frechet_distance`` between ``real`` and ``num_samples`` generated points, and
      ``frechet_floor``, the same between ``real`` and as many other real points
      (``reference``, e.g. training images): what a perfect model would score at this size;
    * ``precision``, ``recall`` (and their real-vs-real ``precision_floor``,
      ``recall_floor``);
    * ``classes_covered`` and ``class_kl`` of the classifier's predictions on the samples.

    :param real: real images (e.g. the test split) ``(n, C, H, W)``, with ``real_labels``.
    :param reference: other real images, at least ``num_samples`` of them.
    """
    num_samples = int(num_samples or len(real))
    if len(reference) < num_samples:
        raise ValueError(f"reference must hold at least num_samples={num_samples} images, got {len(reference)}")
    samples = torch.cat([model.sample(min(batch_size, num_samples - i))
                         for i in range(0, num_samples, batch_size)])
    feats_real = classifier.embed(real)
    feats_gen = classifier.embed(samples)
    feats_ref = classifier.embed(reference[:num_samples])
    result = {
        "frechet_distance": frechet_distance_features(feats_real, feats_gen),
        "frechet_floor": frechet_distance_features(feats_real, feats_ref),
    }
    result.update(precision_recall(feats_real, feats_gen, k))
    floor = precision_recall(feats_real, feats_ref, k)
    result.update(precision_floor=floor["precision"], recall_floor=floor["recall"])
    result.update(mode_coverage(classifier.predict(samples), real_labels, num_classes))
    result["num_samples"] = num_samples
    return result


@torch.no_grad()
def conditional_accuracy(model: Any, classifier: Any, num_classes: int,
                         num_per_class: int = 100) -> dict[str, float]:
    r"""
    How well a class-conditional model draws the class it is asked for: for every class
    :math:`k`, ``num_per_class`` samples ``model.sample(n, y=k)``, and the share of them that
    ``classifier`` calls :math:`k`.

    :returns: ``conditional_accuracy`` (the mean share over classes) and
        ``conditional_accuracy_min`` (the worst class's).
    """
    shares = []
    for k in range(num_classes):
        predicted = classifier.predict(model.sample(num_per_class, y=k))
        shares.append((predicted == k).double().mean().item())
    return {"conditional_accuracy": sum(shares) / len(shares),
            "conditional_accuracy_min": min(shares)}


__all__ = [
    "conditional_accuracy",
    "class_histogram",
    "linear_probe_accuracy",
    "mode_coverage",
    "precision_recall",
    "reconstruction_error",
    "sample_quality",
]
