r"""
The contract between :class:`~pyrogen.train.Trainer` and what it trains: a *step*.

The trainer owns everything every model shares: the run folder, checkpoints and exact
resume, the epoch loop, validation and early stopping, weight averaging, learning-rate
schedules, pictures, logging, ``torch.distributed`` and one optimiser-step helper
(:meth:`Trainer.optimise <pyrogen.train.Trainer.optimise>`: gradients, averaging across
ranks, clipping, the optimiser's step, the weight average, and NaN detection). A step
supplies what one way of fitting does within an epoch:

* :class:`~pyrogen.train.ELBOStep`: a Pyro ELBO of model and guide (``"svi"``, ``"supervised"``);
* :class:`~pyrogen.train.AdversarialStep`: alternating players, each with its Pyro loss;
* :class:`~pyrogen.train.EMStep`: one EM iteration (exact, or gradient M-steps);

and an optional pre-phase (:meth:`Step.pre_phase`: the prior-network CVAE's baseline network,
:func:`~pyrogen.train.pretrain.train_baseline`; a mixture's initialisation), run once before
the first epoch of a fresh run.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.distributed as dist

from pyrogen.train.config import SHARED_GROUPS
from pyrogen.train.distributed import world_size as _world_size


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class Step:
    """
    One way of fitting a model, plugged into :class:`~pyrogen.train.Trainer`.

    The trainer calls :meth:`bind` once (build losses, register optimisers with
    :meth:`Trainer.add_optimizer <pyrogen.train.Trainer.add_optimizer>`), :meth:`pre_phase`
    before the first epoch of a fresh run, then per epoch :meth:`run_epoch`,
    :meth:`validation_loss` and :meth:`finished`. :meth:`state_dict` holds whatever the step
    keeps between epochs beyond the model and the optimisers, for exact resume.
    """

    #: the :data:`~pyrogen.train.config.CONFIG_GROUPS` the step reads; other options must
    #: keep their defaults
    groups: ClassVar[tuple[str, ...]] = SHARED_GROUPS + ("optimisation",)
    #: what the step trains, in messages (e.g. "SVI training")
    description: ClassVar[str] = "this step"
    #: whether it takes minibatches of ``config.batch_size`` (the trainer checks they fit)
    batched: ClassVar[bool] = True

    def bind(self, trainer: Any) -> None:
        """Build the losses and register the optimisers (called once, before any epoch)."""

    def pre_phase(self, trainer: Any) -> dict[str, Any]:
        """Work before the first epoch of a fresh run; returns entries for epoch 1's record."""
        return {}

    def run_epoch(self, trainer: Any) -> dict[str, Any]:
        """Train one epoch; return its record (at least ``train_loss`` per data point)."""
        raise NotImplementedError(f"{type(self).__name__} must define run_epoch")

    def validation_loss(self, trainer: Any, split: Any) -> float | None:
        """The loss per data point on ``split``, or None where none measures quality."""
        return None

    def score(self, record: dict[str, Any]) -> float:
        """What the best checkpoint minimises: the validation loss, else the training loss."""
        return record.get("valid_loss", record["train_loss"])

    def finished(self, record: dict[str, Any]) -> bool:
        """Whether training has converged after the epoch of ``record`` (e.g. EM's tolerance)."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """What the step keeps beyond the trainer's weights and optimisers (e.g. a GAN's
        generator snapshot), stored in checkpoints; ``{}`` for a step with no state."""
        return {}

    def load_state_dict(self, state: dict[str, Any], trainer: Any) -> None:
        """Restore :meth:`state_dict` (called after the model's weights are loaded)."""


def sum_across_ranks(value: float, device: torch.device) -> float:
    """``value`` summed over the ranks of ``torch.distributed`` (itself in one process)."""
    if _world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


def num_batches(n: int, batch_size: int, drop_last: bool, world_size: int) -> int:
    """The minibatches per rank of one pass over ``n`` points."""
    per_rank = n // world_size if drop_last else -(-n // world_size)
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def check_finite(value: float, what: str, where: str, trainer: Any) -> None:
    """Raise :class:`NonFiniteLossError` naming ``what`` and ``where`` if ``value`` is NaN/inf."""
    if not math.isfinite(value):
        raise NonFiniteLossError(f"the {what} became {value} {where}; "
                                 f"{trainer.logger.last_good_message()}")


__all__ = ["NonFiniteLossError", "Step", "check_finite", "num_batches", "sum_across_ranks"]
