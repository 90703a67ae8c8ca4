"""
The training configuration, and the objects built from it: the Pyro loss,
the torch optimiser, the learning-rate schedule and the KL weight schedule.
"""

from __future__ import annotations

import dataclasses
import os
import math
from dataclasses import dataclass, field
from typing import Any

import pyro.infer
import torch

from pyrogen.infer import Trace_IWAE
from pyrogen.infer.iwae import IWAE_GRADIENTS
from pyrogen.infer.mcem import Trace_MCEM

OBJECTIVES = ("elbo", "meanfield", "iwae", "mcem")
#: the arithmetic of the loss's forward pass: float32, bfloat16 or float16 under ``torch.autocast``
PRECISIONS = ("32", "bf16", "16")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "exponential", "cosine", "step")
#: how a mixture model is fitted (``pyrogen.train.em``)
EM_ALGORITHMS = ("exact", "generalised")


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


#: the most threads :func:`default_threads` gives a run
MAX_DEFAULT_THREADS = 1


def default_threads() -> int:
    """
    The CPU threads a run uses unless told (``--threads``): one. Measured by
    ``benchmarks/threads.py`` (``benchmarks/results/threads.json``): on a shared 2-core machine
    a second thread gained little for pyrogen's default models when idle and cost much when
    other processes used the cores, while one thread never lost much; see
    :doc:`/training` (Threads).
    """
    return max(1, min(MAX_DEFAULT_THREADS, os.cpu_count() or 1))


@dataclass
class TrainConfig:
    r"""
    Everything a training run depends on; saved as ``config.json`` in the run
    folder and in every checkpoint.

    The fields fall into groups (:data:`CONFIG_GROUPS`): the family and its model options,
    the data, the run (length, device, seed), the optimiser, the learning-rate schedule,
    early stopping, the SVI loop, the ELBO objective, the adversarial players and EM. A
    training step reads the shared groups and its own; the trainer refuses, by name, a
    field of another group that is not at its default (:func:`check_applies`). A family's
    defaults for a data set are :meth:`pyrogen.families.Family.train_config`.

    :param str objective: ``"elbo"`` (``Trace_ELBO``), ``"meanfield"``
        (``TraceMeanField_ELBO``: the Gaussian KL in closed form) or
        ``"iwae"`` (:class:`~pyrogen.infer.Trace_IWAE`) or ``"mcem"`` (Monte Carlo EM,
        :class:`~pyrogen.infer.Trace_MCEM`; never compiled: ``jit`` does not apply).
    :param int mcem_proposals: ``"mcem"``: prior draws per data point for the E-step's resampling.
    :param int mcmc_steps: ``"mcem"``: MALA steps after resampling.
    :param float mcmc_step_size: ``"mcem"``: the MALA step size.
    :param int num_particles: particles per data point for the objective.
    :param str iwae_gradient: ``"iwae"``: the guide's gradient estimator, ``"reparam"`` (the
        bound's own) or ``"dreg"`` (Tucker et al.'s doubly reparameterised one, run eagerly:
        ``inductor`` does not apply); see :class:`~pyrogen.infer.Trace_IWAE`.
    :param str lr_schedule: ``constant``, ``exponential`` (``lr * lr_decay**epoch``),
        ``cosine`` (to ``lr_min`` at the last epoch) or ``step`` (``lr *= lr_decay``
        at each epoch in ``lr_milestones``).
    :param float beta: the final weight of the KL term.
    :param int kl_warmup: epochs over which the KL weight rises linearly from
        ``beta / kl_warmup`` to ``beta`` (0: no warm-up).
    :param int patience: stop when the validation loss has not improved for this
        many epochs (0: no early stopping).
    :param str em: mixtures only: ``"exact"`` (closed-form M-steps) or
        ``"generalised"`` (``em_steps`` SVI steps per E-step); ``epochs`` counts
        EM iterations.
    :param int em_steps: SVI steps per E-step of generalised EM.
    :param float tol: exact EM stops when the mean log-likelihood changes by less.
    :param str init: mixtures: ``"kmeans++"`` or ``"random"`` seeding of the components.
    :param int d_steps: adversarial models: discriminator steps per iteration.
    :param int g_steps: adversarial models: steps of the other player (generator,
        autoencoder, encoder-generator) per iteration.
    :param int iterations_per_epoch: adversarial models: iterations per epoch (0: as many as one
        pass over the training data gives); the minibatches cycle through fresh shuffles.
    :param float d_lr: adversarial models: the discriminator's learning rate (``None``: ``lr``).
    :param str watch_classes: adversarial models: the folder of a ``pyrogen train classifier``
        run on the same data set; every epoch the fixed samples of the collapse alarm are
        classified, the classes they cover and their histogram's KL from the data's are
        logged, lost classes count as a collapse, and the best checkpoint is the epoch whose
        class histogram is closest to the data's (:class:`~pyrogen.train.AdversarialStep`).
    :param list betas: Adam's :math:`(\beta_1, \beta_2)` (DCGAN: ``[0.5, 0.999]``).
    :param list batch_schedule: pairs ``[epoch, size]``: from epoch ``epoch`` (1-based) on,
        train with minibatches of ``size`` points instead of ``batch_size`` (e.g.
        ``[[165, 25]]``: batch ``batch_size`` for epochs 1-164, then 25). Epochs strictly
        increasing; the SVI trainer only (not adversarial models or EM).
    :param float ema_decay: keep an exponential moving average of the weights with this
        decay :math:`d \in (0, 1)` (:class:`~pyrogen.train.ExponentialAverage`; memory about
        :math:`1/(1-d)` optimiser steps), used for validation, the best checkpoint, the
        pictures and :func:`~pyrogen.families.load_run`; 0 (the default): none. The SVI
        trainer only.
    :param float divergence_band: a step's loss outside :math:`K` = this many spreads of its
        recent values (or rising :math:`K` times its size above its first value) counts as
        divergence, as a non-finite loss does: the epoch is rolled back and rerun with halved
        learning rates (:mod:`pyrogen.train.divergence`); 0 keeps only the non-finite check.
    :param int max_rollbacks: rollbacks allowed in the run before it stops with
        :class:`~pyrogen.train.DivergenceError`.
    :param int threads: torch's CPU threads for the run (``torch.set_num_threads``, set by the
        trainer); 0 (the default): :func:`default_threads`, chosen by
        ``benchmarks/threads.py``. The run log and every epoch's record say the number used.
    :param mlflow: also log the run to MLflow (:mod:`pyrogen.train.tracking`): a folder for a
        local store, or a tracking URI; ``None`` (the default): no MLflow.
    :type mlflow: str or None
    :param bool jit: record the loss once as a PyTorch graph (``torch.export``;
        :class:`~pyrogen.infer.CompiledLoss`) and replay it, with no Pyro work per step;
        training batches then all have ``batch_size`` points (the last, smaller one of each
        epoch is dropped: shuffling changes it each epoch).
    :param bool inductor: also compile the recorded graph with ``torch.compile`` (fused
        kernels: faster steps for larger networks, after a compilation of some seconds;
        needs ``jit``).
    :param str precision: the arithmetic of the training loss's forward pass: ``"32"``
        (float32), ``"bf16"`` (``torch.autocast`` to bfloat16: matrix products in bfloat16,
        reductions and log-densities in float32, as autocast chooses) or ``"16"`` (float16
        autocast with a gradient scaler; CUDA only). Parameters, optimiser state, validation
        and evaluation stay float32.
    """

    model: str = "vae"
    model_config: dict[str, Any] = field(default_factory=dict)
    dataset: str = "digits"
    data_dir: str | None = None
    binarize: str = "none"
    validation_size: int | float | None = None
    limit: int | None = None
    epochs: int = 10
    batch_size: int = 100
    batch_schedule: list[list[int]] = field(default_factory=list)
    ema_decay: float = 0.0
    objective: str = "elbo"
    num_particles: int = 1
    iwae_gradient: str = "reparam"
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay: float = 0.1
    lr_min: float = 0.0
    lr_milestones: list[int] = field(default_factory=list)
    clip_norm: float | None = None
    beta: float = 1.0
    kl_warmup: int = 0
    patience: int = 0
    jit: bool = True
    inductor: bool = False
    precision: str = "32"
    device: str = field(default_factory=default_device)
    seed: int = 0
    num_pictures: int = 64
    mcem_proposals: int = 16
    mcmc_steps: int = 5
    mcmc_step_size: float = 0.2
    em: str = "exact"
    em_steps: int = 1
    tol: float = 1e-3
    init: str = "kmeans++"
    d_steps: int = 1
    g_steps: int = 1
    iterations_per_epoch: int = 0
    d_lr: float | None = None
    watch_classes: str | None = None
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    divergence_band: float = 20.0
    max_rollbacks: int = 3
    threads: int = 0
    mlflow: str | None = None

    def __post_init__(self) -> None:
        def positive(name: str, integer: bool = True) -> None:
            value = getattr(self, name)
            if (integer and not isinstance(value, int)) or not value > 0:
                kind = "a positive integer" if integer else "a positive number"
                raise ValueError(f"{name} must be {kind}, got {value!r}")

        for name in ("epochs", "batch_size", "num_particles", "em_steps", "d_steps", "g_steps"):
            positive(name)
        for name in ("lr", "beta"):
            positive(name, integer=False)
        for name, choices in (
            ("objective", OBJECTIVES),
            ("iwae_gradient", IWAE_GRADIENTS),
            ("precision", PRECISIONS),
            ("optimizer", OPTIMIZERS),
            ("lr_schedule", SCHEDULES),
            ("em", EM_ALGORITHMS),
            ("init", ("kmeans++", "random")),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("kl_warmup", "patience", "seed", "num_pictures", "weight_decay", "tol",
                     "iterations_per_epoch", "lr_min", "divergence_band", "max_rollbacks",
                     "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        self.batch_schedule = _check_batch_schedule(self.batch_schedule)
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay must be in [0, 1) (0: no weight averaging), got {self.ema_decay!r}")
        self.ema_decay = float(self.ema_decay)
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.objective in ("iwae", "mcem") and (self.beta != 1.0 or self.kl_warmup):
            raise ValueError(
                f"objective {self.objective!r} has no KL term to weight: "
                f"it needs beta=1 and kl_warmup=0, got beta={self.beta}, kl_warmup={self.kl_warmup}"
            )
        if self.objective == "iwae" and self.num_particles < 2:
            raise ValueError(
                "objective 'iwae' with num_particles=1 is the ELBO itself; give num_particles "
                "(--num-particles) K >= 2, the importance samples per data point (Burda et al. "
                "use 5 or 50)"
            )
        if self.iwae_gradient != "reparam" and self.objective != "iwae":
            raise ValueError(
                f"iwae_gradient={self.iwae_gradient!r} is a gradient estimator of the "
                f"importance-weighted bound; it needs objective 'iwae', got {self.objective!r}"
            )
        if self.iwae_gradient == "dreg" and self.inductor:
            raise ValueError(
                "inductor compiles the recorded loss, and iwae_gradient 'dreg' runs eagerly "
                "(torch.export would drop its gradient hooks); drop inductor"
            )
        if self.mcem_proposals < 1 or self.mcmc_steps < 0 or not self.mcmc_step_size > 0:
            raise ValueError(
                "mcem_proposals must be >= 1, mcmc_steps >= 0 and mcmc_step_size > 0, got "
                f"{self.mcem_proposals}, {self.mcmc_steps}, {self.mcmc_step_size}"
            )
        if self.d_lr is not None and not self.d_lr > 0:
            raise ValueError(f"d_lr must be > 0 or None, got {self.d_lr!r}")
        self.betas = [float(b) for b in self.betas]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm!r}")
        if self.inductor and not self.jit:
            raise ValueError("inductor=True (--inductor) compiles the recorded loss, which jit=False "
                             "(--no-jit) turns off; drop one of them")
        try:
            torch.device(self.device)
        except RuntimeError as e:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {self.device!r}") from e
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} was asked for, but no CUDA GPU is available")
        if self.precision == "16" and torch.device(self.device).type != "cuda":
            raise ValueError(f"precision='16' (float16 autocast) needs a CUDA device, got "
                             f"device={self.device!r}; on CPU use precision='bf16'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)


def _check_batch_schedule(schedule: Any) -> list[list[int]]:
    try:
        pairs = [[epoch, size] for epoch, size in schedule]
    except (TypeError, ValueError):
        raise ValueError(f"batch_schedule must be a list of [epoch, size] pairs, got {schedule!r}") from None
    for epoch, size in pairs:
        if not (isinstance(epoch, int) and isinstance(size, int) and epoch >= 1 and size >= 1):
            raise ValueError(
                f"batch_schedule pairs must be [epoch, size] with positive integers, got {[epoch, size]!r}"
            )
    epochs = [epoch for epoch, _ in pairs]
    if any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise ValueError(f"batch_schedule epochs must be strictly increasing, got {epochs}")
    return pairs


#: TrainConfig's fields by group. A training step reads the groups it declares
#: (:attr:`pyrogen.train.Step.groups`); a field of any other group must keep its default
#: (:func:`check_applies`), so an option that cannot apply is refused, not ignored.
CONFIG_GROUPS: dict[str, tuple[str, ...]] = {
    "family": ("model", "model_config"),
    "data": ("dataset", "data_dir", "binarize", "validation_size", "limit"),
    "run": ("epochs", "device", "seed", "num_pictures", "divergence_band", "max_rollbacks",
            "threads", "mlflow"),
    "optimisation": ("batch_size", "optimizer", "lr", "weight_decay", "betas", "clip_norm"),
    "schedule": ("lr_schedule", "lr_decay", "lr_min", "lr_milestones"),
    "stopping": ("patience",),
    "svi": ("batch_schedule", "ema_decay", "jit", "inductor", "precision"),
    "elbo": ("objective", "num_particles", "iwae_gradient", "beta", "kl_warmup",
             "mcem_proposals", "mcmc_steps", "mcmc_step_size"),
    "adversarial": ("d_steps", "g_steps", "iterations_per_epoch", "d_lr", "watch_classes"),
    "em": ("em", "em_steps", "tol", "init"),
}
#: the groups every training step reads
SHARED_GROUPS = ("family", "data", "run")


def _field_defaults() -> dict[str, Any]:
    values = {}
    for f in dataclasses.fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING and f.name != "device":
            values[f.name] = f.default_factory()
    return values


def check_applies(config: TrainConfig, groups: tuple[str, ...], what: str) -> None:
    """
    Raise a ``ValueError``, before any work, if ``config`` sets a field outside ``groups``
    (keys of :data:`CONFIG_GROUPS`) away from its default: an option ``what`` (e.g. "a gan,
    trained by adversarial steps") cannot apply. The message names every such field.
    """
    allowed = {name for group in groups for name in CONFIG_GROUPS[group]}
    defaults = _field_defaults()
    wrong = [name for name, default in defaults.items()
             if name not in allowed and getattr(config, name) != default]
    if wrong:
        given = ", ".join(f"{name}={getattr(config, name)!r}" for name in wrong)
        raise ValueError(f"{given}: {'does' if len(wrong) == 1 else 'do'} not apply to {what}")


def batch_size_at(config: TrainConfig, epoch: int) -> int:
    """The minibatch size of epoch ``epoch`` (0-based): ``config.batch_size``, or the size of
    the last ``config.batch_schedule`` pair whose (1-based) epoch has been reached."""
    size = config.batch_size
    for start, scheduled in config.batch_schedule:
        if epoch + 1 >= start:
            size = scheduled
    return size


def build_objective(config: TrainConfig) -> pyro.infer.ELBO:
    """The Pyro loss named by ``config.objective``."""
    if config.objective == "iwae":
        return Trace_IWAE(num_particles=config.num_particles, gradient=config.iwae_gradient)
    if config.objective == "mcem":
        return Trace_MCEM(num_proposals=config.mcem_proposals, mcmc_steps=config.mcmc_steps,
                          step_size=config.mcmc_step_size)
    options = dict(
        num_particles=config.num_particles,
        vectorize_particles=config.num_particles > 1,
        max_plate_nesting=1,
    )
    if config.objective == "elbo":
        return pyro.infer.Trace_ELBO(**options)
    return pyro.infer.TraceMeanField_ELBO(**options)


def build_optimizer(config: TrainConfig, params: list[torch.nn.Parameter],
                    lr: float | None = None) -> torch.optim.Optimizer:
    """One torch optimiser over all of a player's parameters, at learning rate ``lr``
    (default ``config.lr``): torch's fused kernels, one pass over all the parameters per step
    (on CPU about 1.6x faster than the ``foreach`` kernels, ``benchmarks/vae_throughput.py``),
    where every parameter is a floating-point tensor on a device that has them, else the
    ``foreach`` kernels."""
    lr = config.lr if lr is None else lr
    betas = tuple(config.betas)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                 for p in params)
    kernels = {"fused": True} if fused else {"foreach": True}
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=config.weight_decay, **kernels)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=config.weight_decay, **kernels)
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=config.weight_decay, **kernels)


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule (stepped once after every epoch)."""
    sched = torch.optim.lr_scheduler
    if config.lr_schedule == "exponential":
        return sched.ExponentialLR(optimizer, gamma=config.lr_decay)
    if config.lr_schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr_min)
    if config.lr_schedule == "step":
        return sched.MultiStepLR(optimizer, milestones=list(config.lr_milestones), gamma=config.lr_decay)
    return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)


def scheduled_lr(config: TrainConfig, base_lr: float, epoch: int) -> float:
    r"""
    The learning rate of epoch ``epoch`` (0-based; epochs completed before it) in closed
    form, for a schedule starting at ``base_lr``: ``constant``; ``exponential``,
    :math:`\eta\, \gamma^{e}`; ``cosine``, :math:`\eta_{min} + (\eta - \eta_{min})
    (1 + \cos(\pi e / E)) / 2` over ``config.epochs`` :math:`E`; ``step``,
    :math:`\eta\, \gamma^{\#\{m \le e\}}` over the milestones. A resumed run whose
    schedule options changed continues on this formula from the epoch it reached.
    """
    if config.lr_schedule == "exponential":
        return base_lr * config.lr_decay ** epoch
    if config.lr_schedule == "cosine":
        progress = min(epoch, config.epochs) / config.epochs
        return config.lr_min + (base_lr - config.lr_min) * (1 + math.cos(math.pi * progress)) / 2
    if config.lr_schedule == "step":
        return base_lr * config.lr_decay ** sum(m <= epoch for m in config.lr_milestones)
    return base_lr


def closed_form_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer, base_lr: float,
                          epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A schedule that sets ``optimizer``'s rate to :func:`scheduled_lr` from ``base_lr`` for
    every epoch, starting at ``epoch`` (0-based; the epochs before it are done)."""
    for group in optimizer.param_groups:
        group["initial_lr"] = base_lr
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: scheduled_lr(config, base_lr, e) / base_lr, last_epoch=epoch - 1)


def kl_weight(config: TrainConfig, epoch: int) -> float:
    r"""
    The KL weight of epoch ``epoch`` (0-based): ``beta * min(1, (epoch + 1) / kl_warmup)``.
    Constant within an epoch, so a recorded loss is recorded at most
    ``kl_warmup + 1`` times; never 0 (``poutine.scale`` rejects it).
    """
    if config.kl_warmup <= 0:
        return float(config.beta)
    return float(config.beta) * min(1.0, (epoch + 1) / config.kl_warmup)
