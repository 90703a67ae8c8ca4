r"""Discriminators: networks that map a data point, a code, or a pair of both to one logit.

A discriminator returns the *logit* :math:`\ell` of the probability :math:`D = \sigma(\ell)`
that its input came from the "real" side (the data for a GAN, the prior for an AAE, the
encoder for ALI); the losses of :mod:`pyrogen.infer.adversarial` work with logits because
:math:`-\log \sigma(\ell) = \mathrm{softplus}(-\ell)` is exact where :math:`\log D` underflows.

* :class:`DataDiscriminator`: images (DCGAN convolutions for 28x28 / 64x64) or flat data (MLP);
* :class:`CodeDiscriminator`: latent codes (MLP), for the AAE;
* :class:`JointDiscriminator`: pairs :math:`(x, z)`, for ALI/BiGAN: the data's features and
  the code's features are concatenated and mixed by an MLP.

Shapes: inputs ``(..., *data_shape)`` and/or ``(..., latent_dim)``, output ``(...)``.

**References**

[1] Radford, A., Metz, L., Chintala, S. (2016). Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks. ICLR.

[2] Dumoulin, V. et al. (2017). Adversarially Learned Inference. ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .conv import ConvTrunk, _flatten_batch
from .mlp import MLP, _check_data_shape, _check_event_shape, _check_int_sequence, _check_positive_int

#: architectures a data discriminator can have
DISCRIMINATOR_ARCHS = ("mlp", "conv")


class _DataFeatures(nn.Module):
    """``(..., *data_shape) -> (..., out_features)``: a DCGAN trunk or an MLP over flat pixels."""

    def __init__(self, arch: str, data_shape: tuple[int, ...], hidden: Sequence[int],
                 channels: Sequence[int] | None, batch_norm: bool) -> None:
        super().__init__()
        if arch not in DISCRIMINATOR_ARCHS:
            raise ValueError(f"arch must be one of {DISCRIMINATOR_ARCHS}, got {arch!r}")
        self.data_shape = _check_data_shape(data_shape)
        if arch == "conv":
            self.net: nn.Module = ConvTrunk(self.data_shape, channels, batch_norm, "leaky_relu")
            self.out_features = self.net.out_features
        else:
            hidden = _check_int_sequence(hidden, "hidden", allow_empty=False)
            self.net = MLP(math.prod(self.data_shape), hidden[:-1], hidden[-1], "leaky_relu",
                           output_activation="leaky_relu")
            self.out_features = hidden[-1]
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_event_shape(x, self.data_shape, "x")
        if self.arch == "conv":
            return self.net(x)
        x, batch_shape = _flatten_batch(x, len(self.data_shape))
        return self.net(x.reshape(x.shape[0], -1)).reshape(*batch_shape, -1)


class DataDiscriminator(nn.Module):
    r"""
    :math:`\ell(x)`, the logit of :math:`D(x)`: a DCGAN convolutional trunk (leaky ReLU 0.2,
    optional batch norm after every convolution but the first) or an MLP, then a linear unit.

    :param tuple data_shape: the shape of one data point.
    :param str arch: ``"conv"`` (``(C, 28, 28)`` or ``(C, 64, 64)``) or ``"mlp"``.
    :param hidden: MLP widths (``arch="mlp"``).
    :param channels: convolution channels (``arch="conv"``); ``None``: DCGAN's defaults.
    :param bool batch_norm: batch normalisation in the convolutional trunk.

    Example::

        >>> d = DataDiscriminator((1, 28, 28), arch="conv", batch_norm=True)
        >>> d(torch.rand(8, 1, 28, 28)).shape
        torch.Size([8])
    """

    def __init__(self, data_shape: Sequence[int], arch: str = "conv", hidden: Sequence[int] = (512, 256),
                 channels: Sequence[int] | None = None, batch_norm: bool = False) -> None:
        super().__init__()
        self.features = _DataFeatures(arch, tuple(data_shape), hidden, channels, batch_norm)
        self.head = nn.Linear(self.features.out_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell(x)`, the logit of :math:`D(x)`, for data ``x`` ``(..., *data_shape)``;
        returns shape ``(...)``."""
        return self.head(self.features(x)).squeeze(-1)


class CodeDiscriminator(nn.Module):
    r"""
    :math:`\ell(z)`, the logit of an AAE's :math:`D(z)`: an MLP with leaky ReLU (0.2).

    :param int latent_dim: the dimension of :math:`z`.
    :param hidden: the hidden widths.
    """

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (512, 512)) -> None:
        super().__init__()
        self.latent_dim = _check_positive_int(latent_dim, "latent_dim")
        self.net = MLP(self.latent_dim, _check_int_sequence(hidden, "hidden"), 1, "leaky_relu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell(z)`, the logit of :math:`D(z)`, for codes ``z`` ``(..., latent_dim)``;
        returns shape ``(...)``."""
        _check_event_shape(z, (self.latent_dim,), "z")
        return self.net(z).squeeze(-1)


class JointDiscriminator(nn.Module):
    r"""
    :math:`\ell(x, z)`, the logit of ALI's :math:`D(x, z)`: features of :math:`x`
    (:class:`DataDiscriminator`'s trunk) and of :math:`z` (an MLP) are concatenated and mixed
    by an MLP [2].

    :param tuple data_shape: the shape of one data point.
    :param int latent_dim: the dimension of :math:`z`.
    :param str arch: ``"conv"`` or ``"mlp"`` for the data branch.
    :param hidden: MLP widths of the data branch (``arch="mlp"``), of the code branch and of
        the joint head.
    :param channels: convolution channels of the data branch.
    :param bool batch_norm: batch normalisation in the convolutional data branch.
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int, arch: str = "conv",
                 hidden: Sequence[int] = (512, 512), channels: Sequence[int] | None = None,
                 batch_norm: bool = False) -> None:
        super().__init__()
        hidden = _check_int_sequence(hidden, "hidden", allow_empty=False)
        self.latent_dim = _check_positive_int(latent_dim, "latent_dim")
        self.x_features = _DataFeatures(arch, tuple(data_shape), hidden, channels, batch_norm)
        self.z_features = MLP(self.latent_dim, hidden[:-1], hidden[-1], "leaky_relu",
                              output_activation="leaky_relu")
        self.head = MLP(self.x_features.out_features + hidden[-1], hidden[-1:], 1, "leaky_relu")

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\ell(x, z)`, the logit of :math:`D(x, z)`, for pairs of data ``x``
        ``(..., *data_shape)`` and codes ``z`` ``(..., latent_dim)`` with the same leading
        dimensions; returns shape ``(...)``."""
        _check_event_shape(z, (self.latent_dim,), "z")
        h = torch.cat([self.x_features(x), self.z_features(z)], dim=-1)
        return self.head(h).squeeze(-1)


__all__ = ["CodeDiscriminator", "DISCRIMINATOR_ARCHS", "DataDiscriminator", "JointDiscriminator"]
