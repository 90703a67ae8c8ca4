r"""
The adversarial autoencoder (AAE) as a Pyro model/guide pair and a discriminator on codes,
trained by the player losses of :class:`~pyrogen.infer.adversarial.Trace_AAE`.

In the unified framework (Su 2018, section 4.1) the AAE is the GAN with :math:`x` and
:math:`z` swapped: the encoder :math:`p(z \mid x)` (Pyro's guide) is trained so that the
aggregate posterior :math:`\int p(z \mid x) \tilde p(x) dx` matches the prior :math:`q(z)`,
judged by :math:`D(z)`, and a decoder :math:`G` (the model's ``x`` site) is trained with it
on the reconstruction error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from pyrogen.infer.adversarial import AdversarialLoss, Trace_AAE
from pyrogen.models.gan import EncoderFacade, _generator_net
from pyrogen.models.generator import NOISES, PRIORS, Discriminator, EncoderGuide, GeneratorModel
from pyrogen.nn import CodeDiscriminator, build_encoder


class AAE(EncoderFacade):
    r"""
    An adversarial autoencoder:

    .. math::
        z \sim q(z), \quad x = G(z) \ \text{(model)}; \qquad
        z \sim \delta(z - E(x)) \ \text{or}\ \mathcal{N}(\mu(x), \sigma^2(x)) \ \text{(guide)};
        \qquad D(z) = q(y = 0 \mid z).

    :param tuple data_shape: the shape of one data point.
    :param int latent_dim: the dimension of :math:`z`.
    :param str arch: ``"mlp"`` or ``"conv"`` for encoder and decoder.
    :param tuple hidden: MLP widths of the encoder (the decoder mirrors them) and of the
        discriminator.
    :param channels: DCGAN channels for ``arch="conv"``.
    :param str encoder: ``"delta"`` (deterministic) or ``"gaussian"``.
    :param str prior: ``"gaussian"`` or ``"mixture"`` (see
        :class:`~pyrogen.models.generator.GeneratorModel`).
    :param float recon_weight: :math:`\lambda`, the weight of :math:`\|x - G(E(x))\|^2`.
    :param float reg_weight: the weight of the optional regulariser on the encoder.
    :param bool batch_norm: batch normalisation in the decoder.

    Example::

        aae = AAE((1, 8, 8), latent_dim=2, prior="mixture")
        losses = aae.losses()   # {"discriminator": ..., "autoencoder": ...}
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int = 8, arch: str = "mlp",
                 hidden: Sequence[int] = (512, 512), channels: Sequence[int] | None = None,
                 encoder: str = "delta", prior: str = "gaussian", recon_weight: float = 1.0,
                 reg_weight: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        for name, value, choices in (("encoder", encoder, NOISES), ("prior", prior, PRIORS)):
            if value not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        data_shape = tuple(int(d) for d in data_shape)
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape), latent_dim=int(latent_dim), arch=arch, hidden=list(hidden),
            channels=None if channels is None else list(channels), encoder=encoder, prior=prior,
            recon_weight=float(recon_weight), reg_weight=float(reg_weight), batch_norm=bool(batch_norm),
        )
        extra = {"channels": channels} if arch == "conv" and channels is not None else {}
        enc = build_encoder(arch, data_shape, latent_dim, hidden=tuple(hidden), **extra)
        net = _generator_net(arch, latent_dim, data_shape, hidden, channels, batch_norm)
        self.model = GeneratorModel(net, latent_dim, data_shape, noise="delta", prior=prior)
        self.guide = EncoderGuide(enc, data_shape, noise=encoder)
        self.discriminator = Discriminator(CodeDiscriminator(latent_dim, hidden))

    def players(self) -> dict[str, list[nn.Module]]:
        """The two players with the modules whose parameters each one's steps update, in the
        order of an iteration's steps: ``"discriminator"`` (:math:`D`) and ``"autoencoder"``
        (the model's decoder :math:`G` and the guide's encoder together)."""
        return {"discriminator": [self.discriminator], "autoencoder": [self.model, self.guide]}

    def losses(self) -> dict[str, AdversarialLoss]:
        r"""A new :class:`~pyrogen.infer.adversarial.Trace_AAE` for each player of
        :meth:`players` (same keys), on this AAE's discriminator, with its ``recon_weight``
        :math:`\lambda` and ``reg_weight`` :math:`\gamma`. Keep the dict: a regularised loss
        holds its snapshot."""
        options = dict(recon_weight=self.config["recon_weight"], reg_weight=self.config["reg_weight"])
        return {"discriminator": Trace_AAE(self.discriminator, "discriminator", **options),
                "autoencoder": Trace_AAE(self.discriminator, "autoencoder", **options)}


__all__ = ["AAE"]
