r"""
The importance-weighted bound (IWAE) as a Pyro loss, for local latents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pyro.infer import ELBO
from pyro.infer.enum import get_importance_trace
from pyro.infer.util import torch_item
from pyro.poutine.util import site_is_subsample

from pyrogen.infer.importance import _logmeanexp, _weights_and_guide_trace


#: the gradient estimators of :class:`Trace_IWAE`: the bound's own reparameterised gradient,
#: or Tucker et al.'s doubly reparameterised one for the guide
IWAE_GRADIENTS = ("reparam", "dreg")


class Trace_IWAE(ELBO):
    r"""
    The importance-weighted bound of Burda et al. (2016), per data point:

    .. math::
        \mathcal{L}_K = \sum_{n=1}^N \mathbb{E}_{z_{1:K} \sim q_\phi(z \mid x_n)}
            \log \frac{1}{K} \sum_{k=1}^K \frac{p_\theta(x_n, z_k)}{q_\phi(z_k \mid x_n)}
        \;\le\; \sum_n \log p_\theta(x_n),

    with :math:`\mathcal{L}_1` the ELBO and :math:`\mathcal{L}_K` increasing
    in :math:`K`. The log-mean-exp runs over the :math:`K` particles of each
    data point separately, which is what makes this right for amortised local
    latents, unlike ``RenyiELBO(alpha=0)`` (pyro issue 3104). A subsampled
    ``"data"`` plate scales the sum by ``num_data / batch``.

    Gradients are pathwise, so every guide site must be reparameterised. With
    ``gradient="reparam"`` (the default) they are those of the bound itself. With
    ``gradient="dreg"`` the guide's parameters :math:`\phi` get the doubly
    reparameterised estimator of Tucker et al. [2], with
    :math:`z_k = z(\epsilon_k, \phi)`, :math:`w_k = p_\theta(x, z_k) / q_\phi(z_k \mid x)`
    and :math:`\tilde w_k = w_k / \sum_j w_j`:

    .. math::
        \nabla_\phi \mathcal{L}_K \approx \sum_{k=1}^K \tilde w_k^2\,
            \frac{\partial \log w_k}{\partial z_k} \frac{\partial z_k}{\partial \phi},

    where :math:`\partial \log w_k / \partial z_k` holds :math:`\phi` fixed in
    :math:`q_\phi`. It has the same expectation as the reparameterised gradient (it drops
    the score term :math:`\nabla_\phi \log q_\phi(z_k)`, whose weighted expectation is
    rewritten by a second reparameterisation), its signal-to-noise ratio does not decay
    as :math:`K` grows, as the reparameterised gradient's does for the guide, and it
    vanishes when :math:`q_\phi` is the exact posterior. The model's
    parameters get :math:`\sum_k \tilde w_k \nabla_\theta \log w_k`, as before, and
    the loss's value is the bound either way. The squared weights enter through a
    gradient hook on each guide sample, which ``torch.export`` does not record, so
    :class:`~pyrogen.infer.CompiledLoss` runs this loss eagerly. ``"dreg"`` takes a guide
    with one latent site (a VAE's): with a hierarchy, holding each site's distribution fixed
    would also cut the path of :math:`\log q(z_2 \mid z_1)` through :math:`z_1`.

    **References**

    [1] Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted
    Autoencoders", ICLR 2016.

    [2] G. Tucker, D. Lawson, S. Gu, C. J. Maddison, "Doubly Reparameterized
    Gradient Estimators for Monte Carlo Objectives", ICLR 2019.

    Example::

        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_IWAE(num_particles=5))

    :param int num_particles: :math:`K`.
    :param str gradient: ``"reparam"`` or ``"dreg"`` (:data:`IWAE_GRADIENTS`).
    """

    def __init__(self, num_particles: int = 5, gradient: str = "reparam") -> None:
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles}")
        if gradient not in IWAE_GRADIENTS:
            raise ValueError(f"gradient must be one of {IWAE_GRADIENTS}, got {gradient!r}")
        super().__init__(num_particles=int(num_particles), max_plate_nesting=1,
                         vectorize_particles=True)
        self.gradient = gradient

    @property
    def exportable(self) -> bool:
        """Whether :class:`~pyrogen.infer.CompiledLoss` may record this loss with
        ``torch.export``: not with ``gradient="dreg"``, whose gradient hooks a recorded graph
        would drop (silently, leaving the reparameterised gradient)."""
        return self.gradient != "dreg"

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        # ELBO's hook for its generic particle loop; the bound itself is
        # computed from vectorised particles in differentiable_loss.
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        dreg = self.gradient == "dreg"
        log_w, scale, guide_trace = _weights_and_guide_trace(
            model, guide, args, kwargs, self.num_particles, detach_guide=dreg
        )
        for name in guide_trace.stochastic_nodes:
            site = guide_trace.nodes[name]
            if site_is_subsample(site):
                continue
            if not site["fn"].has_rsample:
                raise NotImplementedError(
                    f"Trace_IWAE needs reparameterised guide sites; site {name!r} is not"
                )
            if float(site["scale"]) != float(scale):
                raise ValueError(
                    f"Trace_IWAE bounds log p(x) and has no KL term to weight, but site "
                    f"{name!r} is scaled by {float(site['scale']) / float(scale):g} beyond "
                    "the data plate (beta or poutine.scale); use beta=1"
                )
        bound = -scale * _logmeanexp(log_w, 0).sum()
        if not dreg or not log_w.requires_grad:
            return bound
        latents = [name for name in guide_trace.stochastic_nodes
                   if not site_is_subsample(guide_trace.nodes[name])]
        if len(latents) != 1:
            # with several, detaching each site's distribution would also cut the path of
            # log q(z2 | z1) through z1, which is part of d log w / d z1
            raise NotImplementedError(
                f"Trace_IWAE(gradient='dreg') takes a guide with one latent site, got "
                f"{latents}; use gradient='reparam'"
            )
        weights = torch.softmax(log_w.detach(), 0)  # (K, batch), normalised over particles
        value = guide_trace.nodes[latents[0]]["value"]
        if value.requires_grad:
            # the latent sits in the data plate (log_w refuses others), inside the particles'
            # plate: its value is (K, batch) + event shape
            factor = weights.reshape(weights.shape + (1,) * (value.dim() - 2))
            value.register_hook(lambda grad: grad * factor)
        surrogate = -scale * (weights * log_w).sum()
        return bound.detach() + (surrogate - surrogate.detach())

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        if loss.requires_grad:
            loss.backward()
        return torch_item(loss)
