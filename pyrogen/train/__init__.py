"""The training loop, its configuration, checkpoints and run folders."""

from pyrogen.train.adversarial import AdversarialTrainer, is_adversarial
from pyrogen.train.averaging import ExponentialAverage
from pyrogen.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyrogen.train.config import TrainConfig, batch_size_at, build_objective, kl_weight
from pyrogen.train.runs import load_run
from pyrogen.train.trainer import NonFiniteLossError, Trainer, read_metrics

__all__ = [
    "AdversarialTrainer",
    "CheckpointError",
    "ExponentialAverage",
    "NonFiniteLossError",
    "TrainConfig",
    "Trainer",
    "batch_size_at",
    "build_objective",
    "is_adversarial",
    "kl_weight",
    "load_checkpoint",
    "load_run",
    "read_metrics",
    "save_checkpoint",
]
