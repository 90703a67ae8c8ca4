"""Checks, before any work, that a data set can train a model."""

from __future__ import annotations

from torch import nn

from pyrogen.data import DataSplits
from pyrogen.models.base import Facade


def check_data_fits_model(model: nn.Module, data: DataSplits) -> None:
    """Raise a ValueError, before any work, if the data cannot be scored by the model (a
    :class:`~pyrogen.models.base.Facade`: its shape, labels and likelihood's support)."""
    if not isinstance(model, Facade):
        return
    if not model.accepts(tuple(data.shape)):
        raise ValueError(
            f"the model expects data of shape {tuple(model.data_shape)}, but data set "
            f"{data.name!r} has shape {tuple(data.shape)}"
        )
    if model.needs_labels and data.num_classes is None:
        raise ValueError(
            f"the model conditions on class labels, but data set {data.name!r} has none"
        )
    if model.needs_labels and model.num_classes is not None and data.num_classes > model.num_classes:
        raise ValueError(
            f"the model has {model.num_classes} classes, but data set {data.name!r} has "
            f"{data.num_classes}"
        )
    if model.needs_binary_data and data.binarize == "none":
        raise ValueError(
            f"likelihood 'bernoulli' needs binary data, but data set {data.name!r} "
            "is loaded with binarize='none' (grey levels): use binarize='dynamic' or "
            "'static' (--binarize), or a model of grey levels (a VAE's likelihood "
            "'continuous-bernoulli' or 'gaussian', a mixture's gaussian component)"
        )


__all__ = ["check_data_fits_model"]
