r"""
One training loop for every pyrogen model: the epoch loop, run folder, checkpoints, exact
resume, validation, early stopping, weight averaging, schedules, pictures and
``torch.distributed``, around a pluggable :class:`~pyrogen.train.Step` that says what one
epoch of this model's fitting does (an ELBO step, alternating adversarial players, an EM
iteration), with one optimiser-step helper (:meth:`Trainer.optimise`) that every step uses.

For the ELBO family each step evaluates the same ``differentiable_loss`` that ``SVI.step``
uses, compiled once by :class:`~pyrogen.infer.CompiledLoss`, and takes one step of a single
torch optimiser over all the pair's parameters: ``SVI`` minus its per-parameter optimiser
objects and per-step tracing (``benchmarks/vae_throughput``). The model and guide stay plain
Pyro, so a user's own ``SVI(vae.model, vae.guide, Adam(...), Trace_ELBO())`` trains the same
objects.

Under ``torch.distributed`` data are sharded by rank, gradients are averaged across ranks
before each optimiser step, and only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn
from tqdm.auto import tqdm

from pyrogen.data import DataSplits, Split
from pyrogen.models.base import Facade
from pyrogen.train.adversarial import AdversarialStep
from pyrogen.train.averaging import ExponentialAverage
from pyrogen.train.checks import check_data_fits_model
from pyrogen.train.checkpoint import (
    REQUIRED_KEYS,
    get_rng_state,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    set_rng_state,
    upgrade_checkpoint,
)
from pyrogen.train.config import (
    TrainConfig,
    default_threads,
    batch_size_at,
    build_optimizer,
    build_scheduler,
    check_applies,
    closed_form_scheduler,
)
from pyrogen.train.distributed import average_gradients, broadcast_module, gather_rng_states
from pyrogen.train.distributed import any_rank
from pyrogen.train.distributed import rank as _rank
from pyrogen.train.distributed import world_size as _world_size
from pyrogen.train.divergence import (
    ROLLBACK_LR_FACTOR,
    DivergenceError,
    DivergenceGuard,
    nonfinite_parameters,
)
from pyrogen.train.elbo import ELBOStep
from pyrogen.train.em import EMStep
from pyrogen.train.logging import RunLogger, epoch_line, interactive
from pyrogen.train.plots import plot_run
from pyrogen.train.step import NonFiniteLossError, Step

#: options that may differ between a run and its resumption: where it runs, how long, and
#: the learning-rate schedule (applied from the epoch reached on, and recorded in the history)
RESUMABLE_CHANGES = ("epochs", "device", "data_dir", "patience", "lr", "d_lr", "lr_schedule",
                     "lr_decay", "lr_min", "lr_milestones", "watch_classes", "divergence_band",
                     "max_rollbacks", "threads", "mlflow")
#: the changes that move the learning-rate schedule
_SCHEDULE_CHANGES = ("lr", "d_lr", "lr_schedule", "lr_decay", "lr_min", "lr_milestones")

#: the step for each :data:`~pyrogen.models.base.FIT_KINDS` a facade declares
STEPS: dict[str, Callable[[], Step]] = {
    "svi": ELBOStep,
    "supervised": lambda: ELBOStep(supervised=True),
    "adversarial": AdversarialStep,
    "em": EMStep,
}


def default_step(model: nn.Module) -> Step:
    """The step for the way ``model`` declares it is fitted (:attr:`Facade.fit
    <pyrogen.models.base.Facade.fit>`; a model that declares nothing is fitted by its ELBO)."""
    kind = model.fit if isinstance(model, Facade) else "svi"
    return STEPS[kind]()


class Trainer:
    """
    Train a facade (:class:`~pyrogen.models.base.Facade`: a VAE, CVAE, DFC-VAE, classifier,
    GAN, AAE, ALI or mixture) on a :class:`~pyrogen.data.DataSplits`, writing a run folder::

        run_dir/config.json            the run's configuration
        run_dir/metrics.jsonl          one JSON line per epoch
        run_dir/checkpoints/last.pt    every epoch, written atomically
        run_dir/checkpoints/best.pt    the best validation loss so far
        run_dir/samples.png, ...       the facade's training pictures, every epoch
        run_dir/tensorboard/           scalars and images, if tensorboard is installed

    What an epoch does is the ``step``'s (default: the one the facade's ``fit`` names:
    :class:`~pyrogen.train.ELBOStep`, :class:`~pyrogen.train.AdversarialStep` or
    :class:`~pyrogen.train.EMStep`); options of ``config`` that the step does not read must
    keep their defaults, or the trainer refuses them by name before any work.
    Losses are reported per data point (nats), whatever the batch size.
    With ``config.ema_decay`` the trainer keeps an exponential moving average of
    the weights (:class:`~pyrogen.train.ExponentialAverage`), updated after every
    optimiser step; the validation loss, the best checkpoint and the pictures use the
    averaged weights, checkpoints hold both, and :func:`~pyrogen.families.load_run` loads
    the average. After :meth:`fit` the model holds its own (last) weights;
    ``with trainer.averaged():`` swaps the average in.
    Pyro's global parameter store is cleared when a trainer is built, so names
    left by an earlier model cannot shadow this model's parameters.

    Divergence (:mod:`pyrogen.train.divergence`): every step's loss is checked before its
    gradients are taken; a non-finite loss, or one outside the band of its recent history
    (``config.divergence_band``), rolls the epoch back to its start (weights, optimisers,
    schedules, the step's state, the weight average, random state), halves every learning
    rate for the rest of the run and runs the epoch again, up to ``config.max_rollbacks``
    times; then :class:`~pyrogen.train.DivergenceError` names the loss, the step and the site.

    :param torch.nn.Module model: e.g. :class:`~pyrogen.models.VAE`.
    :param DataSplits data: the data; moved to ``config.device``.
    :param TrainConfig config: the options.
    :param run_dir: the run folder; ``None`` writes nothing.
    :param Step step: what an epoch does (default: :func:`default_step`).
    :param bool progress: show a tqdm progress bar while standard error is a terminal. Every
        epoch also prints one line (:func:`~pyrogen.train.logging.epoch_line`) to standard error, bar or not.
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
        step: Step | None = None,
        progress: bool = True,
        callbacks: list[Callable[[Trainer, dict[str, Any]], None]] | None = None,
    ) -> None:
        self.step = step if step is not None else default_step(model)
        check_applies(config, self.step.groups, f"{self.step.description} (model {config.model!r})")
        check_data_fits_model(model, data)
        if self.step.batched:
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
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.base_lrs: dict[str, float] = {}
        self.closed_form = False  # the schedule follows scheduled_lr (after a change on resume)
        self.resumed_changes: dict[str, list[Any]] = {}
        self.params: list[nn.Parameter] = []
        self.step.bind(self)
        broadcast_module(self.model)  # every rank starts from rank 0's weights
        self.average = self._build_average()
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.best_valid = math.inf
        self.bad_epochs = 0
        self.guard = DivergenceGuard(config.divergence_band)
        #: float16's gradient scaler (``config.precision == "16"``, CUDA), else None
        self.scaler = torch.amp.GradScaler("cuda") if config.precision == "16" else None
        self.lr_scale = 1.0  # the product of the rollbacks' reductions
        self.rollbacks: list[dict[str, Any]] = []  # every rollback of the run
        self._rolled_back: list[dict[str, Any]] = []  # those the next epoch's record reports
        if config.mlflow:
            from pyrogen.train.tracking import require_mlflow

            require_mlflow()  # before any work
        self.logger = RunLogger(self.run_dir, model, data, config, enabled=self.rank == 0)
        self.threads = torch.get_num_threads()  # until fit() sets config's (set_threads)

    # ------------------------------------------------------------ optimisation
    def add_optimizer(self, name: str, params: list[nn.Parameter], lr: float | None = None) -> torch.optim.Optimizer:
        """Register an optimiser over ``params`` (``config``'s kind, rate ``lr`` or
        ``config.lr``) with its learning-rate schedule; both are checkpointed under ``name``."""
        optimizer = build_optimizer(self.config, params, lr)
        self.optimizers[name] = optimizer
        self.schedulers[name] = build_scheduler(self.config, optimizer)
        self.base_lrs[name] = self.config.lr if lr is None else lr
        self.params.extend(params)
        return optimizer

    def _closed_form_schedule(self) -> None:
        """Replace every schedule by its closed form from the current epoch on: how a resumed
        run applies changed schedule options, and a rollback its reduced rates."""
        for name, optimizer in self.optimizers.items():
            self.schedulers[name] = closed_form_scheduler(
                self.config, optimizer, self.base_lrs[name] * self.lr_scale, self.epoch)
        self.closed_form = True

    def optimise(self, loss: torch.Tensor, params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                 *, what: str = "loss", where: str | None = None, average: bool = True,
                 zero_unused: bool = False, probe: Callable[[], str | None] | None = None) -> float:
        """
        The optimiser step every training step takes: check that ``loss`` is finite and within
        the band of its recent values (else :class:`~pyrogen.train.DivergenceError` naming
        ``what``, ``where``, by default the epoch and the global step, and the site: a
        non-finite parameter, or what ``probe()`` finds, e.g.
        :func:`~pyrogen.train.divergence.nonfinite_site`; the trainer rolls the epoch back),
        differentiate it with respect to ``params`` only (a parameter the loss does not reach
        gets no gradient, so the optimiser leaves it, as after ``backward()``; with
        ``zero_unused`` a zero gradient, as a player's optimiser keeps all its state moving), average the gradients across
        ranks, clip them to ``config.clip_norm``, step ``optimizer`` and update the weight
        average (unless ``average=False``). Returns the loss as a float.
        """
        value = loss.item()
        key = what.split(" (")[0]  # one history per loss, whatever its message adds
        why = self.guard.bad(value, key)
        if any_rank(why is not None, self.device):  # every rank rolls back together
            where = where or f"at epoch {self.epoch + 1}, global step {self.global_step + 1}"
            why = why or "diverged on another process"
            bad = nonfinite_parameters(self.model, params)
            site = (f"non-finite parameters: {', '.join(bad[:4])}{' ...' if len(bad) > 4 else ''}"
                    if bad else None)
            if site is None and probe is not None and not math.isfinite(value):
                try:
                    site = probe()
                except Exception as e:  # the probe must not hide the divergence it explains
                    site = f"site not found: {type(e).__name__}: {str(e).splitlines()[0]}"
            raise DivergenceError(f"the {what} {why} {where}", site)
        self.guard.accept(value, key)
        scaled = loss if self.scaler is None else self.scaler.scale(loss)
        grads = torch.autograd.grad(scaled, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = torch.zeros_like(p) if g is None and zero_unused else g
        if self.world_size > 1:
            average_gradients(params)
        if self.scaler is not None:  # float16: true gradients before clipping; a step with
            self.scaler.unscale_(optimizer)  # an overflow is skipped and the scale lowered
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, self.config.clip_norm)
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()
        if average and self.average is not None:
            self.average.update()
        return value

    def progress_bar(self, total: int | None, iterable: Any = None) -> tqdm:
        """The epoch's progress bar: rank 0 only, with ``progress``, and only when standard
        error is a terminal (or a notebook); a log file gets the epoch lines alone."""
        shown = self.progress and self.rank == 0 and interactive()
        return tqdm(iterable, total=total, desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                    disable=not shown, leave=False)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The arithmetic of a training loss's forward pass (``config.precision``):
        ``torch.autocast`` to bfloat16 or float16 on the run's device, or nothing for float32."""
        if self.config.precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def batch_size(self) -> int:
        """The minibatch size of the current epoch (``config.batch_schedule``)."""
        return batch_size_at(self.config, self.epoch)

    def inputs(self, batch: Any) -> tuple[torch.Tensor, ...]:
        """The positional arguments of model and guide for a batch (the facade's ``inputs``)."""
        return tuple(self.model.inputs(batch)) if isinstance(self.model, Facade) else (batch.x,)

    def rng_devices(self) -> list[torch.device]:
        """The devices whose random state ``torch.random.fork_rng`` must save."""
        return [self.device] if self.device.type == "cuda" else []

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

    @torch.no_grad()
    def evaluate_loss(self, split: Split) -> float | None:
        """The step's loss per data point on ``split`` (one fixed binarisation draw), or None."""
        return self.step.validation_loss(self, split)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (plain tensors and containers)."""
        return {
            "model_name": self.config.model,
            "model_config": dict(self.model.config) if isinstance(self.model, Facade) else {},
            "model_state": self.model.state_dict(),
            "optimizer": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "scheduler": {k: s.state_dict() for k, s in self.schedulers.items()},
            "step": self.step.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "config": self.config.to_dict(),
            "history": self.history,
            "best_valid": self.best_valid,
            "bad_epochs": self.bad_epochs,
            "rng": get_rng_state(),
            "closed_form_schedule": self.closed_form,
            "divergence": self.guard.state_dict(),
            "lr_scale": self.lr_scale,
            "rollbacks": copy.deepcopy(self.rollbacks),
        } | ({"average": self.average.state_dict()} if self.average is not None else {})

    def load_state_dict(self, state: dict[str, Any], source: str = "the checkpoint") -> None:
        """Restore a state of :meth:`state_dict` (a checkpoint's, or a rollback's snapshot):
        weights, optimisers, schedules, counters, history, the step's state, the weight
        average, the divergence guard and the random number generators; ``source`` names it
        in errors."""
        state = upgrade_checkpoint(state, list(self.optimizers))
        load_weights(self.model, state["model_state"], source)
        closed_form = bool(state.get("closed_form_schedule"))
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizer"][name])
            if not closed_form:
                self.schedulers[name].load_state_dict(state["scheduler"][name])
        self.step.load_state_dict(state.get("step", {}), self)
        self.epoch = int(state["epoch"])
        self.guard.load_state_dict(state.get("divergence", {}))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.rollbacks = copy.deepcopy(list(state.get("rollbacks", [])))
        if closed_form:
            self._closed_form_schedule()
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        self.best_valid = float(state["best_valid"])
        self.bad_epochs = int(state["bad_epochs"])
        if self.average is not None:
            if "average" not in state:
                raise ValueError("ema_decay is set, but the checkpoint holds no weight average "
                                 "(its run was trained without ema_decay)")
            self.average.load_state_dict(state["average"])
        ranks = state.get("rng_ranks")  # this rank's own random state, when saved per rank
        if self.world_size > 1 and ranks is not None and len(ranks) == self.world_size:
            set_rng_state(ranks[self.rank])
        else:
            set_rng_state(state["rng"])

    def resume(self, path: str | Path | None = None) -> list[str]:
        """
        Continue from a checkpoint (default: ``run_dir/checkpoints/last.pt``). The
        checkpoint's options must equal this trainer's, except :data:`RESUMABLE_CHANGES`
        (epochs, device, data folder, learning-rate schedule, patience), which take this
        trainer's values; returns the names of those that changed.
        """
        if path is None:
            if self.run_dir is None:
                raise ValueError("resume needs a checkpoint path or a run_dir")
            path = self.run_dir / "checkpoints" / "last.pt"
        if self.rank == 0:
            self.logger.lock()
        state = load_checkpoint(path, map_location=self.device, required=REQUIRED_KEYS)
        ours, theirs = self.config.to_dict(), state["config"]
        differ = sorted(k for k in ours
                        if k not in RESUMABLE_CHANGES and k in theirs and ours[k] != theirs[k])
        if differ:
            raise ValueError(
                f"cannot resume from {path}: the run was trained with other options: "
                + ", ".join(f"{k}={theirs.get(k)!r} (now {ours[k]!r})" for k in differ)
            )
        self.load_state_dict(state, str(path))
        changed = sorted(k for k in RESUMABLE_CHANGES if k in theirs and ours[k] != theirs[k])
        moves_schedule = set(changed) & set(_SCHEDULE_CHANGES) or (
            "epochs" in changed and self.config.lr_schedule == "cosine")
        if moves_schedule and not self.closed_form:
            self._closed_form_schedule()
        # the next epoch's record says what changed (device and data folder say nothing of it)
        self.resumed_changes = {k: [theirs[k], ours[k]] for k in changed
                                if k not in ("device", "data_dir")}
        self.logger.rewrite_metrics(self.history)
        self.logger.saved(Path(path), self.epoch)
        return changed

    # ------------------------------------------------------------------ loop
    def fit(self) -> list[dict[str, Any]]:
        """Train until ``config.epochs`` epochs are done, early stopping or convergence;
        return the history."""
        fresh = self.epoch == 0 and not self.history
        last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else None
        if fresh and last is not None and last.exists() and self.rank == 0:
            raise ValueError(
                f"run folder {self.run_dir} already holds a run ({last}); call resume() to "
                "continue it, or choose another run_dir: a new run would overwrite it"
            )
        if self.history and self.step.finished(self.history[-1]):
            return self.history  # a converged run has nothing left to do
        self.logger.start()
        self.threads = self.set_threads()
        if fresh:  # each rank its own sampling noise; rank 0 draws what one process would
            pyro.set_rng_seed(self.config.seed + self.rank)
        try:
            pretrained = self.step.pre_phase(self) if fresh else {}
            if pretrained and self.average is not None:  # average from the pre-phase's end on
                self.average = self._build_average()
            while self.epoch < self.config.epochs:
                snapshot = copy.deepcopy(self.state_dict())  # what a rollback returns to
                try:
                    record = self._epoch(pretrained)
                except DivergenceError as e:
                    self._roll_back(snapshot, e)
                    continue
                pretrained = {}
                if self.config.patience and self.bad_epochs >= self.config.patience:
                    break
                if self.step.finished(record):
                    break
            if self.run_dir is not None and self.rank == 0 and self.history:
                plot_run(self.run_dir)  # RUN/curves.png
            self.logger.finish()  # MLflow's artifacts
        finally:
            self.logger.close()
        return self.history

    def set_threads(self) -> int:
        """Set torch's CPU threads to ``config.threads`` (0: :func:`~pyrogen.train.config.default_threads`)
        and say so once, on a CPU run; returns the number in use. :meth:`fit` calls it first."""
        wanted = self.config.threads or default_threads()
        if torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
        if self.device.type == "cpu" and self.rank == 0:
            given = "--threads" if self.config.threads else "the default; --threads N to change"
            print(f"pyrogen: training on cpu with {wanted} thread{'s' if wanted > 1 else ''} "
                  f"({given})", file=sys.stderr, flush=True)
        return wanted

    def _roll_back(self, snapshot: dict[str, Any], error: DivergenceError) -> None:
        """Return to ``snapshot`` (the epoch's start) with every learning rate multiplied by
        :data:`~pyrogen.train.divergence.ROLLBACK_LR_FACTOR`, or raise when the run has used
        its ``config.max_rollbacks``."""
        epoch = self.epoch + 1
        if len(self.rollbacks) >= self.config.max_rollbacks:
            raise DivergenceError(
                f"training diverged: {error.reason}; {len(self.rollbacks)} rollback(s) with the "
                f"learning rates multiplied by {ROLLBACK_LR_FACTOR:g} each did not help "
                f"(--max-rollbacks {self.config.max_rollbacks}); try a smaller --lr; "
                f"{self.logger.last_good_message()}", error.site)
        scale = self.lr_scale * ROLLBACK_LR_FACTOR
        event = {"epoch": epoch, "reason": error.reason, "site": error.site, "lr_scale": scale}
        self.load_state_dict(snapshot)
        self.lr_scale = scale
        self.rollbacks.append(event)
        self._rolled_back.append(event)
        self._closed_form_schedule()
        if self.rank == 0:
            print(f"pyrogen: rolled back epoch {epoch} to its start: {error}; learning rates now "
                  f"x{scale:g} (rollback {len(self.rollbacks)} of at most "
                  f"{self.config.max_rollbacks})", file=sys.stderr, flush=True)

    def _epoch(self, pretrained: dict[str, Any]) -> dict[str, Any]:
        first_step = self.global_step
        record = {"epoch": self.epoch + 1, **self.step.run_epoch(self)}
        for scheduler in self.schedulers.values():
            scheduler.step()
        if len(self.data.valid):
            with self.averaged():
                valid = self.evaluate_loss(self.data.valid)
            if valid is not None:
                if any_rank(not math.isfinite(valid), self.device):
                    raise DivergenceError(f"the validation loss became {valid} after epoch "
                                          f"{self.epoch + 1}")
                record["valid_loss"] = valid
        record.update(pretrained)
        if self.resumed_changes:
            record["resumed_with"] = self.resumed_changes
            self.resumed_changes = {}
        if self._rolled_back:
            record["rolled_back"] = self._rolled_back
            self._rolled_back = []
        record["threads"] = self.threads
        with torch.random.fork_rng(devices=self.rng_devices()):
            for callback in self.callbacks:
                callback(self, record)
        self.history.append(record)
        improved = self.step.score(record) < self.best_valid
        if improved:
            self.best_valid = self.step.score(record)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        self.epoch += 1
        self._save(best=improved)
        self.logger.epoch_end(record, self._pictures())
        if self.rank == 0:
            images = (self.global_step - first_step) * record.get("batch_size", self.batch_size())
            tqdm.write(epoch_line(record, self.config.epochs, images), file=sys.stderr)
        return record

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
        if best:  # best first: a kill between the two leaves last.pt an epoch behind, to redo
            save_checkpoint(state, folder / "best.pt")
        save_checkpoint(state, folder / "last.pt")
        self.logger.saved(folder / "last.pt", self.epoch)

    @torch.no_grad()
    def _pictures(self) -> dict[str, torch.Tensor]:
        if self.rank != 0 or self.run_dir is None or not isinstance(self.model, Facade):
            return {}
        # in eval mode: batch norm must not update its running statistics after the
        # checkpoint was written, or a resumed run would differ from an uninterrupted one
        training = self.model.training
        self.model.eval()
        try:
            with self.averaged(), torch.random.fork_rng(devices=self.rng_devices()):
                torch.manual_seed(self.config.seed)  # the same draws every epoch
                n = self.config.num_pictures
                z = None
                if self.model.latent_dim is not None:
                    g = torch.Generator().manual_seed(self.config.seed)
                    z = torch.randn(n, self.model.latent_dim, generator=g).to(self.device)
                split = self.data.test if len(self.data.test) else self.data.train
                batch = next(iter(split.batches(min(n // 2, len(split)), seed=self.config.seed)))
                images = split.images[: n // 2]  # the batch's points, unshuffled, in grey levels
                return self.model.training_pictures(z, batch.x, batch.y, images)
        finally:
            self.model.train(training)


__all__ = ["DivergenceError", "NonFiniteLossError", "RESUMABLE_CHANGES", "STEPS", "Trainer", "default_step"]
