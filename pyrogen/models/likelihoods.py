r"""
Observation models :math:`p(x \mid z)` shared by every decoder-based model.

A likelihood turns the decoder's unnormalised output (logits or means) into a
Pyro distribution whose event shape is the whole data point, so the
observation site ``"x"`` sits inside the data plate as
``dist.X(...).to_event(len(data_shape))``.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, PyroParam
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

LIKELIHOODS = ("bernoulli", "continuous-bernoulli", "gaussian")


class Likelihood(PyroModule):
    r"""
    Base class: ``likelihood(out)`` returns :math:`p(x \mid z)` with the data
    shape as its event shape, where ``out`` is the decoder output of shape
    ``(..., *data_shape)``. ``likelihood(out, mask)`` scores only the elements
    where the boolean ``mask`` (broadcastable to the data shape) is True, i.e.
    :math:`\prod_{d:\, m_d} p(x_d \mid z)`: the density of the masked-in part
    (conditional models that predict some pixels from others).

    :param tuple data_shape: the shape of one data point, e.g. ``(1, 28, 28)``.
    """

    #: the support of the data the likelihood accepts, for input validation.
    support = constraints.real

    def __init__(self, data_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.event_dim = len(self.data_shape)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The mean of :math:`p(x \\mid z)`, used for reconstructions and samples."""
        return self(out).mean


def _masked(base: dist.TorchDistribution, mask: torch.Tensor | None) -> dist.TorchDistribution:
    return base if mask is None else base.mask(mask.expand(base.batch_shape))


#: pixels whose factors 1 + exp(-|l|), each in (1, 2], are multiplied before one logarithm
#: (a product of 16 is at most 2**16, far from overflow)
_PRODUCT_BLOCK = 16


def _bernoulli_log_prob_sum(logits: torch.Tensor, value: torch.Tensor, ndims: int) -> torch.Tensor:
    r"""
    :math:`\sum_d \log \mathrm{Bernoulli}(x_d; \sigma(l_d))` over the last ``ndims`` dims,
    for evaluation (no gradient), in fewer transcendental operations than the
    binary cross-entropy's one ``log1p`` per pixel:

    .. math::
        \sum_d \big[x_d l_d - \mathrm{softplus}(l_d)\big]
        = \sum_d x_d l_d - \tfrac12 \sum_d \big(l_d + |l_d|\big)
          - \sum_b \log \prod_{d \in b} \big(1 + e^{-|l_d|}\big),

    with the pixels in blocks :math:`b` of :data:`_PRODUCT_BLOCK`: each factor lies in
    :math:`(1, 2]`, so a block's product neither overflows nor loses precision, and one
    logarithm serves a block. Equal to the cross-entropy form to float rounding. Eagerly it
    costs about what the cross-entropy costs; compiled (``log_likelihood(...,
    backend="inductor")``) the whole sum is one fused pass, where a fused cross-entropy
    still takes one ``log1p`` per pixel (benchmarks/is_floor_routes.py).
    """
    logits = logits.flatten(-ndims) if ndims else logits.unsqueeze(-1)
    value = value.flatten(-ndims) if ndims else value.unsqueeze(-1)
    xl = (logits * value).sum(-1)
    magnitude = logits.abs()
    relu_sum = 0.5 * (logits.sum(-1) + magnitude.sum(-1))
    factors = magnitude.neg_().exp_().add_(1.0)
    pad = -factors.shape[-1] % _PRODUCT_BLOCK
    if pad:
        factors = F.pad(factors, (0, pad), value=1.0)
    blocks = factors.unflatten(-1, (-1, _PRODUCT_BLOCK)).prod(-1)
    return xl - relu_sum - blocks.log_().sum(-1)


class _IndependentBernoulli(dist.Independent):
    # torch's Bernoulli.log_prob negates the whole (..., *data_shape) tensor of
    # cross-entropies; summing over the event first and negating the sum saves
    # a full-size temporary, about a tenth of an importance-sampled evaluation.
    pixel_mask: torch.Tensor | None = None

    def expand(self, batch_shape, _instance=None):  # keep the mask when a plate broadcasts
        new = super().expand(batch_shape, _instance)
        new.pixel_mask = self.pixel_mask
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:  # Pyro's validation switch: grey values are not Bernoulli data
            self._validate_sample(value)
        if self.pixel_mask is None and not torch.is_grad_enabled():
            return _bernoulli_log_prob_sum(self.base_dist.logits, value,
                                           self.reinterpreted_batch_ndims)
        logits, value = broadcast_all(self.base_dist.logits, value)
        bce = F.binary_cross_entropy_with_logits(logits, value, reduction="none")
        if self.pixel_mask is not None:
            bce = bce * self.pixel_mask
        return -bce.flatten(-self.reinterpreted_batch_ndims).sum(-1)


class BernoulliLikelihood(Likelihood):
    r"""
    :math:`p(x \mid z) = \prod_d \mathrm{Bernoulli}(x_d; \sigma(f_d(z)))` for binary data.
    The trainer checks that the data are binary before it starts and validates its first step
    only; elsewhere the distribution follows Pyro's validation switch
    (``pyro.enable_validation``, on by default), so non-binary values in a user's own loop
    raise a ``ValueError`` instead of training on the wrong objective.
    """

    support = constraints.boolean

    def forward(self, out: torch.Tensor, mask: torch.Tensor | None = None) -> dist.TorchDistribution:
        r""":math:`\prod_d \mathrm{Bernoulli}(x_d; \sigma(f_d(z)))` for logits ``out``
        ``(..., *data_shape)``, with the data shape as event shape; with ``mask``, only the
        pixels where it is True are scored."""
        base = dist.Bernoulli(logits=out)
        d = _IndependentBernoulli(base, self.event_dim)
        if mask is not None:
            d.pixel_mask = mask.to(out.dtype)
        return d

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)


class ContinuousBernoulliLikelihood(Likelihood):
    r"""
    The continuous Bernoulli of Loaiza-Ganem and Cunningham (2019) for data in
    :math:`[0, 1]`:

    .. math::
        p(x \mid \lambda) = C(\lambda)\, \lambda^x (1 - \lambda)^{1 - x},
        \qquad C(\lambda) = \frac{2 \tanh^{-1}(1 - 2\lambda)}{1 - 2\lambda},

    a properly normalised density, unlike the Bernoulli "likelihood" of
    grey-level pixels.

    **References**

    [1] G. Loaiza-Ganem, J. P. Cunningham, "The continuous Bernoulli: fixing a
    pervasive error in variational autoencoders", NeurIPS 2019.
    """

    support = constraints.unit_interval

    def forward(self, out: torch.Tensor, mask: torch.Tensor | None = None) -> dist.TorchDistribution:
        r"""The continuous Bernoulli :math:`\prod_d p(x_d \mid \lambda_d)` with
        :math:`\lambda = \sigma(\text{out})` for logits ``out`` ``(..., *data_shape)``, with the
        data shape as event shape; with ``mask``, only the elements where it is True are scored."""
        base = dist.ContinuousBernoulli(logits=out, validate_args=False)
        return _masked(base, mask).to_event(self.event_dim)


class GaussianLikelihood(Likelihood):
    r"""
    :math:`p(x \mid z) = \mathcal{N}(x; f(z), \sigma^2 I)` with one learned
    scale :math:`\sigma` shared by all dimensions (the "sigma-VAE" of Rybkin
    et al. 2021), bounded below by ``min_scale`` so the density stays finite on
    data with constant pixels.

    :param float init_scale: the initial :math:`\sigma`.
    :param float min_scale: the lower bound of :math:`\sigma`.
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        init_scale: float = 1.0,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(data_shape)
        if not init_scale > min_scale > 0:
            raise ValueError(
                f"GaussianLikelihood needs init_scale > min_scale > 0, got "
                f"init_scale={init_scale}, min_scale={min_scale}"
            )
        self.scale = PyroParam(
            torch.tensor(float(init_scale)), constraints.greater_than(min_scale)
        )

    def forward(self, out: torch.Tensor, mask: torch.Tensor | None = None) -> dist.TorchDistribution:
        r""":math:`\mathcal{N}(x; f(z), \sigma^2 I)` with mean ``out`` ``(..., *data_shape)`` and
        the learned :math:`\sigma`, with the data shape as event shape; with ``mask``, only the
        elements where it is True are scored."""
        scale = self.scale.to(out.dtype).expand(out.shape)
        base = dist.Normal(out, scale, validate_args=False)
        return _masked(base, mask).to_event(self.event_dim)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return out


def build_likelihood(name: str, data_shape: tuple[int, ...]) -> Likelihood:
    """Build the likelihood called ``name`` (one of :data:`LIKELIHOODS`)."""
    classes = {
        "bernoulli": BernoulliLikelihood,
        "continuous-bernoulli": ContinuousBernoulliLikelihood,
        "gaussian": GaussianLikelihood,
    }
    if name not in classes:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {name!r}")
    return classes[name](data_shape)
