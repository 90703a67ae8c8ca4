"""
Files written so that a kill never leaves a partial one, and tensors read without running code.

The lowest layer of pyrogen's file handling: checkpoints (:mod:`pyrogen.train.checkpoint`),
pictures (:mod:`pyrogen.viz`), run logs and evaluation results are all written through
:func:`atomic_write`, and every ``.pt`` file pyrogen reads goes through :func:`load_tensors`.
"""

from __future__ import annotations

import errno
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["TMP_SUFFIX", "atomic_write", "check_writable", "load_tensors", "remove_stale_temporaries"]


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """
    Refuse, before any work, a ``path`` that cannot be written: an ``OSError`` naming the path
    when ``path`` is a folder where a file is wanted (or a file where a ``folder`` is wanted),
    when a file stands where one of its parent folders would be made, or when the folder that
    would receive it is not writable. Returns ``path``.
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(path))
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
        target = path if folder else path.parent
    else:
        target = path.parent
        while not target.exists() and target != target.parent:
            target = target.parent
        if not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "is a file, so nothing can be written below it",
                                     str(target))
    if not os.access(target, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot be written (no permission)", str(target))
    return path


def atomic_write(path: str | os.PathLike, write: Any) -> Path:
    """
    Call ``write(file_object)`` on a temporary file beside ``path``, flush it to
    disk and rename it over ``path``, so ``path`` always holds either the old
    or the new content, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:  # name the file asked for, not the temporary one
            raise type(e)(e.errno, e.strerror, str(path)) from e
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


#: the suffix of :func:`atomic_write`'s temporary files (a kill can leave one behind)
TMP_SUFFIX = ".tmp"


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that a killed :func:`atomic_write` left in ``folder`` (not
    below it); returns them. Call it only while holding the folder (a run's lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir()
             if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def load_tensors(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and containers only, never code; a file
    that holds anything else raises a one-line ``ValueError`` naming it and why."""
    try:
        with warnings.catch_warnings():  # torch warns of the pickle protocol of what it refuses
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
        text = str(e)
        if "WeightsUnpickler error" in text:  # a pickle of objects, not of tensors only
            detail = [line.strip() for line in text.split("WeightsUnpickler error", 1)[1]
                      .lstrip(":").splitlines() if line.strip()]
            why = ("not a file of tensors saved by torch.save: it holds other Python objects, or "
                   "is not a pickle at all" + (f" ({detail[0]})" if detail else ""))
        else:
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            why = (f"not a file of tensors saved by torch.save, or cut short ({type(e).__name__}: "
                   f"{lines[0] if lines else ''})")
        raise ValueError(f"{path} safely (torch.load with weights_only=True: {why})") from e
