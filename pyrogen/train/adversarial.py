r"""
The adversarial step (GAN, AAE, ALI) of :class:`~pyrogen.train.Trainer`: alternating steps
of two players, each with its own optimiser.

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
player, through the trainer's optimiser-step helper
(:meth:`~pyrogen.train.Trainer.optimise`): the player's loss is differentiated with respect
to its own parameters only, gradients are averaged across ranks under ``torch.distributed``,
clipped, and the optimiser steps. Every loss term (discriminator, generator, regulariser,
reconstruction) is logged as its epoch mean; checkpoints hold both players, both optimisers
and schedules, and the regulariser's last snapshot.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pyro
import torch
from tqdm.auto import tqdm

from pyrogen.train.config import SHARED_GROUPS
from pyrogen.train.distributed import average_buffers
from pyrogen.train.divergence import site_probe
from pyrogen.train.step import Step, num_batches, sum_across_ranks


#: a sample diversity below this share of the data's is a collapse (measured on digits:
#: healthy runs 0.78-1.05, runs that cover 1 to 9 of the 10 classes 0.00-0.37)
COLLAPSE_DIVERSITY = 0.5
#: the samples and data points the diversity is measured on
DIVERSITY_POINTS = 256
#: with a watching classifier, samples covering fewer of the data's classes than this share
#: (each class at least a tenth as often as in the data) after having covered them, or fewer
#: than half the most they covered, are a collapse: two of ten digits lost
CLASS_COLLAPSE = 0.8


def mean_pairwise_distance(x: torch.Tensor) -> float:
    """The mean Euclidean distance between two different points of ``x`` (flattened)."""
    x = x.flatten(1).double()
    return float(torch.cdist(x, x).sum() / (len(x) * (len(x) - 1)))


class AdversarialStep(Step):
    r"""
    The alternating loop of an adversarial facade (``players()``, ``losses()``;
    :class:`~pyrogen.models.AdversarialFacade`): ``config.d_steps`` and ``config.g_steps``
    set the steps per iteration, ``config.d_lr`` the discriminator's learning rate and
    ``config.betas`` Adam's betas.

    No adversarial loss measures quality, so there is no validation loss. Instead every epoch
    watches for collapse: the *sample diversity*, the mean pairwise distance of
    :data:`DIVERSITY_POINTS` samples from fixed draws over that of as many training points
    (about 1 for a model that covers the data, near 0 for one that draws one image), in each
    epoch's record. When it is below :data:`COLLAPSE_DIVERSITY` after having been above it, or
    below half the highest it reached, the samples have collapsed: the record says
    ``"collapse": true``, and the run warns when a collapse begins. The best checkpoint is the
    last epoch whose diversity was above the bound, else the last that had not collapsed.

    With a ``classifier`` (a module with ``predict(images) -> labels``, as a ``pyrogen train
    classifier`` run's :class:`~pyrogen.models.ImageClassifier`, or one that maps images to
    logits of the data's classes; ``--watch-classes RUN``) the same samples are classified every
    epoch: the record adds ``sample_classes_covered`` and ``sample_class_kl``
    (:func:`~pyrogen.metrics.mode_coverage` against the training labels), covering fewer
    than :data:`CLASS_COLLAPSE` of the classes after having covered them, or fewer than half
    the most it covered, is a collapse too,
    and the best checkpoint is the epoch of least class KL among those that have not
    collapsed (the classes are a sharper signal than the diversity, which a run may not
    reach early on).

    :param classifier: the watching classifier, or ``None``.
    """

    groups: ClassVar[tuple[str, ...]] = SHARED_GROUPS + ("optimisation", "schedule", "adversarial")
    description: ClassVar[str] = "adversarial training"

    def __init__(self, classifier: torch.nn.Module | None = None) -> None:
        self.classifier = classifier

    def bind(self, trainer: Any) -> None:
        """Take the facade's ``losses()`` and register one optimiser per player of
        ``players()`` (the discriminator's at ``config.d_lr``), move the watching classifier
        to the device, and measure the training data's diversity for the collapse alarm. A
        ``ValueError`` when players and losses differ, or for a classifier without labels."""
        model, config = trainer.model, trainer.config
        if config.watch_classes is not None and self.classifier is None:
            raise ValueError(f"watch_classes={config.watch_classes!r} names a classifier, but the "
                             "step has none: pass step=AdversarialStep(classifier=...) or "
                             "pyrogen.families.get(FAMILY).step(config, data)")
        if self.classifier is not None:
            if trainer.data.train.labels is None or trainer.data.num_classes is None:
                raise ValueError("watching the classes of the samples needs a labelled data set; "
                                 f"{trainer.data.name!r} has no labels")
            self.classifier = self.classifier.to(trainer.device).eval().requires_grad_(False)
        self.peak_classes = 0.0
        self.losses = model.losses()
        groups = model.players()
        if list(groups) != list(self.losses):
            raise ValueError(f"players {list(groups)} and losses {list(self.losses)} differ")
        self.params = {
            name: [p for module in modules for p in module.parameters() if p.requires_grad]
            for name, modules in groups.items()
        }
        self.optimizers = {
            name: trainer.add_optimizer(name, params, config.d_lr if name == "discriminator" else None)
            for name, params in self.params.items()
        }
        self.data_free = tuple(model.data_free_players)
        self.iteration = 0
        self.data_diversity = mean_pairwise_distance(trainer.data.train.images[:DIVERSITY_POINTS])
        self.peak_diversity = 0.0

    def score(self, record: dict[str, Any]) -> float:
        """What the best checkpoint minimises: with a watching classifier, the class KL
        (``sample_class_kl``) of an epoch that has not collapsed; otherwise the last epoch
        whose diversity is at least :data:`COLLAPSE_DIVERSITY` ranks best, then the last that
        has not collapsed, then the last."""
        # with a classifier: the epoch of least class KL that had not collapsed; without: the
        # last diverse epoch; else the last that had not collapsed, else the last
        if "sample_class_kl" in record and not record.get("collapse"):
            return min(float(record["sample_class_kl"]), 1e8)
        diverse = record.get("sample_diversity", 1.0) >= COLLAPSE_DIVERSITY
        rank = 0.0 if diverse else 2e9 if record.get("collapse") else 1e9
        return rank - float(record["epoch"])

    @torch.no_grad()
    def fixed_samples(self, trainer: Any) -> torch.Tensor:
        """Samples from fixed draws (outside the run's random stream, in eval mode)."""
        model = trainer.model
        training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=trainer.rng_devices()):
                torch.manual_seed(trainer.config.seed)
                return model.sample(min(DIVERSITY_POINTS, len(trainer.data.train)))
        finally:
            model.train(training)

    def sample_diversity(self, trainer: Any, samples: torch.Tensor | None = None) -> float:
        """The diversity of :meth:`fixed_samples` over the data's."""
        samples = self.fixed_samples(trainer) if samples is None else samples
        return mean_pairwise_distance(samples) / self.data_diversity

    @torch.no_grad()
    def sample_classes(self, trainer: Any, samples: torch.Tensor) -> dict[str, float]:
        """The classes the watching classifier sees in ``samples``, against the training labels."""
        from pyrogen.metrics import mode_coverage

        predict = getattr(self.classifier, "predict", None)
        predicted = predict(samples) if callable(predict) else self.classifier(samples).argmax(-1)
        coverage = mode_coverage(predicted, trainer.data.train.labels, trainer.data.num_classes)
        return {"sample_classes_covered": coverage["classes_covered"],
                "sample_class_kl": coverage["class_kl"]}

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the step: each loss's generator snapshot, the iteration
        count and the collapse alarm's peaks (diversity, classes)."""
        return {"snapshots": {k: loss.snapshot_state() for k, loss in self.losses.items()},
                "iteration": self.iteration, "peak_diversity": self.peak_diversity,
                "peak_classes": self.peak_classes}

    def load_state_dict(self, state: dict[str, Any], trainer: Any) -> None:
        """Restore :meth:`state_dict` (after the model's weights are loaded): each loss's
        snapshot (``load_snapshot_state``, with the model's guide), the iteration count and
        the collapse alarm's peaks."""
        for name, loss in self.losses.items():
            loss.load_snapshot_state(state.get("snapshots", {}).get(name), guide=trainer.model.guide)
        self.iteration = int(state.get("iteration", 0))
        self.peak_diversity = float(state.get("peak_diversity", 0.0))
        self.peak_classes = float(state.get("peak_classes", 0.0))

    def run_epoch(self, trainer: Any) -> dict[str, Any]:
        """Train one epoch of iterations (``d_steps`` discriminator steps, then ``g_steps`` of
        the other player) until its minibatches run out or ``iterations_per_epoch`` is
        reached; return its record: each player's loss and each term as epoch means
        (``train_loss`` is the discriminator's), the sample diversity, with a classifier the
        sample classes, and ``"collapse": true`` when the samples have collapsed."""
        config = trainer.config
        kwargs = {"num_data": len(trainer.data.train)}
        batches = self._batches(trainer)
        start = time.perf_counter()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        total = None if config.iterations_per_epoch else num_batches(
            len(trainer.data.train), config.batch_size, True, trainer.world_size)
        bar = trainer.progress_bar(total)
        iterations = 0
        try:
            while True:
                last = None
                for name, loss in self.losses.items():
                    steps = config.d_steps if name == "discriminator" else config.g_steps
                    last = self._player_steps(trainer, name, loss, steps, batches, last, kwargs,
                                              sums, counts, bar)
                iterations += 1
                self.iteration += 1
                if iterations == config.iterations_per_epoch:
                    break
                bar.set_postfix({k: f"{v:.3f}" for k, v in self._last_terms().items()})
        except _EpochEnd:
            pass
        finally:
            bar.close()
        average_buffers(trainer.model)  # batch norm's running statistics, equal on every rank
        for loss in self.losses.values():
            loss.terms = {}
        samples = self.fixed_samples(trainer)
        diversity = self.sample_diversity(trainer, samples)
        record: dict[str, Any] = {}
        for key in sorted(sums):
            record[key] = sum_across_ranks(sums[key] / max(counts[key], 1), trainer.device) / trainer.world_size
        record["train_loss"] = record.get("loss_discriminator", math.nan)
        record.update({
            "lr": self.optimizers["discriminator"].param_groups[0]["lr"],
            "binarize": trainer.data.binarize,
            "sec": time.perf_counter() - start,
            "steps": trainer.global_step,
            "iterations": self.iteration,
            "iterations_in_epoch": iterations,
            "sample_diversity": diversity,
        })
        collapse = diversity < COLLAPSE_DIVERSITY and (
            self.peak_diversity >= COLLAPSE_DIVERSITY or diversity < self.peak_diversity / 2)
        why = (f"their diversity fell to {diversity:.2f} of the data's, from "
               f"{self.peak_diversity:.2f}")
        if self.classifier is not None:
            record.update(self.sample_classes(trainer, samples))
            covered = record["sample_classes_covered"]
            if covered < CLASS_COLLAPSE and (self.peak_classes >= CLASS_COLLAPSE
                                             or covered < self.peak_classes / 2):
                collapse = True
                why = f"they cover {covered:.0%} of the classes, from {self.peak_classes:.0%}"
            self.peak_classes = max(self.peak_classes, covered)
        if collapse:
            record["collapse"] = True
            began = not trainer.history or not trainer.history[-1].get("collapse")
            if began and trainer.rank == 0:
                tqdm.write(f"pyrogen: epoch {trainer.epoch + 1}: the samples have collapsed "
                           f"({why}); best.pt keeps the best epoch before", file=sys.stderr)
        self.peak_diversity = max(self.peak_diversity, diversity)
        return record

    def _batches(self, trainer: Any) -> Iterator[Any]:
        """The epoch's minibatches: one shuffled pass over the training data, or, with
        ``iterations_per_epoch``, as many fresh shuffles as the iterations need (each epoch's
        stream depends on the epoch only, so a resumed run draws the same)."""
        config, epoch = trainer.config, trainer.epoch

        def one_pass(shuffle_epoch: int) -> Iterator[Any]:
            return iter(trainer.data.train.batches(
                config.batch_size, shuffle=True, drop_last=True, epoch=shuffle_epoch,
                seed=config.seed, rank=trainer.rank, world_size=trainer.world_size))

        if not config.iterations_per_epoch:
            return one_pass(epoch)

        def cycle() -> Iterator[Any]:
            for p in range(1 << 30):
                yield from one_pass(epoch * 100_003 + p)

        return cycle()

    def _player_steps(self, trainer: Any, name: str, loss: Any, steps: int, batches: Iterator[Any],
                      last: Any, kwargs: dict[str, Any], sums: dict[str, float],
                      counts: dict[str, int], bar: Any) -> Any:
        data_free = name in self.data_free
        batch = last if data_free and last is not None else None
        regularised = loss.regularised
        reuse = loss.reuses_batch
        model = trainer.model
        for step in range(steps):
            if batch is None or not (data_free or (reuse and step > 0)):
                batch = _next(batches)
                bar.update(1)
            args = trainer.inputs(batch)
            if regularised and step == 0:
                with pyro.validation_enabled(False):
                    loss.snapshot(model.model, model.guide, *args, **kwargs)
            with pyro.validation_enabled(trainer.global_step == 0):
                value = loss.differentiable_loss(model.model, model.guide, *args, **kwargs)
                where = (f"at epoch {trainer.epoch + 1}, iteration {self.iteration + 1} "
                         f"(global step {trainer.global_step + 1})")
                value = trainer.optimise(value, self.params[name], self.optimizers[name],
                                         what=f"{name} loss", where=where, zero_unused=True,
                                         probe=site_probe(model, args, kwargs))
            trainer.global_step += 1
            for key, v in {f"loss_{name}": value, **loss.terms}.items():
                sums[key] = sums.get(key, 0.0) + v
                counts[key] = counts.get(key, 0) + 1
            if step == 0:  # TensorBoard: each player's loss against the iteration
                trainer.logger.step(self.iteration + 1, value, name=f"step_loss_{name}")
        return batch

    def _last_terms(self) -> dict[str, float]:
        terms: dict[str, float] = {}
        for loss in self.losses.values():
            terms.update(loss.terms)
        return terms


class _EpochEnd(Exception):
    """The epoch's minibatches ran out."""


def _next(batches: Iterator[Any]) -> Any:
    try:
        return next(batches)
    except StopIteration:
        raise _EpochEnd from None


__all__ = ["AdversarialStep", "CLASS_COLLAPSE", "COLLAPSE_DIVERSITY", "mean_pairwise_distance"]
