r"""
ALI/BiGAN's player losses (Su 2018, section 4.2): the discriminator's, and four
encoder/generator losses, the paper's, the standard minimax one, the swapped non-saturating
one, the paper's complete loss with the two terms it drops (which keeps a frozen copy of
the encoder before the current update), and the paper's loss with the first-order part of the
dropped terms (a sleep-phase term for the encoder), which trains where the paper's own collapses. The shared machinery is in
:mod:`pyrogen.infer.adversarial`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from torch import nn

from pyrogen.infer.adversarial import (
    AdversarialLoss,
    _hidden_trace,
    _mean,
    _sum_per_point,
    _trace,
    _value,
)

ALI_LOSSES = ("paper", "minimax", "swapped", "complete", "paper-sleep")
#: the paper-sleep loss's default weight: on the digits 3 to 30 cover every class and 10
#: gives the best samples; on MNIST 10 matches the swapped loss's samples (docs/ali.rst)
SLEEP_WEIGHT = 10.0


def sleep_weight_for(loss: str, sleep_weight: float | None) -> float | None:
    """The weight of ``loss``'s sleep term: ``sleep_weight``, or :data:`SLEEP_WEIGHT` for
    ``None``; ``None`` for a loss without one. A weight given with another loss, or a
    negative one, is refused with a ``ValueError``."""
    if loss != "paper-sleep":
        if sleep_weight is not None:
            raise ValueError(f"sleep_weight weighs the paper-sleep loss's term; loss {loss!r} has none")
        return None
    if sleep_weight is None:
        return SLEEP_WEIGHT
    if not float(sleep_weight) >= 0:
        raise ValueError(f"sleep_weight must be >= 0, got {sleep_weight}")
    return float(sleep_weight)


class Trace_ALI(AdversarialLoss):
    r"""
    ALI/BiGAN's player losses ([1] section 4.2). The encoder side pairs a data point with
    its code, :math:`(x, z) \sim p(z \mid x)\, \tilde p(x)` (the guide), the generator side a
    prior draw with its image, :math:`(x, z) \sim q(x \mid z)\, q(z)` (the model,
    unconditioned), and :math:`D(x, z) = p(y = 1 \mid x, z)` is the probability that a pair
    came from the encoder side. Write :math:`\mathbb{E}_p` for the encoder side's expectation
    and :math:`\mathbb{E}_q` for the generator side's.

    ``player="discriminator"``:
    :math:`\mathcal{L}_D = -\mathbb{E}_p \log D(x, z) - \mathbb{E}_q \log(1 - D(x, z))`.

    ``player="encoder-generator"``, by ``loss``:

    * ``"paper"``, the paper's own (its equation (37)):
      :math:`-\mathbb{E}_p \log D - \mathbb{E}_q \log D`;
    * ``"minimax"``, the standard one: :math:`\mathbb{E}_p \log D + \mathbb{E}_q \log(1 - D)`;
    * ``"swapped"``, the non-saturating one with labels swapped:
      :math:`-\mathbb{E}_p \log(1 - D) - \mathbb{E}_q \log D`;
    * ``"complete"``: the paper's loss plus the two terms it drops (its equation (36)),

      .. math::
          \mathbb{E}_{q(z)} \mathrm{KL}(q(x \mid z) \,\|\, q_{old}(x \mid z))
          + \mathbb{E}_{q(z)\, q(x \mid z)} \log \frac{p_{old}(z \mid x)}{p(z \mid x)},

      for a Gaussian encoder and a Gaussian generator, with the old encoder and generator
      (before the current update) and the prior draws :math:`z` cached by :meth:`snapshot`;
    * ``"paper-sleep"``: the paper's loss plus the first-order part of the dropped terms,

      .. math::
          -\mathbb{E}_p \log D - \mathbb{E}_q \log D
          + \lambda\, \mathbb{E}_{q(z)\, q(x \mid z)} \big[-\log p(z \mid \bar x)\big],

      with :math:`\bar x` the generated image held fixed (no gradient to the generator).
      At the old parameters the KL term's gradient is zero, the ratio term's gradient with
      respect to the generator is zero (it is a difference of one function), and its gradient
      with respect to the encoder is :math:`-\mathbb{E}_q \nabla \log p(z \mid x)`: so with
      :math:`\lambda = 1` this is the complete loss's gradient at every step, without its
      second-order trust region, and it needs no old copies. It is the sleep phase of the
      wake-sleep algorithm: the encoder learns to invert the generator on generated pairs,
      which the paper's loss alone does not ask of it (``docs/ali.rst``). A deterministic
      encoder :math:`\delta(z - E(x))` takes :math:`\frac{1}{2} \|E(\bar x) - z\|^2`
      (a unit-variance Gaussian around :math:`E(x)`).

    :param discriminator: a :class:`~pyrogen.models.generator.Discriminator` on ``(x, z)``.
    :param str player: ``"discriminator"`` or ``"encoder-generator"``.
    :param str loss: one of :data:`ALI_LOSSES`.
    :param sleep_weight: :math:`\lambda` of ``"paper-sleep"`` (``None``: :data:`SLEEP_WEIGHT`,
        measured; 1 is the derivation's); refused with another loss.
    :type sleep_weight: float or None
    """

    players = ("discriminator", "encoder-generator")

    def __init__(self, discriminator: nn.Module, player: str, loss: str = "paper",
                 sleep_weight: float | None = None) -> None:
        super().__init__(discriminator, player)
        if loss not in ALI_LOSSES:
            raise ValueError(f"loss must be one of {ALI_LOSSES}, got {loss!r}")
        self.kind = loss
        self.sleep_weight = sleep_weight_for(loss, sleep_weight)
        self._old_encoder: nn.Module | None = None

    @property
    def regularised(self) -> bool:
        """Whether this is the encoder/generator's ``"complete"`` loss, whose dropped terms
        compare with the old encoder and generator, so that its steps start with a
        :meth:`snapshot`."""
        return self.player == "encoder-generator" and self.kind == "complete"

    def snapshot(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> None:
        r"""Cache the old players of the ``"complete"`` loss: a batch of ``args[0]``'s size of
        prior draws :math:`z`, the old generator's :math:`q_{old}(x \mid z)` on them (its
        means and scales), and a frozen copy of the encoder for :math:`p_{old}(z \mid x)`. A
        no-op unless :attr:`regularised`; a ``ValueError`` unless encoder and generator are
        both Gaussian."""
        if not self.regularised:
            return
        if getattr(guide, "noise", None) != "gaussian" or getattr(model, "noise", None) != "gaussian":
            raise ValueError("the complete ALI loss needs a Gaussian encoder and a Gaussian "
                             "generator (noise='gaussian' for both)")
        trace = _hidden_trace(poutine.uncondition(model), *args, **kwargs)
        fn = trace.nodes["x"]["fn"]
        self._snapshot = {"z": _value(trace, "z"), "x_loc": fn.mean, "x_scale": fn.stddev}
        self._sync_old_encoder(guide.encoder)

    def _sync_old_encoder(self, encoder: nn.Module) -> None:
        if self._old_encoder is None:
            self._old_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self._old_encoder.load_state_dict(encoder.state_dict())

    def snapshot_state(self) -> dict[str, Any] | None:
        """The cached snapshot as plain tensors (for checkpoints), with the old encoder's
        weights under ``"encoder"``, or ``None`` when there is no snapshot."""
        state = super().snapshot_state()
        if state is not None and self._old_encoder is not None:
            state["encoder"] = {k: v.clone() for k, v in self._old_encoder.state_dict().items()}
        return state

    def load_snapshot_state(self, state: dict[str, Any] | None, guide: Any = None) -> None:
        """Restore a snapshot saved by :meth:`snapshot_state`. Its ``"encoder"`` weights go
        into the frozen copy of the old encoder, made from ``guide.encoder`` (the live guide)
        where there is none yet; without ``guide`` they are dropped."""
        state = None if state is None else dict(state)
        old = None if state is None else state.pop("encoder", None)
        super().load_snapshot_state(state)
        if old is not None and guide is not None:
            self._sync_old_encoder(guide.encoder)
            self._old_encoder.load_state_dict(old)

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        r"""
        This player's loss (see the class docstring) on the minibatch :math:`x_{1:B}` =
        ``args[0]``, each expectation a mean over :math:`B` pairs, from the logits
        :math:`\ell`: encoder-side pairs :math:`(x_b, z_b)`, :math:`z_b \sim p(z \mid x_b)`,
        and :math:`B` generator-side pairs :math:`(x'_b, z'_b) \sim q(x \mid z)\, q(z)`. The
        discriminator's, with both sides hidden, is

        .. math::
            \frac{1}{B} \sum_{b=1}^B \big[ \mathrm{softplus}(-\ell(x_b, z_b))
                + \mathrm{softplus}(\ell(x'_b, z'_b)) \big];

        the encoder/generator's is its ``loss`` (``"complete"``: on the snapshot's :math:`z'`).

        :param model: the :class:`~pyrogen.models.generator.GeneratorModel`.
        :param guide: the :class:`~pyrogen.models.generator.EncoderGuide`.
        :returns: the loss as a scalar tensor; its terms are kept in ``terms``.
        :raises ValueError: for ``"complete"`` without a :meth:`snapshot` of this batch size.
        """
        x = args[0]
        if self.player == "discriminator":
            z_enc = _value(_hidden_trace(guide, *args, **kwargs), "z")
            gen = _hidden_trace(poutine.uncondition(model), *args, **kwargs)
            enc = _mean(F.softplus(-self.discriminator(x, z_enc)))
            fake = _mean(F.softplus(self.discriminator(_value(gen, "x"), _value(gen, "z"))))
            self._record(d_encoder=enc, d_generator=fake)
            return enc + fake
        generator = poutine.uncondition(model)
        if self.regularised:
            cached = self._need_snapshot(x.shape[0])
            generator = poutine.condition(generator, data={"z": cached["z"]})
        z_enc = _value(_trace(guide, *args, **kwargs), "z")
        gen = _trace(generator, *args, **kwargs)
        x_gen, z_gen = _value(gen, "x"), _value(gen, "z")
        l_enc = self._blocked_discriminator(x, z_enc)
        l_gen = self._blocked_discriminator(x_gen, z_gen)
        if self.kind == "minimax":
            enc, fake = -_mean(F.softplus(-l_enc)), -_mean(F.softplus(l_gen))
        elif self.kind == "swapped":
            enc, fake = _mean(F.softplus(l_enc)), _mean(F.softplus(-l_gen))
        else:
            enc, fake = _mean(F.softplus(-l_enc)), _mean(F.softplus(-l_gen))
        if self.kind == "paper-sleep":
            sleep = self._sleep_term(guide, x_gen, z_gen)
            self._record(eg_encoder=enc, eg_generator=fake, eg_sleep=sleep)
            return enc + fake + self.sleep_weight * sleep
        if not self.regularised:
            self._record(eg_encoder=enc, eg_generator=fake)
            return enc + fake
        kl, ratio = self._dropped_terms(gen, guide, cached)
        self._record(eg_encoder=enc, eg_generator=fake, eg_kl=kl, eg_ratio=ratio)
        return enc + fake + kl + ratio

    @staticmethod
    def _sleep_term(guide: Any, x_gen: torch.Tensor, z_gen: torch.Tensor) -> torch.Tensor:
        r""":math:`-\log p(z \mid \bar x)` on the generated pairs, the image held fixed,
        averaged over the batch (half the squared error for a deterministic encoder)."""
        x_bar, z = x_gen.detach(), z_gen.detach()
        if getattr(guide, "noise", "gaussian") == "delta":
            loc, _ = guide.encoder(x_bar)
            return _mean(0.5 * _sum_per_point((loc - z).pow(2)))
        return _mean(-guide.conditional(x_bar).log_prob(z))

    def _dropped_terms(self, gen: poutine.Trace, guide: Any, cached: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`\\mathrm{KL}(q(x|z) \\| q_{old}(x|z))` and :math:`\\log p_{old}(z|x) - \\log p(z|x)`
        at the generator side's draws, each averaged over the batch."""
        fn = gen.nodes["x"]["fn"]
        loc, scale = fn.mean, fn.stddev
        old_loc, old_scale = cached["x_loc"], cached["x_scale"]
        kl = (old_scale / scale).log() + (scale.pow(2) + (loc - old_loc).pow(2)) / (2 * old_scale.pow(2)) - 0.5
        x_gen, z_gen = _value(gen, "x"), _value(gen, "z")
        log_new = guide.conditional(x_gen).log_prob(z_gen)
        log_old = guide.conditional(x_gen, encoder=self._old_encoder).log_prob(z_gen)
        return _mean(_sum_per_point(kl)), _mean(log_old - log_new)


__all__ = ["ALI_LOSSES", "SLEEP_WEIGHT", "Trace_ALI", "sleep_weight_for"]
