"""Checks, before any work, that a data set can train a model."""

from __future__ import annotations

import math

import torch
from torch import nn

from pyrogen.data import DataSplits


def check_data_fits_model(model: nn.Module, data: DataSplits) -> None:
    """Raise a ValueError, before any work, if the data cannot be scored by the model."""
    data_shape = tuple(getattr(model, "data_shape", data.shape))
    flattened = (len(data_shape) == 1 and hasattr(model, "inputs")
                 and math.prod(data.shape) == data_shape[0])  # e.g. a Gaussian mixture of images
    if tuple(data.shape) != data_shape and not flattened:
        raise ValueError(
            f"the model expects data of shape {data_shape}, but data set "
            f"{data.name!r} has shape {tuple(data.shape)}"
        )
    if getattr(model, "needs_labels", False) and data.num_classes is None:
        raise ValueError(
            f"the model conditions on class labels, but data set {data.name!r} has none"
        )
    num_classes = getattr(model, "config", {}).get("num_classes")
    if getattr(model, "needs_labels", False) and num_classes is not None:
        if data.num_classes > num_classes:
            raise ValueError(
                f"the model has {num_classes} classes, but data set {data.name!r} has "
                f"{data.num_classes}"
            )
    likelihood = getattr(getattr(model, "model", None), "likelihood", None)
    if getattr(likelihood, "support", None) is torch.distributions.constraints.boolean:
        if data.binarize == "none":
            raise ValueError(
                f"likelihood 'bernoulli' needs binary data, but data set {data.name!r} "
                "is loaded with binarize='none' (grey levels): use binarize='dynamic' or "
                "'static' (--binarize), or likelihood 'continuous-bernoulli' or 'gaussian'"
            )


__all__ = ["check_data_fits_model"]
