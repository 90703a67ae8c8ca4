"""
Reader for the IDX format of MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by raw data:

* a 4-byte *magic number*: two zero bytes, a data-type code (``0x08`` = unsigned byte, the
  only type these data sets use and the only one supported here) and the number of
  dimensions ``d``;
* ``d`` dimension sizes, each a big-endian ``uint32``;
* the ``prod(sizes)`` values in C order.

So an image file (``count, rows, cols``) has magic number ``0x00000803 = 2051`` and a label
file (``count``) has ``0x00000801 = 2049``. Files may be gzip-compressed.

Headers are read and checked before the data: a wrong file fails fast with a
:class:`~pyrogen.data.files.DataFormatError` naming the file and the defect (bad magic number,
wrong number of dimensions, truncated data, trailing bytes, damaged gzip stream), never with a
numpy traceback.

Example::

    images, labels = read_idx_pair(Path("mnist/train-images-idx3-ubyte.gz"),
                                   Path("mnist/train-labels-idx1-ubyte.gz"))
    images.shape, labels.shape  # (60000, 28, 28), (60000,)
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pyrogen.data.files import DataFormatError, open_binary, read_exact

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx", "read_idx_header", "read_idx_pair"]

#: Magic number of an IDX file of unsigned-byte images (``count, rows, cols``).
IDX_IMAGES_MAGIC = 2051
#: Magic number of an IDX file of unsigned-byte labels (``count``).
IDX_LABELS_MAGIC = 2049

_UBYTE = 0x08
_TYPE_NAMES = {
    0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"
}
_KIND = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}


def _expected(magic: int) -> str:
    ndim = magic & 0xFF
    return f"{magic} for an IDX {_KIND.get(magic, 'data')} file: unsigned bytes, {ndim} dimension(s)"


def read_idx_header(stream: BinaryIO, path: Path, expected_magic: int) -> tuple[int, ...]:
    """
    Read and check the header of an IDX file, leaving ``stream`` at the start of its data.

    :param stream: the open (decompressing) binary stream.
    :param pathlib.Path path: the file's path, for error messages.
    :param int expected_magic: :data:`IDX_IMAGES_MAGIC` or :data:`IDX_LABELS_MAGIC`.
    :returns: the dimension sizes.
    :raises DataFormatError: on a short header, bad magic number, unsupported data type or
        wrong number of dimensions.
    """
    head = read_exact(stream, path, 4)
    if len(head) < 4:
        raise DataFormatError(
            f"{str(path)!r} is truncated: {len(head)} byte(s), too short for an IDX magic number "
            f"(expected {_expected(expected_magic)})"
        )
    (magic,) = struct.unpack(">I", head)
    zero0, zero1, type_code, ndim = head
    if zero0 != 0 or zero1 != 0:
        raise DataFormatError(
            f"{str(path)!r} has a bad magic number: got {magic} (0x{magic:08x}), expected "
            f"{_expected(expected_magic)}; it is not an (uncompressed) IDX file"
        )
    if type_code != _UBYTE:
        name = _TYPE_NAMES.get(type_code, "unknown")
        raise DataFormatError(
            f"{str(path)!r} has a bad magic number: got {magic} (0x{magic:08x}), whose data type code "
            f"0x{type_code:02x} ({name}) is not supported; expected {_expected(expected_magic)}"
        )
    expected_ndim = expected_magic & 0xFF
    if ndim != expected_ndim:
        raise DataFormatError(
            f"{str(path)!r} has the wrong number of dimensions: its magic number {magic} declares {ndim}, "
            f"expected {_expected(expected_magic)}"
        )
    raw_dims = read_exact(stream, path, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataFormatError(
            f"{str(path)!r} is truncated inside its header: {ndim} dimension sizes need {4 * ndim} bytes "
            f"after the magic number, only {len(raw_dims)} found"
        )
    return struct.unpack(f">{ndim}I", raw_dims)


def _read_idx_data(stream: BinaryIO, path: Path, dims: tuple[int, ...]) -> np.ndarray:
    expected = math.prod(dims)
    payload = read_exact(stream, path)
    shape = "x".join(map(str, dims))
    if len(payload) < expected:
        raise DataFormatError(
            f"{str(path)!r} is truncated: its header declares {shape} = {expected} data bytes, "
            f"but only {len(payload)} follow (short read; download the file again)"
        )
    if len(payload) > expected:
        raise DataFormatError(
            f"{str(path)!r} has {len(payload) - expected} trailing bytes after the {expected} data bytes "
            f"its header declares ({shape}); the header count does not match the file's length"
        )
    # A bytearray gives numpy a writable buffer, so torch.from_numpy accepts it without a copy.
    return np.frombuffer(bytearray(payload), dtype=np.uint8).reshape(dims)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """
    Read one IDX file of unsigned bytes.

    :param pathlib.Path path: the file, plain or ``.gz``.
    :param int expected_magic: :data:`IDX_IMAGES_MAGIC` (2051) or :data:`IDX_LABELS_MAGIC` (2049).
    :returns: a ``uint8`` array with the shape given by the header.
    :raises DataFormatError: if the file is not a well-formed IDX file of that kind.
    """
    path = Path(path)
    with open_binary(path) as stream:
        dims = read_idx_header(stream, path, expected_magic)
        return _read_idx_data(stream, path, dims)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """
    Read an IDX image file and its label file, checking that their counts agree.

    Both headers are read and compared before either file's data.

    :param pathlib.Path images_path: the images file (magic 2051), plain or ``.gz``.
    :param pathlib.Path labels_path: the labels file (magic 2049), plain or ``.gz``.
    :returns: ``uint8`` images of shape ``(N, rows, cols)`` and ``uint8`` labels of shape ``(N,)``.
    :raises DataFormatError: if either file is malformed or their counts differ.
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    with open_binary(images_path) as image_stream, open_binary(labels_path) as label_stream:
        image_dims = read_idx_header(image_stream, images_path, IDX_IMAGES_MAGIC)
        label_dims = read_idx_header(label_stream, labels_path, IDX_LABELS_MAGIC)
        if image_dims[0] != label_dims[0]:
            raise DataFormatError(
                f"image and label counts differ: {str(images_path)!r} holds {image_dims[0]} images but "
                f"{str(labels_path)!r} holds {label_dims[0]} labels"
            )
        images = _read_idx_data(image_stream, images_path, image_dims)
        labels = _read_idx_data(label_stream, labels_path, label_dims)
    return images, labels
