"""
Locating and reading data files, plain or gzip-compressed.

The original distributions of MNIST, Fashion-MNIST and Larochelle's binarised MNIST ship as
gzip files, and many users keep them decompressed. Every loader therefore looks for a file
under its plain name first and then with a ``.gz`` suffix, and reads either transparently.
All failures are reported as :class:`FileNotFoundError` (the file is not there) or
:class:`DataFormatError` (the file is there but is not what it should be), each naming the
file; a truncated or corrupt gzip stream is a :class:`DataFormatError`, never a bare
:class:`EOFError` or :mod:`zlib` traceback.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO

__all__ = ["DataFormatError", "open_binary", "read_bytes", "read_exact", "resolve_data_dir", "resolve_file"]

#: Errors a damaged gzip stream raises while it is being read.
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


class DataFormatError(ValueError):
    """
    A data file exists but its contents are not in the expected format.

    The message always names the file and the defect (bad magic number, wrong number of
    dimensions, truncated data, trailing bytes, a damaged gzip stream, a malformed text line).
    It subclasses :class:`ValueError` so that callers catching bad input catch it too.
    """


def resolve_data_dir(data_dir: str | os.PathLike, dataset: str) -> Path:
    """
    Check that ``data_dir`` is an existing directory and return it as a :class:`~pathlib.Path`.

    :param data_dir: the folder a user pointed a loader at.
    :param str dataset: the data set's name, for the error message.
    :raises FileNotFoundError: if the folder does not exist.
    :raises NotADirectoryError: if it names a file.
    """
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data_dir {str(path)!r} for data set {dataset!r} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"data_dir {str(path)!r} for data set {dataset!r} is not a folder")
    return path


def resolve_file(folder: Path, name: str, how_to_provide: str) -> Path:
    """
    Find ``name`` or ``name + ".gz"`` in ``folder``, preferring the plain file.

    :param pathlib.Path folder: the folder to search.
    :param str name: the file's plain (uncompressed) name.
    :param str how_to_provide: a sentence telling the user which files to put there.
    :raises FileNotFoundError: naming both names tried, the folder and ``how_to_provide``.
    """
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"data file {name!r} not found in {str(folder)!r} (looked for {name!r} and {name + '.gz'!r}). "
        + how_to_provide
    )


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for binary reading, decompressing on the fly if it ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def read_exact(stream: BinaryIO, path: Path, size: int | None = None) -> bytes:
    """
    Read ``size`` bytes (all remaining bytes if ``None``) from ``stream``.

    Fewer bytes than asked are returned as they are: the caller knows what they should hold
    and words the error. Only a damaged gzip stream is rewrapped here.

    :raises DataFormatError: if the gzip stream behind ``stream`` is truncated or corrupt.
    """
    try:
        return stream.read() if size is None else stream.read(size)
    except _GZIP_ERRORS as e:
        raise DataFormatError(
            f"{str(path)!r} is not a valid gzip file or its compressed stream is truncated or corrupt "
            f"({type(e).__name__}: {e}); download it again"
        ) from e


def read_bytes(path: Path) -> bytes:
    """
    Read the whole (decompressed) contents of ``path``.

    :raises DataFormatError: if ``path`` is a damaged gzip file.
    """
    with open_binary(path) as stream:
        return read_exact(stream, path)
