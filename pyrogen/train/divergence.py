r"""
Divergence detection for :class:`~pyrogen.train.Trainer`: every optimiser step's loss is
checked before its gradients are taken, and a bad one makes the trainer roll the epoch back.

A loss is **bad** when it is not finite, or when it leaves a band around the recent history of
the same loss (the ELBO, or one adversarial player's loss). With :math:`m` the median and
:math:`s` the spread (10th to 90th percentile) of the last :data:`WINDOW` accepted values of
that loss, and :math:`\ell_0` its first value in the run, the band is

.. math::

    |\ell - m| \le K \max(s,\ 0.1\,|m|,\ 1)
    \quad\text{and}\quad
    \ell - \ell_0 \le K \max(|\ell_0|,\ 1),

with :math:`K` the ``divergence_band`` option (default :data:`DEFAULT_BAND`; 0 turns the band
off and keeps the check for non-finite values). The first condition is checked once
:data:`WARMUP` values are known; the second from the second step on, so a learning rate that
throws the loss to a million times its start is caught even before there is a history. Both
are wide: a default run of every family on ``digits`` and MNIST never leaves them
(``tests/train/test_divergence.py`` and the quality suite check that no default run rolls
back), while the blow-ups met in practice (a learning rate 1000 times too large, a poisoned
batch or gradient) leave them by orders of magnitude.

The trainer's answer (:meth:`Trainer.fit <pyrogen.train.Trainer.fit>`): restore the state it
held at the start of the epoch (weights, optimisers, schedules, the step's state such as a
generator snapshot, the weight average, the random number generators), multiply every
learning rate by :data:`ROLLBACK_LR_FACTOR` for the rest of the run, and run the epoch again;
after ``max_rollbacks`` rollbacks (default 3) it stops with a
:class:`DivergenceError` that names the loss (the player), where it happened, the value and
the band, and the model site or parameter that went non-finite. Each rollback is printed and
recorded in the next epoch's line of ``metrics.jsonl`` (``rolled_back``), and the reduction
is kept in checkpoints, so a resumed run continues at the reduced rate. Because a diverged
epoch is never completed, no checkpoint, ``best.pt`` included, ever holds a diverged state.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine
from torch import nn

from pyrogen.train.step import NonFiniteLossError

#: the band's width :math:`K` in spreads (``TrainConfig.divergence_band``'s default)
DEFAULT_BAND = 20.0
#: the least spread the band assumes, in nats: a discriminator that wins for a while (its loss
#: near 0.005) and then loses a few batches to the other player (4, about three times the
#: loss of a coin toss) is playing the game, not diverging; with a floor of 0.1 the bare ALI on
#: MNIST rolled back three times and stopped
MIN_SPREAD = 1.0
#: how many recent values of a loss its band is measured on
WINDOW = 200
#: values needed before the band around the recent history applies
WARMUP = 20
#: every learning rate is multiplied by this on each rollback
ROLLBACK_LR_FACTOR = 0.5
#: rollbacks allowed in one run before it stops (``TrainConfig.max_rollbacks``'s default)
DEFAULT_MAX_ROLLBACKS = 3


class DivergenceError(NonFiniteLossError):
    """A training loss diverged (non-finite, or outside its band); ``reason`` says which loss,
    where and why, ``site`` the model site or parameter found non-finite (or None)."""

    def __init__(self, reason: str, site: str | None = None) -> None:
        self.reason, self.site = reason, site
        super().__init__(reason if site is None else f"{reason} ({site})")


class DivergenceGuard:
    """The band of every loss the trainer optimises (by its name, e.g. ``"loss"`` or
    ``"discriminator loss"``); :meth:`check` raises :class:`DivergenceError` for a bad value
    and otherwise adds it to that loss's history."""

    def __init__(self, band: float = DEFAULT_BAND) -> None:
        self.band = float(band)
        self.history: dict[str, deque[float]] = {}
        self.first: dict[str, float] = {}

    def bad(self, value: float, what: str) -> str | None:
        """Why ``value`` of the loss ``what`` is bad, or None if it is within its band."""
        if not math.isfinite(value):
            return f"became {value}"
        if not self.band:
            return None
        first = self.first.get(what)
        if first is not None and value - first > self.band * max(abs(first), 1.0):
            return (f"rose to {value:.6g} from {first:.6g} at the run's start (more than "
                    f"{self.band:g} times its size)")
        recent = self.history.get(what, ())
        if len(recent) >= WARMUP:
            ordered = sorted(recent)
            n = len(ordered)
            median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
            spread = ordered[int(0.9 * (n - 1))] - ordered[int(0.1 * (n - 1))]
            width = self.band * max(spread, 0.1 * abs(median), MIN_SPREAD)
            if abs(value - median) > width:
                return (f"was {value:.6g}, outside the band {median:.6g} +- {width:.6g} around "
                        f"its last {n} values")
        return None

    def accept(self, value: float, what: str) -> None:
        """Add a good ``value`` of the loss ``what`` to its history (the first one is also
        kept as :math:`\\ell_0`)."""
        self.first.setdefault(what, value)
        self.history.setdefault(what, deque(maxlen=WINDOW)).append(value)

    def state_dict(self) -> dict[str, Any]:
        """Each loss's first value and recent history, for checkpoints."""
        return {"first": dict(self.first), "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.first = {k: float(v) for k, v in state.get("first", {}).items()}
        self.history = {k: deque((float(x) for x in v), maxlen=WINDOW)
                        for k, v in state.get("history", {}).items()}


def nonfinite_parameters(module: nn.Module, params: list[nn.Parameter] | None = None) -> list[str]:
    """The names of ``module``'s parameters (of ``params`` only, if given) holding NaN or inf."""
    wanted = None if params is None else {id(p) for p in params}
    return [name for name, p in module.named_parameters()
            if (wanted is None or id(p) in wanted) and not torch.isfinite(p).all()]


def _nonfinite(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()


def nonfinite_site(model: Callable, guide: Callable | None, *args: Any, **kwargs: Any) -> str | None:
    """
    The first sample site, in execution order (the guide's, then the model's replayed on the
    guide's draws), whose value, distribution parameter or log-density is NaN or inf, in words
    such as ``"site x: logits inf"``; None if every site is finite. Run under ``no_grad``.
    """
    with torch.no_grad():
        traces = []
        replay = {}
        if guide is not None:
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            traces.append(("guide", guide_trace))
            replay = {"trace": guide_trace}
        model_trace = poutine.trace(poutine.replay(model, **replay) if replay else model).get_trace(
            *args, **kwargs)
        traces.append(("model", model_trace))
        for where, trace in traces:
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or site.get("is_observed") and where == "guide":
                    continue
                fn = site["fn"]
                while hasattr(fn, "base_dist"):  # Independent, masked, expanded
                    fn = fn.base_dist
                for param in sorted(getattr(fn, "arg_constraints", {})):
                    try:
                        value = getattr(fn, param)
                    except Exception:  # a lazily derived parameter that cannot be built
                        continue
                    if _nonfinite(value):
                        return f"{where} site {name}: {param} {_worst(value)}"
                if _nonfinite(site["value"]):
                    return f"{where} site {name}: value {_worst(site['value'])}"
                try:
                    log_prob = site["fn"].log_prob(site["value"])
                except Exception as e:  # a value outside the support under validation
                    return f"{where} site {name}: log-density fails ({str(e).splitlines()[0]})"
                if _nonfinite(log_prob):
                    return f"{where} site {name}: log-density {_worst(log_prob)}"
    return None


def site_probe(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Callable[[], str | None]:
    """What :meth:`Trainer.optimise <pyrogen.train.Trainer.optimise>` calls when a loss went
    non-finite: :func:`nonfinite_site` of the facade's ``model`` and ``guide`` on the step's
    arguments (``kwargs`` that the model takes only, e.g. not ``beta``)."""

    def probe() -> str | None:
        guide = getattr(model, "guide", None)
        kw = {k: v for k, v in kwargs.items() if k == "num_data"}
        return nonfinite_site(model.model, guide if callable(guide) else None, *args, **kw)

    return probe


def _worst(t: torch.Tensor) -> str:
    bad = t[~torch.isfinite(t)]
    return "nan" if torch.isnan(bad).any() else str(float(bad[0]))


__all__ = ["DEFAULT_BAND", "DEFAULT_MAX_ROLLBACKS", "DivergenceError", "DivergenceGuard",
           "ROLLBACK_LR_FACTOR", "WARMUP", "WINDOW", "nonfinite_parameters", "nonfinite_site",
           "site_probe"]
