"""
Reader for the ``.amat`` text files of Larochelle's statically binarised MNIST.

``binarized_mnist_{train,valid,test}.amat`` (Larochelle & Murray, 2011) hold one image per
line as 784 space-separated values, each ``0`` or ``1``: a single Bernoulli draw of every MNIST
pixel made once and published, so that everyone evaluates on the same binary images
("static" binarisation). The files may be gzip-compressed.

The parser is vectorised over the raw bytes (the 50,000-line training file parses in about a
second) and still reports the first malformed line by number: a line with the wrong number of
values, or a value other than ``0``/``1``. Blank lines are ignored.

**References**

[1] Hugo Larochelle, Iain Murray. *The Neural Autoregressive Distribution Estimator.*
    AISTATS 2011.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyrogen.data.files import DataFormatError, read_bytes

__all__ = ["read_amat"]

_ZERO, _ONE, _NEWLINE = ord("0"), ord("1"), ord("\n")
_SPACES = tuple(map(ord, " \t\r\n"))
# Byte classes, looked up through a table (much faster than np.isin on 10^8 bytes).
_OTHER, _DIGIT, _SPACE = 0, 1, 2
_CLASS = np.full(256, _OTHER, dtype=np.uint8)
_CLASS[[_ZERO, _ONE]] = _DIGIT
_CLASS[list(_SPACES)] = _SPACE


def _line_of(buffer: np.ndarray, position: int) -> int:
    """1-based line number of byte ``position``."""
    return int(np.count_nonzero(buffer[:position] == _NEWLINE)) + 1


def _bad_value(path: Path, buffer: np.ndarray, position: int) -> DataFormatError:
    line = _line_of(buffer, position)
    start = int(position)
    while start > 0 and buffer[start - 1] not in _SPACES:
        start -= 1
    end = int(position)
    while end < len(buffer) and buffer[end] not in _SPACES:
        end += 1
    token = bytes(buffer[start:end]).decode("latin-1")
    return DataFormatError(f"{str(path)!r}, line {line}: value {token!r} is not 0 or 1 (expected binary pixels)")


def read_amat(path: Path, num_values: int = 784) -> np.ndarray:
    """
    Read a binary ``.amat`` file (plain or ``.gz``) into a ``uint8`` array of 0s and 1s.

    :param pathlib.Path path: the file.
    :param int num_values: values expected on each line (784 for 28x28 MNIST).
    :returns: an array of shape ``(num_lines, num_values)``.
    :raises DataFormatError: naming the file and line if a line holds the wrong number of
        values or a value other than 0/1, or if the gzip stream is damaged.
    """
    path = Path(path)
    buffer = np.frombuffer(read_bytes(path), dtype=np.uint8)
    byte_class = _CLASS[buffer]
    is_digit = byte_class == _DIGIT

    bad = np.flatnonzero(byte_class == _OTHER)
    if bad.size:
        raise _bad_value(path, buffer, int(bad[0]))
    # Two digits in a row form a multi-character token such as "10" or "01".
    joined = np.flatnonzero(is_digit[1:] & is_digit[:-1])
    if joined.size:
        raise _bad_value(path, buffer, int(joined[0]) + 1)

    # Line i spans [starts[i], starts[i + 1]), its newline included, so no line is empty.
    starts = np.concatenate([[0], np.flatnonzero(buffer == _NEWLINE) + 1])
    starts = starts[starts < len(buffer)]
    counts = np.add.reduceat(is_digit, starts, dtype=np.int64) if starts.size else starts
    wrong = np.flatnonzero((counts != 0) & (counts != num_values))
    if wrong.size:
        line = int(wrong[0])
        raise DataFormatError(
            f"{str(path)!r}, line {line + 1}: {int(counts[line])} values, expected {num_values} "
            "space-separated 0/1 values per line (one image per line)"
        )
    values = buffer[is_digit] - _ZERO
    return values.reshape(-1, num_values)
