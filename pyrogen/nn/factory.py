"""Build an encoder or a decoder by architecture name, as the models and the CLI do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from .conv import ConvDecoder, ConvEncoder
from .mlp import MLPDecoder, MLPEncoder

#: architecture name -> (encoder class, decoder class)
ARCHITECTURES: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
    "mlp": (MLPEncoder, MLPDecoder),
    "conv": (ConvEncoder, ConvDecoder),
}


def _check_arch(arch: object, fn: str) -> str:
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(f"{fn}: arch must be one of {sorted(ARCHITECTURES)}; got {arch!r}")
    return arch


def _network_kwargs(
    arch: str, hidden: Sequence[int], activation: str | None, kwargs: dict[str, Any]
) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if arch == "mlp":
        kwargs["hidden"] = hidden
    # "conv" ignores `hidden`: its width is set by `channels`, which has its own default
    if activation is not None:
        kwargs["activation"] = activation
    return kwargs


def build_encoder(
    arch: str,
    data_shape: tuple[int, ...],
    latent_dim: int,
    hidden: Sequence[int] = (400,),
    activation: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a Gaussian encoder ``x -> (loc, scale)``.

    :param str arch: ``"mlp"`` (:class:`~pyrogen.nn.MLPEncoder`) or ``"conv"``
        (:class:`~pyrogen.nn.ConvEncoder`).
    :param tuple data_shape: shape of one datum.
    :param int latent_dim: dimension of the latent code.
    :param hidden: hidden widths of the MLP; ignored by ``"conv"``.
    :param activation: a key of :data:`~pyrogen.nn.ACTIVATIONS`, or ``None`` for the class
        default (``"relu"`` for MLP, ``"leaky_relu"`` for conv).
    :param kwargs: passed on to the class (``min_scale``; ``channels``, ``batch_norm`` for conv).

    Example::

        >>> enc = build_encoder("conv", (1, 28, 28), latent_dim=16, batch_norm=True)
    """
    arch = _check_arch(arch, "build_encoder")
    encoder_cls = ARCHITECTURES[arch][0]
    return encoder_cls(data_shape, latent_dim, **_network_kwargs(arch, hidden, activation, kwargs))


def build_decoder(
    arch: str,
    latent_dim: int,
    data_shape: tuple[int, ...],
    hidden: Sequence[int] = (400,),
    activation: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a decoder ``z -> unnormalised outputs of shape (..., *data_shape)``.

    :param str arch: ``"mlp"`` (:class:`~pyrogen.nn.MLPDecoder`) or ``"conv"``
        (:class:`~pyrogen.nn.ConvDecoder`).
    :param int latent_dim: dimension of the latent code.
    :param tuple data_shape: shape of one datum.
    :param hidden: hidden widths of the MLP; ignored by ``"conv"``.
    :param activation: a key of :data:`~pyrogen.nn.ACTIVATIONS`, or ``None`` for the class
        default (``"relu"`` for both).
    :param kwargs: passed on to the class (``batch_norm``; ``channels`` for conv).

    Example::

        >>> dec = build_decoder("mlp", 50, (1, 28, 28), hidden=(200, 200), activation="tanh")
    """
    arch = _check_arch(arch, "build_decoder")
    decoder_cls = ARCHITECTURES[arch][1]
    return decoder_cls(latent_dim, data_shape, **_network_kwargs(arch, hidden, activation, kwargs))
