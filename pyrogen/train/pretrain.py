r"""
Networks a model trains before its main objective: the baseline network of the
prior-network CVAE (Sohn et al. 2015, as in Pyro's CVAE example).

The baseline is itself a Pyro model with no latent variable and an empty guide,
so its ``Trace_ELBO`` loss is its exact negative log-likelihood
:math:`-\log p(x \mid \hat x = f(y))`; it is trained with that loss, then held
fixed while the CVAE trains (its prediction enters the prior network under
``torch.no_grad``).
"""

from __future__ import annotations

import math
from typing import Any

import pyro
import torch

from pyrogen.data.split import derive_seed
from pyrogen.infer.compiled import CompiledLoss
from pyrogen.train.config import build_optimizer
from pyrogen.train.step import sum_across_ranks

#: a key mixed into the run's seed, so the baseline's batches differ from the CVAE's
_BASELINE_STREAM = 1


def train_baseline(trainer: Any) -> dict[str, Any]:
    """
    Train ``trainer.model``'s baseline pair (``baseline_pair()``) for the
    model's ``baseline_epochs`` with the trainer's optimiser settings and its
    optimiser-step helper (clipping, NaN detection, ranks), mark it trained, and return
    its losses per data point (train, and validation when the data have a validation
    split). The pre-phase of :class:`~pyrogen.train.ELBOStep`.
    """
    model, guide = trainer.model.baseline_pair()
    config, epochs = trainer.config, int(trainer.model.config["baseline_epochs"])
    elbo = pyro.infer.Trace_ELBO(max_plate_nesting=1)
    backend = "inductor" if config.inductor else "export"
    loss_fn = CompiledLoss(elbo, model, guide, backend=backend) if config.jit else elbo(model, guide)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(config, params)
    num_data = len(trainer.data.train)
    seed = derive_seed(config.seed, _BASELINE_STREAM) % 2**31
    train_loss = math.nan
    for epoch in range(epochs):
        total, count = 0.0, 0
        for batch in trainer.data.train.batches(
            config.batch_size, shuffle=True, drop_last=config.jit, epoch=epoch, seed=seed,
            rank=trainer.rank, world_size=trainer.world_size,
        ):
            with trainer.autocast():  # the run's precision, as the CVAE's own steps
                loss = loss_fn(*trainer.inputs(batch), num_data=num_data)
            total += trainer.optimise(loss.float(), params, optimizer, average=False,
                                      what=f"baseline network's loss (its epoch {epoch + 1})")
            count += 1
        train_loss = sum_across_ranks(total / max(count, 1), trainer.device) / trainer.world_size
        train_loss /= num_data
    record: dict[str, Any] = {"baseline_epochs": epochs, "baseline_train_loss": train_loss}
    if len(trainer.data.valid):
        record["baseline_valid_loss"] = baseline_loss(trainer, trainer.data.valid)
    with torch.no_grad():
        trainer.model.baseline_trained.fill_(True)
    return record


@torch.no_grad()
def baseline_loss(trainer: Any, split: Any) -> float:
    """The baseline's negative log-likelihood per data point on ``split`` (one fixed binarisation)."""
    model, guide = trainer.model.baseline_pair()
    elbo = pyro.infer.Trace_ELBO(max_plate_nesting=1)
    total = 0.0
    with torch.random.fork_rng(devices=trainer.rng_devices()), pyro.validation_enabled(False):
        for batch in split.batches(max(trainer.config.batch_size, 500), seed=trainer.config.seed,
                                   rank=trainer.rank, world_size=trainer.world_size):
            total += elbo.loss(model, guide, *trainer.inputs(batch))
    return sum_across_ranks(total, trainer.device) / len(split)


__all__ = ["baseline_loss", "train_baseline"]
