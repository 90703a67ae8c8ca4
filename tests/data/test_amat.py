"""Larochelle's binarised MNIST (.amat text files), on tiny files written here."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrogen.data import DataFormatError, load_dataset, read_amat

SIZES = {"train": 4, "valid": 2, "test": 3}


def amat_text(array: np.ndarray) -> str:
    return "".join(" ".join(map(str, row)) + "\n" for row in array)


def write_amat(path: Path, text: str) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_binarized_mnist(folder: Path, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {split: rng.integers(0, 2, (n, 784), dtype=np.uint8) for split, n in SIZES.items()}
    for split, array in arrays.items():
        write_amat(folder / f"binarized_mnist_{split}.amat{'.gz' if gz else ''}", amat_text(array))
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gzip"])
def test_read_amat_round_trip(tmp_path, suffix):
    array = np.random.default_rng(1).integers(0, 2, (3, 6), dtype=np.uint8)
    path = write_amat(tmp_path / ("x.amat" + suffix), amat_text(array) + "\n")  # a blank last line is fine
    got = read_amat(path, num_values=6)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, array)


def test_read_amat_tolerates_crlf_and_trailing_spaces(tmp_path):
    path = write_amat(tmp_path / "x.amat", "0 1 1 \r\n1 0 0 \r\n")
    np.testing.assert_array_equal(read_amat(path, num_values=3), [[0, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("binarize", ["none", "static"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_load_binarized_mnist(tmp_path, gz, binarize):
    arrays = write_binarized_mnist(tmp_path, gz=gz)
    splits = load_dataset("binarized-mnist", tmp_path, binarize=binarize)
    assert splits.binarize == "static"  # whatever was asked: the files are one fixed draw
    assert splits.shape == (1, 28, 28) and splits.num_classes is None
    for split, array in arrays.items():
        got = getattr(splits, split)
        assert got.labels is None and got.binarize == "static"
        assert torch.equal(got.images, torch.from_numpy(array).float().reshape(-1, 1, 28, 28))


def test_dynamic_binarisation_refused(tmp_path):
    write_binarized_mnist(tmp_path)
    with pytest.raises(ValueError, match="already statically binarised.*'mnist'"):
        load_dataset("binarized-mnist", tmp_path, binarize="dynamic")


def test_validation_size(tmp_path):
    arrays = write_binarized_mnist(tmp_path)
    merged = load_dataset("binarized-mnist", tmp_path, validation_size=0)
    assert (len(merged.train), len(merged.valid), len(merged.test)) == (6, 0, 3)
    expected = torch.from_numpy(np.concatenate([arrays["train"], arrays["valid"]])).float()
    assert torch.equal(merged.train.images.reshape(6, 784), expected)
    with pytest.raises(ValueError, match=r"validation_size=500 is not supported for 'binarized-mnist'"):
        load_dataset("binarized-mnist", tmp_path, validation_size=500)


def test_limit(tmp_path):
    write_binarized_mnist(tmp_path)
    splits = load_dataset("binarized-mnist", tmp_path, limit=2)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (2, 2, 2)


def test_missing_file(tmp_path):
    write_binarized_mnist(tmp_path)
    (tmp_path / "binarized_mnist_valid.amat.gz").unlink()
    expected = r"'binarized_mnist_valid.amat'.*'binarized_mnist_valid.amat.gz'"
    with pytest.raises(FileNotFoundError, match=expected) as info:
        load_dataset("binarized-mnist", tmp_path)
    assert str(tmp_path) in str(info.value) and "binarized_mnist_test.amat" in str(info.value)


@pytest.mark.parametrize(
    "line, defect",
    [
        ("0 1 2", r"line 2: value '2' is not 0 or 1"),
        ("0 1 0.5", r"line 2: value '0.5' is not 0 or 1"),
        ("0 10 1", r"line 2: value '10' is not 0 or 1"),
        ("1 -1 0", r"line 2: value '-1' is not 0 or 1"),
        ("0 1", r"line 2: 2 values, expected 3"),
        ("0 1 1 0", r"line 2: 4 values, expected 3"),
    ],
    ids=["two", "fraction", "multi-digit", "negative", "short", "long"],
)
def test_malformed_lines(tmp_path, line, defect):
    path = write_amat(tmp_path / "bad.amat.gz", f"1 1 1\n{line}\n0 0 0\n")
    with pytest.raises(DataFormatError, match=r"bad\.amat\.gz'?, " + defect):
        read_amat(path, num_values=3)


def test_malformed_file_through_loader(tmp_path):
    write_binarized_mnist(tmp_path)
    write_amat(tmp_path / "binarized_mnist_test.amat.gz", "0 1\n")
    with pytest.raises(DataFormatError, match=r"binarized_mnist_test\.amat\.gz'?, line 1: 2 values, expected 784"):
        load_dataset("binarized-mnist", tmp_path)


def test_truncated_gzip(tmp_path):
    write_binarized_mnist(tmp_path)
    path = tmp_path / "binarized_mnist_train.amat.gz"
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataFormatError, match=r"binarized_mnist_train\.amat\.gz.*truncated or corrupt"):
        load_dataset("binarized-mnist", tmp_path)
