r"""
The EM step of :class:`~pyrogen.train.Trainer`: one EM iteration per epoch for a mixture
(:class:`~pyrogen.models.Mixture`, ``fit = "em"``), so a mixture's run folder is written
as any other's: ``metrics.jsonl`` (one line per iteration, the exact negative
log-likelihood per data point), ``checkpoints/{last,best}.pt`` every iteration, the
components' picture, and ``--resume``.

Exact EM (``config.em = "exact"``) takes the E-step and the closed-form M-step
(:meth:`~pyrogen.models.mixture.MixtureModel.m_step`), and stops as
:func:`~pyrogen.infer.em.exact_em` and scikit-learn do: after the M-step of the first
iteration whose E-step finds the mean log-likelihood changed by less than ``config.tol``.
Generalised EM takes the E-step (:meth:`~pyrogen.models.mixture.MixturePosterior.e_step`)
and ``config.em_steps`` gradient steps of the exact expected complete-data log-likelihood
(``TraceEnum_ELBO`` with ``z`` enumerated) through the trainer's optimiser-step helper.
EM works on the whole training split at once, so the data are a fixed tensor: static
binarisation for Bernoulli mixtures, grey levels for Gaussian ones.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch
from pyro.infer import TraceEnum_ELBO
from torch import nn

from pyrogen.data import Split
from pyrogen.infer.em import claim_param_names, e_step
from pyrogen.train.config import SHARED_GROUPS, check_applies
from pyrogen.train.step import Step, check_finite


def split_tensor(model: nn.Module, split: Split, seed: int) -> torch.Tensor:
    """A whole split as the mixture's input: one fixed draw, flattened for a Gaussian mixture."""
    return model.inputs(next(iter(split.batches(len(split), seed=seed))))[0]


class EMStep(Step):
    """One EM iteration per epoch, exact or generalised (``config.em``); see the module."""

    groups: ClassVar[tuple[str, ...]] = SHARED_GROUPS + ("optimisation", "schedule", "em")
    description: ClassVar[str] = "EM"
    batched: ClassVar[bool] = False

    def bind(self, trainer: Any) -> None:
        """Check the run (one process; exact EM takes no optimiser options; a ``ValueError``
        for dynamic binarisation), hold the whole training split as one tensor, and for
        generalised EM build the enumerated exact posterior, ``TraceEnum_ELBO`` and the
        optimiser ``"em"``."""
        config, model = trainer.config, trainer.model
        if config.em == "exact":
            check_applies(config, SHARED_GROUPS + ("em",),
                          "exact EM (closed-form M-steps, no optimiser)")
        if trainer.world_size > 1:
            raise ValueError("a mixture is fitted by EM in one process; run it without torchrun")
        if trainer.data.binarize == "dynamic":
            raise ValueError("EM fits one fixed data set: load the data with binarize='static' "
                             "(--binarize static) for a Bernoulli mixture, not 'dynamic'")
        self.x = split_tensor(model, trainer.data.train, config.seed)
        self.previous: float | None = None  # the log-likelihood of the last iteration's E-step
        self._current: tuple[float, torch.Tensor] | None = None
        if config.em == "generalised":
            self.guide = model.model.exact_posterior(enumerate=True)
            self.elbo = TraceEnum_ELBO(max_plate_nesting=1)
            self.params = [p for p in model.model.parameters() if p.requires_grad]
            self.optimizer = trainer.add_optimizer("em", self.params)

    def pre_phase(self, trainer: Any) -> dict[str, Any]:
        """Initialise the mixture from the training data
        (:meth:`~pyrogen.models.Mixture.init_from_data` with ``config.init`` and ``config.seed``)
        and, for generalised EM, claim its parameter names in Pyro's store
        (:func:`~pyrogen.infer.em.claim_param_names`); returns ``{}``."""
        config = trainer.config
        trainer.model.init_from_data(self.x, method=config.init, seed=config.seed)
        if config.em == "generalised":  # as generalised_em does (its trace draws from the stream)
            claim_param_names(trainer.model.model, self.x)
        return {}

    def run_epoch(self, trainer: Any) -> dict[str, Any]:
        r"""One EM iteration: the E-step's responsibilities :math:`r_{nk}`, then exact EM's
        closed-form M-step or ``config.em_steps`` gradient steps on random minibatches of
        ``config.batch_size``. Returns the record: ``train_loss``, the negative mean
        log-likelihood after the iteration, and, for exact EM, ``"converged": true`` when the
        iteration's E-step found it changed by less than ``config.tol`` since the last one."""
        config, model = trainer.config, trainer.model
        start = time.perf_counter()
        ll_before, resp = self._current or e_step(model, self.x)
        converged = False
        if config.em == "exact":
            model.model.m_step(self.x, resp)
            converged = self.previous is not None and abs(ll_before - self.previous) < config.tol
        else:
            self.guide.e_step()
            num_data = len(self.x)
            size = min(config.batch_size, num_data)
            for _ in range(config.em_steps):
                batch = self.x
                if size < num_data:
                    batch = self.x[torch.randperm(num_data, device=self.x.device)[:size]]
                loss = self.elbo.differentiable_loss(model.model, self.guide, batch, num_data=num_data)
                trainer.optimise(loss, self.params, self.optimizer, what="M-step loss")
                trainer.global_step += 1
        self.previous = ll_before
        self._current = e_step(model, self.x)
        check_finite(self._current[0], "log-likelihood", f"after EM iteration {trainer.epoch + 1}", trainer)
        record = {"train_loss": -self._current[0], "em": config.em, "iterations": trainer.epoch + 1,
                  "binarize": trainer.data.binarize, "sec": time.perf_counter() - start}
        if converged:
            record["converged"] = True
        return record

    def score(self, record: dict[str, Any]) -> float:
        """What the best checkpoint minimises: minus the epoch, so the best is the last
        iteration (EM's result; the validation loss is reported, not selected on)."""
        # EM's result is its last iteration (the validation NLL is reported, not selected on)
        return -float(record["epoch"])

    def finished(self, record: dict[str, Any]) -> bool:
        """Whether EM has converged: the record of an exact-EM iteration whose E-step found
        the mean log-likelihood changed by less than ``config.tol``."""
        return bool(record.get("converged"))

    @torch.no_grad()
    def validation_loss(self, trainer: Any, split: Split) -> float:
        """The exact negative log-likelihood per data point on ``split``."""
        x = split_tensor(trainer.model, split, trainer.config.seed)
        return -float(trainer.model.log_likelihood(x).mean())

    def state_dict(self) -> dict[str, Any]:
        """The last iteration's mean log-likelihood (the convergence test compares with it)."""
        return {"previous_log_likelihood": self.previous}

    def load_state_dict(self, state: dict[str, Any], trainer: Any) -> None:
        """Restore :meth:`state_dict`, the last iteration's mean log-likelihood; the current
        E-step is recomputed from the loaded parameters."""
        self.previous = state.get("previous_log_likelihood")
        self._current = None  # recomputed from the loaded parameters


__all__ = ["EMStep", "split_tensor"]
