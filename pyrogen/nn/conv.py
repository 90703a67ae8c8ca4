"""DCGAN-style convolutional networks: a reusable trunk, a Gaussian encoder and a decoder.

Every convolution has a 4x4 kernel, stride 2 and padding 1, so each one halves (or, transposed,
doubles) the spatial size; there is no pooling (Radford et al. 2015). Two spatial sizes are
supported:

* 28x28 (MNIST-like): ``28 -> 14 -> 7`` with default channels ``(64, 128)``;
* 64x64 (CelebA-like): ``64 -> 32 -> 16 -> 8 -> 4`` with default channels ``(64, 128, 256, 512)``.

**References**

[1] Radford, A., Metz, L., Chintala, S. (2016). Unsupervised Representation Learning with Deep
    Convolutional Generative Adversarial Networks. ICLR.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .mlp import (
    _check_activation,
    _check_data_shape,
    _check_event_shape,
    _check_int_sequence,
    _check_min_scale,
    _check_positive_int,
    _loc_scale,
    _make_activation,
)

#: spatial size (H, W) -> default channels of the stride-2 stages (one per halving).
SUPPORTED_SIZES: dict[tuple[int, int], tuple[int, ...]] = {
    (28, 28): (64, 128),
    (64, 64): (64, 128, 256, 512),
}


def _check_conv_args(
    data_shape: object, channels: Sequence[int] | None
) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """Validate ``data_shape`` / ``channels`` and return them with the default channels filled."""
    data_shape = _check_data_shape(data_shape)
    sizes = " or ".join(f"(C, {h}, {w})" for h, w in SUPPORTED_SIZES)
    if len(data_shape) != 3 or tuple(data_shape[1:]) not in SUPPORTED_SIZES:
        raise ValueError(
            f"data_shape must be {sizes} for the convolutional networks; got {data_shape}. "
            "Use arch='mlp' for other shapes."
        )
    default = SUPPORTED_SIZES[tuple(data_shape[1:])]
    if channels is None:
        return data_shape, default
    channels = _check_int_sequence(channels, "channels", allow_empty=False)
    if len(channels) != len(default):
        raise ValueError(
            f"channels must have {len(default)} entries (one per stride-2 stage) for "
            f"data_shape {data_shape}, e.g. {default}; got {channels}"
        )
    return data_shape, channels


def dcgan_init_(module: nn.Module) -> None:
    r"""DCGAN initialisation, in place: (transposed) convolution weights
    :math:`\sim \mathcal{N}(0, 0.02^2)`, batch-norm weights :math:`\sim \mathcal{N}(1, 0.02^2)`,
    biases zero. Linear layers keep PyTorch's default. Use as ``net.apply(dcgan_init_)``."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def _flatten_batch(x: torch.Tensor, event_dims: int) -> tuple[torch.Tensor, torch.Size]:
    """Merge the leading (batch) dimensions of ``x`` into one, as convolutions require."""
    batch_shape = x.shape[: x.dim() - event_dims]
    return x.reshape(-1, *x.shape[x.dim() - event_dims :]), batch_shape


class ConvTrunk(nn.Module):
    r"""The downsampling convolutional stack shared by :class:`ConvEncoder` and any
    discriminator or classifier: stride-2 4x4 convolutions, each followed by (optional)
    batch normalisation and the activation, then flattening.

    As in DCGAN, the first convolution has no batch normalisation, and convolutions followed by
    batch normalisation carry no bias (it would be cancelled).

    Shapes: input ``(..., C, H, W)``, output ``(..., out_features)`` where
    ``out_features = channels[-1] * (H / 2**len(channels))**2`` (6272 for 28x28, 8192 for
    64x64 with the default channels).

    :param tuple data_shape: ``(C, 28, 28)`` or ``(C, 64, 64)``.
    :param channels: output channels of each stage, lowest level first; ``None`` gives
        ``(64, 128)`` for 28x28 and ``(64, 128, 256, 512)`` for 64x64.
    :param bool batch_norm: whether to batch-normalise after every convolution but the first.
    :param str activation: a key of :data:`~pyrogen.nn.ACTIVATIONS`.

    Example::

        >>> trunk = ConvTrunk((1, 28, 28))
        >>> trunk(torch.rand(8, 1, 28, 28)).shape
        torch.Size([8, 6272])
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        channels: Sequence[int] | None = None,
        batch_norm: bool = False,
        activation: str = "leaky_relu",
    ) -> None:
        data_shape, channels = _check_conv_args(data_shape, channels)
        _check_activation(activation)
        super().__init__()
        self.data_shape = data_shape
        self.channels = channels
        self.batch_norm = bool(batch_norm)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip((data_shape[0],) + channels[:-1], channels)):
            bn = self.batch_norm and i > 0
            layers.append(nn.Conv2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=not bn))
            if bn:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(_make_activation(activation))
        self.layers = nn.Sequential(*layers)
        side = data_shape[1] // 2 ** len(channels)
        self.out_shape = (channels[-1], side, side)
        self.out_features = channels[-1] * side * side
        self.apply(dcgan_init_)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_event_shape(x, self.data_shape, "x")
        x, batch_shape = _flatten_batch(x, 3)
        h = self.layers(x)
        return h.reshape(*batch_shape, self.out_features)


def conv_trunk(
    data_shape: tuple[int, int, int],
    channels: Sequence[int] | None = None,
    batch_norm: bool = False,
    activation: str = "leaky_relu",
) -> ConvTrunk:
    """Build a :class:`ConvTrunk` (for discriminators and classifiers); see its arguments."""
    return ConvTrunk(data_shape, channels, batch_norm, activation)


class ConvEncoder(nn.Module):
    r"""Convolutional diagonal-Gaussian encoder: a :class:`ConvTrunk` and a linear head [1].

    .. math::

        (\mu, \rho) = W \, \mathrm{trunk}(x) + b \in \mathbb{R}^{2d}, \qquad
        \sigma = \mathrm{softplus}(\rho) + \sigma_{\min}.

    Shapes: input ``(..., C, H, W)``, outputs ``loc`` and ``scale`` each ``(..., latent_dim)``,
    with ``scale > 0``; :meth:`features` gives the flat trunk output ``(..., out_features)``.

    :param tuple data_shape: ``(C, 28, 28)`` or ``(C, 64, 64)``.
    :param int latent_dim: dimension :math:`d` of the latent code.
    :param channels: channels of the stride-2 stages, lowest level first (see :class:`ConvTrunk`).
    :param bool batch_norm: batch normalisation after every convolution but the first.
    :param str activation: a key of :data:`~pyrogen.nn.ACTIVATIONS`; DCGAN's leaky ReLU (0.2)
        by default.
    :param float min_scale: :math:`\sigma_{\min} > 0`.

    **References**

    [1] Radford, A., Metz, L., Chintala, S. (2016). Unsupervised Representation Learning with
        Deep Convolutional Generative Adversarial Networks. ICLR.

    Example::

        >>> enc = ConvEncoder((3, 64, 64), latent_dim=64, batch_norm=True)
        >>> loc, scale = enc(torch.rand(8, 3, 64, 64))
        >>> loc.shape, enc.features(torch.rand(8, 3, 64, 64)).shape
        (torch.Size([8, 64]), torch.Size([8, 8192]))
    """

    def __init__(
        self,
        data_shape: tuple[int, int, int],
        latent_dim: int,
        channels: Sequence[int] | None = None,
        batch_norm: bool = False,
        activation: str = "leaky_relu",
        min_scale: float = 1e-4,
    ) -> None:
        data_shape, channels = _check_conv_args(data_shape, channels)
        latent_dim = _check_positive_int(latent_dim, "latent_dim")
        _check_activation(activation)
        min_scale = _check_min_scale(min_scale)
        super().__init__()
        self.data_shape = data_shape
        self.latent_dim = latent_dim
        self.min_scale = min_scale
        self.trunk = ConvTrunk(data_shape, channels, batch_norm, activation)
        self.out_features = self.trunk.out_features
        self.head = nn.Linear(self.out_features, 2 * latent_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Flat convolutional features of ``x``: ``(..., C, H, W) -> (..., out_features)``."""
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _loc_scale(self.head(self.features(x)), self.min_scale)


class ConvDecoder(nn.Module):
    r"""Convolutional decoder, the mirror of :class:`ConvEncoder` (a DCGAN generator [1]):
    a linear projection to ``channels[-1]`` maps of side 7 (28x28 data) or 4 (64x64 data),
    then stride-2 4x4 transposed convolutions, each doubling the side, down to ``C`` channels.
    Every stage but the last is followed by (optional) batch normalisation and the activation;
    the output is unnormalised (logits / means: the likelihood decides).

    For 28x28: ``z -> 128x7x7 -> 64x14x14 -> Cx28x28``; for 64x64:
    ``z -> 512x4x4 -> 256x8x8 -> 128x16x16 -> 64x32x32 -> Cx64x64``.

    Shapes: input ``(..., latent_dim)`` with any leading dimensions, output ``(..., C, H, W)``.

    :param int latent_dim: dimension of the latent code.
    :param tuple data_shape: ``(C, 28, 28)`` or ``(C, 64, 64)``.
    :param channels: channels in *encoder* order, lowest level first (the decoder runs them
        in reverse); ``None`` gives the defaults of :class:`ConvTrunk`.
    :param bool batch_norm: batch normalisation after every stage but the last.
    :param str activation: a key of :data:`~pyrogen.nn.ACTIVATIONS`; ReLU by default.

    **References**

    [1] Radford, A., Metz, L., Chintala, S. (2016). Unsupervised Representation Learning with
        Deep Convolutional Generative Adversarial Networks. ICLR.

    Example::

        >>> dec = ConvDecoder(16, (1, 28, 28))
        >>> dec(torch.randn(5, 8, 16)).shape
        torch.Size([5, 8, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, int, int],
        channels: Sequence[int] | None = None,
        batch_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        latent_dim = _check_positive_int(latent_dim, "latent_dim")
        data_shape, channels = _check_conv_args(data_shape, channels)
        _check_activation(activation)
        super().__init__()
        self.latent_dim = latent_dim
        self.data_shape = data_shape
        self.channels = channels
        self.batch_norm = bool(batch_norm)
        side = data_shape[1] // 2 ** len(channels)
        self.in_shape = (channels[-1], side, side)
        self.project = nn.Linear(latent_dim, channels[-1] * side * side)
        layers: list[nn.Module] = []
        if self.batch_norm:
            layers.append(nn.BatchNorm2d(channels[-1]))
        layers.append(_make_activation(activation))
        rev = channels[::-1]
        for c_in, c_out in zip(rev[:-1], rev[1:]):
            layers.append(
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=not self.batch_norm)
            )
            if self.batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(_make_activation(activation))
        layers.append(nn.ConvTranspose2d(rev[-1], data_shape[0], 4, stride=2, padding=1))
        self.layers = nn.Sequential(*layers)
        self.apply(dcgan_init_)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_event_shape(z, (self.latent_dim,), "z")
        z, batch_shape = _flatten_batch(z, 1)
        h = self.project(z).reshape(-1, *self.in_shape)
        return self.layers(h).reshape(*batch_shape, *self.data_shape)
