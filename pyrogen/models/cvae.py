r"""
Conditional VAEs: three models that go by the name, as Pyro model/guide pairs.

Every distribution of the VAE is conditioned on an input :math:`y`, a class
label or the visible part of an image (:mod:`pyrogen.data.quadrants`), and the
ELBO is the VAE's with :math:`y` threaded through (Su 2018, section 4; the
paper's :math:`q` is Pyro's model, its :math:`p` the guide):

.. math::
    \log p_\theta(x \mid y) \ge \mathbb{E}_{q_\phi(z \mid x, y)}
        \log p_\theta(x \mid z, y) - \mathrm{KL}(q_\phi(z \mid x, y) \,\|\, p_\theta(z \mid y)).

The ``condition`` choice picks the model:

``"prior-network"`` (Sohn et al. 2015)
    prior network :math:`p_\theta(z \mid y) = \mathcal{N}(\mu_\theta(y, \hat x),
    \sigma^2_\theta(y, \hat x))`, recognition network :math:`q_\phi(z \mid x, y)`,
    generation network :math:`p_\theta(x \mid z, y)`. As in Pyro's CVAE example, a
    deterministic baseline network :math:`\hat x = f(y)` is trained first (to
    maximise :math:`\log p(x \mid \hat x)`), then frozen, and its prediction is an
    input of the prior network.
``"encoder-decoder"``
    :math:`p(z) = \mathcal{N}(0, I)`, :math:`q_\phi(z \mid x, y)`,
    :math:`p_\theta(x \mid z, y)`: class-conditional generation ("draw ten 7s").
``"class-mean"`` (Su's own code)
    :math:`p(z \mid y) = \mathcal{N}(\mu_y, I)` with one learned mean per class,
    :math:`q_\phi(z \mid x)` and :math:`p_\theta(x \mid z)` unconditioned; the KL
    term is analytic, :math:`\tfrac12 \sum_d (\sigma_d^2 + (m_d - \mu_{y,d})^2 - 1
    - \log \sigma_d^2)`.

With quadrants as :math:`y`, the observation site ``"x"`` is masked to the
hidden pixels, so the bound is on :math:`\log p(x_{\text{hidden}} \mid
x_{\text{visible}})`, the conditional log-likelihood of the quadrant task.

**References**

[1] K. Sohn, H. Lee, X. Yan, "Learning Structured Output Representation using
Deep Conditional Generative Models", NeurIPS 2015.

[2] J. Su, "Variational Inference: A Unified Framework of Generative Models
and Some Revelations", arXiv:1807.05936, 2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import constraints

from pyrogen.primitives import NamedPyroModule
from pyrogen.data.quadrants import check_quadrants, condition_on_quadrants, visible_mask
from pyrogen.models.likelihoods import LIKELIHOODS, build_likelihood
from pyrogen.models.util import ShapedFacade, beta_scale, check_data, data_plate
from pyrogen.nn import MLP, MLPDecoder, MLPEncoder

#: the three conditional VAEs
CONDITIONS = ("prior-network", "encoder-decoder", "class-mean")


class ConditionFeatures(nn.Module):
    r"""
    The conditioning input :math:`y` as a feature vector: a one-hot code for a
    class label (``int64`` of shape ``(batch,)``), or the flattened image with
    hidden pixels at ``-1`` for quadrants.
    """

    def __init__(self, num_classes: int | None, data_shape: tuple[int, ...] | None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.data_shape = data_shape
        self.dim = num_classes if num_classes is not None else math.prod(data_shape)

    def check(self, y: Any) -> int:
        """Check ``y`` and return its batch size."""
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"the condition y must be a torch.Tensor, got {type(y).__name__}")
        if self.num_classes is not None:
            if y.dim() != 1 or y.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"the condition y must be integer class labels of shape (batch,), "
                                 f"got dtype {y.dtype} and shape {tuple(y.shape)}")
            return y.shape[0]
        return check_data(y, self.data_shape, "y")

    def forward(self, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The features of a batch of conditions ``y``, ``(batch, dim)`` in ``dtype``: the
        one-hot codes of class labels, or the flattened conditioning images (hidden pixels
        already at ``-1``). ``y`` is not checked here: see :meth:`check`."""
        if self.num_classes is not None:
            return F.one_hot(y.long(), self.num_classes).to(dtype)
        return y.reshape(y.shape[0], -1).to(dtype)


def _expand_to(c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    # z may carry particle dimensions in front of the batch: (..., batch, latent)
    return c.expand(*z.shape[:-1], c.shape[-1])


class BaselineModel(NamedPyroModule):
    r"""
    The deterministic baseline :math:`p(x \mid y) = p(x \mid \hat x = f(y))` of the
    prior-network CVAE, a Pyro model with no latent variable: with
    :class:`EmptyGuide`, ``Trace_ELBO`` is exactly :math:`-\log p(x \mid y)`.
    """

    def __init__(self, features: ConditionFeatures, data_shape: tuple[int, ...], hidden: Sequence[int],
                 activation: str, likelihood: nn.Module, target_mask: torch.Tensor | None) -> None:
        super().__init__()
        self.features = features
        self.data_shape = data_shape
        self.net = MLP(features.dim, hidden, math.prod(data_shape), activation=activation)
        self.likelihood = likelihood
        self.register_buffer("target_mask", target_mask)

    def predict(self, c: torch.Tensor) -> torch.Tensor:
        """The baseline's output (likelihood parameters, e.g. logits) from condition features."""
        return self.net(c).reshape(c.shape[0], *self.data_shape)

    def forward(self, x: torch.Tensor | None, y: torch.Tensor, *, num_data: int | None = None) -> torch.Tensor:
        r"""
        The baseline as a Pyro model with no latent site: one sample site ``"x"`` in the
        ``"data"`` plate, :math:`x_n \sim p(x \mid \hat x_n = f(y_n))` (the CVAE's likelihood,
        masked to the hidden pixels for quadrants), observed at ``x``.

        :param x: the data ``(batch, *data_shape)``, or ``None`` to draw.
        :param y: the condition (labels ``(batch,)`` or conditioning images).
        :param int num_data: the data set size (scales the plate).
        :returns: the network's output (the likelihood's parameters, e.g. logits, whose mean
            is :math:`\hat x`).
        """
        batch = self.features.check(y)
        if x is not None and check_data(x, self.data_shape) != batch:
            raise ValueError(f"x has {x.shape[0]} points but y has {batch}")
        out = self.predict(self.features(y, self.net.layers[0].weight.dtype))
        with data_plate(batch, num_data, y.device):
            pyro.sample("x", self.likelihood(out, self.target_mask), obs=x)
        return out


class EmptyGuide(NamedPyroModule):
    """A guide with no sample sites, for models with no latent variable."""

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """No sample site: takes the model's arguments, ignores them and returns ``None``; with
        a model without latent sites, ``Trace_ELBO`` is then the model's negative
        log-likelihood."""
        return None


class CVAEModel(NamedPyroModule):
    r"""
    The generative side of a conditional VAE (see the module docstring):
    :math:`z \sim p(z \mid y)`, :math:`x \sim p_\theta(x \mid z, y)` inside the
    ``"data"`` plate. ``model(x, y)`` scores ``x``; ``model(None, y)`` draws one
    point per condition.
    """

    def __init__(self, condition: str, features: ConditionFeatures, decoder: nn.Module,
                 latent_dim: int, data_shape: tuple[int, ...], likelihood: str,
                 target_mask: torch.Tensor | None, baseline: BaselineModel | None,
                 prior_net: nn.Module | None) -> None:
        super().__init__()
        self.condition = condition
        self.features = features
        self.decoder = decoder
        self.latent_dim = latent_dim
        self.data_shape = data_shape
        self.likelihood = build_likelihood(likelihood, data_shape)
        self.register_buffer("target_mask", target_mask)
        self.register_buffer("prior_loc", torch.zeros(latent_dim))
        self.register_buffer("prior_scale", torch.ones(latent_dim))
        if condition == "class-mean":
            self.class_means = nn.Parameter(torch.zeros(features.num_classes, latent_dim))
        self.baseline = baseline
        self.prior_net = prior_net

    def prior(self, y: torch.Tensor, c: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`p(z \mid y)` of each data point, batch shape ``(batch,)``."""
        if self.condition == "encoder-decoder":
            return dist.Normal(self.prior_loc, self.prior_scale).expand(
                (c.shape[0], self.latent_dim)).to_event(1)
        if self.condition == "class-mean":
            return dist.Normal(self.class_means[y.long()], self.prior_scale).to_event(1)
        # the baseline is trained first and stays fixed; detach (not only no_grad,
        # which a recorded graph need not keep) keeps gradients out of it
        with torch.no_grad():
            x_hat = self.baseline.likelihood.mean(self.baseline.predict(c)).detach()
        loc, scale = self.prior_net(torch.cat([c, x_hat.reshape(c.shape[0], -1)], -1))
        return dist.Normal(loc, scale).to_event(1)

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The decoder output (likelihood parameters) for latents ``z`` and condition features ``c``."""
        if self.condition == "class-mean":
            return self.decoder(z)
        return self.decoder(torch.cat([z, _expand_to(c, z)], -1))

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None, *,
                num_data: int | None = None, beta: float = 1.0) -> torch.Tensor:
        """
        :param x: the data ``(batch, *data_shape)``, or ``None`` to generate.
        :param y: the condition (labels ``(batch,)`` or conditioning images).
        :param int num_data: the data set size (scales the ELBO).
        :param float beta: the weight of the KL term (> 0).
        :returns: the latent draws ``z``.
        """
        if y is None:
            raise ValueError("a conditional VAE needs the condition y (labels or visible quadrants)")
        batch = self.features.check(y)
        if x is not None and check_data(x, self.data_shape) != batch:
            raise ValueError(f"x has {x.shape[0]} points but y has {batch}")
        c = self.features(y, self.prior_loc.dtype)
        with data_plate(batch, num_data, self.prior_loc.device):
            with beta_scale(beta):
                z = pyro.sample("z", self.prior(y, c))
            pyro.sample("x", self.likelihood(self.decode(z, c), self.target_mask), obs=x)
        return z


class CVAEGuide(NamedPyroModule):
    r"""
    The recognition network :math:`q_\phi(z \mid x, y)` (:math:`q_\phi(z \mid x)`
    for the class-mean prior), a diagonal Gaussian.
    """

    def __init__(self, condition: str, features: ConditionFeatures, encoder: nn.Module,
                 data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.condition = condition
        self.features = features
        self.encoder = encoder
        self.data_shape = data_shape

    def posterior(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The location and scale of :math:`q_\\phi(z \\mid x, y)`."""
        if self.condition == "class-mean":
            return self.encoder(x)
        c = self.features(y, x.dtype)
        return self.encoder(torch.cat([x.reshape(x.shape[0], -1), c], -1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                num_data: int | None = None, beta: float = 1.0) -> torch.Tensor:
        r"""
        The guide: one sample site ``"z"`` in the ``"data"`` plate,
        :math:`z_n \sim q_\phi(z \mid x_n, y_n) = \mathcal{N}(\mu_\phi(x_n, y_n),
        \mathrm{diag}\, \sigma^2_\phi(x_n, y_n))` (:math:`q_\phi(z \mid x_n)` for the
        class-mean prior), reparameterised, its log-density scaled by ``beta`` as in the model.

        :param x: the data ``(batch, *data_shape)``.
        :param y: the condition (labels ``(batch,)`` or conditioning images); required.
        :param int num_data: the data set size (scales the plate).
        :param float beta: the weight of the KL term (> 0), the model's.
        :returns: the latent draws ``z``, ``(batch, latent_dim)``.
        """
        if y is None:
            raise ValueError("a conditional VAE needs the condition y (labels or visible quadrants)")
        batch = check_data(x, self.data_shape)
        if self.features.check(y) != batch:
            raise ValueError(f"x has {batch} points but y has {y.shape[0]}")
        with data_plate(batch, num_data, x.device):
            loc, scale = self.posterior(x, y)
            with beta_scale(beta):
                return pyro.sample("z", dist.Normal(loc, scale).to_event(1))


class CVAE(ShapedFacade):
    r"""
    A conditional VAE (:class:`CVAEModel` and :class:`CVAEGuide` built from MLPs),
    conditioned on class labels or, with ``quadrants``, on the visible quadrants
    of the image. Train it with any Pyro ELBO; the condition is the second
    argument of model and guide::

        cvae = CVAE((1, 28, 28), condition="encoder-decoder", num_classes=10)
        svi = SVI(cvae.model, cvae.guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
        for x, y, _ in batches:
            svi.step(x, y, num_data=60000)
        sevens = cvae.sample(10, y=7)

    With ``condition="prior-network"`` the baseline network
    (``cvae.baseline_pair()``) must be trained before the CVAE; pyrogen's
    trainer does it, for ``baseline_epochs`` epochs.

    :param tuple data_shape: the shape of one data point ``(C, H, W)``.
    :param str condition: one of :data:`CONDITIONS`.
    :param int num_classes: the number of class labels (label conditioning).
    :param int quadrants: 1, 2 or 3: condition on that many visible quadrants
        instead of labels (not with ``"class-mean"``).
    :param int latent_dim: the dimension of :math:`z`.
    :param tuple hidden: hidden sizes of every network (the decoder mirrors them).
    :param str likelihood: one of :data:`~pyrogen.models.likelihoods.LIKELIHOODS`.
    :param str activation: hidden activation (default ``"relu"``).
    :param int baseline_epochs: epochs of baseline training (``"prior-network"``).
    """

    def __init__(self, data_shape: Sequence[int], condition: str = "encoder-decoder",
                 num_classes: int | None = 10, quadrants: int | None = None, latent_dim: int = 50,
                 hidden: Sequence[int] = (500, 500), arch: str = "mlp", likelihood: str = "bernoulli",
                 activation: str | None = None, baseline_epochs: int = 10) -> None:
        super().__init__()
        data_shape = tuple(int(d) for d in data_shape)
        hidden = tuple(int(h) for h in hidden)
        if condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
        if arch != "mlp":
            raise ValueError(f"the conditional VAE is built from MLPs: arch must be 'mlp', got {arch!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim}")
        if int(baseline_epochs) < 0:
            raise ValueError(f"baseline_epochs must be >= 0, got {baseline_epochs}")
        if quadrants is not None:
            quadrants = check_quadrants(quadrants)
            if condition == "class-mean":
                raise ValueError("condition 'class-mean' needs class labels; it cannot condition "
                                 "on quadrants")
            num_classes = None
        elif num_classes is None or int(num_classes) < 2:
            raise ValueError(f"label conditioning needs num_classes >= 2, got {num_classes!r} "
                             "(or pass quadrants=1, 2 or 3)")
        activation = activation or "relu"
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape), condition=condition,
            num_classes=None if num_classes is None else int(num_classes), quadrants=quadrants,
            latent_dim=int(latent_dim), hidden=list(hidden), arch=arch, likelihood=likelihood,
            activation=activation, baseline_epochs=int(baseline_epochs),
        )
        latent_dim = int(latent_dim)
        features = ConditionFeatures(self.config["num_classes"], None if quadrants is None else data_shape)
        if quadrants is not None:
            self.register_buffer("visible", visible_mask(data_shape, quadrants))
            target = ~self.visible
        else:
            self.visible, target = None, None
        d, c = math.prod(data_shape), features.dim
        if condition == "class-mean":
            encoder = MLPEncoder(data_shape, latent_dim, hidden, activation)
            decoder = MLPDecoder(latent_dim, data_shape, tuple(reversed(hidden)), activation)
        else:
            encoder = MLPEncoder((d + c,), latent_dim, hidden, activation)
            decoder = MLPDecoder(latent_dim + c, data_shape, tuple(reversed(hidden)), activation)
        baseline = prior_net = None
        if condition == "prior-network":
            baseline = BaselineModel(features, data_shape, hidden, activation,
                                     build_likelihood(likelihood, data_shape),
                                     None if target is None else target.clone())
            prior_net = MLPEncoder((c + d,), latent_dim, hidden, activation)
            # the flag is a buffer so that checkpoints say whether the baseline is trained
            self.register_buffer("baseline_trained", torch.tensor(False))
        self.model = CVAEModel(condition, features, decoder, latent_dim, data_shape, likelihood,
                               None if target is None else target.clone(), baseline, prior_net)
        self.guide = CVAEGuide(condition, features, encoder, data_shape)

    @property
    def condition(self) -> str:
        """Which conditional VAE this is, one of :data:`CONDITIONS` (the constructor's
        ``condition``)."""
        return self.config["condition"]

    @property
    def needs_labels(self) -> bool:
        """Whether the condition is the class label (else the visible quadrants)."""
        return self.config["quadrants"] is None

    def condition_of(self, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """The condition ``y`` for data ``x`` with class ``labels``: the labels, or the visible quadrants."""
        if self.needs_labels:
            if labels is None:
                raise ValueError(f"condition {self.condition!r} conditions on class labels, "
                                 "but the data have none")
            return labels
        check_data(x, self.data_shape)
        return condition_on_quadrants(x, self.visible)

    def inputs(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The positional arguments ``(x, y)`` of model and guide for a :class:`~pyrogen.data.Batch`."""
        return batch.x, self.condition_of(batch.x, batch.y)

    def baseline_pair(self) -> tuple[BaselineModel, EmptyGuide] | None:
        """The baseline network as a Pyro model/guide pair (``Trace_ELBO`` = its NLL), or None."""
        if self.model.baseline is None:
            return None
        return self.model.baseline, EmptyGuide()

    def baseline_done(self) -> bool:
        """Whether the baseline network has been trained (a buffer, saved with the weights)."""
        return self.model.baseline is None or bool(self.baseline_trained)

    @property
    def needs_binary_data(self) -> bool:
        """Whether the generation network's likelihood is Bernoulli (its support boolean:
        ``likelihood="bernoulli"``), so grey-level data would be scored wrongly."""
        return self.model.likelihood.support is constraints.boolean

    def scored_dimensions(self, num_dims: int) -> int:
        """A quadrant model scores the hidden pixels only."""
        return num_dims if self.visible is None else int((~self.visible).sum())

    def _labels(self, num_samples: int, y: int | torch.Tensor | None) -> torch.Tensor:
        device = self.model.prior_loc.device
        if y is None:
            return torch.arange(num_samples, device=device) % self.config["num_classes"]
        y = torch.as_tensor(y, device=device).long().reshape(-1)
        if ((y < 0) | (y >= self.config["num_classes"])).any():
            raise ValueError(f"labels must lie in [0, {self.config['num_classes']}), got {y.tolist()}")
        return y.expand(num_samples) if y.numel() == 1 else y

    @torch.no_grad()
    def sample(self, num_samples: int, y: int | torch.Tensor | None = None) -> torch.Tensor:
        r"""
        Means of :math:`p_\theta(x \mid z, y)` for :math:`z \sim p(z \mid y)`.

        :param int num_samples: the number of samples.
        :param y: a class label (``sample(16, y=7)``), a tensor of labels, or
            ``None`` for labels ``0, 1, ..., K-1, 0, ...``. Quadrant models
            complete images instead: see :meth:`complete`.
        """
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
        if not self.needs_labels:
            raise ValueError("a quadrant CVAE samples completions of given images: use complete(x)")
        labels = self._labels(int(num_samples), y)
        c = self.model.features(labels, self.model.prior_loc.dtype)
        z = self.model.prior(labels, c).sample()
        return self.model.likelihood.mean(self.model.decode(z, c))

    @torch.no_grad()
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""The mean of :math:`p_\theta(x \mid z, y)`."""
        c = self.model.features(y, z.dtype)
        return self.model.likelihood.mean(self.model.decode(z, c))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The location and scale of :math:`q_\phi(z \mid x, y)`."""
        check_data(x, self.data_shape)
        return self.guide.posterior(x, y)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r"""The mean of :math:`p_\theta(x \mid z, y)` at :math:`z = \mu_\phi(x, y)`."""
        loc, _ = self.encode(x, y)
        return self.decode(loc, y)

    @torch.no_grad()
    def complete(self, x: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        r"""
        Quadrant completion: ``num_samples`` draws per image of the hidden pixels
        (means of :math:`p_\theta(x \mid z, y)`, :math:`z \sim p(z \mid y)`) pasted
        beside its visible quadrants; shape ``(num_samples, batch, *data_shape)``.
        """
        if self.needs_labels:
            raise ValueError("complete() needs a CVAE trained on quadrants")
        y = self.condition_of(x, None)
        c = self.model.features(y, self.model.prior_loc.dtype)
        z = self.model.prior(y, c).sample((int(num_samples),))
        mean = self.model.likelihood.mean(self.model.decode(z, c))
        return torch.where(self.visible, x, mean)

    @torch.no_grad()
    def training_pictures(self, z: torch.Tensor, x: torch.Tensor, labels: torch.Tensor | None,
                          images: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Pictures for a run folder: samples of every class from fixed ``z``, or quadrant completions."""
        n = z.shape[0]
        if self.needs_labels:
            y = self._labels(n, None)
            pictures = {"samples": self.decode(z, y)}
            if labels is not None:
                pictures["reconstructions"] = torch.cat([x, self.reconstruct(x, labels)])
            return pictures
        shown = condition_on_quadrants(x, self.visible).clamp(min=0)
        return {"completions": torch.cat([shown, x, self.complete(x)[0]])}


__all__ = ["BaselineModel", "CONDITIONS", "CVAE", "CVAEGuide", "CVAEModel", "ConditionFeatures",
           "EmptyGuide"]
