r"""
Finite mixtures as Pyro model/guide pairs, for the EM algorithm.

In the unified framework (Su 2018, section 2, "EM algorithm") EM is the joint
KL with *no* constraint on the inference side: the E-step sets it to the exact
posterior of the current generative model, the M-step maximises the expected
complete-data log-likelihood. The paper names the generative side :math:`q`
and the inference side :math:`p`; here, as in Pyro, the *model* is the mixture
:math:`p_\theta(x, z)` and the *guide* is its exact posterior
:math:`p_\theta(z \mid x)` (:class:`~pyrogen.models.mixture_posterior.MixturePosterior`,
with the facade :class:`~pyrogen.models.mixture_posterior.Mixture`). The loops live in
:mod:`pyrogen.infer.em`.
"""

from __future__ import annotations


from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import constraints, transform_to

from pyrogen.primitives import NamedPyroModule
from pyrogen.models.util import check_data as check_shape
from pyrogen.models.mixture_guide import MixturePosterior
from pyrogen.models.util import data_plate

COMPONENTS = ("gaussian", "bernoulli")
COVARIANCES = ("full", "diag")
INIT_METHODS = ("kmeans++", "random")

# exp on the diagonal, identity below it; its inverse takes log of the diagonal
_LOWER_CHOLESKY = transform_to(constraints.lower_cholesky)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _fill(param: torch.Tensor, value: torch.Tensor) -> None:
    # in place, so the param store and any optimiser keep holding this very tensor
    with torch.no_grad():
        param.copy_(value)


def _check_weights(weights: torch.Tensor, k: int) -> torch.Tensor:
    if weights.shape != (k,) or not bool((weights > 0).all()):
        raise ValueError(f"weights must be {k} positive numbers, got shape {tuple(weights.shape)}")
    if not torch.isclose(weights.sum(), weights.new_tensor(1.0), atol=1e-5):
        raise ValueError(f"weights must sum to 1, got {float(weights.sum())}")
    return weights


class MixtureModel(NamedPyroModule):
    r"""
    Base class of a mixture of :math:`K` components with mixing weights
    :math:`\pi = \mathrm{softmax}(\text{weight\_logits})`:

    .. math::
        z_n \sim \mathrm{Categorical}(\pi), \qquad
        x_n \mid z_n \sim p_\theta(x \mid \text{component } z_n) \quad (n = 1, \dots, N).

    A subclass defines :meth:`params`, :meth:`component`, :meth:`log_joint`
    and :meth:`m_step`. The model works in the dtype and on the device of its
    parameters (``.double()``, ``.to("cuda")``); data are cast to that dtype.
    """

    data_shape: tuple[int, ...]

    def __init__(self, num_components: int) -> None:
        super().__init__()
        self.num_components = _positive_int(num_components, "num_components")
        self.weight_logits = nn.Parameter(torch.zeros(self.num_components))

    def params(self) -> dict[str, torch.Tensor]:
        """The constrained parameters (``log_weights`` and the components'), differentiable."""
        raise NotImplementedError

    def component(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`p_\theta(x \mid z)` for a tensor of component indices ``z``."""
        raise NotImplementedError

    def log_joint(
        self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        r""":math:`\log p_\theta(x_n, z_n = k)`, ``(batch, K)``, under ``params`` (default: current)."""
        raise NotImplementedError

    def m_step(self, x: torch.Tensor, resp: torch.Tensor) -> None:
        """Set the parameters to the closed-form M-step for responsibilities ``resp`` ``(N, K)``."""
        raise NotImplementedError

    def check_data(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Check the shape and device of a batch ``x``; return it in the parameters' dtype."""
        check_shape(x, self.data_shape, name)
        param = self.weight_logits
        if x.device != param.device:
            raise ValueError(f"{name} is on {x.device} but the model on {param.device}; "
                             "move one of them with .to(device)")
        return x.to(param.dtype)

    def log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p_\theta(x_n) = \operatorname{logsumexp}_k \log p_\theta(x_n, k)`, ``(batch,)``."""
        return torch.logsumexp(self.log_joint(self.check_data(x)), -1)

    def posterior(self, x: torch.Tensor) -> torch.Tensor:
        r"""The responsibilities :math:`r_{nk} = p_\theta(z_n = k \mid x_n)`, ``(batch, K)``."""
        return torch.softmax(self.log_joint(self.check_data(x)), -1)

    def _counts(self, x: torch.Tensor, resp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if resp.shape != (x.shape[0], self.num_components):
            raise ValueError(
                f"resp must have shape ({x.shape[0]}, {self.num_components}), got {tuple(resp.shape)}"
            )
        resp = resp.to(x.dtype)
        # as scikit-learn: an empty component keeps a tiny weight instead of 0/0
        return resp, resp.sum(0) + 10 * torch.finfo(resp.dtype).eps

    def forward(
        self,
        x: torch.Tensor | None = None,
        *,
        num_data: int | None = None,
        num_samples: int | None = None,
    ) -> torch.Tensor:
        """
        :param x: a minibatch to condition on, or ``None`` to draw ``num_samples`` points.
        :param int num_data: the size of the data set the minibatch comes from
            (scales the log-density); ``None`` means the minibatch itself.
        :param int num_samples: the number of points to generate when ``x`` is None.
        :returns: the component indices ``z``.
        """
        if x is None:
            if num_samples is None:
                raise ValueError(f"{type(self).__name__} needs either x or num_samples")
            batch_size = _positive_int(num_samples, "num_samples")
        else:
            x = self.check_data(x)
            batch_size = x.shape[0]
        params = self.params()
        with data_plate(batch_size, num_data, self.weight_logits.device):
            z = pyro.sample("z", dist.Categorical(logits=params["log_weights"]))
            pyro.sample("x", self.component(params, z), obs=x)
        return z

    def exact_posterior(self, enumerate: bool = False) -> MixturePosterior:
        """The exact posterior :math:`p_\\theta(z \\mid x)` of this model as a Pyro guide
        (:class:`MixturePosterior`), for EM's E-step."""
        return MixturePosterior(self, enumerate=enumerate)


class GaussianMixtureModel(MixtureModel):
    r"""
    A mixture of :math:`K` Gaussians in :math:`\mathbb{R}^D`:

    .. math::
        z_n \sim \mathrm{Categorical}(\pi), \qquad
        x_n \mid z_n \sim \mathcal{N}(\mu_{z_n}, L_{z_n} L_{z_n}^\top),

    with :math:`L_k` lower triangular with positive diagonal (``"full"``,
    parametrised by an unconstrained matrix whose diagonal is exponentiated) or
    diagonal (``"diag"``, log-scales). The closed-form M-step is

    .. math::
        N_k = \textstyle\sum_n r_{nk}, \quad \pi_k = N_k / N, \quad
        \mu_k = \tfrac{1}{N_k} \sum_n r_{nk} x_n, \quad
        \Sigma_k = \tfrac{1}{N_k} \sum_n r_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top + \lambda I

    (only the diagonal for ``"diag"``), with :math:`\lambda` = ``reg_covar``
    as in scikit-learn. For :math:`\lambda > 0` this is not the exact maximiser
    of :math:`Q`, so only :math:`\lambda = 0` guarantees that EM never lowers
    the likelihood.

    **References**

    [1] C. M. Bishop, "Pattern Recognition and Machine Learning", section 9.2, 2006.

    Example::

        model = GaussianMixtureModel(3, 2, covariance="full").double()
        model.set_params(weights=w, means=mu, covariances=cov)
        log_px = model.log_likelihood(x)

    :param int num_components: :math:`K`.
    :param int dim: :math:`D`; data are flat vectors ``(batch, D)``.
    :param str covariance: ``"full"`` or ``"diag"``.
    :param float reg_covar: :math:`\lambda \ge 0`, added to the M-step's covariances.
    """

    def __init__(
        self, num_components: int, dim: int, covariance: str = "full", reg_covar: float = 1e-6
    ) -> None:
        dim = _positive_int(dim, "dim")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if not float(reg_covar) >= 0:
            raise ValueError(f"reg_covar must be >= 0, got {reg_covar}")
        super().__init__(num_components)
        self.data_shape = (dim,)
        self.covariance = covariance
        self.reg_covar = float(reg_covar)
        k = self.num_components
        self.loc = nn.Parameter(torch.randn(k, dim))
        if covariance == "full":
            self.scale_tril_raw = nn.Parameter(torch.zeros(k, dim, dim))
        else:
            self.log_scale = nn.Parameter(torch.zeros(k, dim))

    def params(self) -> dict[str, torch.Tensor]:
        r"""The constrained parameters, differentiable: ``log_weights`` :math:`\log \pi`
        ``(K,)``, ``loc`` :math:`\mu` ``(K, D)``, and ``scale_tril`` :math:`L` ``(K, D, D)``
        (``"full"``: ``scale_tril_raw`` below its diagonal, its diagonal exponentiated) or
        ``scale`` ``(K, D)`` (``"diag"``: the exponentiated log-scales)."""
        params = {"log_weights": F.log_softmax(self.weight_logits, -1), "loc": self.loc}
        if self.covariance == "full":
            params["scale_tril"] = _LOWER_CHOLESKY(self.scale_tril_raw)
        else:
            params["scale"] = self.log_scale.exp()
        return params

    def component(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`p_\theta(x \mid z) = \mathcal{N}(\mu_z, L_z L_z^\top)` for a tensor of
        component indices ``z``: a ``MultivariateNormal`` for ``"full"``, ``D`` independent
        normals (one ``Normal`` event of size ``D``) for ``"diag"``."""
        if self.covariance == "full":
            return dist.MultivariateNormal(params["loc"][z], scale_tril=params["scale_tril"][z])
        return dist.Normal(params["loc"][z], params["scale"][z]).to_event(1)

    def covariances(self) -> torch.Tensor:
        """The covariances, ``(K, D, D)`` for ``"full"`` and the variances ``(K, D)`` for ``"diag"``."""
        params = self.params()
        if self.covariance == "full":
            return params["scale_tril"] @ params["scale_tril"].transpose(-1, -2)
        return params["scale"] ** 2

    def log_joint(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        r""":math:`\log p_\theta(x_n, z_n = k) = \log \pi_k + \log \mathcal{N}(x_n; \mu_k,
        L_k L_k^\top)`, ``(batch, K)``, under ``params`` (default: current), one component
        at a time (memory ``(batch, D)``, not ``(batch, K, D)``)."""
        params = self.params() if params is None else params
        # one component at a time: memory (batch, D), not (batch, K, D)
        log_px = [self.component(params, k).log_prob(x) for k in range(self.num_components)]
        return torch.stack(log_px, -1) + params["log_weights"]

    def m_step(self, x: torch.Tensor, resp: torch.Tensor) -> None:
        r"""Set the parameters to the closed-form M-step for responsibilities ``resp``
        :math:`r_{nk}` ``(N, K)``: :math:`N_k = \sum_n r_{nk} + 10\epsilon_{\text{mach}}` (so an
        empty component does not divide 0 by 0), :math:`\pi_k = N_k / \sum_j N_j`,
        :math:`\mu_k = \frac{1}{N_k} \sum_n r_{nk} x_n`, ``"full"``: :math:`\Sigma_k =
        \frac{1}{N_k} \sum_n r_{nk} (x_n - \mu_k)(x_n - \mu_k)^\top + \lambda I`, ``"diag"``:
        :math:`\sigma^2_{kd} = \frac{1}{N_k} \sum_n r_{nk} x_{nd}^2 - \mu_{kd}^2 + \lambda`,
        with :math:`\lambda` = ``reg_covar`` (a ``ValueError`` if a covariance is not positive)."""
        x = self.check_data(x)
        with torch.no_grad():
            resp, nk = self._counts(x, resp)
            means = resp.T @ x / nk[:, None]
            if self.covariance == "full":
                eye = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
                covs = torch.stack([
                    (resp[:, k, None] * (x - means[k])).T @ (x - means[k]) / nk[k]
                    for k in range(self.num_components)
                ]) + self.reg_covar * eye
            else:
                covs = resp.T @ (x * x) / nk[:, None] - means**2 + self.reg_covar
            self.set_params(weights=nk / nk.sum(), means=means, covariances=covs)

    def set_params(
        self,
        weights: torch.Tensor | None = None,
        means: torch.Tensor | None = None,
        covariances: torch.Tensor | None = None,
    ) -> None:
        """
        Set the mixing weights ``(K,)``, means ``(K, D)`` and covariances
        (``(K, D, D)`` for ``"full"``, variances ``(K, D)`` for ``"diag"``).
        """
        k, d = self.num_components, self.data_shape[0]
        if weights is not None:
            _fill(self.weight_logits, _check_weights(weights, k).log())
        if means is not None:
            if means.shape != (k, d):
                raise ValueError(f"means must have shape ({k}, {d}), got {tuple(means.shape)}")
            _fill(self.loc, means)
        if covariances is None:
            return
        if self.covariance == "diag":
            if covariances.shape != (k, d) or not bool((covariances > 0).all()):
                raise ValueError(f"diag covariances must be ({k}, {d}) positive variances, "
                                 f"got shape {tuple(covariances.shape)}; increase reg_covar?")
            _fill(self.log_scale, 0.5 * covariances.log())
            return
        if covariances.shape != (k, d, d):
            raise ValueError(
                f"covariances must have shape ({k}, {d}, {d}), got {tuple(covariances.shape)}")
        scale_tril, info = torch.linalg.cholesky_ex(covariances)
        if bool((info != 0).any()):
            bad = info.nonzero().flatten().tolist()
            raise ValueError("covariances must be positive definite, got a singular or "
                             f"indefinite one for components {bad}; increase reg_covar?")
        _fill(self.scale_tril_raw, _LOWER_CHOLESKY.inv(scale_tril))


class BernoulliMixtureModel(MixtureModel):
    r"""
    A mixture of :math:`K` products of Bernoullis over binary data of shape
    ``data_shape`` (vectors or images):

    .. math::
        z_n \sim \mathrm{Categorical}(\pi), \qquad
        x_{nd} \mid z_n \sim \mathrm{Bernoulli}(\rho_{z_n d}),

    with :math:`\rho = \mathrm{sigmoid}(\text{logits})`. The M-step is
    :math:`\pi_k = N_k / N` and :math:`\rho_{kd} = \frac{1}{N_k} \sum_n
    r_{nk} x_{nd}`, clamped to :math:`[\epsilon, 1 - \epsilon]`: a pixel that
    is always off in a component's points would otherwise get probability 0
    (logit :math:`-\infty`) and every new point lit there likelihood 0. As
    :math:`Q` is concave in each :math:`\rho_{kd}`, the clamped value is the
    exact maximiser over :math:`[\epsilon, 1 - \epsilon]`, so EM stays monotone.

    **References**

    [1] C. M. Bishop, "Pattern Recognition and Machine Learning", section 9.3.3, 2006.

    Example::

        model = BernoulliMixtureModel(10, (1, 8, 8))
        resp = model.posterior(x)
        model.m_step(x, resp)

    :param int num_components: :math:`K`.
    :param tuple data_shape: the shape of one data point, e.g. ``(1, 28, 28)``.
    :param float eps: :math:`\epsilon \in (0, 0.5)`, the clamp of the M-step.
    """

    def __init__(self, num_components: int, data_shape: Sequence[int], eps: float = 1e-6) -> None:
        data_shape = tuple(_positive_int(d, "data_shape entries") for d in data_shape)
        if not 0 < float(eps) < 0.5:
            raise ValueError(f"eps must be in (0, 0.5), got {eps}")
        super().__init__(num_components)
        self.data_shape = data_shape
        self.eps = float(eps)
        # probabilities in (0.27, 0.73): the components differ, so EM can tell them apart
        self.logits = nn.Parameter(torch.empty(self.num_components, *data_shape).uniform_(-1, 1))

    def params(self) -> dict[str, torch.Tensor]:
        r"""The parameters, differentiable: ``log_weights`` :math:`\log \pi` ``(K,)`` and
        ``logits`` ``(K, *data_shape)``, with :math:`\rho = \mathrm{sigmoid}(\text{logits})`."""
        return {"log_weights": F.log_softmax(self.weight_logits, -1), "logits": self.logits}

    def component(self, params: dict[str, torch.Tensor], z: torch.Tensor) -> dist.TorchDistribution:
        r""":math:`p_\theta(x \mid z) = \prod_d \mathrm{Bernoulli}(x_d; \rho_{zd})` for a tensor
        of component indices ``z``, one event of shape ``data_shape``."""
        return dist.Bernoulli(logits=params["logits"][z]).to_event(len(self.data_shape))

    def check_data(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        """Check the shape and device of a batch ``x`` and that its entries are 0 or 1 (a
        ``ValueError`` for grey levels); return it in the parameters' dtype."""
        x = super().check_data(x, name)
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(f"{name} must be binary (0 or 1) for a Bernoulli mixture; binarise "
                             "grey levels first, e.g. torch.bernoulli(x)")
        return x

    def log_joint(self, x: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        r""":math:`\log p_\theta(x_n, z_n = k) = \log \pi_k + \sum_d \big[x_{nd} \ell_{kd} -
        \mathrm{softplus}(\ell_{kd})\big]`, ``(batch, K)``, with :math:`\ell` the logits, under
        ``params`` (default: current): one matrix product, no ``(batch, K, D)`` tensor."""
        params = self.params() if params is None else params
        logits = params["logits"].flatten(1)
        # log Bernoulli(x; l) = x l - softplus(l): one matmul, no (batch, K, D) tensor
        return x.flatten(1) @ logits.T - F.softplus(logits).sum(-1) + params["log_weights"]

    def m_step(self, x: torch.Tensor, resp: torch.Tensor) -> None:
        r"""Set the parameters to the closed-form M-step for responsibilities ``resp``
        :math:`r_{nk}` ``(N, K)``: :math:`N_k = \sum_n r_{nk} + 10\epsilon_{\text{mach}}` (so an
        empty component does not divide 0 by 0), :math:`\pi_k = N_k / \sum_j N_j` and
        :math:`\rho_{kd} = \min(\max(\frac{1}{N_k} \sum_n r_{nk} x_{nd}, \epsilon), 1 - \epsilon)`,
        the clamp with :math:`\epsilon` = ``eps``."""
        x = self.check_data(x)
        with torch.no_grad():
            resp, nk = self._counts(x, resp)
            probs = (resp.T @ x.flatten(1) / nk[:, None]).clamp(self.eps, 1 - self.eps)
            self.set_params(weights=nk / nk.sum(), probs=probs.reshape(-1, *self.data_shape))

    def set_params(self, weights: torch.Tensor | None = None, probs: torch.Tensor | None = None) -> None:
        """Set the mixing weights ``(K,)`` and the probabilities ``(K, *data_shape)`` in (0, 1)."""
        k = self.num_components
        if weights is not None:
            _fill(self.weight_logits, _check_weights(weights, k).log())
        if probs is not None:
            if probs.shape != (k, *self.data_shape) or not bool(((probs > 0) & (probs < 1)).all()):
                raise ValueError(f"probs must have shape {(k, *self.data_shape)} with entries in "
                                 f"(0, 1), got shape {tuple(probs.shape)}")
            _fill(self.logits, probs.log() - (-probs).log1p())


__all__ = ["BernoulliMixtureModel", "COMPONENTS", "COVARIANCES", "GaussianMixtureModel", "INIT_METHODS", "MixtureModel"]
