"""The training loop, its pluggable steps, its configuration, checkpoints and run folders."""

from pyrogen.train.adversarial import AdversarialStep
from pyrogen.train.averaging import ExponentialAverage
from pyrogen.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pyrogen.train.config import CONFIG_GROUPS, TrainConfig, batch_size_at, build_objective, check_applies, kl_weight
from pyrogen.train.divergence import DivergenceError
from pyrogen.train.elbo import ELBOStep
from pyrogen.train.em import EMStep
from pyrogen.train.step import NonFiniteLossError, Step
from pyrogen.train.logging import read_metrics
from pyrogen.train.trainer import Trainer, default_step

__all__ = [
    "AdversarialStep",
    "CONFIG_GROUPS",
    "CheckpointError",
    "DivergenceError",
    "ELBOStep",
    "EMStep",
    "ExponentialAverage",
    "NonFiniteLossError",
    "Step",
    "TrainConfig",
    "Trainer",
    "batch_size_at",
    "build_objective",
    "check_applies",
    "default_step",
    "kl_weight",
    "load_checkpoint",
    "read_metrics",
    "save_checkpoint",
]
