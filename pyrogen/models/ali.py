r"""
ALI/BiGAN as a Pyro model/guide pair and a discriminator on pairs :math:`(x, z)`, trained by
the player losses of :class:`~pyrogen.infer.ali.Trace_ALI`.

In the unified framework (Su 2018, section 4.2) the encoder side
:math:`p(z \mid x) \tilde p(x)` (Pyro's guide on data) and the generator side
:math:`q(x \mid z) q(z)` (Pyro's model, unconditioned) are told apart by
:math:`D(x, z)`; the paper derives an encoder/generator loss that differs from the standard
minimax one and from the swapped non-saturating one, and two terms that it drops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from pyrogen.infer.adversarial import AdversarialLoss
from pyrogen.infer.ali import ALI_LOSSES, SLEEP_WEIGHT, Trace_ALI, sleep_weight_for
from pyrogen.models.gan import EncoderFacade, _generator_net
from pyrogen.models.generator import NOISES, Discriminator, EncoderGuide, GeneratorModel
from pyrogen.nn import JointDiscriminator, build_encoder


class ALI(EncoderFacade):
    r"""
    Adversarially learned inference (BiGAN):

    .. math::
        z \sim \mathcal{N}(0, I), \ x \sim q(x \mid z) \ \text{(model)}; \qquad
        z \sim p(z \mid x) \ \text{(guide)}; \qquad D(x, z) = p(y = 1 \mid x, z),

    where :math:`q(x \mid z)` is :math:`\delta(x - G(z))` or
    :math:`\mathcal{N}(G(z), \sigma^2 I)` (:math:`\sigma` learned) and :math:`p(z \mid x)`
    is :math:`\delta(z - \mu(x))` or :math:`\mathcal{N}(\mu(x), \mathrm{diag}\, \sigma^2(x))`.

    :param tuple data_shape: the shape of one data point.
    :param int latent_dim: the dimension of :math:`z`.
    :param str arch: ``"conv"`` or ``"mlp"`` for all three networks.
    :param tuple hidden: MLP widths.
    :param channels: DCGAN channels for ``arch="conv"``.
    :param str encoder: ``"gaussian"`` or ``"delta"``.
    :param str generator: ``"delta"`` or ``"gaussian"``.
    :param float generator_scale: the initial :math:`\sigma` of a Gaussian generator.
    :param str loss: the encoder/generator loss, one of :data:`~pyrogen.infer.ali.ALI_LOSSES`
        (``"complete"`` needs a Gaussian encoder and generator; ``"paper-sleep"`` is the
        paper's loss with the dropped terms' first-order part, which trains).
    :param sleep_weight: the weight :math:`\lambda` of ``"paper-sleep"``'s term
        :math:`-\log p(z \mid G(z))`; ``None`` gives :data:`SLEEP_WEIGHT` (measured on the
        digits and MNIST; 1 is the derivation's). Refused with another loss.
    :type sleep_weight: float or None
    :param bool batch_norm: batch normalisation in the generator and the discriminator's data branch.
    :param float instance_noise: the scale of the Gaussian noise the discriminator sees on
        every image while training (:class:`~pyrogen.models.Discriminator`; 0: none).
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int = 32, arch: str = "conv",
                 hidden: Sequence[int] = (512, 512), channels: Sequence[int] | None = None,
                 encoder: str = "gaussian", generator: str = "delta", generator_scale: float = 0.1,
                 loss: str = "paper", batch_norm: bool = True, sleep_weight: float | None = None,
                 instance_noise: float = 0.0) -> None:
        super().__init__()
        for name, value, choices in (("encoder", encoder, NOISES), ("generator", generator, NOISES),
                                     ("loss", loss, ALI_LOSSES)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        if loss == "complete" and (encoder, generator) != ("gaussian", "gaussian"):
            raise ValueError("loss 'complete' needs a Gaussian encoder and a Gaussian generator "
                             f"(its dropped terms are densities); got encoder={encoder!r}, "
                             f"generator={generator!r}")
        sleep_weight_for(loss, sleep_weight)  # refuses a weight that cannot apply, before any work
        data_shape = tuple(int(d) for d in data_shape)
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape), latent_dim=int(latent_dim), arch=arch, hidden=list(hidden),
            channels=None if channels is None else list(channels), encoder=encoder,
            generator=generator, generator_scale=float(generator_scale), loss=loss,
            batch_norm=bool(batch_norm),
            sleep_weight=None if sleep_weight is None else float(sleep_weight),
            instance_noise=float(instance_noise),
        )
        extra = {"channels": channels} if arch == "conv" and channels is not None else {}
        enc = build_encoder(arch, data_shape, latent_dim, hidden=tuple(hidden), **extra)
        net = _generator_net(arch, latent_dim, data_shape, hidden, channels, batch_norm)
        self.model = GeneratorModel(net, latent_dim, data_shape, noise=generator, scale=generator_scale)
        self.guide = EncoderGuide(enc, data_shape, noise=encoder)
        self.discriminator = Discriminator(
            JointDiscriminator(data_shape, latent_dim, arch, hidden, channels, batch_norm), instance_noise)

    def players(self) -> dict[str, list[nn.Module]]:
        """The two players with the modules whose parameters each one's steps update, in the
        order of an iteration's steps: ``"discriminator"`` (:math:`D(x, z)`) and
        ``"encoder-generator"`` (the model's generator and the guide's encoder together)."""
        return {"discriminator": [self.discriminator], "encoder-generator": [self.model, self.guide]}

    def losses(self) -> dict[str, AdversarialLoss]:
        r"""A new :class:`~pyrogen.infer.ali.Trace_ALI` for each player of :meth:`players`
        (same keys), on this ALI's discriminator, with its ``loss`` and (for ``"paper-sleep"``)
        ``sleep_weight`` :math:`\lambda`. Keep the dict: the ``"complete"`` loss holds its
        snapshot."""
        kind, weight = self.config["loss"], self.config.get("sleep_weight")
        return {"discriminator": Trace_ALI(self.discriminator, "discriminator", loss=kind),
                "encoder-generator": Trace_ALI(self.discriminator, "encoder-generator", loss=kind,
                                               sleep_weight=weight)}


__all__ = ["ALI", "SLEEP_WEIGHT"]
