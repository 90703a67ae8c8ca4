r"""
Options as data: a family's model options and the shared training options, each declared
once with its type, choices and help. The command line is built from them
(:meth:`Option.add_to`); their defaults are never written here but read from where they live
(a facade's signature, :class:`~pyrogen.train.TrainConfig`, a family's per-data-set table),
so the command line, the Python API and the help text cannot disagree.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrogen.data import BINARIZATIONS, DATASETS
from pyrogen.infer.iwae import IWAE_GRADIENTS
from pyrogen.train.config import OBJECTIVES, OPTIMIZERS, PRECISIONS, SCHEDULES


def int_list(text: str) -> list[int]:
    """``"200,200"`` as ``[200, 200]`` (positive integers)."""
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def str_list(text: str) -> list[str]:
    """``"relu1,relu2"`` as ``["relu1", "relu2"]``."""
    values = [v for v in text.replace(" ", "").split(",") if v]
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return values


def batch_schedule(text: str) -> list[list[int]]:
    """``"165:25,250:10"`` as ``[[165, 25], [250, 10]]`` (argparse type of ``--batch-schedule``)."""
    try:
        pairs = [[int(v) for v in item.split(":")] for item in text.replace(",", " ").split()]
    except ValueError:
        pairs = None
    if not pairs or any(len(pair) != 2 or min(pair) < 1 for pair in pairs):
        raise argparse.ArgumentTypeError(
            f"expected EPOCH:SIZE pairs of positive integers separated by commas, e.g. 165:25, got {text!r}"
        )
    if any(b[0] <= a[0] for a, b in zip(pairs, pairs[1:])):
        raise argparse.ArgumentTypeError(f"the epochs must increase, got {text!r}")
    return pairs


def _number(kind: type, name: str, check: Callable[[Any], bool]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not check(value):
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


positive_int = _number(int, "a positive integer", lambda v: v > 0)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: v > 0)
non_negative_float = _number(float, "a number >= 0", lambda v: v >= 0)
unit_interval = _number(float, "a number in [0, 1) (0: none)", lambda v: 0 <= v < 1)
decay = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def betas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 2 or not all(0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1), e.g. 0.5,0.999, got {text!r}")
    return values


def validation_size(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a count (e.g. 10000) or a fraction (e.g. 0.1), got {text!r}") from None


def show(value: Any) -> str:
    """A default as a user would type it."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) if value else "none"
    return "none" if value is None else str(value)


@dataclass(frozen=True)
class Option:
    """
    One option: the keyword ``name`` (a facade's argument, or a
    :class:`~pyrogen.train.TrainConfig` field), its command-line ``flag`` (default
    ``--name-with-dashes``), argparse ``type`` and ``choices``, and ``help`` without the
    default, which :meth:`add_to` appends from the value it is given.

    :param bool boolean: a switch, ``--flag``/``--no-flag``.
    :param bool facade: a facade keyword (else the family consumes it itself, e.g. DFC-VAE's
        ``--features``).
    """

    name: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[Any] | None = None
    flag: str | None = None
    boolean: bool = False
    metavar: str | None = None
    facade: bool = True

    @property
    def cli(self) -> str:
        """The option's command-line flag: ``flag``, or ``--`` and the name with dashes."""
        return self.flag or "--" + self.name.replace("_", "-")

    def add_to(self, group: Any, default: Any = None, default_text: str | None = None) -> None:
        """Add the option to an argparse group. Its argparse default is suppressed, so the
        namespace holds only what the user typed; the help shows ``default``."""
        text = default_text if default_text is not None else show(default)
        help_text = f"{self.help} (default: {text})" if text else self.help
        kwargs: dict[str, Any] = dict(dest=self.name, default=argparse.SUPPRESS,
                                      help=help_text.replace("%", "%%"))
        if self.boolean:
            group.add_argument(self.cli, action=argparse.BooleanOptionalAction, **kwargs)
            return
        if self.type is not None:
            kwargs["type"] = self.type
        if self.choices is not None:
            kwargs["choices"] = tuple(self.choices)
        if self.metavar is not None:
            kwargs["metavar"] = self.metavar
        group.add_argument(self.cli, **kwargs)


#: the shared training options (fields of TrainConfig), by the group of
#: :data:`~pyrogen.train.config.CONFIG_GROUPS` they belong to; a family's command shows the
#: groups its training step reads
TRAIN_OPTIONS: dict[str, tuple[Option, ...]] = {
    "data": (
        Option("dataset", "data set (digits: scikit-learn's 8x8 digits, no download)", choices=DATASETS),
        Option("data_dir", "folder holding the data set's files (all but digits)"),
        Option("binarize", "dynamic: a fresh Bernoulli draw of every pixel each epoch; static: one "
               "fixed draw; none: grey levels", choices=BINARIZATIONS),
        Option("validation_size", "validation points taken from the training files: a count or a "
               "fraction (0 for none)", type=validation_size),
        Option("limit", "use only the first N points of each split (for quick trials)",
               type=positive_int),
    ),
    "run": (
        Option("epochs", "number of epochs", type=positive_int),
        Option("device", "torch device, e.g. cpu, cuda, cuda:1"),
        Option("seed", "random seed of the weights, minibatches and draws", type=int),
        Option("divergence_band", "a step's loss more than K spreads from its recent values (or "
               "K times its size above its first) counts as divergence, like a NaN: the epoch is "
               "rolled back and rerun at half the learning rate (0: NaN/inf only)",
               type=non_negative_float, metavar="K"),
        Option("max_rollbacks", "rollbacks allowed before a diverging run stops",
               type=non_negative_int),
        Option("threads", "torch CPU threads (0: pyrogen's measured default, one: on a shared "
               "machine more threads ran 5-100x slower; benchmarks/threads.py measures yours)",
               type=non_negative_int, metavar="N"),
        Option("mlflow", "also log the run to MLflow: a folder (a local store, no server) or a "
               'tracking URI; needs pip install "pyrogen-vi[mlflow]"', metavar="STORE"),
    ),
    "optimisation": (
        Option("batch_size", "minibatch size", type=positive_int),
        Option("optimizer", "the optimiser", choices=OPTIMIZERS),
        Option("lr", "learning rate", type=positive_float),
        Option("weight_decay", "weight decay", type=non_negative_float),
        Option("betas", "Adam's beta1,beta2", type=betas),
        Option("clip_norm", "clip the gradient norm to this", type=positive_float),
    ),
    "schedule": (
        Option("lr_schedule", "per-epoch schedule: exponential multiplies by --lr-decay each "
               "epoch, cosine anneals to --lr-min, step multiplies by --lr-decay at each of "
               "--lr-milestones", choices=SCHEDULES),
        Option("lr_decay", "the schedule's factor", type=decay),
        Option("lr_min", "cosine: the final learning rate", type=non_negative_float),
        Option("lr_milestones", "step: epochs at which the rate decays, e.g. 100,200", type=int_list),
    ),
    "stopping": (
        Option("patience", "stop after N epochs without a better validation loss (0: never)",
               type=non_negative_int),
    ),
    "svi": (
        Option("batch_schedule", "later batch sizes as EPOCH:SIZE[,EPOCH:SIZE...]: from that "
               "(1-based) epoch on, minibatches of SIZE, e.g. 165:25", type=batch_schedule,
               metavar="EPOCH:SIZE,..."),
        Option("ema_decay", "keep an exponential moving average of the weights with decay D, e.g. "
               "0.999 (memory about 1/(1-D) steps); validation, the best checkpoint, pictures, "
               "evaluate and sample use it (0: none)", type=unit_interval, metavar="D"),
        Option("jit", "record the loss once as a PyTorch graph (torch.export) and replay it "
               "(--no-jit: Pyro's loss on every step, and the last, smaller batch of each "
               "epoch is kept)", boolean=True),
        Option("precision", "the training loss's arithmetic: 32 (float32), bf16 (bfloat16 "
               "autocast: CPU and CUDA) or 16 (float16 autocast with a gradient scaler; CUDA "
               "only); parameters, validation and evaluation stay float32",
               choices=PRECISIONS),
        Option("inductor", "also compile the recorded loss with torch.compile (fused kernels: "
               "faster steps for larger networks after some seconds of compilation; needs --jit)",
               boolean=True),
    ),
    "elbo": (
        Option("objective", "elbo (Trace_ELBO), meanfield (TraceMeanField_ELBO, analytic KL), iwae "
               "(importance-weighted bound) or mcem (Monte Carlo EM on the decoder, the encoder "
               "fitted beside it as a proposal)", choices=OBJECTIVES),
        Option("num_particles", "particles per data point", type=positive_int),
        Option("iwae_gradient", "iwae: the encoder's gradient estimator, reparam (the bound's "
               "own) or dreg (doubly reparameterised, Tucker et al. 2019: squared importance "
               "weights, no score term; runs eagerly)", choices=IWAE_GRADIENTS),
        Option("beta", "weight of the KL term", type=positive_float),
        Option("kl_warmup", "epochs of linear KL warm-up from beta/N to beta (0: none)",
               type=non_negative_int),
        Option("mcem_proposals", "mcem: prior draws per data point for the E-step", type=positive_int),
        Option("mcmc_steps", "mcem: MALA steps after resampling", type=non_negative_int),
        Option("mcmc_step_size", "mcem: MALA step size", type=positive_float),
    ),
    "adversarial": (
        Option("d_steps", "discriminator steps per iteration", type=positive_int),
        Option("g_steps", "steps of the other player (generator, autoencoder, encoder-generator) "
               "per iteration; a regularised player whose snapshot caches its draws runs them all "
               "on one minibatch (the regularisers act from the second step on)", type=positive_int),
        Option("iterations_per_epoch", "iterations per epoch, cycling through fresh shuffles of "
               "the data (0: one pass over the training data)", type=non_negative_int),
        Option("d_lr", "the discriminator's learning rate", type=positive_float),
        Option("watch_classes", "a `pyrogen train classifier` run on the same data set: every "
               "epoch the run classifies its fixed samples, logs the classes they cover, counts "
               "lost classes as a collapse and keeps as best.pt the epoch whose class histogram "
               "is closest to the data's", metavar="RUN"),
    ),
    "em": (
        Option("em", "exact: closed-form M-steps; generalised: --em-steps gradient steps per "
               "E-step", choices=("exact", "generalised")),
        Option("em_steps", "generalised EM: gradient steps per E-step", type=positive_int),
        Option("tol", "exact EM stops when the mean log-likelihood changes less",
               type=non_negative_float),
        Option("init", "seeding of the components", choices=("kmeans++", "random")),
    ),
}

#: options of `pyrogen train` that are not part of a run's configuration
RUN_FOLDER_OPTIONS = (
    Option("out", "run folder (default: runs/FAMILY-DATASET-TIME); must not hold a run already",
           type=Path),
    Option("resume", "continue the stopped run in folder RUN from its last checkpoint; options "
           "given beside it must match the run's, except its length, device, data folder, early "
           "stopping and learning-rate schedule, which apply from the epoch reached on (a changed "
           "schedule gives those epochs the rates it prescribes for them)",
           type=Path, metavar="RUN"),
    Option("progress", "show a progress bar while standard error is a terminal (a log file or "
           "pipe gets one plain line per epoch either way)", boolean=True),
)


__all__ = ["Option", "RUN_FOLDER_OPTIONS", "TRAIN_OPTIONS", "int_list", "show", "str_list"]
