"""
What ``pyrogen evaluate --features`` adds for every family that samples: the sample-quality
metrics in a trained classifier's feature space and, for a model with an encoder of ``x``
alone, the reconstruction error and a linear probe on its codes. On a data set without labels
(``binarized-mnist``) the class histogram of the samples is compared with the classifier's
reading of the real images (a classifier trained on MNIST reads Larochelle's binarised digits),
and the linear probe, which needs labels, is left out.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from pyrogen.models.base import Facade


@torch.no_grad()
def quality(request: Any, model: Facade, data: Any, split: Any) -> dict[str, Any]:
    """Sample-quality metrics in the feature space of the classifier that
    ``request.classifier()`` loads (from the classifier run ``request.features``), and for a model with an encoder the
    reconstruction error and a linear probe on its codes. Without labels in ``split`` the
    reference class histogram is the classifier's prediction on the real images, and the
    linear probe is skipped."""
    from pyrogen.metrics import linear_probe_accuracy, reconstruction_error, sample_quality

    classifier = request.classifier()
    x, y = split.images, split.labels
    num_classes = data.num_classes
    labels = "the data set's"
    if y is None:  # e.g. binarized-mnist, scored by a classifier trained on MNIST
        y = torch.cat([classifier.predict(b) for b in x.split(500)])
        num_classes = classifier.net.num_classes
        labels = "the classifier's reading of the real images"
    num = request.num_samples or len(x)
    if len(data.train) < num:
        raise ValueError(f"--num-samples {num} exceeds the {len(data.train)} training images that "
                         "give the real-vs-real floor")
    start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {"features": str(request.features), **sample_quality(
        model, classifier, x, y, data.train.images, num_classes, num), "class_reference": labels}
    if model.has_encoder:
        rec = torch.cat([model.reconstruct(b) for b in x.split(500)])
        result.update(reconstruction_error(x, rec, generator=g))
    if model.has_encoder and split.labels is not None and data.train.labels is not None:
        train_codes = torch.cat([model.encode(b)[0] for b in data.train.images.split(500)])
        codes = torch.cat([model.encode(b)[0] for b in x.split(500)])
        result["linear_probe_accuracy"] = linear_probe_accuracy(train_codes, data.train.labels, codes, y)
    result["quality_seconds"] = time.perf_counter() - start
    return result


__all__ = ["quality"]
