"""Fully connected networks: a plain :class:`MLP` and the Gaussian encoder / decoder pair.

These are plain :class:`torch.nn.Module` s; the Pyro models and guides wrap them. None of them
creates a tensor behind the user's back, so ``module.to(device, dtype)`` is all it takes to move
one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class LeakyReLU(nn.LeakyReLU):
    """:class:`torch.nn.LeakyReLU` with DCGAN's slope (Radford et al. 2015), 0.2, as default."""

    def __init__(self, negative_slope: float = 0.2, inplace: bool = False) -> None:
        super().__init__(negative_slope=negative_slope, inplace=inplace)


#: Activation names accepted by every network of :mod:`pyrogen.nn`, mapped to a module class
#: whose no-argument constructor gives the activation (``leaky_relu`` has slope 0.2).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
}


# --------------------------------------------------------------------------------------------
# Argument checks shared by the networks of this subpackage (raised before any layer is built).
# --------------------------------------------------------------------------------------------


def _check_activation(name: object, argname: str = "activation") -> str:
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(
            f"{argname} must be one of {sorted(ACTIVATIONS)}; got {name!r}"
        )
    return name


def _make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def _check_positive_int(value: object, argname: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argname} must be a positive int; got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise ValueError(f"{argname} must be a positive int; got {value}")
    return int(value)


def _check_int_sequence(value: object, argname: str, allow_empty: bool = True) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, torch.Size)):
        raise TypeError(
            f"{argname} must be a sequence of positive ints, e.g. (400,); "
            f"got {value!r} ({type(value).__name__})"
        )
    if not allow_empty and len(value) == 0:
        raise ValueError(f"{argname} must be a non-empty sequence of positive ints; got {value!r}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0:
            raise ValueError(f"{argname} must contain only positive ints; got {value!r}")
    return tuple(int(v) for v in value)


def _check_data_shape(value: object) -> tuple[int, ...]:
    return _check_int_sequence(value, "data_shape", allow_empty=False)


def _check_min_scale(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"min_scale must be a positive float; got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"min_scale must be a finite float > 0; got {value!r}")
    return float(value)


def _check_event_shape(x: torch.Tensor, event_shape: tuple[int, ...], argname: str) -> None:
    """Raise unless the trailing dimensions of ``x`` are exactly ``event_shape``."""
    n = len(event_shape)
    if x.dim() < n or tuple(x.shape[x.dim() - n :]) != event_shape:
        raise ValueError(
            f"{argname} must have shape (..., {', '.join(map(str, event_shape))}); "
            f"got {tuple(x.shape)}"
        )


def _loc_scale(raw: torch.Tensor, min_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    loc, raw_scale = raw.chunk(2, dim=-1)
    # softplus underflows to exactly 0 in low precision; min_scale keeps Normal(loc, scale) valid
    return loc, F.softplus(raw_scale) + min_scale


def glorot_init_(module: nn.Module, generator: torch.Generator | None = None) -> None:
    r"""Glorot-uniform initialisation of a linear layer, in place (Glorot and Bengio 2010; the
    initialisation of Burda et al. 2016's VAEs): weights
    :math:`\sim \mathcal U(-a, a)`, :math:`a = \sqrt{6 / (n_{\mathrm{in}} + n_{\mathrm{out}})}`,
    biases zero. Other modules are left alone, so ``net.apply(glorot_init_)`` initialises every
    :class:`torch.nn.Linear` of ``net``. PyTorch's default draws from
    :math:`\mathcal U(-1/\sqrt{n_{\mathrm{in}}}, 1/\sqrt{n_{\mathrm{in}}})`, a third of the
    variance for square tanh layers; with it the Burda VAE of ``benchmarks/vae_mnist.py``
    trained more slowly.

    :param generator: the random generator to draw from (default: the global one).
    """
    if not isinstance(module, nn.Linear):
        return
    bound = math.sqrt(6.0 / (module.in_features + module.out_features))
    with torch.no_grad():
        draw = torch.rand(module.weight.shape, generator=generator, dtype=module.weight.dtype)
        module.weight.copy_(draw * 2 * bound - bound)
        if module.bias is not None:
            module.bias.zero_()


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


class MLP(nn.Module):
    r"""Multi-layer perceptron: affine layers with an activation between consecutive ones.

    .. math::

        h_0 = x, \quad h_{l} = \sigma(W_l h_{l-1} + b_l) \ (l = 1..L), \quad
        y = \sigma_{\mathrm{out}}(W_{L+1} h_L + b_{L+1}),

    where :math:`L` is ``len(hidden)`` (zero gives a single affine map) and
    :math:`\sigma_{\mathrm{out}}` is the identity unless ``output_activation`` is given.

    Shapes: input ``(..., in_features)``, output ``(..., out_features)``.

    :param int in_features: size of the last input dimension.
    :param hidden: widths of the hidden layers, e.g. ``(200, 200)``; may be empty.
    :param int out_features: size of the last output dimension.
    :param str activation: hidden activation, a key of :data:`ACTIVATIONS`.
    :param output_activation: activation applied to the output, a key of :data:`ACTIVATIONS`,
        or ``None`` for none.
    :param bool batch_norm: batch-normalise every hidden layer before its activation (over all
        leading dimensions of the input together).

    Example::

        >>> net = MLP(784, (200, 200), 100, activation="tanh")
        >>> net(torch.randn(32, 784)).shape
        torch.Size([32, 100])
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "relu",
        output_activation: str | None = None,
        batch_norm: bool = False,
    ) -> None:
        in_features = _check_positive_int(in_features, "in_features")
        hidden = _check_int_sequence(hidden, "hidden")
        out_features = _check_positive_int(out_features, "out_features")
        _check_activation(activation, "activation")
        if output_activation is not None:
            _check_activation(output_activation, "output_activation")
        super().__init__()
        self.in_features = in_features
        self.hidden = hidden
        self.out_features = out_features
        layers: list[nn.Module] = []
        widths = (in_features,) + hidden
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers.append(nn.Linear(w_in, w_out, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(w_out))
            layers.append(_make_activation(activation))
        layers.append(nn.Linear(widths[-1], out_features))
        if output_activation is not None:
            layers.append(_make_activation(output_activation))
        self.layers = nn.Sequential(*layers)
        self.batch_norm = bool(batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_event_shape(x, (self.in_features,), "x")
        if self.batch_norm:  # BatchNorm1d takes (N, C): flatten the leading dimensions
            return self.layers(x.reshape(-1, self.in_features)).reshape(*x.shape[:-1], -1)
        return self.layers(x)


class MLPEncoder(nn.Module):
    r"""Diagonal-Gaussian encoder :math:`q_\phi(z \mid x) = \mathcal{N}(\mu_\phi(x),
    \operatorname{diag} \sigma^2_\phi(x))` computed by one :class:`MLP` trunk [1].

    .. math::

        (\mu, \rho) = \mathrm{MLP}(\mathrm{flatten}(x)) \in \mathbb{R}^{2d}, \qquad
        \sigma = \mathrm{softplus}(\rho) + \sigma_{\min}.

    Shapes: input ``(..., *data_shape)``, outputs ``loc`` and ``scale`` each
    ``(..., latent_dim)``, with ``scale > 0``.

    :param tuple data_shape: shape of one datum, e.g. ``(1, 28, 28)``.
    :param int latent_dim: dimension :math:`d` of the latent code.
    :param hidden: widths of the hidden layers.
    :param str activation: hidden activation, a key of :data:`ACTIVATIONS`.
    :param float min_scale: :math:`\sigma_{\min} > 0`, a floor that keeps the scale positive.

    **References**

    [1] Kingma, D. P., Welling, M. (2014). Auto-Encoding Variational Bayes. ICLR.

    Example::

        >>> enc = MLPEncoder((1, 28, 28), latent_dim=50, hidden=(200, 200), activation="tanh")
        >>> loc, scale = enc(torch.rand(32, 1, 28, 28))
        >>> loc.shape, scale.shape
        (torch.Size([32, 50]), torch.Size([32, 50]))
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        latent_dim: int,
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        min_scale: float = 1e-4,
    ) -> None:
        data_shape = _check_data_shape(data_shape)
        latent_dim = _check_positive_int(latent_dim, "latent_dim")
        hidden = _check_int_sequence(hidden, "hidden")
        _check_activation(activation)
        min_scale = _check_min_scale(min_scale)
        super().__init__()
        self.data_shape = data_shape
        self.latent_dim = latent_dim
        self.min_scale = min_scale
        self.net = MLP(math.prod(data_shape), hidden, 2 * latent_dim, activation=activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_event_shape(x, self.data_shape, "x")
        batch_shape = x.shape[: x.dim() - len(self.data_shape)]
        raw = self.net(x.reshape(*batch_shape, -1))
        return _loc_scale(raw, self.min_scale)


class MLPDecoder(nn.Module):
    r"""Decoder :math:`z \mapsto \eta_\theta(z)`: an :class:`MLP` whose output is reshaped to
    ``data_shape``. The outputs are unnormalised (Bernoulli logits, Gaussian means, ...): the
    likelihood of the model decides what they mean.

    Shapes: input ``(..., latent_dim)`` with any number of leading dimensions (e.g.
    ``(K, B, latent_dim)`` for vectorised importance sampling), output ``(..., *data_shape)``.

    :param int latent_dim: dimension of the latent code.
    :param tuple data_shape: shape of one datum, e.g. ``(1, 28, 28)``.
    :param hidden: widths of the hidden layers.
    :param str activation: hidden activation, a key of :data:`ACTIVATIONS`.
    :param bool batch_norm: batch normalisation in the hidden layers (a GAN generator's option).

    Example::

        >>> dec = MLPDecoder(50, (1, 28, 28), hidden=(200, 200), activation="tanh")
        >>> dec(torch.randn(5, 32, 50)).shape
        torch.Size([5, 32, 1, 28, 28])
    """

    def __init__(
        self,
        latent_dim: int,
        data_shape: tuple[int, ...],
        hidden: Sequence[int] = (400,),
        activation: str = "relu",
        batch_norm: bool = False,
    ) -> None:
        latent_dim = _check_positive_int(latent_dim, "latent_dim")
        data_shape = _check_data_shape(data_shape)
        hidden = _check_int_sequence(hidden, "hidden")
        _check_activation(activation)
        super().__init__()
        self.latent_dim = latent_dim
        self.data_shape = data_shape
        self.net = MLP(latent_dim, hidden, math.prod(data_shape), activation=activation,
                       batch_norm=batch_norm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_event_shape(z, (self.latent_dim,), "z")
        out = self.net(z)
        return out.reshape(*z.shape[:-1], *self.data_shape)
