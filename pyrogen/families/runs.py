"""Reading a run folder back: the trained model and its configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn

from pyrogen.families.registry import get
from pyrogen.models import ImageClassifier
from pyrogen.train.checkpoint import REQUIRED_KEYS, CheckpointError, load_checkpoint, load_weights
from pyrogen.train.config import TrainConfig

CHECKPOINTS = ("best", "last")


def checkpoint_path(run_dir: str | Path, checkpoint: str = "best") -> Path:
    """The path of a run's ``best`` or ``last`` checkpoint, or ``checkpoint`` itself if it is a file."""
    if Path(checkpoint).suffix == ".pt":
        return Path(checkpoint)
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS} or a .pt file, got {checkpoint!r}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {run_dir} does not exist")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise CheckpointError(
            f"run folder {run_dir} has no {checkpoint} checkpoint ({path}); "
            "was it written by `pyrogen train`, and did the first epoch finish? (a run stopped "
            f"before its first checkpoint starts again with --out {run_dir})"
        )
    return path


def load_run(
    run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu",
    averaged: bool = True,
) -> tuple[nn.Module, TrainConfig]:
    """
    Rebuild the model a run trained (through its family's
    :meth:`~pyrogen.families.Family.rebuild`), with its weights, on ``device``, and
    return it (in eval mode) with the run's :class:`TrainConfig`. Clears Pyro's
    parameter store, as a new model's parameters must not be shadowed by old names.

    :param bool averaged: for a run trained with ``ema_decay``, load the moving average of
        the weights (the default) rather than the weights of the last optimiser step.
    """
    path = checkpoint_path(run_dir, checkpoint)
    state = load_checkpoint(path, map_location="cpu", required=REQUIRED_KEYS)
    pyro.clear_param_store()
    try:
        model = get(state["model_name"]).rebuild(state["model_config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: its model configuration does not build a "
                              f"{state['model_name']}: {e}") from e
    load_weights(model, state["model_state"], path)
    if averaged and "average" in state:
        result = load_weights(model, state["average"]["average"], path, strict=False)
        if result.unexpected_keys:
            raise CheckpointError(f"the checkpoint's weight average has parameters the model "
                                  f"lacks: {result.unexpected_keys}")
    config = TrainConfig.from_dict({**state["config"], "device": str(device)})
    return model.to(device).eval(), config


def load_classifier(path: Path, data: Any, device: str) -> Any:
    """The classifier of a ``pyrogen train classifier`` run on images of ``data``'s shape."""
    classifier, config = load_run(path, "best", device)
    if not isinstance(classifier, ImageClassifier):
        raise ValueError(f"--features {path} is a {config.model} run; it must be a "
                         "`pyrogen train classifier` run")
    if tuple(classifier.data_shape) != tuple(data.shape):
        raise ValueError(f"--features {path} was trained on images of shape "
                         f"{tuple(classifier.data_shape)}, but the run's data have shape {tuple(data.shape)}")
    return classifier
