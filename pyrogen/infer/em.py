r"""
The EM algorithm for mixtures: exact (closed-form M-step) and generalised
(M-steps by stochastic gradient through ``pyro.infer.SVI``).

For a latent variable model :math:`p_\theta(x, z)` and data
:math:`x_{1:N}`, EM alternates, from the current :math:`\theta'`:

- **E-step**: the exact posterior :math:`r_{nk} = p_{\theta'}(z_n = k \mid x_n)`,
  held fixed (no gradient flows into it);
- **M-step**: :math:`\theta \leftarrow \operatorname{argmax}_\theta Q(\theta; \theta')`
  with the expected complete-data log-likelihood

.. math::
    Q(\theta; \theta') = \sum_n \mathbb{E}_{p_{\theta'}(z_n \mid x_n)} \log p_\theta(x_n, z_n)
        = \sum_n \sum_k r_{nk} \log p_\theta(x_n, z_n = k).

**Monotonicity.** For every :math:`\theta`,

.. math::
    \log p_\theta(x_{1:N}) = Q(\theta; \theta') + H(\theta; \theta'), \qquad
    H(\theta; \theta') = -\sum_n \mathbb{E}_{p_{\theta'}(z_n \mid x_n)} \log p_\theta(z_n \mid x_n),

and :math:`H(\theta; \theta') \ge H(\theta'; \theta')` (Gibbs' inequality: the
difference is :math:`\sum_n \mathrm{KL}(p_{\theta'}(z_n \mid x_n) \,\|\,
p_\theta(z_n \mid x_n)) \ge 0`). Hence any :math:`\theta` with
:math:`Q(\theta; \theta') \ge Q(\theta'; \theta')` has
:math:`\log p_\theta(x) \ge \log p_{\theta'}(x)`: the exact M-step, and a
*generalised* M-step that merely increases :math:`Q` (Dempster et al. 1977,
section 3), never lower the likelihood. Gradient steps on :math:`-Q` increase
:math:`Q` for a small enough step size (plain gradient descent on a smooth
function); Adam's steps usually do but are not guaranteed to, and minibatch
or Monte Carlo (``Trace_ELBO``) gradients only in expectation. The posterior
must stay the one of :math:`\theta'` during the M-steps of one iteration:
:func:`generalised_em` calls :meth:`~pyrogen.models.mixture_posterior.MixturePosterior.e_step`
at the start of each iteration to hold it there.

In Pyro terms the guide is the exact posterior and the model the mixture;
``TraceEnum_ELBO`` with the guide's ``"z"`` enumerated computes
:math:`-(Q(\theta; \theta') + H(r))`, whose gradient in :math:`\theta` is
:math:`-\nabla_\theta Q`, and ``Trace_ELBO`` an unbiased estimate of it.

**References**

[1] A. P. Dempster, N. M. Laird, D. B. Rubin, "Maximum Likelihood from
Incomplete Data via the EM Algorithm", Journal of the Royal Statistical
Society B 39(1), 1-38, 1977.

[2] J. Su, "Variational Inference: A Unified Framework of Generative Models
and Some Revelations", arXiv:1807.05936, 2018, section 2, "EM algorithm".
The paper swaps the letters: its generative :math:`q(x \mid z) q(z)` is the
model here, and its :math:`p(z \mid x)` the exact posterior (the guide); its
M-step :math:`\operatorname{argmax}_{q(x|z)} \mathbb{E}_{\tilde p(x)}
\int p(z \mid x) \log q(x, z)\, dz` is the maximisation of :math:`Q`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pyro
import pyro.optim
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
from torch import nn

LOSSES = ("trace", "enum")


@runtime_checkable
class EMModel(Protocol):
    r"""
    What EM needs of a latent-class model (:class:`~pyrogen.models.mixture.MixtureModel`
    implements it): the joint :math:`\log p_\theta(x_n, z_n = k)` of every class, the
    closed-form M-step from responsibilities, a check of the data's shape, and its exact
    posterior as a Pyro guide. A protocol, so that :mod:`pyrogen.infer` does not import
    :mod:`pyrogen.models`.
    """

    def log_joint(self, x: torch.Tensor) -> torch.Tensor: ...

    def m_step(self, x: torch.Tensor, resp: torch.Tensor) -> None: ...

    def check_data(self, x: torch.Tensor) -> torch.Tensor: ...

    def exact_posterior(self, enumerate: bool = False) -> nn.Module: ...


def _model_of(mixture: nn.Module) -> EMModel:
    """The EM model itself, or the ``.model`` of a facade (:class:`~pyrogen.models.Mixture`)."""
    model = mixture if isinstance(mixture, EMModel) else getattr(mixture, "model", None)
    if not isinstance(model, EMModel):
        raise TypeError(f"mixture must be a Mixture or a MixtureModel, got {type(mixture).__name__}")
    return model


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@torch.no_grad()
def e_step(mixture: nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    r"""
    The E-step: the mean log-likelihood :math:`\frac{1}{N} \sum_n \log
    p_\theta(x_n)` under the current parameters and the responsibilities
    :math:`r_{nk} = p_\theta(z_n = k \mid x_n)`, ``(N, K)``, from one pass.
    """
    model = _model_of(mixture)
    log_joint = model.log_joint(model.check_data(x))
    log_px = torch.logsumexp(log_joint, -1, keepdim=True)
    return float(log_px.mean()), (log_joint - log_px).exp()


def exact_em(
    mixture: nn.Module, x: torch.Tensor, num_iters: int = 100, tol: float = 1e-3
) -> list[float]:
    r"""
    Exact EM: E-step and closed-form M-step
    (:meth:`~pyrogen.models.mixture.MixtureModel.m_step`), updating the
    mixture's parameters in place.

    It stops as scikit-learn's ``GaussianMixture`` does: after the M-step of
    the first iteration whose E-step finds the mean log-likelihood changed by
    less than ``tol`` since the previous one, or after ``num_iters`` M-steps.
    Started from the same parameters with the same ``reg_covar``, ``tol`` and
    ``max_iter = num_iters`` it takes the same steps (``n_iter_`` is
    ``len(history) - 1``).

    Example::

        mixture = Mixture((2,), num_components=3, component="gaussian")
        mixture.init_from_data(x, seed=0)
        history = exact_em(mixture, x, num_iters=200, tol=1e-6)

    :param mixture: a :class:`~pyrogen.models.mixture_posterior.Mixture` or a
        :class:`~pyrogen.models.mixture.MixtureModel`.
    :param torch.Tensor x: the whole data set ``(N, *data_shape)``.
    :param int num_iters: the most M-steps to take.
    :param float tol: the tolerance on the change of the mean log-likelihood (>= 0).
    :returns: the mean log-likelihood per data point before each M-step and
        after the last: ``history[t]`` is that of the parameters after ``t`` M-steps.
    """
    model = _model_of(mixture)
    num_iters = _positive_int(num_iters, "num_iters")
    if not float(tol) >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    x = model.check_data(x)
    history: list[float] = []
    for _ in range(num_iters):
        mean_log_px, resp = e_step(model, x)
        history.append(mean_log_px)
        model.m_step(x, resp)
        if len(history) > 1 and abs(history[-1] - history[-2]) < tol:
            break
    history.append(e_step(model, x)[0])
    return history


def claim_param_names(model: EMModel, x: torch.Tensor) -> None:
    """Make Pyro's global parameter store hold ``model``'s own parameters under their
    names: a tensor another model left under the same name (``"loc"``, ...) would be the
    one an SVI step moves, not this model's. It traces the model once on ``x[:1]``."""
    own = {id(p) for p in model.parameters()}
    trace = poutine.trace(model, param_only=True).get_trace(x[:1])
    store = pyro.get_param_store()
    for name, site in trace.nodes.items():
        if id(site["value"].unconstrained()) not in own:
            del store[name]


def generalised_em(
    mixture: nn.Module,
    x: torch.Tensor,
    num_iters: int = 100,
    steps_per_iter: int = 1,
    *,
    loss: str = "enum",
    optim: pyro.optim.PyroOptim | None = None,
    lr: float = 1e-2,
    batch_size: int | None = None,
    num_particles: int = 1,
) -> list[float]:
    r"""
    Generalised EM: each iteration takes the E-step (the guide's posterior is
    held at the parameters at the start of the iteration,
    :meth:`~pyrogen.models.mixture_posterior.MixturePosterior.e_step`) and then
    ``steps_per_iter`` ``SVI.step``\ s on the model's parameters.

    With ``loss="enum"`` the loss is ``TraceEnum_ELBO(max_plate_nesting=1)``
    with ``"z"`` enumerated in the guide: exactly :math:`-(Q + H)`, the
    M-step objective. With ``loss="trace"`` it is ``Trace_ELBO`` over
    ``num_particles`` draws of :math:`z` from the posterior: an unbiased
    estimate. ``batch_size`` draws a random minibatch (without replacement)
    for each step, with the loss scaled to the whole data set.

    Example::

        mixture.init_from_data(x, seed=0)
        history = generalised_em(mixture, x, num_iters=50, steps_per_iter=5, lr=1e-2)

    :param mixture: a :class:`~pyrogen.models.mixture_posterior.Mixture` or a
        :class:`~pyrogen.models.mixture.MixtureModel`.
    :param torch.Tensor x: the whole data set ``(N, *data_shape)``.
    :param int num_iters: the number of E-steps.
    :param int steps_per_iter: the gradient steps of each M-step.
    :param str loss: ``"enum"`` (exact) or ``"trace"`` (Monte Carlo).
    :param optim: a Pyro optimiser; default ``pyro.optim.Adam({"lr": lr})``.
        Its state carries over from one iteration to the next.
    :param float lr: the learning rate of the default optimiser.
    :param int batch_size: the minibatch size; ``None`` for the whole data set.
    :param int num_particles: draws of :math:`z` per data point for ``"trace"``.
    :returns: ``history[t]``, the mean log-likelihood per data point after ``t`` iterations.
    """
    model = _model_of(mixture)
    num_iters = _positive_int(num_iters, "num_iters")
    steps_per_iter = _positive_int(steps_per_iter, "steps_per_iter")
    num_particles = _positive_int(num_particles, "num_particles")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
    if optim is None and not float(lr) > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    x = model.check_data(x)
    num_data = x.shape[0]
    guide = model.exact_posterior(enumerate=loss == "enum")
    if loss == "enum":
        elbo = TraceEnum_ELBO(max_plate_nesting=1)
    else:
        elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=num_particles > 1,
                          max_plate_nesting=1)
    claim_param_names(model, x)
    svi = SVI(model, guide, optim if optim is not None else pyro.optim.Adam({"lr": lr}), elbo)
    history = [e_step(model, x)[0]]
    for _ in range(num_iters):
        guide.e_step()
        for _ in range(steps_per_iter):
            batch = x
            if batch_size is not None and batch_size < num_data:
                batch = x[torch.randperm(num_data, device=x.device)[:batch_size]]
            svi.step(batch, num_data=num_data)
        history.append(e_step(model, x)[0])
    return history
