r"""
The adversarial family's objectives as Pyro losses, one per player.

Each loss is a class in Pyro's ELBO family, so ``pyro.infer.SVI`` takes it, and training is
alternating ``SVI.step`` s with separate optimisers::

    gan = GAN((1, 28, 28))
    d_loss, g_loss = Trace_GAN(gan.discriminator, "discriminator"), Trace_GAN(gan.discriminator, "generator")
    d_svi = SVI(gan.model, gan.guide, Adam({"lr": 2e-4, "betas": (0.5, 0.999)}), d_loss)
    g_svi = SVI(gan.model, gan.guide, Adam({"lr": 2e-4, "betas": (0.5, 0.999)}), g_loss)
    for x in batches:
        d_svi.step(x)
        g_svi.step(x)

A step never moves the other player's parameters: the discriminator's loss draws the
generator's samples under ``poutine.block`` and ``torch.no_grad``, and the generator's loss
calls the discriminator under ``poutine.block``, so ``SVI`` never hands the hidden
parameters to its optimiser; :meth:`AdversarialLoss.loss_and_grads` also differentiates only
with respect to the parameters its own player registered, so no gradient is left on the
other player's ``.grad`` either.

Discriminators return logits :math:`\ell` of :math:`D = \sigma(\ell)`, and every
:math:`-\log D = \mathrm{softplus}(-\ell)`, :math:`-\log(1 - D) = \mathrm{softplus}(\ell)`
is computed from them exactly. Each loss is a mean over the minibatch (nats per data point;
the ``num_data`` plate scale plays no part), and its terms are kept in ``loss.terms`` for
logging.

The paper's regulariser needs the player *before the current update*: call
``loss.snapshot(model, guide, *args)`` at the start of each iteration's steps of that player
(the trainer does); it caches the draws :math:`z` and the old player's output on them, and
the following steps are scored against that cache (Su's own code runs the generator step
twice against one cached :math:`G_{old}(z)`).

**References**

[1] J. Su, "Variational Inference: A Unified Framework of Generative Models and Some
Revelations", arXiv:1807.05936, 2018 (sections 3 and 4).

[2] I. Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro.poutine as poutine
import torch
import torch.nn.functional as F
from pyro.infer import ELBO
from pyro.infer.util import torch_item
from torch import nn

GAN_GENERATOR_LOSSES = ("minimax", "nonsaturating", "regularised")
#: how the GAN regulariser draws z: Su's cached batch, or fresh draws each step
REG_DRAWS = ("cached", "fresh")


def _mean(t: torch.Tensor) -> torch.Tensor:
    return t.mean()


def _sum_per_point(t: torch.Tensor) -> torch.Tensor:
    """Sum over everything but the first (batch) dimension."""
    return t.reshape(t.shape[0], -1).sum(-1)


def _trace(fn: Callable, *args: Any, **kwargs: Any) -> poutine.Trace:
    return poutine.trace(fn).get_trace(*args, **kwargs)


def _hidden_trace(fn: Callable, *args: Any, **kwargs: Any) -> poutine.Trace:
    """A trace of ``fn`` whose parameters no outer handler sees and that builds no graph:
    the other player's side of a step."""
    with poutine.block(), torch.no_grad():
        return _trace(fn, *args, **kwargs)


def _value(trace: poutine.Trace, name: str) -> torch.Tensor:
    if name not in trace.nodes:
        raise ValueError(f"the adversarial losses need a sample site {name!r}; the trace has "
                         f"{[k for k, v in trace.nodes.items() if v['type'] == 'sample']}")
    return trace.nodes[name]["value"]


def _mean_of(trace: poutine.Trace, name: str) -> torch.Tensor:
    """The mean of a site's distribution (``G(z)`` for an ``x`` site, ``E(x)`` for ``z``)."""
    return trace.nodes[name]["fn"].mean


class AdversarialLoss(ELBO):
    r"""
    The base of pyrogen's player losses: a subclass defines :meth:`differentiable_loss`
    (``model, guide, *args, **kwargs -> tensor``) for its ``player``.

    :param discriminator: the discriminator ``PyroModule`` (returns logits).
    :param str player: which player's loss this is (see the subclass).
    """

    players: tuple[str, ...] = ()

    def __init__(self, discriminator: nn.Module, player: str) -> None:
        super().__init__()
        if player not in self.players:
            raise ValueError(f"player must be one of {self.players}, got {player!r}")
        self.discriminator = discriminator
        self.player = player
        self.terms: dict[str, float] = {}
        self._snapshot: dict[str, Any] | None = None

    def _get_trace(self, model: Callable, guide: Callable, args: Any, kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} is not a particle-based ELBO")

    def _blocked_discriminator(self, *inputs: torch.Tensor) -> torch.Tensor:
        with poutine.block():
            return self.discriminator(*inputs)

    def _record(self, **terms: torch.Tensor) -> None:
        self.terms = {k: torch_item(v.detach()) for k, v in terms.items()}

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """This player's loss on the minibatch ``args[0]``, as a scalar tensor: a mean over the
        minibatch, differentiable in this player's parameters (the other player's are hidden
        from Pyro), which :meth:`loss` evaluates and :meth:`loss_and_grads` differentiates. A
        subclass defines it and records its terms in ``terms``.

        :param model: the Pyro model (the generator side); ``args``, ``kwargs`` are its arguments.
        :param guide: the Pyro guide (the encoder, or an empty guide).
        :returns: the loss, in nats per data point.
        """
        raise NotImplementedError

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The loss as a float, without gradients."""
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        """The loss, with its gradient added to the ``.grad`` of this player's parameters only
        (those registered with Pyro while it was computed)."""
        with poutine.trace(param_only=True) as params:
            loss = self.differentiable_loss(model, guide, *args, **kwargs)
        own = [site["value"].unconstrained() for site in params.trace.nodes.values()]
        own = [p for p in own if p.requires_grad]
        grads = torch.autograd.grad(loss, own, allow_unused=True)
        for p, g in zip(own, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g
        return torch_item(loss)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> None:
        """Cache what the regulariser compares against: the player before the current update,
        on draws that the following steps reuse. A no-op for losses without a regulariser."""

    @property
    def regularised(self) -> bool:
        """Whether this player's loss has the paper's regulariser, so that its steps start
        with a :meth:`snapshot`."""
        return False

    @property
    def reuses_batch(self) -> bool:
        """Whether the steps after a snapshot must reuse its minibatch (its draws are cached)."""
        return self.regularised

    def clear_snapshot(self) -> None:
        """Drop the cached snapshot: :meth:`snapshot_state` returns ``None`` again, and a step of
        a regularised loss raises a ``ValueError`` until the next :meth:`snapshot`."""
        self._snapshot = None

    def snapshot_state(self) -> dict[str, Any] | None:
        """The cached snapshot as plain tensors (for checkpoints), or ``None``."""
        if self._snapshot is None:
            return None
        return {k: v for k, v in self._snapshot.items() if isinstance(v, torch.Tensor)}

    def load_snapshot_state(self, state: dict[str, Any] | None, guide: Any = None) -> None:
        """Restore a snapshot saved by :meth:`snapshot_state` (``guide``: the live guide, for
        losses that keep a copy of its encoder)."""
        self._snapshot = None if state is None else dict(state)

    def _need_snapshot(self, batch_size: int) -> dict[str, Any]:
        if self._snapshot is None:
            raise ValueError(
                f"{type(self).__name__}({self.player!r}) with a regulariser needs the player "
                "before the current update: call loss.snapshot(model, guide, *args) at the start "
                "of each iteration's steps of this player"
            )
        cached = self._snapshot["z"].shape[0] if "z" in self._snapshot else batch_size
        if cached != batch_size:
            raise ValueError(f"the snapshot holds {cached} draws, but this step's batch has "
                             f"{batch_size} points: snapshot with the same batch size")
        return self._snapshot


class Trace_GAN(AdversarialLoss):
    r"""
    The GAN's two player losses ([1] section 3; :doc:`/gan`), with the generator as a
    Pyro model whose ``x`` site is :math:`\delta(x - G(z))`, drawn under
    ``poutine.uncondition``, and :math:`D(x) = p(y = 1 \mid x)`, the probability that
    :math:`x` is real.

    ``player="discriminator"``:

    .. math::
        \mathcal{L}_D = -\mathbb{E}_{\tilde p(x)} \log D(x) - \mathbb{E}_{q(z)} \log(1 - D(G(z)))

    (at the optimal :math:`D = \tilde p / (\tilde p + q)` this is
    :math:`2 \log 2 - 2\,\mathrm{JS}(\tilde p \,\|\, q)`).

    ``player="generator"``, by ``generator_loss``:

    * ``"minimax"``: :math:`\mathbb{E}_{q(z)} \log(1 - D(G(z)))`;
    * ``"nonsaturating"``: :math:`-\mathbb{E}_{q(z)} \log D(G(z))`;
    * ``"regularised"``, the paper's complete loss (its equation (25)):

      .. math::
          \mathbb{E}_{z \sim q(z)} \big[ -\log D(G(z))
              + \lambda \, \overline{(G(z) - G_{old}(z))^2} \big],

      where :math:`G_{old}` is the generator before the current update (its weights are
      kept by :meth:`snapshot`) on the same :math:`z`, and the bar is the mean over pixels
      (so :math:`\lambda` does not depend on the image size). The term stands for
      :math:`\mathrm{KL}(q(x) \,\|\, q_{old}(x))`, which standard GANs omit. With
      ``reg_draws="cached"`` (Su's code) every step until the next snapshot reuses the
      snapshot's draws :math:`z` and :math:`G_{old}(z)`; with ``"fresh"`` each step draws new
      :math:`z` and evaluates :math:`G_{old}` on them (a fresh Monte Carlo estimate of the
      expectation over :math:`q(z)`).

    :param discriminator: a :class:`~pyrogen.models.generator.Discriminator` on ``x``.
    :param str player: ``"discriminator"`` or ``"generator"``.
    :param str generator_loss: one of :data:`GAN_GENERATOR_LOSSES`.
    :param float reg_weight: :math:`\lambda` (Su: 5).
    :param str reg_draws: ``"cached"`` or ``"fresh"`` (see above).
    """

    players = ("discriminator", "generator")

    def __init__(self, discriminator: nn.Module, player: str, generator_loss: str = "nonsaturating",
                 reg_weight: float = 5.0, reg_draws: str = "cached") -> None:
        super().__init__(discriminator, player)
        if generator_loss not in GAN_GENERATOR_LOSSES:
            raise ValueError(f"generator_loss must be one of {GAN_GENERATOR_LOSSES}, got {generator_loss!r}")
        if not reg_weight >= 0:
            raise ValueError(f"reg_weight must be >= 0, got {reg_weight!r}")
        if reg_draws not in REG_DRAWS:
            raise ValueError(f"reg_draws must be one of {REG_DRAWS}, got {reg_draws!r}")
        self.generator_loss = generator_loss
        self.reg_weight = float(reg_weight)
        self.reg_draws = reg_draws

    @property
    def reuses_batch(self) -> bool:
        """Whether the steps after a snapshot must reuse its minibatch."""
        return self.regularised and self.reg_draws == "cached"

    @property
    def regularised(self) -> bool:
        r"""Whether this is the generator's ``"regularised"`` loss, the one with the
        :math:`\lambda \, \overline{(G(z) - G_{old}(z))^2}` term, so that its steps start
        with a :meth:`snapshot`."""
        return self.player == "generator" and self.generator_loss == "regularised"

    def snapshot(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> None:
        r"""Cache :math:`G_{old}`, the generator before the current update: a copy of its
        weights and, with ``reg_draws="cached"``, a batch of ``args[0]``'s size of draws
        :math:`z \sim q(z)` with :math:`G_{old}(z)`, which the following steps reuse. A
        no-op unless :attr:`regularised`."""
        if not self.regularised:
            return
        state = {f"generator.{k}": v.detach().clone() for k, v in model.generator.state_dict().items()}
        if self.reg_draws == "fresh":
            self._snapshot = state
            return
        trace = _hidden_trace(poutine.uncondition(model), *args, **kwargs)
        self._snapshot = {"z": _value(trace, "z"), "x": _value(trace, "x"), **state}

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        r"""
        This player's loss (see the class docstring) on the minibatch :math:`x_{1:B}` =
        ``args[0]``, each expectation a mean over :math:`B` points or draws, from the logits
        :math:`\ell`: the discriminator's, with :math:`B` draws :math:`G(z_b)` of the hidden
        generator, is

        .. math::
            \frac{1}{B} \sum_{b=1}^B \big[ \mathrm{softplus}(-\ell(x_b))
                + \mathrm{softplus}(\ell(G(z_b))) \big];

        the generator's is its ``generator_loss`` on :math:`B` draws :math:`z_b` (for
        ``"regularised"``, the snapshot's or fresh ones, by ``reg_draws``).

        :param model: the :class:`~pyrogen.models.generator.GeneratorModel`.
        :param guide: unused (the GAN's guide is empty).
        :returns: the loss as a scalar tensor; its terms are kept in ``terms``.
        :raises ValueError: for ``"regularised"`` without a :meth:`snapshot` of this batch size.
        """
        x_real = args[0]
        if self.player == "discriminator":
            x_fake = _value(_hidden_trace(poutine.uncondition(model), *args, **kwargs), "x")
            real = _mean(F.softplus(-self.discriminator(x_real)))
            fake = _mean(F.softplus(self.discriminator(x_fake)))
            self._record(d_real=real, d_fake=fake)
            return real + fake
        generator = poutine.uncondition(model)
        if self.regularised:
            cached = self._need_snapshot(x_real.shape[0])
            if self.reg_draws == "cached":
                generator = poutine.condition(generator, data={"z": cached["z"]})
        trace = _trace(generator, *args, **kwargs)
        x_fake = _value(trace, "x")
        logits = self._blocked_discriminator(x_fake)
        if self.generator_loss == "minimax":
            adv = -_mean(F.softplus(logits))
        else:
            adv = _mean(F.softplus(-logits))
        if not self.regularised:
            self._record(g_adv=adv)
            return adv
        if self.reg_draws == "cached":
            x_old = cached["x"]
        else:
            old = {k[len("generator."):]: v for k, v in cached.items() if k.startswith("generator.")}
            with torch.no_grad():
                x_old = model.generate(_value(trace, "z"), state=old)
        reg = _mean((x_fake - x_old).pow(2).reshape(x_fake.shape[0], -1).mean(-1))
        self._record(g_adv=adv, g_reg=reg)
        return adv + self.reg_weight * reg


class Trace_AAE(AdversarialLoss):
    r"""
    The adversarial autoencoder's player losses ([1] section 4.1: the GAN with :math:`x` and
    :math:`z` swapped). The guide is the encoder :math:`p(z \mid x)`, the model's prior is
    the target :math:`q(z)`, and :math:`D(z) = q(y = 0 \mid z)` is the probability that
    :math:`z` was drawn from the prior.

    ``player="discriminator"``:

    .. math::
        \mathcal{L}_D = -\mathbb{E}_{\tilde p(x)} \log(1 - D(E(x))) - \mathbb{E}_{q(z)} \log D(z)

    ``player="autoencoder"`` (encoder and decoder together):

    .. math::
        \mathcal{L}_{E,G} = \mathbb{E}_{\tilde p(x)} \big[ -\log D(E(x))
            + \lambda \, \| x - G(E(x)) \|^2 + \gamma \, \| \mu(x) - \mu_{old}(x) \|^2 \big],

    where :math:`E(x)` is the guide's draw, :math:`G` the mean of the model's ``x`` site
    replayed on it, and the last term, off by default (:math:`\gamma = 0`), is the analogue
    of the GAN's regulariser for :math:`\mathrm{KL}(p(z) \,\|\, p_{old}(z))`: the encoder's
    mean before the current update on the same batch (cached by :meth:`snapshot`).

    :param discriminator: a :class:`~pyrogen.models.generator.Discriminator` on ``z``.
    :param str player: ``"discriminator"`` or ``"autoencoder"``.
    :param float recon_weight: :math:`\lambda`.
    :param float reg_weight: :math:`\gamma`.
    """

    players = ("discriminator", "autoencoder")

    def __init__(self, discriminator: nn.Module, player: str, recon_weight: float = 1.0,
                 reg_weight: float = 0.0) -> None:
        super().__init__(discriminator, player)
        if not recon_weight >= 0 or not reg_weight >= 0:
            raise ValueError(f"recon_weight and reg_weight must be >= 0, got {recon_weight!r}, {reg_weight!r}")
        self.recon_weight = float(recon_weight)
        self.reg_weight = float(reg_weight)

    @property
    def regularised(self) -> bool:
        r"""Whether this is the autoencoder's loss with :math:`\gamma > 0`, the
        :math:`\gamma \, \| \mu(x) - \mu_{old}(x) \|^2` term, so that its steps start
        with a :meth:`snapshot`."""
        return self.player == "autoencoder" and self.reg_weight > 0

    def snapshot(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> None:
        r"""Cache the minibatch ``args[0]`` and the encoder's means :math:`\mu_{old}(x)` on it
        before the current update; the following steps must run on the same batch. A no-op
        unless :attr:`regularised`."""
        if self.regularised:
            trace = _hidden_trace(guide, *args, **kwargs)
            self._snapshot = {"x": args[0].detach(), "code": _mean_of(trace, "z")}

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        r"""
        This player's loss (see the class docstring) on the minibatch :math:`x_{1:B}` =
        ``args[0]``, each expectation a mean over the :math:`B` points, from the logits
        :math:`\ell`: the discriminator's, with codes :math:`E(x_b)` of the hidden guide and
        :math:`B` prior draws :math:`z_b \sim q(z)` of the hidden model, is

        .. math::
            \frac{1}{B} \sum_{b=1}^B \big[ \mathrm{softplus}(\ell(E(x_b)))
                + \mathrm{softplus}(-\ell(z_b)) \big];

        the autoencoder's is :math:`\mathcal{L}_{E,G}`, with :math:`G(E(x_b))` the mean of the
        model's ``x`` site replayed on the guide's draw.

        :param model: the :class:`~pyrogen.models.generator.GeneratorModel` (prior and decoder).
        :param guide: the :class:`~pyrogen.models.generator.EncoderGuide`.
        :returns: the loss as a scalar tensor; its terms are kept in ``terms``.
        :raises ValueError: with :math:`\gamma > 0`, without a :meth:`snapshot` of this batch.
        """
        x = args[0]
        if self.player == "discriminator":
            z_code = _value(_hidden_trace(guide, *args, **kwargs), "z")
            z_prior = _value(_hidden_trace(poutine.uncondition(model), *args, **kwargs), "z")
            codes = _mean(F.softplus(self.discriminator(z_code)))
            prior = _mean(F.softplus(-self.discriminator(z_prior)))
            self._record(d_codes=codes, d_prior=prior)
            return codes + prior
        guide_trace = _trace(guide, *args, **kwargs)
        model_trace = _trace(poutine.replay(poutine.uncondition(model), trace=guide_trace), *args, **kwargs)
        adv = _mean(F.softplus(-self._blocked_discriminator(_value(guide_trace, "z"))))
        recon = _mean(_sum_per_point((x - _mean_of(model_trace, "x")).pow(2)))
        total = adv + self.recon_weight * recon
        if not self.regularised:
            self._record(ae_adv=adv, ae_recon=recon)
            return total
        cached = self._need_snapshot(x.shape[0])
        if not torch.equal(cached["x"], x):
            raise ValueError("the AAE regulariser compares codes of the same batch: call "
                             "snapshot() with the batch of this step")
        reg = _mean(_sum_per_point((_mean_of(guide_trace, "z") - cached["code"]).pow(2)))
        self._record(ae_adv=adv, ae_recon=recon, ae_reg=reg)
        return total + self.reg_weight * reg


__all__ = ["REG_DRAWS", "AdversarialLoss", "GAN_GENERATOR_LOSSES", "Trace_AAE", "Trace_GAN"]
