r"""
The ELBO step: one epoch of minibatch steps on a Pyro loss of the facade's model and guide
(``Trace_ELBO``, ``TraceMeanField_ELBO``, the IWAE bound or Monte Carlo EM, by
``config.objective``), the loss compiled once by :class:`~pyrogen.infer.CompiledLoss`. A
classifier (``fit = "supervised"``) runs the same step: its model has no latent variable,
so the ELBO is its exact negative log-likelihood, and the KL options do not apply.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pyro
import torch

from pyrogen.infer.compiled import CompiledLoss
from pyrogen.train.config import SHARED_GROUPS, build_objective, kl_weight
from pyrogen.train.pretrain import train_baseline
from pyrogen.train.distributed import average_buffers
from pyrogen.train.divergence import site_probe
from pyrogen.train.step import Step, num_batches, sum_across_ranks


class ELBOStep(Step):
    """
    Minibatch steps on ``config.objective`` (a Pyro loss) for every model fitted by SVI.
    Before the first epoch of a fresh run it trains the facade's ``baseline_pair()``, if it
    has one (:func:`~pyrogen.train.pretrain.train_baseline`).

    :param bool supervised: a model without a latent variable (a classifier): the options
        of the ELBO itself (objective, particles, KL weight) do not apply.
    """

    groups: ClassVar[tuple[str, ...]] = SHARED_GROUPS + ("optimisation", "schedule", "stopping", "svi", "elbo")
    description: ClassVar[str] = "SVI training"

    def __init__(self, supervised: bool = False) -> None:
        if supervised:
            self.groups = SHARED_GROUPS + ("optimisation", "schedule", "stopping", "svi")
            self.description = "supervised training (no latent variable, no KL term)"

    def bind(self, trainer: Any) -> None:
        """Build ``config.objective`` (:func:`~pyrogen.train.config.build_objective`) as a
        loss of the facade's model and guide, compiled (:class:`~pyrogen.infer.CompiledLoss`)
        with ``config.jit`` except for Monte Carlo EM and the doubly reparameterised IWAE
        gradient, and register one optimiser, ``"elbo"``, for its parameters."""
        config, model = trainer.config, trainer.model
        self.objective = build_objective(config)
        # Monte Carlo EM's E-step samples by MCMC; DReG's gradient hooks are not recorded
        self.compiled = (config.jit and config.objective != "mcem"
                         and getattr(self.objective, "exportable", True))
        if self.compiled:
            self.loss = CompiledLoss(self.objective, model.model, model.guide,
                                     backend="inductor" if config.inductor else "export")
        else:
            self.loss = self.objective(model.model, model.guide)
        self.params = [p for p in self.loss.parameters() if p.requires_grad]
        self.optimizer = trainer.add_optimizer("elbo", self.params)
        self._traced: set = set()

    def pre_phase(self, trainer: Any) -> dict[str, Any]:
        """Train the facade's baseline network (:func:`~pyrogen.train.pretrain.train_baseline`)
        if it has one not yet trained, and return its losses for epoch 1's record; else ``{}``."""
        if trainer.model.baseline_pair() is None or trainer.model.baseline_done():
            return {}
        return train_baseline(trainer)

    def run_epoch(self, trainer: Any) -> dict[str, Any]:
        r"""One shuffled pass of minibatch steps on the loss, scaled to the training set
        (``num_data``), with the epoch's KL weight :math:`\beta`
        (:func:`~pyrogen.train.config.kl_weight`); return the record: ``train_loss``, the
        epoch's mean loss per data point, with ``lr``, ``beta``, ``batch_size`` and timings."""
        config, epoch = trainer.config, trainer.epoch
        beta = kl_weight(config, epoch)
        batch_size = trainer.batch_size()
        kwargs = {"num_data": len(trainer.data.train)}
        if beta != 1.0:
            kwargs["beta"] = beta
        batches = trainer.data.train.batches(
            batch_size, shuffle=True, drop_last=self.compiled, epoch=epoch, seed=config.seed,
            rank=trainer.rank, world_size=trainer.world_size,
        )
        start, total, count = time.perf_counter(), 0.0, 0
        bar = trainer.progress_bar(
            num_batches(len(trainer.data.train), batch_size, self.compiled, trainer.world_size), batches)
        for batch in bar:
            args = trainer.inputs(batch)
            with pyro.validation_enabled(trainer.global_step == 0):
                if self.compiled:
                    self._trace(trainer, args, kwargs)
                where = (f"at epoch {epoch + 1}, step {count + 1} "
                         f"(global step {trainer.global_step + 1})")
                with trainer.autocast():
                    value = self.loss(*args, **kwargs)
                loss = trainer.optimise(value.float(), self.params, self.optimizer,
                                        where=where, probe=site_probe(trainer.model, args, kwargs))
            total += loss
            count += 1
            trainer.global_step += 1
            if count % 10 == 0:
                bar.set_postfix(loss=f"{loss / kwargs['num_data']:.2f}")
            trainer.logger.step(trainer.global_step, loss / kwargs["num_data"])
        average_buffers(trainer.model)  # batch norm's running statistics, equal on every rank
        train_loss = sum_across_ranks(total / max(count, 1), trainer.device) / trainer.world_size
        return {
            "train_loss": train_loss / kwargs["num_data"],
            "lr": self.optimizer.param_groups[0]["lr"],
            "beta": beta,
            "binarize": trainer.data.binarize,
            "batch_size": batch_size,
            "sec": time.perf_counter() - start,
            "steps": trainer.global_step,
        }

    def _trace(self, trainer: Any, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> None:
        # A recorded loss runs its first call with extra executions that draw random
        # numbers; tracing outside the run's RNG stream keeps a resumed run
        # identical to one that was never stopped.
        key = (tuple(tuple(a.shape) for a in args), tuple(sorted(kwargs.items())))
        if key in self._traced:
            return
        with torch.random.fork_rng(devices=trainer.rng_devices()), pyro.validation_enabled(False), \
                trainer.autocast():
            self.loss(*args, **kwargs)
        self._traced.add(key)

    @torch.no_grad()
    def validation_loss(self, trainer: Any, split: Any) -> float:
        """The objective per data point on ``split`` (a fixed binarisation draw)."""
        batch_size = max(trainer.config.batch_size, 500)
        total = 0.0
        with torch.random.fork_rng(devices=trainer.rng_devices()), pyro.validation_enabled(False):
            torch.manual_seed(trainer.config.seed)
            for batch in split.batches(batch_size, seed=trainer.config.seed, rank=trainer.rank,
                                       world_size=trainer.world_size):
                total += self.objective.loss(trainer.model.model, trainer.model.guide,
                                             *trainer.inputs(batch))
        return sum_across_ranks(total, trainer.device) / len(split)


__all__ = ["ELBOStep"]
