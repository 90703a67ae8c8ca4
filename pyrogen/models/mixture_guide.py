r"""
The exact posterior of a mixture as a Pyro guide: EM's E-step
(:class:`MixturePosterior`). It reads the model through the
:class:`~pyrogen.infer.em.EMModel` protocol, so that :mod:`pyrogen.models.mixture` can build
it (``MixtureModel.exact_posterior``) without the two modules importing each other.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch

from pyrogen.primitives import NamedPyroModule
from pyrogen.infer.em import EMModel
from pyrogen.models.util import data_plate


class MixturePosterior(NamedPyroModule):
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

    def __init__(self, model: EMModel, enumerate: bool = False) -> None:
        if not isinstance(model, EMModel):
            raise TypeError(f"model must be a MixtureModel, got {type(model).__name__}")
        super().__init__()
        # kept out of the module tree, so the guide owns no parameter of the model
        object.__setattr__(self, "_model", model)
        self.enumerate = bool(enumerate)
        self._fixed: dict[str, torch.Tensor] | None = None

    @property
    def model(self) -> EMModel:
        """The mixture whose posterior this is (kept out of the module tree, so the guide owns
        none of its parameters)."""
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
        r"""
        The guide: one sample site ``"z"`` in the ``"data"`` plate,
        :math:`z_n \sim \mathrm{Categorical}(r_{n1}, \dots, r_{nK})` with
        :math:`r_{nk} = p_{\theta'}(z_n = k \mid x_n)`, from the detached logits
        :math:`\log p_{\theta'}(x_n, z_n = k)`; enumerated in parallel with ``enumerate=True``.

        :param x: a minibatch, checked and cast to the model's dtype.
        :param int num_data: the size of the data set (scales the plate).
        :returns: the component indices ``z`` (under enumeration, the enumerated values).
        """
        x = self._model.check_data(x)
        with torch.no_grad():
            log_joint = self._model.log_joint(x, self._fixed)
        infer = {"enumerate": "parallel"} if self.enumerate else {}
        with data_plate(x.shape[0], num_data, x.device):
            return pyro.sample("z", dist.Categorical(logits=log_joint.detach()), infer=infer)


__all__ = ["MixturePosterior"]
