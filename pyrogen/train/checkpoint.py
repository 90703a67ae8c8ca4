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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyrogen.files import TMP_SUFFIX, atomic_write, load_tensors, remove_stale_temporaries

__all__ = ["CheckpointError", "FORMAT", "REQUIRED_KEYS", "TMP_SUFFIX", "atomic_write", "get_rng_state",
           "load_checkpoint", "load_tensors", "load_weights", "remove_stale_temporaries",
           "save_checkpoint", "set_rng_state", "upgrade_checkpoint"]

FORMAT = "pyrogen-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not a pyrogen checkpoint."""


#: what every checkpoint holds, whatever wrote it
REQUIRED_KEYS = ("model_name", "model_config", "model_state", "config")


def load_weights(module: torch.nn.Module, weights: dict[str, Any], path: str | os.PathLike,
                 strict: bool = True) -> Any:
    """``module.load_state_dict(weights)``, with a :class:`CheckpointError` naming ``path`` and
    the first mismatch when the weights do not fit the module their configuration built."""
    try:
        return module.load_state_dict(weights, strict=strict)
    except RuntimeError as e:
        details = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        first = details[0] if details else str(e).splitlines()[0]
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        raise CheckpointError(f"checkpoint {path}: its weights do not fit the model its "
                              f"configuration describes: {first}{more}") from e


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (plain tensors and containers) to ``path`` atomically."""
    state = {"format": FORMAT, **state}
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu",
                    required: tuple[str, ...] = ()) -> dict[str, Any]:
    """
    Load a checkpoint written by :func:`save_checkpoint` with
    ``weights_only=True``.

    :raises CheckpointError: if the file is missing, unreadable, holds
        anything but plain tensors and containers, is not a pyrogen checkpoint, or lacks
        one of the ``required`` keys (e.g. :data:`REQUIRED_KEYS`, to rebuild a model).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = load_tensors(path, map_location)
    except ValueError as e:
        raise CheckpointError(f"cannot load checkpoint {e}") from e.__cause__
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: it has no {', '.join(missing)}")
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
