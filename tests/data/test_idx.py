"""IDX reading and the MNIST / Fashion-MNIST loaders, on tiny files written here in the real format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pyrogen.data import DataFormatError, load_dataset, read_idx, read_idx_pair

IMAGES, LABELS = 2051, 2049
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(array: np.ndarray, magic: int | None = None, dims: tuple[int, ...] | None = None) -> bytes:
    """The IDX encoding of a uint8 array: 0x00 0x00 0x08 ndim, big-endian uint32 dims, data."""
    array = np.asarray(array, dtype=np.uint8)
    dims = array.shape if dims is None else dims
    magic = (0x08 << 8 | len(dims)) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + array.tobytes()


def write(path: Path, data: bytes) -> Path:
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_mnist(folder: Path, num_train: int = 12, num_test: int = 5, gz: bool = True, seed: int = 0):
    """Write the four MNIST files with random 4x5 images; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = (
        rng.integers(0, 256, (num_train, 4, 5), dtype=np.uint8),
        rng.integers(0, 10, num_train, dtype=np.uint8),
        rng.integers(0, 256, (num_test, 4, 5), dtype=np.uint8),
        rng.integers(0, 10, num_test, dtype=np.uint8),
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FILES, arrays):
        write(folder / (name + (".gz" if gz else "")), idx_bytes(array))
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"], ids=["plain", "gzip"])
def test_read_idx_round_trip(tmp_path, suffix):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4
    labels = np.array([7, 0, 9], dtype=np.uint8)
    image_path = write(tmp_path / ("images" + suffix), idx_bytes(images))
    label_path = write(tmp_path / ("labels" + suffix), idx_bytes(labels))
    np.testing.assert_array_equal(read_idx(image_path, IMAGES), images)
    got_images, got_labels = read_idx_pair(image_path, label_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8 and got_images.shape == (3, 4, 5)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load_mnist_values_labels_and_splits(tmp_path, name):
    train_x, train_y, test_x, test_y = write_mnist(tmp_path, num_train=12, num_test=5)
    splits = load_dataset(name, tmp_path)
    assert splits.name == name and splits.shape == (1, 4, 5) and splits.num_classes == 10
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (10, 2, 5)  # last sixth is validation
    expected = torch.from_numpy(train_x).float().div(255).unsqueeze(1)
    torch.testing.assert_close(splits.train.images, expected[:10], rtol=0, atol=0)
    torch.testing.assert_close(splits.valid.images, expected[10:], rtol=0, atol=0)
    torch.testing.assert_close(splits.test.images, torch.from_numpy(test_x).float().div(255).unsqueeze(1))
    assert splits.train.labels.dtype == torch.int64
    assert splits.train.labels.tolist() == train_y[:10].tolist()
    assert splits.valid.labels.tolist() == train_y[10:].tolist()
    assert splits.test.labels.tolist() == test_y.tolist()
    assert splits.train.images.dtype == torch.float32 and splits.binarize == "none"


def test_gzip_and_plain_identical(tmp_path):
    write_mnist(tmp_path / "gz", gz=True)
    write_mnist(tmp_path / "plain", gz=False)
    a, b = load_dataset("mnist", tmp_path / "gz"), load_dataset("mnist", tmp_path / "plain")
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(a, split).images, getattr(b, split).images)
        assert torch.equal(getattr(a, split).labels, getattr(b, split).labels)


def test_plain_file_preferred_over_gzip(tmp_path):
    write_mnist(tmp_path, gz=True, seed=1)
    plain = write_mnist(tmp_path, gz=False, seed=2)
    splits = load_dataset("mnist", tmp_path, validation_size=0)
    assert torch.equal(splits.train.images, torch.from_numpy(plain[0]).float().div(255).unsqueeze(1))


@pytest.mark.parametrize(
    "validation_size, sizes", [(0, (12, 0)), (3, (9, 3)), (0.25, (9, 3)), (0.0, (12, 0))], ids=str
)
def test_validation_size(tmp_path, validation_size, sizes):
    train_x = write_mnist(tmp_path)[0]
    splits = load_dataset("mnist", tmp_path, validation_size=validation_size)
    assert (len(splits.train), len(splits.valid)) == sizes
    # Validation is always the tail of the training file.
    assert torch.equal(splits.train.images[:, 0], torch.from_numpy(train_x[: sizes[0]]).float() / 255)


def test_static_binarisation_is_seeded(tmp_path):
    write_mnist(tmp_path, num_train=300, num_test=10)
    grey = load_dataset("mnist", tmp_path)
    a = load_dataset("mnist", tmp_path, binarize="static", seed=3)
    b = load_dataset("mnist", tmp_path, binarize="static", seed=3)
    c = load_dataset("mnist", tmp_path, binarize="static", seed=4)
    assert a.binarize == a.train.binarize == "static"
    assert set(a.train.images.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(a.train.images, b.train.images) and not torch.equal(a.train.images, c.train.images)
    assert abs(a.train.images.mean() - grey.train.images.mean()) < 0.03


def test_missing_file_names_file_folder_and_remedy(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert "'t10k-labels-idx1-ubyte.gz'" in message and str(tmp_path) in message
    assert "train-images-idx3-ubyte" in message and "IDX" in message  # says what to put there


def test_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("fashion-mnist", tmp_path / "nowhere")


def corrupt(tmp_path: Path, name: str, data: bytes, gz: bool = False) -> Path:
    """A full MNIST folder whose file ``name`` is replaced by ``data``."""
    write_mnist(tmp_path, gz=gz)
    return write(tmp_path / (name + (".gz" if gz else "")), data)


def test_bad_magic_number(tmp_path):
    path = corrupt(tmp_path, FILES[0], b"\x12\x34" + idx_bytes(np.zeros((2, 4, 5)))[2:])
    with pytest.raises(DataFormatError, match=r"bad magic number: got \d+.*expected 2051") as info:
        load_dataset("mnist", tmp_path)
    assert str(path) in str(info.value)


def test_gzip_content_in_plain_file_is_bad_magic(tmp_path):
    corrupt(tmp_path, FILES[0], gzip.compress(idx_bytes(np.zeros((12, 4, 5)))))
    with pytest.raises(DataFormatError, match="bad magic number.*not an .uncompressed. IDX file"):
        load_dataset("mnist", tmp_path)


def test_unsupported_data_type(tmp_path):
    corrupt(tmp_path, FILES[1], idx_bytes(np.zeros(12), magic=0x0D01))
    with pytest.raises(DataFormatError, match=r"train-labels.*bad magic number: got 3329.*float32.*expected 2049"):
        load_dataset("mnist", tmp_path)


def test_labels_file_in_place_of_images_is_wrong_dimensions(tmp_path):
    corrupt(tmp_path, FILES[0], idx_bytes(np.zeros(12)))
    expected = r"train-images.*wrong number of dimensions.*2049 declares 1.*expected 2051"
    with pytest.raises(DataFormatError, match=expected):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_truncated_data(tmp_path, gz):
    corrupt(tmp_path, FILES[2], idx_bytes(np.zeros((5, 4, 5)))[:-7], gz=gz)
    with pytest.raises(DataFormatError, match=r"t10k-images.*truncated.*5x4x5 = 100 data bytes.*only 93"):
        load_dataset("mnist", tmp_path)


def test_truncated_header(tmp_path):
    corrupt(tmp_path, FILES[2], idx_bytes(np.zeros((5, 4, 5)))[:10])
    with pytest.raises(DataFormatError, match=r"t10k-images.*truncated inside its header"):
        load_dataset("mnist", tmp_path)
    corrupt(tmp_path, FILES[2], b"\x00\x00")
    with pytest.raises(DataFormatError, match=r"t10k-images.*truncated: 2 byte.*magic number"):
        load_dataset("mnist", tmp_path)


def test_trailing_bytes(tmp_path):
    corrupt(tmp_path, FILES[3], idx_bytes(np.zeros(5)) + b"\x00\x01\x02")
    with pytest.raises(DataFormatError, match=r"t10k-labels.*3 trailing bytes after the 5 data bytes"):
        load_dataset("mnist", tmp_path)


def test_image_and_label_counts_differ(tmp_path):
    corrupt(tmp_path, FILES[1], idx_bytes(np.zeros(11)))
    with pytest.raises(DataFormatError, match=r"counts differ.*train-images.*12 images.*train-labels.*11 labels"):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_stream(tmp_path):
    write_mnist(tmp_path, num_train=200)
    path = tmp_path / (FILES[0] + ".gz")
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz.*gzip.*truncated or corrupt"):
        load_dataset("mnist", tmp_path)


def test_not_a_gzip_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / (FILES[0] + ".gz")).write_bytes(idx_bytes(np.zeros((12, 4, 5))))
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz.*not a valid gzip file"):
        load_dataset("mnist", tmp_path)


def test_label_out_of_range(tmp_path):
    corrupt(tmp_path, FILES[3], idx_bytes(np.array([1, 2, 30, 4, 5])))
    with pytest.raises(DataFormatError, match=r"t10k-labels.*label 30, expected classes 0..9"):
        load_dataset("mnist", tmp_path)


def test_train_and_test_image_sizes_differ(tmp_path):
    corrupt(tmp_path, FILES[2], idx_bytes(np.zeros((5, 4, 4))))
    with pytest.raises(DataFormatError, match=r"image sizes differ.*4x5.*4x4"):
        load_dataset("mnist", tmp_path)
