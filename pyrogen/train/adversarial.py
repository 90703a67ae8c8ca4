r"""
The training loop of the adversarial family (GAN, AAE, ALI): alternating steps of two
players, each with its own optimiser.

An *iteration* is ``d_steps`` discriminator steps, each on a fresh minibatch, then
``g_steps`` steps of the other player (generator, autoencoder or encoder-generator). A
player whose loss has the paper's regulariser takes a :meth:`snapshot
<pyrogen.infer.adversarial.AdversarialLoss.snapshot>` at the start of its steps; when the
snapshot caches draws (``reuses_batch``: as Su's code runs the generator step twice against
one cached :math:`G_{old}(z)`) all its steps run on the snapshot's minibatch. Other steps
take fresh minibatches. A
GAN's generator needs no data (a minibatch only sets its size), so its steps reuse the last
discriminator batch. An epoch ends when the epoch's shuffled minibatches run out, or after
``iterations_per_epoch`` iterations (the minibatches then cycle through fresh shuffles).

Each step is what ``SVI.step`` with the player's loss does, with one torch optimiser per
player: the player's loss is differentiated with respect to its own parameters only
(``torch.autograd.grad``), gradients are averaged across ranks under ``torch.distributed``,
and the optimiser steps. Every loss term (discriminator, generator, regulariser,
reconstruction) is logged as its epoch mean; checkpoints hold both players, both optimisers
and schedules, and the regulariser's last snapshot.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from pyrogen.train.config import build_optimizer, build_scheduler, refuse_svi_only
from pyrogen.train.distributed import average_buffers, average_gradients
from pyrogen.train.trainer import NonFiniteLossError, Trainer, _num_batches, _sum_across_ranks


def is_adversarial(model: Any) -> bool:
    """Whether ``model`` is an adversarial facade (GAN, AAE, ALI)."""
    return bool(getattr(model, "adversarial", False))


class AdversarialTrainer(Trainer):
    """
    :class:`~pyrogen.train.Trainer` for an adversarial facade (``players()``, ``losses()``);
    the same run folder, checkpoints, resume and logging. ``config.d_steps`` and
    ``config.g_steps`` set the steps per iteration, ``config.d_lr`` the discriminator's
    learning rate and ``config.betas`` Adam's betas.
    """

    def _build_optimisation(self) -> None:
        config = self.config
        refuse_svi_only(config, "adversarial models")
        self.compiled = False
        self.player_losses = self.model.losses()
        groups = self.model.players()
        if list(groups) != list(self.player_losses):
            raise ValueError(f"players {list(groups)} and losses {list(self.player_losses)} differ")
        self.player_params = {
            name: [p for module in modules for p in module.parameters() if p.requires_grad]
            for name, modules in groups.items()
        }
        self.optimizers = {
            name: build_optimizer(config, params, config.d_lr if name == "discriminator" else None)
            for name, params in self.player_params.items()
        }
        self.schedulers = {name: build_scheduler(config, opt) for name, opt in self.optimizers.items()}
        self.params = [p for params in self.player_params.values() for p in params]
        self.optimizer = self.optimizers["discriminator"]  # what the base class reports as "lr"
        self.scheduler = self.schedulers["discriminator"]
        self.objective = None
        self.iteration = 0

    def _score(self, record: dict[str, Any]) -> float:
        # no adversarial loss measures quality: the best checkpoint is the last one
        return -float(record["epoch"])

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optimizer"] = {k: opt.state_dict() for k, opt in self.optimizers.items()}
        state["scheduler"] = {k: s.state_dict() for k, s in self.schedulers.items()}
        state["snapshots"] = {k: loss.snapshot_state() for k, loss in self.player_losses.items()}
        state["iteration"] = self.iteration
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model_state"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizer"][name])
            self.schedulers[name].load_state_dict(state["scheduler"][name])
        for name, loss in self.player_losses.items():
            loss.load_snapshot_state(state.get("snapshots", {}).get(name), guide=self.model.guide)
        rest = {k: v for k, v in state.items() if k not in ("model_state", "optimizer", "scheduler")}
        self.iteration = int(state.get("iteration", 0))
        self.epoch = int(rest["epoch"])
        self.global_step = int(rest["global_step"])
        self.history = list(rest["history"])
        self.best_valid = float(rest["best_valid"])
        self.bad_epochs = int(rest["bad_epochs"])
        self._restore_rng(rest)

    # ------------------------------------------------------------------ loop
    def _run_epoch(self) -> dict[str, Any]:
        config, epoch = self.config, self.epoch
        kwargs = {"num_data": len(self.data.train)}
        batches = self._batches(epoch)
        data_free = tuple(getattr(self.model, "data_free_players", ()))
        start = time.perf_counter()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        total = _num_batches(len(self.data.train), config.batch_size, True, self.world_size)
        if config.iterations_per_epoch:
            total = None
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{config.epochs}",
                   disable=not self.progress or self.rank != 0, leave=False)
        iterations = 0
        try:
            while True:
                last = None
                for name, loss in self.player_losses.items():
                    steps = config.d_steps if name == "discriminator" else config.g_steps
                    last = self._player_steps(name, loss, steps, batches, last, name in data_free,
                                              kwargs, sums, counts, bar)
                iterations += 1
                self.iteration += 1
                if iterations == config.iterations_per_epoch:
                    break
                bar.set_postfix({k: f"{v:.3f}" for k, v in self._last_terms().items()})
        except _EpochEnd:
            pass
        finally:
            bar.close()
        average_buffers(self.model)  # batch norm's running statistics, equal on every rank
        for name in self.player_losses:
            self.player_losses[name].terms = {}
        record: dict[str, Any] = {"epoch": epoch + 1}
        for key in sorted(sums):
            record[key] = _sum_across_ranks(sums[key] / max(counts[key], 1), self.device) / self.world_size
        record["train_loss"] = record.get("loss_discriminator", math.nan)
        record.update({
            "lr": self.optimizers["discriminator"].param_groups[0]["lr"],
            "binarize": self.data.binarize,
            "sec": time.perf_counter() - start,
            "steps": self.global_step,
            "iterations": self.iteration,
            "iterations_in_epoch": iterations,
        })
        for scheduler in self.schedulers.values():
            scheduler.step()
        return record

    def _batches(self, epoch: int) -> Iterator[Any]:
        """The epoch's minibatches: one shuffled pass over the training data, or, with
        ``iterations_per_epoch``, as many fresh shuffles as the iterations need (each epoch's
        stream depends on the epoch only, so a resumed run draws the same)."""
        config = self.config

        def one_pass(shuffle_epoch: int) -> Iterator[Any]:
            return iter(self.data.train.batches(
                config.batch_size, shuffle=True, drop_last=True, epoch=shuffle_epoch,
                seed=config.seed, rank=self.rank, world_size=self.world_size))

        if not config.iterations_per_epoch:
            return one_pass(epoch)

        def cycle() -> Iterator[Any]:
            for p in range(1 << 30):
                yield from one_pass(epoch * 100_003 + p)

        return cycle()

    def _player_steps(self, name: str, loss: Any, steps: int, batches: Iterator[Any], last: Any,
                      data_free: bool, kwargs: dict[str, Any], sums: dict[str, float],
                      counts: dict[str, int], bar: Any) -> Any:
        batch = last if data_free and last is not None else None
        regularised = getattr(loss, "regularised", False)
        reuse = getattr(loss, "reuses_batch", regularised)
        for step in range(steps):
            if batch is None or not (data_free or (reuse and step > 0)):
                batch = _next(batches)
                bar.update(1)
            args = self.inputs(batch)
            if regularised and step == 0:
                with pyro.validation_enabled(False):
                    loss.snapshot(self.model.model, self.model.guide, *args, **kwargs)
            with pyro.validation_enabled(self.global_step == 0):
                value = self._player_step(name, loss, args, kwargs)
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"the {name} loss became {value} at epoch {self.epoch + 1}, iteration "
                    f"{self.iteration + 1} (global step {self.global_step + 1}); "
                    f"{self.logger.last_good_message()}"
                )
            self.global_step += 1
            for key, v in {f"loss_{name}": value, **loss.terms}.items():
                sums[key] = sums.get(key, 0.0) + v
                counts[key] = counts.get(key, 0) + 1
            if step == 0:  # TensorBoard: each player's loss against the iteration
                self.logger.step(self.iteration + 1, value, name=f"step_loss_{name}")
        return batch

    def _player_step(self, name: str, loss: Any, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> float:
        params = self.player_params[name]
        value = loss.differentiable_loss(self.model.model, self.model.guide, *args, **kwargs)
        grads = torch.autograd.grad(value, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        if self.world_size > 1:
            average_gradients(params)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.config.clip_norm)
        self.optimizers[name].step()
        return value.item()

    def _last_terms(self) -> dict[str, float]:
        terms: dict[str, float] = {}
        for loss in self.player_losses.values():
            terms.update(loss.terms)
        return terms

    @torch.no_grad()
    def evaluate_loss(self, split: Any, batch_size: int | None = None) -> float:
        raise NotImplementedError("adversarial models have no validation loss; use pyrogen.metrics")


class _EpochEnd(Exception):
    """The epoch's minibatches ran out."""


def _next(batches: Iterator[Any]) -> Any:
    try:
        return next(batches)
    except StopIteration:
        raise _EpochEnd from None


__all__ = ["AdversarialTrainer", "is_adversarial"]
