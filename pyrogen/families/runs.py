"""Reading a run folder back: the trained model and its configuration, and what a run folder
holds in a few figures (``pyrogen runs DIR``, the summary ``pyrogen train`` ends with)."""

from __future__ import annotations

import json
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


#: the figures of an epoch that describe a run, the first one present being the one the best
#: epoch is judged by (validation loss; else the training loss; a GAN's diversity signal)
_FIGURES = ("valid_loss", "train_loss", "sample_diversity", "accuracy", "valid_accuracy")
#: evaluation.json's figures a listing shows
_EVALUATION = ("nll", "frechet_distance", "fd_over_floor", "precision", "recall", "accuracy",
               "conditional_accuracy")
#: the pictures a run folder may hold
_PICTURES = ("samples.png", "reconstructions.png", "curves.png")


def describe_run(run_dir: str | Path) -> dict[str, Any]:
    """
    What the run folder ``run_dir`` holds, in a few figures: the family, the data set, epochs
    done and planned, the epoch ``best.pt`` holds with its figures, ``evaluation.json``'s main
    figures, and the pictures. Reads ``config.json``, ``metrics.jsonl``, ``evaluation.json``
    and the epoch number of ``checkpoints/best.pt``; raises ``ValueError`` for a folder that
    is not a run.
    """
    from pyrogen.train.logging import read_metrics

    run_dir = Path(run_dir)
    config_file = run_dir / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{run_dir} is not a run folder (it has no config.json)")
    settings = json.loads(config_file.read_text()).get("train", {})
    history = read_metrics(run_dir) if (run_dir / "metrics.jsonl").is_file() else []
    info: dict[str, Any] = {"run": str(run_dir), "family": settings.get("model"),
                            "dataset": settings.get("dataset"), "epochs_done": len(history),
                            "epochs": settings.get("epochs")}
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        try:
            epoch = int(load_checkpoint(best).get("epoch", 0))
        except CheckpointError:
            epoch = None
        record = next((r for r in history if r.get("epoch") == epoch), {})
        info["best_epoch"] = epoch
        info.update({f"best_{k}": record[k] for k in _FIGURES if isinstance(record.get(k), (int, float))})
    evaluation = run_dir / "evaluation.json"
    if evaluation.is_file():
        try:
            figures = json.loads(evaluation.read_text())
        except ValueError:
            figures = {}
        info.update({f"eval_{k}": figures[k] for k in _EVALUATION if isinstance(figures.get(k), (int, float))})
    info["pictures"] = [p for p in _PICTURES if (run_dir / p).is_file()]
    return info


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """:func:`describe_run` for ``root`` if it is a run folder, else for every run folder
    below it (at any depth), in the order of their paths."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if (root / "config.json").is_file():
        return [describe_run(root)]
    return [describe_run(c.parent) for c in sorted(root.rglob("config.json"))
            if (c.parent / "metrics.jsonl").exists() or (c.parent / "checkpoints").is_dir()]


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
