r"""
Monte Carlo EM for deep latent-variable models, whose posterior has no closed form.

EM's E-step needs the posterior :math:`p_\theta(z \mid x)` ([3] section 2; :doc:`/em`); for a
decoder network it is intractable, so Monte Carlo EM draws from it approximately and takes
the M-step on those draws (Wei and Tanner 1990):

.. math::
    \theta \leftarrow \theta + \eta\, \nabla_\theta \frac{1}{N} \sum_n
        \log p_\theta(x_n, \tilde z_n), \qquad \tilde z_n \approx p_{\theta'}(z \mid x_n).

:class:`SIRPosterior` is that E-step as a Pyro guide. For each data point it

1. draws ``num_proposals`` candidates :math:`z_k` from the model's prior
   :math:`p(z)`, weighs them by the likelihood, :math:`w_k \propto p_{\theta'}(x \mid z_k)`
   (self-normalised importance sampling with the prior as proposal), and
   resamples one (sampling-importance-resampling);
2. moves it by ``mcmc_steps`` steps of the Metropolis-adjusted Langevin
   algorithm (MALA) targeting :math:`p_{\theta'}(z \mid x) \propto p_{\theta'}(x, z)`,
   which leaves the posterior invariant, so the draw only gets closer to it;

and returns it as a ``Delta`` site, computed without gradient under the current
parameters (held fixed). With this guide, ``Trace_ELBO``'s loss is
:math:`-\log p_\theta(x, \tilde z)` (the Delta's log-density is 0), and an
``SVI.step`` is a Monte Carlo M-step on the decoder. The loss is *not* a bound on
:math:`-\log p(x)`; evaluate a model trained this way with an importance-sampled
log-likelihood under a proposal fitted afterwards (``benchmarks/mcem_mnist``).

The model must offer what :class:`~pyrogen.models.VAEModel` does: ``prior()``,
``decoder`` and ``likelihood``, with the latent site ``"z"`` inside the ``"data"`` plate.

**References**

[1] G. C. G. Wei, M. A. Tanner, "A Monte Carlo Implementation of the EM Algorithm and the
Poor Man's Data Augmentation Algorithms", JASA 85(411), 1990.

[2] G. O. Roberts, R. L. Tweedie, "Exponential convergence of Langevin distributions and
their discrete approximations", Bernoulli 2(4), 1996.

[3] J. Su, "Variational Inference: A Unified Framework of Generative Models and Some
Revelations", arXiv:1807.05936, 2018, section 2, "EM algorithm".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import torch_item
from pyro.poutine.util import site_is_subsample

from pyrogen.primitives import NamedPyroModule
from pyrogen.infer.importance import _weights_and_guide_trace
from pyrogen.primitives import check_data, data_plate


class SIRPosterior(NamedPyroModule):
    r"""
    An approximate posterior draw per data point, by sampling-importance-resampling from
    the prior followed by MALA steps (see the module docstring); the E-step of Monte
    Carlo EM as a guide without parameters.

    Example::

        vae = VAE((1, 28, 28), latent_dim=10, hidden=(200, 200))
        e_step = SIRPosterior(vae.model, num_proposals=16, mcmc_steps=5)
        svi = SVI(vae.model, e_step, Adam({"lr": 1e-3}), Trace_ELBO())
        svi.step(x, num_data=60000)   # one Monte Carlo M-step

    :param model: a :class:`~pyrogen.models.VAEModel` (or a model with ``prior()``,
        ``decoder`` and ``likelihood``).
    :param int num_proposals: prior draws per data point for the resampling step.
    :param int mcmc_steps: MALA steps after resampling (0: SIR only).
    :param float step_size: the MALA step size :math:`\epsilon`; proposals are
        :math:`z' = z + \tfrac{\epsilon^2}{2} \nabla \log p(x, z) + \epsilon\, \xi`.
    """

    def __init__(self, model: Any, num_proposals: int = 16, mcmc_steps: int = 5,
                 step_size: float = 0.2) -> None:
        super().__init__()
        self._check(num_proposals, mcmc_steps, step_size)
        for name in ("prior", "decoder", "likelihood"):
            if not hasattr(model, name):
                raise TypeError(f"the model must have {name!r}, as pyrogen's VAEModel does")
        # a list keeps the model out of this module's parameters: the guide owns none
        self._model = [model]
        self.num_proposals = int(num_proposals)
        self.mcmc_steps = int(mcmc_steps)
        self.step_size = float(step_size)
        self.acceptance_rate = float("nan")

    @staticmethod
    def _check(num_proposals: Any, mcmc_steps: Any, step_size: Any) -> None:
        if isinstance(num_proposals, bool) or int(num_proposals) != num_proposals or num_proposals < 1:
            raise ValueError(f"num_proposals must be a positive integer, got {num_proposals!r}")
        if isinstance(mcmc_steps, bool) or int(mcmc_steps) != mcmc_steps or mcmc_steps < 0:
            raise ValueError(f"mcmc_steps must be a non-negative integer, got {mcmc_steps!r}")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size!r}")

    @property
    def model(self) -> Any:
        """The model whose posterior this guide draws from (kept out of the module tree, so the
        guide owns none of its parameters)."""
        return self._model[0]

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p_\theta(x, z)` for ``z`` of shape ``(..., batch, latent)``."""
        model = self.model
        return model.prior().log_prob(z) + model.likelihood(model.decoder(z)).log_prob(x)

    @torch.no_grad()
    def resample(self, x: torch.Tensor) -> torch.Tensor:
        """Sampling-importance-resampling from the prior: one draw ``(batch, latent)`` per point."""
        z = self.model.prior().sample((self.num_proposals, x.shape[0]))
        log_w = self.model.likelihood(self.model.decoder(z)).log_prob(x)  # (K, batch)
        index = dist.Categorical(logits=log_w.T).sample()
        return z[index, torch.arange(x.shape[0], device=x.device)]

    def mala(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``mcmc_steps`` Metropolis-adjusted Langevin steps targeting :math:`p(z \\mid x)`."""
        eps, accepted = self.step_size, 0.0
        log_p, grad = self._value_and_grad(x, z)
        for _ in range(self.mcmc_steps):
            mean = z + 0.5 * eps**2 * grad
            new = mean + eps * torch.randn_like(z)
            new_log_p, new_grad = self._value_and_grad(x, new)
            back = new + 0.5 * eps**2 * new_grad
            log_ratio = (new_log_p - log_p
                         - ((z - back) ** 2).sum(-1) / (2 * eps**2)
                         + ((new - mean) ** 2).sum(-1) / (2 * eps**2))
            accept = torch.rand_like(log_ratio).log() < log_ratio
            z = torch.where(accept[:, None], new, z)
            log_p = torch.where(accept, new_log_p, log_p)
            grad = torch.where(accept[:, None], new_grad, grad)
            accepted += float(accept.double().mean())
        if self.mcmc_steps:
            self.acceptance_rate = accepted / self.mcmc_steps
        return z

    def _value_and_grad(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            log_p = self.log_joint(x, z)
            (grad,) = torch.autograd.grad(log_p.sum(), z)
        return log_p.detach(), grad

    def forward(self, x: torch.Tensor, *, num_data: int | None = None, beta: float = 1.0) -> torch.Tensor:
        r"""
        The guide: one sample site ``"z"`` in the ``"data"`` plate,
        :math:`z_n \sim \delta(z - \tilde z_n)` (a ``Delta`` with ``event_dim=1``), where
        :math:`\tilde z_n \approx p_{\theta'}(z \mid x_n)` is drawn by :meth:`resample` and
        moved by :meth:`mala` under the model's current parameters, and detached.

        :param x: a minibatch ``(batch, *data_shape)``.
        :param int num_data: the size of the data set (scales the plate).
        :param float beta: the model's KL weight, accepted for its signature; must be 1.
        :returns: the draws :math:`\tilde z`, ``(batch, latent_dim)``.
        """
        batch = check_data(x, self.model.data_shape)
        if beta != 1.0:
            raise ValueError("Monte Carlo EM has no KL term to weight: beta must be 1")
        z = self.mala(x, self.resample(x))
        with data_plate(batch, num_data, x.device):
            return pyro.sample("z", dist.Delta(z.detach(), event_dim=1))


def _log_joint_at(model: Callable, z: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    # log p(x, z) per data point, the model run with its latent site fixed at z
    trace = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(*args, **kwargs)
    total: torch.Tensor | float = 0.0
    for site in trace.nodes.values():
        if site["type"] == "sample" and not site_is_subsample(site):
            total = total + site["fn"].log_prob(site["value"])
    return total


class Trace_MCEM(ELBO):
    r"""
    Monte Carlo EM for a VAE-like model, with an amortised proposal trained beside it, as
    one Pyro loss. Its gradient in the model's parameters :math:`\theta` is the Monte Carlo
    M-step on draws :math:`\tilde z \approx p_\theta(z \mid x)` from
    :class:`SIRPosterior`; its gradient in the guide's parameters :math:`\phi` is the
    ELBO's; its value is the negative ELBO (a bound on :math:`-\log p(x)`, so training
    curves compare with a VAE's):

    .. math::
        \nabla_\theta: \; -\sum_n \nabla_\theta \log p_\theta(x_n, \tilde z_n), \qquad
        \nabla_\phi: \; -\nabla_\phi \mathcal{L}(\theta, \phi), \qquad
        \text{value}: \; -\mathcal{L}(\theta, \phi).

    It computes :math:`-\mathcal{L} + (m - \mathrm{sg}(m))` with
    :math:`m = \sum_n \log p_\theta(x_n, \mathrm{sg}(z^q_n)) - \log p_\theta(x_n, \tilde z_n)`
    (:math:`\mathrm{sg}`: stop gradient, :math:`z^q_n \sim q_\phi(z \mid x_n)` the ELBO's
    draw): :math:`m` has value 0 and cancels the ELBO's gradient in :math:`\theta`,
    replacing it by the M-step's. The guide is thus a proposal that follows the
    posterior, for evaluation and diagnostics; it does not steer the decoder.

    Example::

        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_MCEM(num_proposals=16))

    :param int num_proposals: prior draws per data point for the resampling step.
    :param int mcmc_steps: MALA steps after resampling.
    :param float step_size: the MALA step size.
    """

    def __init__(self, num_proposals: int = 16, mcmc_steps: int = 5, step_size: float = 0.2) -> None:
        super().__init__(num_particles=1, max_plate_nesting=1)
        self.options = dict(num_proposals=num_proposals, mcmc_steps=mcmc_steps, step_size=step_size)
        self.acceptance_rate = float("nan")
        SIRPosterior._check(**self.options)

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        # ELBO's hook for its generic particle loop; the loss is computed in differentiable_loss
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
                            ) -> torch.Tensor:
        r"""
        The surrogate :math:`-\mathcal{L} + (m - \mathrm{sg}(m))` of the class docstring on the
        minibatch ``args[0]``, as a scalar tensor: its value is the one-draw estimate of the
        negative ELBO :math:`-\mathcal{L}(\theta, \phi)` (scaled to the data set by the
        ``"data"`` plate), its gradient the M-step's in :math:`\theta` and the ELBO's in
        :math:`\phi`. Each call runs one E-step (:class:`SIRPosterior` with this loss's
        options) and keeps its MALA acceptance rate in ``acceptance_rate``.

        :raises ValueError: for a ``beta`` other than 1.
        """
        if kwargs.get("beta", 1.0) != 1.0:
            raise ValueError("Monte Carlo EM has no KL term to weight: beta must be 1")
        log_w, scale, guide_trace = _weights_and_guide_trace(model, guide, args, kwargs, 1)
        neg_elbo = -scale * log_w.sum()
        e_step = SIRPosterior(model, **self.options)
        x = args[0]
        z_sir = e_step.mala(x, e_step.resample(x)).detach()
        self.acceptance_rate = e_step.acceptance_rate
        z_q = guide_trace.nodes["z"]["value"].detach()
        m = scale * (_log_joint_at(model, z_q, args, kwargs).sum()
                     - _log_joint_at(model, z_sir, args, kwargs).sum())
        return neg_elbo + (m - m.detach())

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        r"""The negative ELBO :math:`-\mathcal{L}(\theta, \phi)` of the minibatch, estimated
        from one draw of the guide, as a float: the value of :meth:`differentiable_loss`
        (on a fresh draw), computed without gradients and without an E-step."""
        with torch.no_grad():
            log_w, scale, _ = _weights_and_guide_trace(model, guide, args, kwargs, 1)
            return torch_item(-scale * log_w.sum())

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        r"""Backpropagate :meth:`differentiable_loss`, adding to the ``.grad`` of the model's
        parameters the M-step's gradient
        :math:`-\sum_n \nabla_\theta \log p_\theta(x_n, \tilde z_n)` and to the guide's the
        ELBO's :math:`-\nabla_\phi \mathcal{L}`; returns its value, the negative ELBO, as a
        float."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return torch_item(loss)


__all__ = ["SIRPosterior", "Trace_MCEM"]
