"""load_dataset: the built-in digits set, the registry, argument checking and DataSplits."""

from __future__ import annotations

import json

import pytest
import torch

from pyrogen.data import BINARIZATIONS, DATASETS, DataSplits, Split, load_dataset


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_dataset("digits")


def test_registry():
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "binarized-mnist", "folder")
    assert BINARIZATIONS == ("none", "dynamic", "static")


def test_digits_sizes_and_values(digits):
    sizes = (len(digits.train), len(digits.valid), len(digits.test))
    assert sizes == (1258, 180, 359) and sum(sizes) == 1797
    assert digits.shape == (1, 8, 8) and digits.num_classes == 10 and digits.binarize == "none"
    for split in (digits.train, digits.valid, digits.test):
        assert isinstance(split, Split) and split.images.dtype == torch.float32
        assert split.images.shape[1:] == (1, 8, 8) and split.labels.dtype == torch.int64
        assert 0.0 <= split.images.min() and split.images.max() <= 1.0
    assert digits.train.images.max() == 1.0  # 16/16: the scale is 0..16
    assert set(digits.train.labels.tolist()) == set(range(10))


def test_digits_split_is_a_seeded_partition(digits):
    rows = lambda s: {tuple(r) for r in (s.images.flatten(1) * 16).round().int().tolist()}  # noqa: E731
    # The sizes add up to 1797 (test above); together the splits hold every digit image.
    union = rows(digits.train) | rows(digits.valid) | rows(digits.test)
    from sklearn.datasets import load_digits

    assert union == {tuple(r) for r in load_digits().data.astype(int).tolist()}
    same = load_dataset("digits", seed=0)
    other = load_dataset("digits", seed=1)
    assert torch.equal(same.test.images, digits.test.images)
    assert not torch.equal(other.test.images, digits.test.images)


@pytest.mark.parametrize(
    "validation_size, sizes", [(0, (1438, 0, 359)), (100, (1338, 100, 359)), (0.5, (719, 719, 359))], ids=str
)
def test_digits_validation_size(validation_size, sizes):
    splits = load_dataset("digits", validation_size=validation_size)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == sizes


def test_digits_static_binarisation():
    a = load_dataset("digits", binarize="static", seed=2)
    b = load_dataset("digits", binarize="static", seed=2)
    assert a.binarize == a.train.binarize == "static"
    assert set(a.train.images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.train.images, b.train.images)
    # Served unchanged in every epoch.
    assert torch.equal(next(a.train.batches(50, epoch=0)).x, next(a.train.batches(50, epoch=9)).x)


def test_digits_dynamic_binarisation():
    splits = load_dataset("digits", binarize="dynamic")
    assert splits.train.binarize == "dynamic" and splits.train.images.unique().numel() > 2  # stored as grey
    x = torch.cat([b.x for b in splits.test.batches(100)])
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x, torch.cat([b.x for b in splits.test.batches(100)]))  # evaluation is reproducible


def test_limit():
    splits = load_dataset("digits", limit=7)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (7, 7, 7)
    assert len(splits.train.labels) == 7
    full = load_dataset("digits")
    assert torch.equal(splits.train.images, full.train.images[:7])


def test_describe_is_json(digits):
    described = digits.describe()
    assert json.loads(json.dumps(described)) == {
        "name": "digits",
        "sizes": {"train": 1258, "valid": 180, "test": 359},
        "shape": [1, 8, 8],
        "binarize": "none",
        "num_classes": 10,
    }
    assert "train=1258" in repr(digits)


def test_to_device(digits):
    moved = digits.to("cpu")
    assert isinstance(moved, DataSplits) and moved.name == "digits" and moved.shape == digits.shape
    assert moved.test.images.device == torch.device("cpu") and torch.equal(moved.test.labels, digits.test.labels)


def test_digits_ignores_data_dir(tmp_path):
    assert len(load_dataset("digits", tmp_path, limit=3).train) == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="cifar"), r"name \(the data set\) must be one of 'digits', 'mnist'.*'folder'; got 'cifar'"),
        (dict(name="digits", binarize="yes"), r"binarize must be one of 'none', 'dynamic', 'static'; got 'yes'"),
        (dict(name="digits", validation_size=-1), r"validation_size must be None .*integer count >= 0.*; got -1"),
        (dict(name="digits", validation_size=1.5), r"validation_size must be .*fraction in \[0, 1\); got 1.5"),
        (dict(name="digits", validation_size="10"), r"validation_size .*got '10'"),
        (dict(name="digits", validation_size=True), r"validation_size .*got True"),
        (dict(name="digits", validation_size=1438), r"validation_size=1438 leaves no training data.*1438"),
        (dict(name="digits", seed=-1), r"seed must be an integer >= 0, got -1"),
        (dict(name="digits", image_size=0), r"image_size must be an integer >= 1, got 0"),
        (dict(name="digits", limit=0), r"limit must be an integer >= 1, got 0"),
    ],
    ids=[
        "name", "binarize", "valid-neg", "valid-frac", "valid-str", "valid-bool", "valid-all", "seed", "size", "limit"
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(**kwargs)


@pytest.mark.parametrize("name, needs", [
    ("mnist", "train-images-idx3-ubyte"),
    ("fashion-mnist", "Fashion-MNIST IDX files"),
    ("binarized-mnist", "binarized_mnist_train.amat"),
    ("folder", "PNG/JPEG images"),
])
def test_data_dir_required(name, needs):
    expected = rf"data set '{name}' needs data_dir \(--data-dir on the command line\).*{needs}"
    with pytest.raises(ValueError, match=expected):
        load_dataset(name)


def test_data_dir_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is not a folder"):
        load_dataset("mnist", tmp_path / "file")
