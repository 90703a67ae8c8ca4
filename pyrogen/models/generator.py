r"""
The Pyro pieces shared by the adversarial family (GAN, AAE, ALI/BiGAN).

* :class:`GeneratorModel`, the generative side :math:`q(x, z) = q(x \mid z)\, q(z)` of the
  paper (Pyro's *model*): :math:`z \sim q(z)` (a standard normal, or a Gaussian mixture) and
  :math:`x` at a ``Delta`` site :math:`\delta(x - G(z))` (GAN, AAE, deterministic ALI) or a
  Gaussian :math:`\mathcal{N}(G(z), \sigma^2 I)` (Gaussian ALI);
* :class:`EncoderGuide`, the inference side :math:`p(z \mid x)` (Pyro's *guide*):
  :math:`\delta(z - E(x))` or :math:`\mathcal{N}(\mu(x), \mathrm{diag}\,\sigma^2(x))`;
* :class:`Discriminator`, a ``PyroModule`` around a logit network (:mod:`pyrogen.nn.discriminator`).

The adversarial losses (:mod:`pyrogen.infer.adversarial`) run the model under
``poutine.uncondition`` to draw :math:`x = G(z)`, replay it on the guide's codes to
reconstruct, and read every value from Pyro traces. The model scores nothing: a ``Delta``
site has no density to fit by ``Trace_ELBO``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyrogen.primitives import NamedPyroModule
from pyrogen.models.util import batch_size_of, check_data, data_plate

#: output noise of the generator: ``delta`` (x = G(z)) or ``gaussian`` (x ~ N(G(z), s^2 I))
NOISES = ("delta", "gaussian")
#: priors q(z)
PRIORS = ("gaussian", "mixture")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return str(value)


class GeneratorModel(NamedPyroModule):
    r"""
    The generator as a Pyro model:

    .. math::
        z_n \sim q(z), \qquad x_n \mid z_n \sim \delta(x - G(z_n)) \ \text{or}\
            \mathcal{N}(G(z_n), \sigma^2 I), \qquad G(z) = \mathrm{sigmoid}(g_\theta(z)),

    so generated pixels lie in :math:`[0, 1]`, the range of pyrogen's data. The prior
    :math:`q(z)` is :math:`\mathcal{N}(0, I)`, or (``prior="mixture"``) an equal mixture of
    ``num_components`` Gaussians of scale 0.5 whose means lie on a circle of radius 4 in the
    first two coordinates (the AAE's mixture prior [1]).

    :param torch.nn.Module generator: :math:`g_\theta`, ``(..., latent_dim) -> (..., *data_shape)``.
    :param int latent_dim: the dimension of :math:`z`.
    :param tuple data_shape: the shape of one data point.
    :param str noise: ``"delta"`` or ``"gaussian"``.
    :param float scale: the initial :math:`\sigma` of the Gaussian noise; :math:`\sigma` is
        learned (a generator with fixed noise on its images could never match noiseless data).
    :param str prior: ``"gaussian"`` or ``"mixture"``.
    :param int num_components: the mixture prior's component count.

    **References**

    [1] A. Makhzani et al., "Adversarial Autoencoders", ICLR workshop 2016.
    """

    def __init__(self, generator: nn.Module, latent_dim: int, data_shape: Sequence[int],
                 noise: str = "delta", scale: float = 0.1, prior: str = "gaussian",
                 num_components: int = 10) -> None:
        super().__init__()
        self.generator = generator
        self.latent_dim = int(latent_dim)
        self.data_shape = tuple(int(d) for d in data_shape)
        self.noise = _check_choice("noise", noise, NOISES)
        self.prior_kind = _check_choice("prior", prior, PRIORS)
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        if self.noise == "gaussian":
            self.log_scale = nn.Parameter(torch.tensor(math.log(float(scale))))
        self.register_buffer("prior_loc", torch.zeros(self.latent_dim))
        self.register_buffer("prior_scale", torch.ones(self.latent_dim))
        if self.prior_kind == "mixture":
            if self.latent_dim < 2 or int(num_components) < 2:
                raise ValueError("a mixture prior needs latent_dim >= 2 and num_components >= 2, "
                                 f"got {latent_dim} and {num_components}")
            angle = 2 * math.pi * torch.arange(int(num_components)) / int(num_components)
            means = torch.zeros(int(num_components), self.latent_dim)
            means[:, 0], means[:, 1] = 4 * angle.cos(), 4 * angle.sin()
            self.register_buffer("component_loc", means)
            self.register_buffer("component_scale", torch.full_like(means, 0.5))

    def prior(self) -> dist.TorchDistribution:
        r"""The prior :math:`q(z)` of one data point."""
        if self.prior_kind == "mixture":
            k = self.component_loc.shape[0]
            weights = dist.Categorical(logits=self.component_loc.new_zeros(k))
            components = dist.Normal(self.component_loc, self.component_scale).to_event(1)
            return dist.MixtureSameFamily(weights, components)
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def generate(self, z: torch.Tensor, state: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        r""":math:`G(z)`, the mean of :math:`x \mid z`, in :math:`[0, 1]`; with ``state`` (a
        ``generator.state_dict()``), the generator with those weights instead of its own."""
        if state is None:
            return torch.sigmoid(self.generator(z))
        return torch.sigmoid(torch.func.functional_call(self.generator, state, (z,)))

    def observation(self, mean: torch.Tensor) -> dist.TorchDistribution:
        r"""The distribution of :math:`x \mid z` with mean :math:`G(z)`."""
        event_dim = len(self.data_shape)
        if self.noise == "delta":
            return dist.Delta(mean, event_dim=event_dim)
        return dist.Normal(mean, self.log_scale.exp().expand_as(mean)).to_event(event_dim)

    def with_gaussian_noise(self, scale: float) -> GeneratorModel:
        r"""A copy of this model that shares its generator and prior but observes
        :math:`x \sim \mathcal{N}(G(z), \sigma^2 I)` with :math:`\sigma` = ``scale``: a
        likelihood for diagnosing an encoder of a ``Delta`` generator, whose own density is
        degenerate."""
        copy = GeneratorModel(self.generator, self.latent_dim, self.data_shape, noise="gaussian",
                              scale=scale, prior="gaussian")
        copy.prior_kind = self.prior_kind
        for name, buffer in self.named_buffers(recurse=False):
            setattr(copy, name, buffer)
        copy.log_scale.requires_grad_(False)
        return copy.to(self.prior_loc.device)

    def forward(self, x: torch.Tensor | None = None, *, num_data: int | None = None,
                num_samples: int | None = None, **kwargs) -> torch.Tensor:
        """
        :param x: a minibatch (its size sets the plate; the adversarial losses run the model
            under ``poutine.uncondition``), or ``None`` to draw ``num_samples`` points.
        :param int num_data: the size of the data set (scales the plate).
        :returns: the ``x`` site's value.
        """
        batch_size = batch_size_of(x, num_samples, self.data_shape, "GeneratorModel")
        with data_plate(batch_size, num_data, self.prior_loc.device):
            z = pyro.sample("z", self.prior())
            return pyro.sample("x", self.observation(self.generate(z)), obs=x)


class EncoderGuide(NamedPyroModule):
    r"""
    The encoder as a Pyro guide: :math:`z_n \sim \delta(z - \mu_\phi(x_n))` (``"delta"``, a
    deterministic encoder) or :math:`\mathcal{N}(\mu_\phi(x_n), \mathrm{diag}\,
    \sigma^2_\phi(x_n))` (``"gaussian"``, reparameterised).

    :param torch.nn.Module encoder: ``x -> (loc, scale)`` (:func:`~pyrogen.nn.build_encoder`).
    :param tuple data_shape: the shape of one data point.
    :param str noise: ``"delta"`` or ``"gaussian"``.
    """

    def __init__(self, encoder: nn.Module, data_shape: Sequence[int], noise: str = "gaussian") -> None:
        super().__init__()
        self.encoder = encoder
        self.data_shape = tuple(int(d) for d in data_shape)
        self.noise = _check_choice("noise", noise, NOISES)

    def conditional(self, x: torch.Tensor, encoder: nn.Module | None = None) -> dist.TorchDistribution:
        r""":math:`p(z \mid x)` for a batch ``x``, by ``encoder`` (default: this guide's)."""
        loc, scale = (encoder or self.encoder)(x)
        if self.noise == "delta":
            return dist.Delta(loc, event_dim=1)
        return dist.Normal(loc, scale).to_event(1)

    def forward(self, x: torch.Tensor, *, num_data: int | None = None, **kwargs) -> torch.Tensor:
        r"""
        The guide: one sample site ``"z"`` in the ``"data"`` plate,
        :math:`z_n \sim p(z \mid x_n)` (:meth:`conditional`), :math:`\delta(z - \mu_\phi(x_n))`
        or :math:`\mathcal{N}(\mu_\phi(x_n), \mathrm{diag}\, \sigma^2_\phi(x_n))`.

        :param x: a minibatch ``(batch, *data_shape)``.
        :param int num_data: the size of the data set (scales the plate); other keyword
            arguments are ignored.
        :returns: the codes ``z``, ``(batch, latent_dim)``.
        """
        batch_size = check_data(x, self.data_shape)
        with data_plate(batch_size, num_data, x.device):
            return pyro.sample("z", self.conditional(x))


class Discriminator(NamedPyroModule):
    r"""
    A discriminator as a ``PyroModule``: calling it inside a loss registers its parameters
    with Pyro (so ``SVI`` can optimise them), and a loss hides them from the other player's
    step with ``poutine.block``. Returns the logit :math:`\ell` of :math:`D = \sigma(\ell)`.

    With ``input_noise`` :math:`s > 0`, while training, the first input (the images) is seen
    as :math:`x + s\,\epsilon`, :math:`\epsilon \sim \mathcal{N}(0, I)`, real and generated
    alike (instance noise, Sønderby et al. 2016; Arjovsky and Bottou 2017): the two
    distributions then overlap, so the discriminator cannot win by a feature no generator can
    match, such as the exact 0/1 values of binarised data against a sigmoid's grey levels.

    :param torch.nn.Module net: e.g. :class:`~pyrogen.nn.DataDiscriminator`.
    :param float input_noise: :math:`s \geq 0` (0: none).
    """

    def __init__(self, net: nn.Module, input_noise: float = 0.0) -> None:
        super().__init__()
        if not float(input_noise) >= 0:
            raise ValueError(f"input_noise must be >= 0, got {input_noise!r}")
        self.discriminator = net
        self.input_noise = float(input_noise)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        r"""The logit :math:`\ell` of :math:`D = \sigma(\ell)` for ``inputs`` as the wrapped
        network takes them (``x``, ``z`` or ``x, z``), shape ``(...)``; called inside a loss,
        it registers the network's parameters with Pyro."""
        if self.training and self.input_noise > 0:
            x = inputs[0]
            inputs = (x + self.input_noise * torch.randn_like(x),) + inputs[1:]
        return self.discriminator(*inputs)


__all__ = ["Discriminator", "EncoderGuide", "GeneratorModel", "NOISES", "PRIORS"]
