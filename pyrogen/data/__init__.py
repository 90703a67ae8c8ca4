"""
Data sets for pyrogen, loaded whole into memory as tensors.

:func:`load_dataset` reads one of :data:`DATASETS` into a :class:`DataSplits` of train,
validation and test :class:`Split` objects, each a ``float32`` tensor ``(N, C, H, W)`` in [0, 1] with
optional ``int64`` labels; :meth:`Split.batches` serves reproducible, shardable minibatches by
tensor indexing on the data's own device.

Binary likelihoods use one of two binarisation conventions (:data:`BINARIZATIONS`):
``"dynamic"`` redraws every pixel from Bernoulli(intensity) each time it is served,
``"static"`` uses one fixed draw (Larochelle's ``binarized-mnist`` is the published one).
Negative log-likelihoods reported under the two are not comparable; always say which one.

Example::

    from pyrogen.data import load_dataset

    splits = load_dataset("digits", binarize="dynamic")
    for epoch in range(10):
        for x, y, index in splits.train.batches(64, shuffle=True, epoch=epoch):
            ...
"""

from __future__ import annotations

from pyrogen.data.amat import read_amat
from pyrogen.data.datasets import DATASETS, load_dataset
from pyrogen.data.files import DataFormatError
from pyrogen.data.idx import read_idx, read_idx_pair
from pyrogen.data.images import IMAGE_EXTENSIONS, load_image_folder
from pyrogen.data.split import BINARIZATIONS, Batch, DataSplits, Split

__all__ = [
    "BINARIZATIONS",
    "DATASETS",
    "IMAGE_EXTENSIONS",
    "Batch",
    "DataFormatError",
    "DataSplits",
    "Split",
    "load_dataset",
    "load_image_folder",
    "read_amat",
    "read_idx",
    "read_idx_pair",
]
