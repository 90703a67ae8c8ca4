r"""
The variational autoencoder as a Pyro model/guide pair.

In the unified framework (Su 2018, section 2) the VAE is the joint KL with a
Gaussian generative side and an amortised Gaussian inference side. The paper
names the generative side :math:`q` and the inference side :math:`p`; here, as
in Pyro, the *model* is the generative joint :math:`p_\theta(x, z)` and the
*guide* is the encoder :math:`q_\phi(z \mid x)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from pyrogen.primitives import NamedPyroModule
from pyrogen.models.likelihoods import LIKELIHOODS, build_likelihood
from pyrogen.models.util import (
    ReconstructMixin,
    ShapedFacade,
    batch_size_of,
    beta_scale,
    check_data,
    data_plate,
)
from pyrogen.nn import build_decoder, build_encoder


class VAEModel(NamedPyroModule):
    r"""
    The generative model of a VAE:

    .. math::
        z_n \sim \mathcal{N}(0, I), \qquad
        x_n \mid z_n \sim p_\theta(x \mid z_n) \quad (n = 1, \dots, N),

    where :math:`p_\theta(x \mid z)` is a likelihood (Bernoulli, continuous
    Bernoulli or Gaussian) whose parameters come from the decoder network.

    With :class:`VAEGuide` as the guide, ``pyro.infer.Trace_ELBO`` maximises

    .. math::
        \mathcal{L}(x) = \mathbb{E}_{q_\phi(z \mid x)} \log p_\theta(x \mid z)
            - \beta\, \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z)),

    which is equation (5) of [1] with its :math:`q` and :math:`p` swapped
    (:math:`\beta = 1` gives the ELBO itself).

    **References**

    [1] J. Su, "Variational Inference: A Unified Framework of Generative Models
    and Some Revelations", arXiv:1807.05936, 2018.

    [2] D. P. Kingma, M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014.

    Example::

        model = VAEModel(build_decoder("mlp", 16, (1, 8, 8)), 16, (1, 8, 8))
        guide = VAEGuide(build_encoder("mlp", (1, 8, 8), 16), (1, 8, 8))
        svi = SVI(model, guide, Adam({"lr": 1e-3}), Trace_ELBO())
        svi.step(x, num_data=len(train))

    :param torch.nn.Module decoder: maps ``(..., latent_dim)`` to ``(..., *data_shape)``.
    :param int latent_dim: the dimension of :math:`z`.
    :param tuple data_shape: the shape of one data point.
    :param str likelihood: one of ``"bernoulli"``, ``"continuous-bernoulli"``,
        ``"gaussian"``.
    """

    def __init__(
        self,
        decoder: nn.Module,
        latent_dim: int,
        data_shape: Sequence[int],
        likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.latent_dim = int(latent_dim)
        self.data_shape = tuple(data_shape)
        self.likelihood = build_likelihood(likelihood, self.data_shape)
        self.register_buffer("prior_loc", torch.zeros(self.latent_dim))
        self.register_buffer("prior_scale", torch.ones(self.latent_dim))

    def prior(self) -> dist.TorchDistribution:
        r"""The prior :math:`p(z) = \mathcal{N}(0, I)` of one data point."""
        return dist.Normal(self.prior_loc, self.prior_scale).to_event(1)

    def forward(
        self,
        x: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        beta: float = 1.0,
        num_samples: int | None = None,
    ) -> torch.Tensor:
        """
        :param x: a minibatch ``(batch, *data_shape)`` to condition on, or
            ``None`` to draw ``num_samples`` data points.
        :param int num_data: the size of the data set the minibatch comes from
            (scales the ELBO); ``None`` means the minibatch itself.
        :param float beta: the weight of the KL term (> 0).
        :param int num_samples: the number of points to generate when ``x`` is None.
        :returns: the latent draws ``z``.
        """
        batch_size = batch_size_of(x, num_samples, self.data_shape, "VAEModel")
        with data_plate(batch_size, num_data, self.prior_loc.device):
            with beta_scale(beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)
        return z


class VAEGuide(NamedPyroModule):
    r"""
    The amortised posterior :math:`q_\phi(z \mid x) = \mathcal{N}(z; \mu_\phi(x),
    \mathrm{diag}\, \sigma^2_\phi(x))` of a VAE (the inference side
    :math:`p(z \mid x)` of [1]), sampled with the reparameterisation trick.

    :param torch.nn.Module encoder: maps ``(batch, *data_shape)`` to ``(loc, scale)``.
    :param tuple data_shape: the shape of one data point.
    """

    def __init__(self, encoder: nn.Module, data_shape: Sequence[int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.data_shape = tuple(data_shape)

    def forward(
        self,
        x: torch.Tensor,
        *,
        num_data: int | None = None,
        beta: float = 1.0,
    ) -> torch.Tensor:
        r"""
        The guide: one sample site ``"z"`` in the ``"data"`` plate,
        :math:`z_n \sim q_\phi(z \mid x_n) = \mathcal{N}(\mu_\phi(x_n), \mathrm{diag}\,
        \sigma^2_\phi(x_n))`, reparameterised, its log-density scaled by ``beta`` as in the
        model.

        :param x: a minibatch ``(batch, *data_shape)``.
        :param int num_data: the size of the data set the minibatch comes from (scales the
            ELBO); ``None`` means the minibatch itself.
        :param float beta: the weight of the KL term (> 0), the model's.
        :returns: the latent draws ``z``, ``(batch, latent_dim)``.
        """
        batch_size = check_data(x, self.data_shape)
        with data_plate(batch_size, num_data, x.device):
            loc, scale = self.encoder(x)
            with beta_scale(beta):
                return pyro.sample("z", dist.Normal(loc, scale).to_event(1))


class GaussianObservationModel(NamedPyroModule):
    r"""
    A decoder under a Gaussian observation model (Wu et al., 2017):

    .. math::
        z_n \sim p(z), \qquad x_n \mid z_n \sim \mathcal{N}(\bar x(z_n), \sigma^2 I),

    with :math:`\bar x(z)` the image the decoder gives and :math:`\sigma` fixed. Decoders
    trained under different likelihoods (Bernoulli, a feature loss, none at all for a GAN's
    generator) get a log-likelihood on one scale, which annealed importance sampling
    estimates (:func:`pyrogen.infer.ais`).

    :param mean: ``z -> x_bar(z)``, ``(..., latent_dim) -> (..., *data_shape)``.
    :param prior: ``() ->`` the prior :math:`p(z)` of one data point.
    :param tuple data_shape: the shape of one data point.
    :param float sigma: :math:`\sigma > 0`.

    **References**

    Y. Wu, Y. Burda, R. Salakhutdinov, R. Grosse, "On the quantitative analysis of
    decoder-based generative models", ICLR 2017.
    """

    def __init__(self, mean: Any, prior: Any, data_shape: Sequence[int], sigma: float) -> None:
        super().__init__()
        if not float(sigma) > 0:
            raise ValueError(f"sigma must be > 0, got {sigma!r}")
        self.mean, self.prior, self.sigma = mean, prior, float(sigma)
        self.data_shape = tuple(int(d) for d in data_shape)

    def forward(self, x: torch.Tensor | None = None, *, num_data: int | None = None,
                num_samples: int | None = None) -> torch.Tensor:
        """:param x: a minibatch to condition on, or ``None`` to draw ``num_samples`` points.
        :returns: the latent draws ``z``."""
        prior = self.prior()
        batch_size = batch_size_of(x, num_samples, self.data_shape, "GaussianObservationModel")
        with data_plate(batch_size, num_data, prior.mean.device):
            z = pyro.sample("z", prior)
            mean = self.mean(z)
            pyro.sample("x", dist.Normal(mean, torch.full_like(mean, self.sigma)).to_event(len(self.data_shape)),
                        obs=x)
        return z


class AmortisedFacade(ReconstructMixin, ShapedFacade):
    r"""
    What every facade of a model with a Gaussian prior :math:`p(z)` and an amortised guide
    :math:`q_\phi(z \mid x)` offers (``.model`` with ``prior()`` and ``decoder``,
    ``.guide`` with ``encoder``): ``encode``, ``sample`` and ``reconstruct`` (:meth:`decode`
    at the posterior mean :math:`z = \mu_\phi(x)`); a subclass defines :meth:`decode`.
    """

    has_encoder = True


    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The location and scale of :math:`q_\phi(z \mid x)`."""
        check_data(x, self.data_shape)
        return self.guide.encoder(x)

    def decoder_mean(self, z: torch.Tensor) -> torch.Tensor:
        r"""The image :math:`\bar x(z)` the decoder gives for ``z`` (differentiable in ``z``);
        a subclass defines it."""
        raise NotImplementedError

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        r""":meth:`decoder_mean` without gradients."""
        return self.decoder_mean(z)

    def gaussian_observation(self, sigma: float) -> GaussianObservationModel:
        r"""The model's prior and decoder under the observation model of Wu et al. (2017),
        :math:`x \mid z \sim \mathcal{N}(\bar x(z), \sigma^2 I)`: a Pyro model (sharing this
        facade's networks) that gives every decoder, whatever its own likelihood, a
        log-likelihood on one scale (``pyrogen evaluate --ais-observation gaussian``)."""
        return GaussianObservationModel(self.decoder_mean, self.model.prior, self.data_shape, sigma)

    @torch.no_grad()
    def sample(self, num_samples: int) -> torch.Tensor:
        r""":meth:`decode` of ``num_samples`` draws :math:`z \sim p(z)`: for a VAE the means of
        :math:`p_\theta(x \mid z)`."""
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
        z = self.model.prior().sample((int(num_samples),))
        return self.decode(z)


class VAE(AmortisedFacade):
    r"""
    A VAE: :class:`VAEModel` and :class:`VAEGuide` built from pyrogen's
    networks, with what users reach for (``sample``, ``reconstruct``,
    ``encode``). Train it with any Pyro ELBO::

        vae = VAE((1, 28, 28), latent_dim=50, hidden=(200, 200), activation="tanh")
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
        for x in batches:
            svi.step(x, num_data=60000)

    ``vae.config`` holds the constructor arguments, so a checkpoint can rebuild it.

    :param tuple data_shape: the shape of one data point, e.g. ``(1, 28, 28)``.
    :param int latent_dim: the dimension of :math:`z`.
    :param tuple hidden: hidden layer sizes of the MLP encoder and decoder
        (the decoder mirrors them).
    :param str arch: ``"mlp"`` or ``"conv"`` (DCGAN-style, 28x28 or 64x64 images).
    :param str likelihood: one of :data:`~pyrogen.models.likelihoods.LIKELIHOODS`.
    :param str activation: hidden activation; ``None`` keeps the network's default.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        latent_dim: int = 50,
        hidden: Sequence[int] = (400,),
        arch: str = "mlp",
        likelihood: str = "bernoulli",
        activation: str | None = None,
    ) -> None:
        super().__init__()
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        data_shape = tuple(int(d) for d in data_shape)
        hidden = tuple(int(h) for h in hidden)
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape),
            latent_dim=int(latent_dim),
            hidden=list(hidden),
            arch=arch,
            likelihood=likelihood,
            activation=activation,
        )
        encoder = build_encoder(arch, data_shape, latent_dim, hidden=hidden, activation=activation)
        decoder = build_decoder(
            arch, latent_dim, data_shape, hidden=tuple(reversed(hidden)), activation=activation
        )
        self.model = VAEModel(decoder, latent_dim, data_shape, likelihood)
        self.guide = VAEGuide(encoder, data_shape)

    @property
    def needs_binary_data(self) -> bool:
        return self.model.likelihood.support is constraints.boolean

    def decoder_mean(self, z: torch.Tensor) -> torch.Tensor:
        r"""The mean of :math:`p_\theta(x \mid z)`."""
        return self.model.likelihood.mean(self.model.decoder(z))
