r"""
One training loop for every pyrogen model/guide pair.

Each step evaluates a Pyro loss of the model and guide (the same
``differentiable_loss`` that ``SVI.step`` uses), compiled once by
:class:`~pyrogen.infer.CompiledLoss` (or, with ``jit=False``, Pyro's own
``ELBOModule``), and takes one step of a single torch optimiser over all the
pair's parameters. This is what ``SVI`` does, minus its per-parameter
optimiser objects and the per-step Python work of tracing, which cost a small
VAE about a third of its speed; the loop runs as fast as a hand-written PyTorch
loop (``benchmarks/vae_throughput``).
The model and guide stay plain Pyro, so a user's own
``SVI(vae.model, vae.guide, Adam(...), Trace_ELBO())`` trains the same objects.

The loop is ready for ``torch.distributed``: data are sharded by rank,
gradients are averaged across ranks before each optimiser step, and only
rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import pyro
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from pyrogen.data import DataSplits, Split
from pyrogen.infer.jit import CompiledLoss
from pyrogen.train.averaging import ExponentialAverage
from pyrogen.train.checks import check_data_fits_model
from pyrogen.train.checkpoint import (
    atomic_write,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from pyrogen.train.config import (
    TrainConfig,
    batch_size_at,
    build_objective,
    build_optimizer,
    build_scheduler,
    kl_weight,
)
from pyrogen.train.distributed import (
    average_buffers,
    average_gradients,
    broadcast_module,
    gather_rng_states,
    rank as _rank,
    world_size as _world_size,
)
from pyrogen.train.logging import RunLogger
from pyrogen.train.pretrain import train_baseline


#: options that may differ between a run and its resumption
RESUMABLE_CHANGES = ("epochs", "device", "data_dir")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class Trainer:
    """
    Train a model facade (an ``nn.Module`` with ``.model`` and ``.guide``) on
    a :class:`~pyrogen.data.DataSplits`, writing a run folder::

        run_dir/config.json            the run's configuration
        run_dir/metrics.jsonl          one JSON line per epoch
        run_dir/checkpoints/last.pt    every epoch, written atomically
        run_dir/checkpoints/best.pt    the best validation loss so far
        run_dir/samples.png            samples from fixed z, every epoch
        run_dir/reconstructions.png    test images above their reconstructions
        run_dir/tensorboard/           scalars and images, if tensorboard is installed

    Losses are reported per data point (nats), whatever the batch size.
    With ``config.ema_decay`` the trainer keeps an exponential moving average of
    the weights (:class:`~pyrogen.train.ExponentialAverage`), updated after every
    optimiser step; the validation loss, the best checkpoint and the pictures use the
    averaged weights, checkpoints hold both, and :func:`~pyrogen.train.load_run` loads
    the average. After :meth:`fit` the model holds its own (last) weights;
    ``with trainer.averaged():`` swaps the average in.
    Pyro's global parameter store is cleared when a trainer is built, so names
    left by an earlier model cannot shadow this model's parameters.

    :param torch.nn.Module model: e.g. :class:`~pyrogen.models.VAE`.
    :param DataSplits data: the data; moved to ``config.device``.
    :param TrainConfig config: the options.
    :param run_dir: the run folder; ``None`` writes nothing.
    :param bool progress: show a tqdm progress bar.
    :param callbacks: functions ``callback(trainer, record)`` called after each
        epoch's validation, before the checkpoint is written; they may add
        entries to the epoch's ``record`` (e.g. a test log-likelihood). They
        run outside the run's random number stream, so they cannot change it,
        and see the model's own weights (``trainer.averaged()`` gives the average).
    """

    def __init__(
        self,
        model: nn.Module,
        data: DataSplits,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        *,
        progress: bool = True,
        callbacks: list[Callable[[Trainer, dict[str, Any]], None]] | None = None,
    ) -> None:
        check_data_fits_model(model, data)
        largest = max([config.batch_size] + [size for _, size in config.batch_schedule])
        if len(data.train) < largest * _world_size():
            raise ValueError(
                f"batch size {largest} (x {_world_size()} processes) is larger "
                f"than the training split ({len(data.train)} points)"
            )
        pyro.clear_param_store()
        self.config = config
        self.device = torch.device(config.device)
        self.model = model.to(self.device)
        self.data = data.to(self.device)
        self.rank, self.world_size = _rank(), _world_size()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.callbacks = list(callbacks or [])
        self._build_optimisation()
        broadcast_module(self.model)  # every rank starts from rank 0's weights
        self.average = self._build_average()
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_valid = math.inf
        self.bad_epochs = 0
        self._compiled: set = set()
        self.logger = RunLogger(self.run_dir, model, data, config, enabled=self.rank == 0)

    def _build_optimisation(self) -> None:
        """The loss, the parameters it trains, the optimiser and the schedule."""
        config, model = self.config, self.model
        self.objective = build_objective(config)
        self.compiled = config.jit and config.objective != "mcem"  # the E-step samples by MCMC
        if self.compiled:
            self.loss = CompiledLoss(self.objective, model.model, model.guide)
        else:
            self.loss = self.objective(model.model, model.guide)
        self.params = [p for p in self.loss.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(config, self.params)
        self.scheduler = build_scheduler(config, self.optimizer)

    def _build_average(self) -> ExponentialAverage | None:
        """The moving average of the trained parameters, by their names in the model."""
        if not self.config.ema_decay:
            return None
        trained = {id(p) for p in self.params}
        named = {name: p for name, p in self.model.named_parameters() if id(p) in trained}
        if len(named) != len(trained):
            raise ValueError("ema_decay averages the model's parameters, but the loss trains "
                             f"{len(trained) - len(named)} parameter(s) that are not the model's")
        return ExponentialAverage(named, self.config.ema_decay)

    def averaged(self) -> contextlib.AbstractContextManager:
        """A context in which the model holds the averaged weights (a no-op without
        ``config.ema_decay``)::

            with trainer.averaged():
                ll = log_likelihood(vae.model, vae.guide, x)
        """
        return self.average.applied() if self.average is not None else contextlib.nullcontext()

    def _score(self, record: dict[str, Any]) -> float:
        """What the best checkpoint minimises: the validation loss, else the training loss."""
        return record.get("valid_loss", record["train_loss"])

    def inputs(self, batch: Any) -> tuple[torch.Tensor, ...]:
        """The positional arguments of model and guide for a batch: the facade's
        ``inputs(batch)`` (e.g. ``(x, y)`` for a conditional model), else ``(x,)``."""
        inputs = getattr(self.model, "inputs", None)
        return tuple(inputs(batch)) if inputs is not None else (batch.x,)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (plain tensors and containers)."""
        return {
            "model_name": self.config.model,
            "model_config": dict(getattr(self.model, "config", {})),
            "model_state": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "config": self.config.to_dict(),
            "history": self.history,
            "best_valid": self.best_valid,
            "bad_epochs": self.bad_epochs,
            "rng": get_rng_state(),
        } | ({"average": self.average.state_dict()} if self.average is not None else {})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model_state"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        self.best_valid = float(state["best_valid"])
        self.bad_epochs = int(state["bad_epochs"])
        if self.average is not None:
            if "average" not in state:
                raise ValueError("ema_decay is set, but the checkpoint holds no weight average "
                                 "(its run was trained without ema_decay)")
            self.average.load_state_dict(state["average"])
        self._restore_rng(state)

    def _restore_rng(self, state: dict[str, Any]) -> None:
        """This rank's random state: its own when the checkpoint holds every rank's."""
        ranks = state.get("rng_ranks")
        if self.world_size > 1 and ranks is not None and len(ranks) == self.world_size:
            set_rng_state(ranks[self.rank])
        else:
            set_rng_state(state["rng"])

    def resume(self, path: str | Path | None = None) -> None:
        """Continue from a checkpoint (default: ``run_dir/checkpoints/last.pt``)."""
        if path is None:
            if self.run_dir is None:
                raise ValueError("resume needs a checkpoint path or a run_dir")
            path = self.run_dir / "checkpoints" / "last.pt"
        state = load_checkpoint(path, map_location=self.device)
        ours, theirs = self.config.to_dict(), state["config"]
        differ = sorted(k for k in ours
                        if k not in RESUMABLE_CHANGES and k in theirs and ours[k] != theirs[k])
        if differ:
            raise ValueError(
                f"cannot resume from {path}: the run was trained with other options: "
                + ", ".join(f"{k}={theirs.get(k)!r} (now {ours[k]!r})" for k in differ)
            )
        self.load_state_dict(state)
        self.logger.rewrite_metrics(self.history)
        self.logger.saved(Path(path), self.epoch)

    # ------------------------------------------------------------------ loop
    def fit(self) -> list[dict[str, Any]]:
        """Train until ``config.epochs`` epochs are done or early stopping; return the history."""
        fresh = self.epoch == 0 and not self.history
        last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else None
        if fresh and last is not None and last.exists() and self.rank == 0:
            raise ValueError(
                f"run folder {self.run_dir} already holds a run ({last}); call resume() to "
                "continue it, or choose another run_dir: a new run would overwrite it"
            )
        self.logger.start()
        if fresh:  # each rank its own sampling noise; rank 0 draws what one process would
            pyro.set_rng_seed(self.config.seed + self.rank)
        try:
            pretrained = {}
            if fresh and _needs_baseline(self.model):
                pretrained = train_baseline(self)
                if self.average is not None:  # average from the pretrained baseline on
                    self.average = self._build_average()
            while self.epoch < self.config.epochs:
                record = self._run_epoch()
                record.update(pretrained)
                pretrained = {}
                with torch.random.fork_rng(devices=self._rng_devices()):
                    for callback in self.callbacks:
                        callback(self, record)
                self.history.append(record)
                improved = self._score(record) < self.best_valid
                if improved:
                    self.best_valid = self._score(record)
                    self.bad_epochs = 0
                else:
                    self.bad_epochs += 1
                self.epoch += 1
                self._save(best=improved)
                self.logger.epoch_end(record, self._pictures())
                if self.config.patience and self.bad_epochs >= self.config.patience:
                    break
        finally:
            self.logger.close()
        return self.history

    def _run_epoch(self) -> dict[str, Any]:
        config, epoch = self.config, self.epoch
        beta = kl_weight(config, epoch)
        batch_size = batch_size_at(config, epoch)
        kwargs = {"num_data": len(self.data.train)}
        if beta != 1.0:
            kwargs["beta"] = beta
        batches = self.data.train.batches(
            batch_size,
            shuffle=True,
            drop_last=self.compiled,
            epoch=epoch,
            seed=config.seed,
            rank=self.rank,
            world_size=self.world_size,
        )
        start, total, count = time.perf_counter(), 0.0, 0
        bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            total=_num_batches(len(self.data.train), batch_size, self.compiled, self.world_size),
            disable=not self.progress or self.rank != 0,
            leave=False,
        )
        for batch in bar:
            with pyro.validation_enabled(self.global_step == 0):
                loss = self._step(self.inputs(batch), kwargs)
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"the loss became {loss} at epoch {epoch + 1}, step {count + 1} "
                    f"(global step {self.global_step + 1}); {self.logger.last_good_message()}"
                )
            total += loss
            count += 1
            self.global_step += 1
            if count % 10 == 0:
                bar.set_postfix(loss=f"{loss / kwargs['num_data']:.2f}")
            self.logger.step(self.global_step, loss / kwargs["num_data"])
        average_buffers(self.model)  # batch norm's running statistics, equal on every rank
        train_loss = _sum_across_ranks(total / max(count, 1), self.device) / self.world_size
        train_loss /= kwargs["num_data"]
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "beta": beta,
            "binarize": self.data.binarize,
            "batch_size": batch_size,
            "sec": time.perf_counter() - start,
            "steps": self.global_step,
        }
        self.scheduler.step()
        if len(self.data.valid):
            with self.averaged():
                record["valid_loss"] = self.evaluate_loss(self.data.valid)
            if not math.isfinite(record["valid_loss"]):
                raise NonFiniteLossError(
                    f"the validation loss became {record['valid_loss']} after epoch {epoch + 1}; "
                    f"{self.logger.last_good_message()}"
                )
        return record

    def _step(self, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> float:
        if self.compiled:
            self._compile(args, kwargs)
        loss = self.loss(*args, **kwargs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            average_gradients(self.params)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_norm)
        self.optimizer.step()
        if self.average is not None:
            self.average.update()
        return loss.item()

    def _compile(self, args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> None:
        # A JIT loss traces its first call with extra executions that draw random
        # numbers; tracing outside the run's RNG stream keeps a resumed run
        # identical to one that was never stopped.
        key = (tuple(tuple(a.shape) for a in args), tuple(sorted(kwargs.items())))
        if key in self._compiled:
            return
        with torch.random.fork_rng(devices=self._rng_devices()), pyro.validation_enabled(False):
            self.loss(*args, **kwargs)
        self._compiled.add(key)

    def _rng_devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    @torch.no_grad()
    def evaluate_loss(self, split: Split, batch_size: int | None = None) -> float:
        """The objective per data point on ``split`` (a fixed binarisation draw)."""
        batch_size = batch_size or max(self.config.batch_size, 500)
        total = 0.0
        with torch.random.fork_rng(devices=self._rng_devices()), pyro.validation_enabled(False):
            torch.manual_seed(self.config.seed)
            for batch in split.batches(batch_size, seed=self.config.seed, rank=self.rank,
                                       world_size=self.world_size):
                total += self.objective.loss(self.model.model, self.model.guide, *self.inputs(batch))
        return _sum_across_ranks(total, self.device) / len(split)

    # ------------------------------------------------------------------ files
    def _save(self, best: bool) -> None:
        if self.run_dir is None:
            return
        rng_ranks = gather_rng_states() if self.world_size > 1 else None  # on every rank
        if self.rank != 0:
            return
        for p in self.params:
            if not torch.isfinite(p).all():
                raise NonFiniteLossError(
                    f"parameters became non-finite in epoch {self.epoch}; "
                    f"{self.logger.last_good_message()}"
                )
        state = self.state_dict()
        if rng_ranks is not None:
            state["rng_ranks"] = rng_ranks
        folder = self.run_dir / "checkpoints"
        save_checkpoint(state, folder / "last.pt")
        if best:
            save_checkpoint(state, folder / "best.pt")
        self.logger.saved(folder / "last.pt", self.epoch)

    @torch.no_grad()
    def _pictures(self) -> dict[str, torch.Tensor]:
        if self.rank != 0 or self.run_dir is None or not hasattr(self.model, "decode"):
            return {}
        # in eval mode: batch norm must not update its running statistics after the
        # checkpoint was written, or a resumed run would differ from an uninterrupted one
        training = self.model.training
        self.model.eval()
        try:
            with self.averaged():
                return self._draw_pictures()
        finally:
            self.model.train(training)

    def _draw_pictures(self) -> dict[str, torch.Tensor]:
        n = self.config.num_pictures
        if not hasattr(self, "_fixed_z"):
            g = torch.Generator().manual_seed(self.config.seed)
            self._fixed_z = torch.randn(n, self.model.latent_dim, generator=g).to(self.device)
        if hasattr(self.model, "training_pictures"):
            split = self.data.test if len(self.data.test) else self.data.train
            with torch.random.fork_rng(devices=self._rng_devices()):
                batch = next(iter(split.batches(n // 2, seed=self.config.seed)))
                return self.model.training_pictures(self._fixed_z, batch.x, batch.y)
        pictures = {"samples": self.model.decode(self._fixed_z)}
        if hasattr(self.model, "reconstruct") and len(self.data.test):
            x = self.data.test.images[: n // 2]
            pictures["reconstructions"] = torch.cat([x, self.model.reconstruct(x)])
        return pictures


def _needs_baseline(model: nn.Module) -> bool:
    pair = getattr(model, "baseline_pair", None)
    return pair is not None and pair() is not None and not bool(model.baseline_trained)


def _sum_across_ranks(value: float, device: torch.device) -> float:
    if _world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


def _num_batches(n: int, batch_size: int, drop_last: bool, world_size: int) -> int:
    per_rank = n // world_size if drop_last else -(-n // world_size)
    return per_rank // batch_size if drop_last else -(-per_rank // batch_size)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


__all__ = ["NonFiniteLossError", "Trainer", "atomic_write", "read_metrics"]
