"""
What ``pyrogen evaluate --features`` and ``pyrogen diagnose`` add for models judged by their
samples and encoders: the sample-quality metrics in a classifier's feature space, the encoder
metrics, and the likelihood to diagnose an adversarial encoder against.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from pyrogen.cli_parser import ADVERSARIAL
from pyrogen.train.config import TrainConfig

#: the models whose encoder reads x alone: `reconstruct`, `encode` and the encoder metrics
ENCODER_MODELS = ("vae", "dfcvae", "aae", "ali")



def load_classifier(path: Path, data: Any, device: str) -> Any:
    from pyrogen.train import load_run

    classifier, config = load_run(path, "best", device)
    if config.model != "classifier":
        raise ValueError(f"--features {path} is a {config.model} run; it must be a "
                         "`pyrogen train classifier` run")
    if tuple(classifier.data_shape) != tuple(data.shape):
        raise ValueError(f"--features {path} was trained on images of shape "
                         f"{tuple(classifier.data_shape)}, but the run's data have shape {tuple(data.shape)}")
    return classifier


@torch.no_grad()
def quality(args: argparse.Namespace, model: Any, config: TrainConfig, data: Any, split: Any) -> dict[str, Any]:
    """Sample-quality metrics in a classifier's feature space, and for a model with an encoder
    the reconstruction error and a linear probe on its codes."""
    from pyrogen.metrics import linear_probe_accuracy, reconstruction_error, sample_quality

    if not hasattr(model, "sample"):
        raise ValueError("--features: the model cannot sample")
    if data.num_classes is None:
        raise ValueError(f"--features needs a labelled data set; {data.name!r} has no labels")
    classifier = load_classifier(args.features, data, args.device)
    x, y = split.images, split.labels
    num = args.num_samples or len(x)
    if len(data.train) < num:
        raise ValueError(f"--num-samples {num} exceeds the {len(data.train)} training images that "
                         "give the real-vs-real floor")
    start = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {"features": str(args.features), **sample_quality(
        model, classifier, x, y, data.train.images, data.num_classes, num)}
    if config.model in ENCODER_MODELS:
        rec = torch.cat([model.reconstruct(b) for b in x.split(500)])
        result.update(reconstruction_error(x, rec, generator=g))
        train_codes = torch.cat([model.encode(b)[0] for b in data.train.images.split(500)])
        codes = torch.cat([model.encode(b)[0] for b in x.split(500)])
        result["linear_probe_accuracy"] = linear_probe_accuracy(train_codes, data.train.labels, codes, y)
    result["quality_seconds"] = time.perf_counter() - start
    return result


def diagnosable(model: Any, config: TrainConfig, x: torch.Tensor) -> tuple[Any, float | None]:
    """The generative model to diagnose the guide against, and the scale of a surrogate
    Gaussian likelihood when the model's own is a ``Delta`` (AAE, ALI)."""
    if config.model not in ADVERSARIAL:
        return model.model, None
    if config.model == "gan" or getattr(model.guide, "noise", None) != "gaussian":
        raise ValueError(f"a {config.model} run has no Gaussian encoder p(z|x) to diagnose (a gan has "
                         "none; train an aae or ali with --encoder gaussian)")
    if model.model.noise == "gaussian":
        return model.model, None
    # the maximum-likelihood scale of N(G(mu(x)), s^2 I) on these points
    with torch.no_grad():
        scale = float((x - model.reconstruct(x)).pow(2).mean().sqrt().clamp(min=1e-3))
    return model.model.with_gaussian_noise(scale), scale


__all__ = ["ENCODER_MODELS", "diagnosable", "load_classifier", "quality"]
