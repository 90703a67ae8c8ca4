"""
The registry of data sets and :func:`load_dataset`.

=====================  =========================  ===================  ==========================
name                   source                     shape, classes       splits (train/valid/test)
=====================  =========================  ===================  ==========================
``digits``             scikit-learn, built in     (1, 8, 8), 10        70% / 10% / 20%, seeded
``mnist``              four IDX files             (1, 28, 28), 10      50,000 / 10,000 / 10,000
``fashion-mnist``      four IDX files             (1, 28, 28), 10      50,000 / 10,000 / 10,000
``binarized-mnist``    three ``.amat`` files      (1, 28, 28), none    50,000 / 10,000 / 10,000
``folder``             PNG/JPEG files             (1 or 3, s, s), K    80% / 10% / 10%, seeded
=====================  =========================  ===================  ==========================

Only ``digits`` ships with the library (through scikit-learn); the others are read from a
folder the user names (``data_dir``, ``--data-dir`` on the command line), and nothing is ever
downloaded. Validation data of MNIST and Fashion-MNIST are the *last* examples of the original
training files, so the split is the same for every seed.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Callable

import numpy as np
import torch

from pyrogen.data.amat import read_amat
from pyrogen.data.files import DataFormatError, resolve_data_dir, resolve_file
from pyrogen.data.idx import read_idx_pair
from pyrogen.data.images import IMAGE_EXTENSIONS, load_image_folder
from pyrogen.data.split import _STATIC, BINARIZATIONS, DataSplits, Split, derive_seed

__all__ = ["BINARIZATIONS", "DATASETS", "load_dataset"]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("digits", "mnist", "fashion-mnist", "binarized-mnist", "folder")

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_AMAT_FILES = tuple(f"binarized_mnist_{split}.amat" for split in ("train", "valid", "test"))
_IDX_LIST = ", ".join(f"{f}[.gz]" for f in _IDX_FILES)
#: What each data set's folder must hold, for error messages.
_NEEDS = {
    "mnist": f"the four standard MNIST IDX files {_IDX_LIST} (http://yann.lecun.com/exdb/mnist/)",
    "fashion-mnist": f"the four Fashion-MNIST IDX files, named as MNIST's: {_IDX_LIST} "
    "(https://github.com/zalandoresearch/fashion-mnist)",
    "binarized-mnist": "Larochelle's statically binarised MNIST, "
    + ", ".join(f"{f}[.gz]" for f in _AMAT_FILES)
    + " (http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/)",
    "folder": f"PNG/JPEG images ({', '.join(IMAGE_EXTENSIONS)}), searched recursively, optionally in one "
    "subfolder per class",
}


def _choice_error(argument: str, value: object, choices: tuple[str, ...]) -> ValueError:
    return ValueError(f"{argument} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def _check_int(argument: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}, got {value!r}")


def _check_validation_size(validation_size: int | float | None) -> None:
    if validation_size is None:
        return
    is_fraction = isinstance(validation_size, (float, np.floating)) and 0.0 <= validation_size < 1.0
    is_count = isinstance(validation_size, (int, np.integer)) and not isinstance(validation_size, bool)
    is_count = is_count and validation_size >= 0
    if not (is_fraction or is_count):
        raise ValueError(
            "validation_size must be None (the data set's default), an integer count >= 0 or a fraction "
            f"in [0, 1); got {validation_size!r}"
        )


def _num_valid(validation_size: int | float | None, pool: int, default: int, dataset: str) -> int:
    """Number of validation examples to carve out of ``pool`` training examples."""
    if validation_size is None:
        count = default
    elif isinstance(validation_size, (float, np.floating)):
        count = math.floor(validation_size * pool + 0.5)
    else:
        count = int(validation_size)
    if count >= pool:
        raise ValueError(
            f"validation_size={validation_size!r} leaves no training data: {dataset} has {pool} "
            f"examples to share between training and validation"
        )
    return count


def _to_float(array: np.ndarray, scale: float) -> torch.Tensor:
    return torch.from_numpy(array).to(torch.float32).div_(scale)


def _binarize_static(images: torch.Tensor, binarize: str, seed: int) -> torch.Tensor:
    if binarize != "static":
        return images
    generator = torch.Generator().manual_seed(derive_seed(_STATIC, seed))
    return torch.bernoulli(images, generator=generator)


@dataclasses.dataclass(frozen=True)
class _Request:
    """The checked arguments of :func:`load_dataset`, as every loader receives them."""

    data_dir: str | os.PathLike | None
    binarize: str
    validation_size: int | float | None
    seed: int
    limit: int | None
    image_size: int
    grayscale: bool


def _split(
    images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor, binarize: str, limit: int | None
) -> Split:
    if limit is not None:
        index = index[:limit]
    return Split(images[index], None if labels is None else labels[index], binarize)


def _permuted_splits(
    images: torch.Tensor, labels: torch.Tensor | None, test_fraction: float, request: _Request, dataset: str
) -> tuple[Split, Split, Split]:
    """Split by a permutation seeded by ``request.seed``: a test fraction first, then validation from the rest."""
    n = len(images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(request.seed))
    num_test = math.floor(test_fraction * n + 0.5)
    num_valid = _num_valid(request.validation_size, n - num_test, math.floor(0.1 * n + 0.5), dataset)
    test, valid, train = order[:num_test], order[num_test : num_test + num_valid], order[num_test + num_valid :]
    train_split, valid_split, test_split = (
        _split(images, labels, index, request.binarize, request.limit) for index in (train, valid, test)
    )
    return train_split, valid_split, test_split


def _load_digits(request: _Request) -> DataSplits:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = _to_float(digits.images.astype(np.float32).reshape(-1, 1, 8, 8), 16.0)
    images = _binarize_static(images, request.binarize, request.seed)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train, valid, test = _permuted_splits(images, labels, 0.2, request, "digits")
    return DataSplits("digits", train, valid, test, request.binarize, (1, 8, 8), 10)


def _load_idx(name: str, request: _Request) -> DataSplits:
    folder = resolve_data_dir(request.data_dir, name)
    how = f"Put {_NEEDS[name]} in that folder."
    paths = [resolve_file(folder, f, how) for f in _IDX_FILES]  # all four found before reading any
    train_x, train_y = read_idx_pair(paths[0], paths[1])
    test_x, test_y = read_idx_pair(paths[2], paths[3])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataFormatError(
            f"image sizes differ: {str(paths[0])!r} holds {train_x.shape[1]}x{train_x.shape[2]} images but "
            f"{str(paths[2])!r} holds {test_x.shape[1]}x{test_x.shape[2]}"
        )
    for path, y in ((paths[1], train_y), (paths[3], test_y)):
        if y.size and y.max() > 9:
            raise DataFormatError(f"{str(path)!r} holds label {int(y.max())}, expected classes 0..9")
    num_train = len(train_x)
    # One draw over train and test together, so the draw is the same whatever validation_size is.
    images = _to_float(np.concatenate([train_x, test_x])[:, None], 255.0)
    images = _binarize_static(images, request.binarize, request.seed)
    labels = torch.from_numpy(np.concatenate([train_y, test_y]).astype(np.int64))
    num_valid = _num_valid(request.validation_size, num_train, min(10_000, num_train // 6), name)
    positions = torch.arange(len(images))
    train, valid, test = (
        _split(images, labels, index, request.binarize, request.limit)
        for index in (positions[: num_train - num_valid], positions[num_train - num_valid : num_train],
                      positions[num_train:])
    )
    return DataSplits(name, train, valid, test, request.binarize, (1,) + tuple(train_x.shape[1:]), 10)


def _load_binarized_mnist(request: _Request) -> DataSplits:
    validation_size = request.validation_size
    if request.binarize == "dynamic":
        raise ValueError(
            "binarize='dynamic' is not possible for 'binarized-mnist': its images are already statically "
            "binarised (one fixed published draw). Use binarize='static' (or 'none') with it, or "
            "binarize='dynamic' with 'mnist' to redraw binary images from the grey levels each epoch"
        )
    if validation_size not in (None, 0, 10_000):
        raise ValueError(
            f"validation_size={validation_size!r} is not supported for 'binarized-mnist', whose validation "
            "split is fixed by its files: use None (the published 10000), or 0 to train on train+valid"
        )
    folder = resolve_data_dir(request.data_dir, "binarized-mnist")
    how = f"Put {_NEEDS['binarized-mnist']} in that folder."
    paths = [resolve_file(folder, f, how) for f in _AMAT_FILES]
    train, valid, test = (_to_float(read_amat(p).reshape(-1, 1, 28, 28), 1.0) for p in paths)
    if validation_size == 0:
        train, valid = torch.cat([train, valid]), valid[:0]
    splits = [_split(x, None, torch.arange(len(x)), "static", request.limit) for x in (train, valid, test)]
    return DataSplits("binarized-mnist", *splits, binarize="static", shape=(1, 28, 28), num_classes=None)


def _load_folder(request: _Request) -> DataSplits:
    folder = resolve_data_dir(request.data_dir, "folder")
    array, label_array, classes = load_image_folder(folder, request.image_size, request.grayscale)
    images = _binarize_static(_to_float(array, 255.0), request.binarize, request.seed)
    labels = None if label_array is None else torch.from_numpy(label_array)
    train, valid, test = _permuted_splits(images, labels, 0.1, request, "folder")
    num_classes = len(classes) if classes else None
    shape = tuple(array.shape[1:])
    return DataSplits("folder", train, valid, test, request.binarize, shape, num_classes, tuple(classes) or None)


_LOADERS: dict[str, Callable[[_Request], DataSplits]] = {
    "digits": _load_digits,
    "mnist": functools.partial(_load_idx, "mnist"),
    "fashion-mnist": functools.partial(_load_idx, "fashion-mnist"),
    "binarized-mnist": _load_binarized_mnist,
    "folder": _load_folder,
}


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    binarize: str = "none",
    validation_size: int | float | None = None,
    seed: int = 0,
    image_size: int = 64,
    grayscale: bool = False,
    limit: int | None = None,
) -> DataSplits:
    """
    Load a data set into memory as train/validation/test :class:`~pyrogen.data.Split` s.

    Images are ``float32`` tensors ``(N, C, H, W)`` in [0, 1] on the CPU; move them with
    :meth:`DataSplits.to`. See :mod:`pyrogen.data.split` on the binarisation conventions: results
    under ``"dynamic"`` and ``"static"`` binarisation are not comparable.

    :param str name: one of :data:`DATASETS`.
    :param data_dir: the folder holding the files; required for every data set but
        ``"digits"`` (where it is ignored). Files may be plain or gzip-compressed (``.gz``).
    :param str binarize: ``"none"`` (grey levels), ``"dynamic"`` (a fresh Bernoulli draw per
        batch) or ``"static"`` (one Bernoulli draw at load time, seeded by ``seed``;
        ``"binarized-mnist"`` is static whatever is asked, and refuses ``"dynamic"``).
    :param validation_size: examples held out of training for validation: ``None`` for the
        data set's default (MNIST/Fashion-MNIST: the last 10,000 training images, or the last
        sixth of a training file smaller than 60,000; digits and folder: 10% of all images),
        an integer count (0: an empty validation split), or a fraction in [0, 1) of the
        training pool (the data left after the test split).
        ``"binarized-mnist"`` has a fixed validation file: ``None`` (or 10000) keeps it,
        ``0`` merges it into training, other values are refused.
    :param int seed: non-negative; seeds the split permutation (digits, folder) and the static
        binarisation draw.
    :param int image_size: ``"folder"`` only: images are resized to ``image_size x image_size``.
    :param bool grayscale: ``"folder"`` only: one grey channel instead of RGB.
    :param limit: keep only the first ``limit`` examples of each split (smoke runs).
    :type limit: int or None
    :raises ValueError: naming the argument, value and choices for a bad argument, or a missing
        ``data_dir``.
    :raises FileNotFoundError: naming the file, the folder and what to put there.
    :raises DataFormatError: naming the file and the defect for a corrupt file.

    Example::

        splits = load_dataset("mnist", "data/mnist", binarize="dynamic")
        splits.describe()
        # {'name': 'mnist', 'sizes': {'train': 50000, 'valid': 10000, 'test': 10000},
        #  'shape': [1, 28, 28], 'binarize': 'dynamic', 'num_classes': 10}
    """
    if name not in DATASETS:
        raise _choice_error("name (the data set)", name, DATASETS)
    if binarize not in BINARIZATIONS:
        raise _choice_error("binarize", binarize, BINARIZATIONS)
    _check_validation_size(validation_size)
    _check_int("seed", seed, 0)
    _check_int("image_size", image_size, 1)
    if limit is not None:
        _check_int("limit", limit, 1)
    if data_dir is None and name != "digits":
        raise ValueError(
            f"data set {name!r} needs data_dir (--data-dir on the command line): a folder holding {_NEEDS[name]}"
        )
    request = _Request(data_dir, binarize, validation_size, int(seed), limit, int(image_size), bool(grayscale))
    return _LOADERS[name](request)
