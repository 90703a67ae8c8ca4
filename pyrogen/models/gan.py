r"""
The GAN as a Pyro model (the generator) and a discriminator ``PyroModule``, trained by the
player losses of :class:`~pyrogen.infer.adversarial.Trace_GAN`.

In the unified framework (Su 2018, section 3) the GAN minimises
:math:`\mathrm{KL}(q(x, y) \,\|\, p(x, y))` with the generator
:math:`q(x \mid z) = \delta(x - G(z))` and a binary label :math:`y` that the discriminator
:math:`D(x) = p(y = 1 \mid x)` predicts; the generator's complete loss carries the
regulariser :math:`\lambda \| G(z) - G_{old}(z) \|^2` that standard GANs omit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from pyrogen.infer.adversarial import GAN_GENERATOR_LOSSES, REG_DRAWS, AdversarialLoss, Trace_GAN
from pyrogen.models.cvae import EmptyGuide
from pyrogen.models.generator import Discriminator, GeneratorModel
from pyrogen.models.util import ReconstructMixin, ShapedFacade, check_data
from pyrogen.nn import DataDiscriminator, build_decoder


def _generator_net(arch: str, latent_dim: int, data_shape: tuple[int, ...], hidden: Sequence[int],
                   channels: Sequence[int] | None, batch_norm: bool) -> nn.Module:
    extra = {"channels": channels} if arch == "conv" and channels is not None else {}
    return build_decoder(arch, latent_dim, data_shape, hidden=tuple(reversed(tuple(hidden))),
                         batch_norm=batch_norm, **extra)


class AdversarialFacade(ShapedFacade):
    r"""
    What every adversarial facade offers: ``.model`` (a
    :class:`~pyrogen.models.generator.GeneratorModel`), ``.guide``, ``.discriminator``, the
    players with their parameters (:meth:`players`, discriminator first: the order of the
    steps in an iteration) and their losses (:meth:`losses`), and ``sample``/``decode``.
    """

    fit = "adversarial"
    #: the players that need no data (a minibatch only sets their batch size)
    data_free_players: tuple[str, ...] = ()

    def players(self) -> dict[str, list[nn.Module]]:
        """The players, ``{name: [modules]}``, each with the modules whose parameters its
        steps update (the trainer builds one optimiser per player from them), discriminator
        first: the order of the steps in an iteration. A subclass defines it; its keys are
        those of :meth:`losses`, in the same order."""
        raise NotImplementedError

    def losses(self) -> dict[str, AdversarialLoss]:
        """A new player loss (an :class:`~pyrogen.infer.adversarial.AdversarialLoss`) for each
        player of :meth:`players`, with the same keys, for ``SVI`` or the trainer to step on.
        A subclass defines it. Keep the dict: a regularised loss holds its snapshot."""
        raise NotImplementedError

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`G(z)`, the generator's image of ``z``."""
        return self.model.generate(z)

    @torch.no_grad()
    def training_pictures(self, z: torch.Tensor | None, x: torch.Tensor,
                          labels: torch.Tensor | None, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """As :meth:`ShapedFacade.training_pictures <pyrogen.models.util.ShapedFacade.training_pictures>`,
        with draws of the model's own prior (an AAE's may be a mixture, not the
        :math:`N(0, I)` of the fixed draws ``z``), seeded by the trainer."""
        return super().training_pictures(self.model.prior().sample((len(z),)), x, labels, images)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        r""":math:`G(z)` for ``num_samples`` draws :math:`z \sim q(z)`."""
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
        return self.decode(self.model.prior().sample((int(num_samples),)))


class EncoderFacade(ReconstructMixin, AdversarialFacade):
    r"""An adversarial facade with an encoder (AAE, ALI): ``encode`` and ``reconstruct``
    (:math:`G(\mu(x))`, the generator's image of the encoder's location) too."""

    has_encoder = True


    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The location and scale of the encoder :math:`p(z \mid x)` (the scale is unused by a
        deterministic encoder)."""
        check_data(x, self.data_shape)
        return self.guide.encoder(x)


class GAN(AdversarialFacade):
    r"""
    A GAN: a :class:`~pyrogen.models.generator.GeneratorModel` with a ``Delta`` site for
    :math:`x`, an empty guide, and a discriminator on :math:`x`; MLP or DCGAN networks, with
    or without batch normalisation. Train it with the two players of :meth:`losses`
    (:class:`~pyrogen.infer.adversarial.Trace_GAN`), by ``pyrogen train gan`` or by
    alternating ``SVI.step`` s::

        gan = GAN((1, 28, 28), generator_loss="regularised")
        losses = gan.losses()
        d_svi = SVI(gan.model, gan.guide, Adam({"lr": 2e-4, "betas": (0.5, 0.999)}), losses["discriminator"])
        g_svi = SVI(gan.model, gan.guide, Adam({"lr": 2e-4, "betas": (0.5, 0.999)}), losses["generator"])
        for x in batches:
            d_svi.step(x)
            losses["generator"].snapshot(gan.model, gan.guide, x)   # G_old and its z
            g_svi.step(x)
            g_svi.step(x)

    :param tuple data_shape: the shape of one data point, e.g. ``(1, 28, 28)``.
    :param int latent_dim: the dimension of :math:`z`.
    :param str arch: ``"conv"`` (DCGAN, 28x28 or 64x64 images) or ``"mlp"``.
    :param tuple hidden: MLP widths (the generator mirrors them).
    :param channels: DCGAN channels (``None``: the defaults of :mod:`pyrogen.nn.conv`).
    :param bool batch_norm: batch normalisation in generator and discriminator.
    :param str generator_loss: one of :data:`~pyrogen.infer.adversarial.GAN_GENERATOR_LOSSES`.
    :param float reg_weight: :math:`\lambda` of the regulariser (Su: 5).
    :param str reg_draws: ``"cached"`` (Su's: the generator's steps of an iteration reuse the
        snapshot's :math:`z` and :math:`G_{old}(z)`) or ``"fresh"`` (new :math:`z` each step).
    :param float instance_noise: the scale of the Gaussian noise the discriminator sees on
        every image while training (:class:`~pyrogen.models.Discriminator`; 0: none).
    """

    #: the generator needs no data: a minibatch only sets the number of draws
    data_free_players = ("generator",)

    def __init__(self, data_shape: Sequence[int], latent_dim: int = 100, arch: str = "conv",
                 hidden: Sequence[int] = (512, 512), channels: Sequence[int] | None = None,
                 batch_norm: bool = True, generator_loss: str = "nonsaturating",
                 reg_weight: float = 5.0, reg_draws: str = "cached", instance_noise: float = 0.0) -> None:
        super().__init__()
        if generator_loss not in GAN_GENERATOR_LOSSES:
            raise ValueError(f"generator_loss must be one of {GAN_GENERATOR_LOSSES}, got {generator_loss!r}")
        if reg_draws not in REG_DRAWS:
            raise ValueError(f"reg_draws must be one of {REG_DRAWS}, got {reg_draws!r}")
        data_shape = tuple(int(d) for d in data_shape)
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape), latent_dim=int(latent_dim), arch=arch, hidden=list(hidden),
            channels=None if channels is None else list(channels), batch_norm=bool(batch_norm),
            generator_loss=generator_loss, reg_weight=float(reg_weight), reg_draws=reg_draws,
            instance_noise=float(instance_noise),
        )
        net = _generator_net(arch, latent_dim, data_shape, hidden, channels, batch_norm)
        self.model = GeneratorModel(net, latent_dim, data_shape, noise="delta")
        self.guide = EmptyGuide()
        self.discriminator = Discriminator(
            DataDiscriminator(data_shape, arch, hidden, channels, batch_norm), instance_noise)

    def players(self) -> dict[str, list[nn.Module]]:
        """The two players with the modules whose parameters each one's steps update, in the
        order of an iteration's steps: ``"discriminator"`` (:math:`D`) and ``"generator"``
        (the model's :math:`G`)."""
        return {"discriminator": [self.discriminator], "generator": [self.model]}

    def losses(self) -> dict[str, AdversarialLoss]:
        r"""A new :class:`~pyrogen.infer.adversarial.Trace_GAN` for each player of
        :meth:`players` (same keys), on this GAN's discriminator, with its
        ``generator_loss``, ``reg_weight`` :math:`\lambda` and ``reg_draws``. Keep the dict:
        the regularised generator loss holds its snapshot (:math:`G_{old}` and its draws)."""
        options = {k: self.config[k] for k in ("generator_loss", "reg_weight", "reg_draws")}
        return {"discriminator": Trace_GAN(self.discriminator, "discriminator", **options),
                "generator": Trace_GAN(self.discriminator, "generator", **options)}


__all__ = ["AdversarialFacade", "EncoderFacade", "GAN"]
