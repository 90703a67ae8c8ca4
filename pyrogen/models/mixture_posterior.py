r"""
The exact posterior of a mixture as a Pyro guide (EM's E-step), and the mixture facade.

See :mod:`pyrogen.models.mixture` for the generative models and
:mod:`pyrogen.infer.em` for the EM loops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule
from torch import nn

from pyrogen.models.mixture import (
    COMPONENTS,
    COVARIANCES,
    INIT_METHODS,
    BernoulliMixtureModel,
    GaussianMixtureModel,
    MixtureModel,
    _positive_int,
)
from pyrogen.models.util import data_plate


class MixturePosterior(PyroModule):
    r"""
    The exact posterior of a :class:`MixtureModel` as a guide (the E-step):

    .. math::
        q(z_n = k \mid x_n) = p_{\theta'}(z_n = k \mid x_n)
            = \frac{\pi_k\, p_{\theta'}(x_n \mid k)}{\sum_j \pi_j\, p_{\theta'}(x_n \mid j)},

    computed in closed form (a softmax of :meth:`MixtureModel.log_joint`) and
    detached: the guide has no parameters and no gradient flows into it. Here
    :math:`\theta'` is the model's *current* parameters at every call, or,
    after :meth:`e_step`, the parameters at that moment, held fixed until the
    next :meth:`e_step` or :meth:`release` (call :meth:`e_step` again after
    moving the model to another device or dtype).

    With ``pyro.infer.Trace_ELBO`` the gradient of the loss is
    :math:`-\nabla_\theta Q(\theta; \theta')` (the guide's entropy does not
    depend on :math:`\theta`), so ``SVI.step`` is a stochastic generalised
    M-step. With ``enumerate=True`` the site ``"z"`` is enumerated in
    parallel and ``TraceEnum_ELBO(max_plate_nesting=1)`` returns exactly

    .. math::
        -\textstyle\sum_n \sum_k r_{nk} \left[\log p_\theta(x_n, k) - \log r_{nk}\right]
            = -\left(Q(\theta; \theta') + H(r)\right),

    the exact M-step objective (plus a constant); at :math:`\theta = \theta'`
    it equals :math:`-\sum_n \log p_\theta(x_n)`.

    **References**

    [1] A. P. Dempster, N. M. Laird, D. B. Rubin, "Maximum Likelihood from
    Incomplete Data via the EM Algorithm", JRSS B 39(1), 1977.

    [2] J. Su, "Variational Inference: A Unified Framework of Generative Models
    and Some Revelations", arXiv:1807.05936, 2018 (section 2, EM; its
    :math:`p(z \mid x)` is this guide, its :math:`q(x, z)` this model).

    Example::

        guide = MixturePosterior(model, enumerate=True)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), TraceEnum_ELBO(max_plate_nesting=1))
        guide.e_step()
        for _ in range(10):
            svi.step(x)

    :param MixtureModel model: the mixture whose posterior this is (not a submodule).
    :param bool enumerate: mark ``"z"`` for parallel enumeration.
    """

    def __init__(self, model: MixtureModel, enumerate: bool = False) -> None:
        if not isinstance(model, MixtureModel):
            raise TypeError(f"model must be a MixtureModel, got {type(model).__name__}")
        super().__init__()
        # kept out of the module tree, so the guide owns no parameter of the model
        object.__setattr__(self, "_model", model)
        self.enumerate = bool(enumerate)
        self._fixed: dict[str, torch.Tensor] | None = None

    @property
    def model(self) -> MixtureModel:
        return self._model

    @property
    def fixed(self) -> bool:
        """Whether the posterior is held at the parameters of the last :meth:`e_step`."""
        return self._fixed is not None

    def e_step(self) -> None:
        """Hold the posterior at the model's current parameters."""
        with torch.no_grad():
            self._fixed = {k: v.detach().clone() for k, v in self._model.params().items()}

    def release(self) -> None:
        """Follow the model's current parameters again at every call."""
        self._fixed = None

    def forward(self, x: torch.Tensor, *, num_data: int | None = None) -> torch.Tensor:
        x = self._model.check_data(x)
        with torch.no_grad():
            log_joint = self._model.log_joint(x, self._fixed)
        infer = {"enumerate": "parallel"} if self.enumerate else {}
        with data_plate(x.shape[0], num_data, x.device):
            return pyro.sample("z", dist.Categorical(logits=log_joint.detach()), infer=infer)


class Mixture(nn.Module):
    r"""
    A mixture model: :class:`GaussianMixtureModel` or
    :class:`BernoulliMixtureModel` with its exact posterior
    :class:`MixturePosterior`, and what users reach for. Fit it with
    :func:`pyrogen.infer.em.exact_em` (closed-form EM) or
    :func:`pyrogen.infer.em.generalised_em` (SVI M-steps)::

        mixture = Mixture((1, 8, 8), num_components=10, component="bernoulli")
        mixture.init_from_data(x, method="kmeans++", seed=0)
        history = exact_em(mixture, x, num_iters=100)

    ``mixture.config`` holds the constructor arguments, so a checkpoint can rebuild it.

    :param tuple data_shape: one data point's shape; ``(D,)`` for a Gaussian mixture.
    :param int num_components: :math:`K`.
    :param str component: ``"gaussian"`` or ``"bernoulli"``.
    :param str covariance: ``"full"`` or ``"diag"`` (Gaussian only).
    :param float reg_covar: added to the M-step's covariances (Gaussian only).
    :param float eps: clamp of the M-step's probabilities (Bernoulli only).
    :param tuple image_shape: for a Gaussian mixture of flattened images, their shape
        ``(C, H, W)``: :meth:`sample` and :meth:`component_means` then return images,
        and :meth:`inputs` flattens a batch of images.
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        num_components: int = 10,
        component: str = "bernoulli",
        covariance: str = "full",
        reg_covar: float = 1e-6,
        eps: float = 1e-6,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if component not in COMPONENTS:
            raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        data_shape = tuple(int(d) for d in data_shape)
        self.config: dict[str, Any] = dict(
            data_shape=list(data_shape), num_components=int(num_components), component=component,
            covariance=covariance, reg_covar=float(reg_covar), eps=float(eps),
            image_shape=None if image_shape is None else [int(d) for d in image_shape],
        )
        if image_shape is not None and math.prod(image_shape) != math.prod(data_shape):
            raise ValueError(f"image_shape {tuple(image_shape)} does not hold data points of "
                             f"shape {data_shape}")
        if component == "gaussian":
            if len(data_shape) != 1:
                raise ValueError(f"a Gaussian mixture models flat vectors: data_shape must be (D,), "
                                 f"got {data_shape}; flatten the data first (x.flatten(1))")
            self.model: MixtureModel = GaussianMixtureModel(
                num_components, data_shape[0], covariance, reg_covar)
        else:
            self.model = BernoulliMixtureModel(num_components, data_shape, eps)
        self.guide = MixturePosterior(self.model)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self.model.data_shape

    @property
    def num_components(self) -> int:
        return self.model.num_components

    @torch.no_grad()
    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p_\theta(x_n)` per data point, in nats."""
        return self.model.log_likelihood(x)

    @torch.no_grad()
    def posterior(self, x: torch.Tensor) -> torch.Tensor:
        r"""The responsibilities :math:`p_\theta(z_n = k \mid x_n)`, ``(batch, K)``."""
        return self.model.posterior(x)

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = False) -> torch.Tensor:
        r"""``num_samples`` draws :math:`x \sim p_\theta(x)`, or with ``mean=True`` the means of
        :math:`p_\theta(x \mid z)` for draws :math:`z \sim \pi` (images of probabilities)."""
        num_samples = _positive_int(num_samples, "num_samples")
        params = self.model.params()
        z = dist.Categorical(logits=params["log_weights"]).sample((num_samples,))
        component = self.model.component(params, z)
        return self._as_images(component.mean if mean else component.sample())

    def _as_images(self, x: torch.Tensor) -> torch.Tensor:
        shape = self.config["image_shape"]
        return x if shape is None else x.reshape(x.shape[0], *shape)

    @torch.no_grad()
    def component_means(self) -> torch.Tensor:
        """The mean of every component, ``(K, *data_shape)`` (images with ``image_shape``)."""
        k = torch.arange(self.num_components, device=self.model.weight_logits.device)
        return self._as_images(self.model.component(self.model.params(), k).mean)

    def inputs(self, batch: Any) -> tuple[torch.Tensor]:
        """Model and guide arguments for a :class:`~pyrogen.data.Batch`: ``x``, flattened
        for a Gaussian mixture of images."""
        x = batch.x
        if len(self.data_shape) == 1 and x.dim() > 2:
            x = x.flatten(1)
        return (x,)

    def set_params(self, **params: torch.Tensor) -> None:
        """Set initial parameters: ``weights`` and ``means``/``covariances`` or ``probs``."""
        self.model.set_params(**params)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, method: str = "kmeans++", seed: int = 0) -> None:
        """
        Seed :math:`K` centres among the data points (k-means++ [1]: each next
        centre drawn with probability proportional to its squared distance to
        the nearest centre so far; ``"random"``: uniformly without
        replacement), assign every point to its nearest centre, and take the
        M-step of that hard assignment.

        [1] D. Arthur, S. Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.
        """
        if method not in INIT_METHODS:
            raise ValueError(f"method must be one of {INIT_METHODS}, got {method!r}")
        x = self.model.check_data(x)
        k = self.num_components
        if x.shape[0] < k:
            raise ValueError(f"x must hold at least num_components={k} points, got {x.shape[0]}")
        flat = x.flatten(1)
        generator = torch.Generator(device=x.device).manual_seed(int(seed))
        if method == "random":
            index = torch.randperm(x.shape[0], generator=generator, device=x.device)[:k]
        else:
            index = _kmeans_plusplus(flat, k, generator)
        labels = torch.cdist(flat, flat[index]).argmin(1)
        self.model.m_step(x, F.one_hot(labels, k).to(x.dtype))


def _kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(x.shape[0], (1,), generator=generator, device=x.device)
    dist2 = ((x - x[index]) ** 2).sum(-1)
    for _ in range(1, k):
        weights = dist2 if bool(dist2.sum() > 0) else torch.ones_like(dist2)
        nxt = torch.multinomial(weights, 1, generator=generator)
        index = torch.cat([index, nxt])
        dist2 = torch.minimum(dist2, ((x - x[nxt]) ** 2).sum(-1))
    return index


__all__ = ["Mixture", "MixturePosterior"]
