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

    Gradients are pathwise, so every guide site must be reparameterised.

    **References**

    [1] Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted
    Autoencoders", ICLR 2016.

    Example::

        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), Trace_IWAE(num_particles=5))

    :param int num_particles: :math:`K`.
    """

    def __init__(self, num_particles: int = 5) -> None:
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be a positive integer, got {num_particles}")
        super().__init__(num_particles=int(num_particles), max_plate_nesting=1,
                         vectorize_particles=True)

    def _get_trace(self, model: Callable, guide: Callable, args: tuple, kwargs: dict):
        # ELBO's hook for its generic particle loop; the bound itself is
        # computed from vectorised particles in differentiable_loss.
        return get_importance_trace("flat", self.max_plate_nesting, model, guide, args, kwargs)

    def differentiable_loss(
        self, model: Callable, guide: Callable, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        log_w, scale, guide_trace = _weights_and_guide_trace(
            model, guide, args, kwargs, self.num_particles
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
        return -scale * _logmeanexp(log_w, 0).sum()

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
