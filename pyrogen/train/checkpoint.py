"""
Checkpoints that are written atomically and load without running code.

A checkpoint holds plain tensors and containers only (module and optimiser
``state_dict()``\\ s, numbers, strings, and the random number generators' states
as tensors), so it loads with ``torch.load(weights_only=True)``: loading a file
never unpickles an arbitrary object. Pyro's ``ParamStoreDict.save`` is not used
because its constraint objects need ``weights_only=False``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "pyrogen-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not a pyrogen checkpoint."""


def atomic_write(path: str | os.PathLike, write: Any) -> Path:
    """
    Call ``write(file_object)`` on a temporary file beside ``path``, flush it to
    disk and rename it over ``path``, so ``path`` always holds either the old
    or the new content, never a partial one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (plain tensors and containers) to ``path`` atomically."""
    state = {"format": FORMAT, **state}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """
    Load a checkpoint written by :func:`save_checkpoint` with
    ``weights_only=True``.

    :raises CheckpointError: if the file is missing, unreadable, holds
        anything but plain tensors and containers, or is not a pyrogen checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise CheckpointError(
            f"cannot load checkpoint {path} safely (weights_only=True): {e}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    return state


def get_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's generators, as tensors and numbers."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`get_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(i) for i in internal.cpu().tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def upgrade_checkpoint(state: dict[str, Any], optimizers: list[str]) -> dict[str, Any]:
    """
    A checkpoint written before the trainer's steps (pyrogen 0.1.0 before the family
    registry) in today's layout: the SVI trainer kept its one optimiser's and scheduler's
    state at the top (now under the optimiser's name, ``optimizer["elbo"]``), the
    adversarial trainer its snapshots and iteration count beside them (now ``step``).
    ``optimizers`` are the names of the resuming trainer's optimisers.
    """
    state = dict(state)
    optimizer = state.get("optimizer")
    if isinstance(optimizer, dict) and "param_groups" in optimizer:  # one optimiser's own state
        if len(optimizers) != 1:
            raise CheckpointError(f"the checkpoint holds one optimiser's state, but this run "
                                  f"trains {len(optimizers)} ({', '.join(optimizers)})")
        state["optimizer"] = {optimizers[0]: optimizer}
        state["scheduler"] = {optimizers[0]: state["scheduler"]}
    if "step" not in state:
        state["step"] = {key: state[key] for key in ("snapshots", "iteration") if key in state}
    if optimizers and "optimizer" not in state:
        raise CheckpointError("the checkpoint holds no optimiser state (a mixture fitted before "
                              "pyrogen trained EM one iteration per epoch cannot be resumed by "
                              "generalised EM); start a new run")
    return state
