r"""
Weight averaging: an exponential moving average (EMA) of the parameters, the
Polyak-Ruppert average of stochastic optimisation in its exponential form.

After optimiser step :math:`t` (counting from 0) the average is

.. math::

    \bar\theta_t = d_t\,\bar\theta_{t-1} + (1 - d_t)\,\theta_t, \qquad
    d_t = \min\Bigl(d, \frac{1 + t}{10 + t}\Bigr), \qquad \bar\theta_{-1} = \theta_{\text{init}},

so its memory is about :math:`1 / (1 - d)` steps once :math:`t` is large, and the
ramp :math:`(1 + t) / (10 + t)` keeps short runs from being dominated by the initial
weights. A stochastic gradient method at a learning rate :math:`\eta` does not settle
at a minimum but wanders about it with a spread that grows with :math:`\eta` and with
the gradient noise (smaller minibatches); the average removes most of that spread
without lowering :math:`\eta`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


class ExponentialAverage:
    """
    The exponential moving average of named parameters (see the module's docstring).

    :param dict params: ``{name: parameter}``, e.g. from ``module.named_parameters()``; the
        average starts at their current values.
    :param float decay: :math:`d`, in ``(0, 1)``.
    """

    def __init__(self, params: dict[str, torch.Tensor], decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.params = dict(params)
        self.average = {name: p.detach().clone() for name, p in self.params.items()}
        self.updates = 0

    def current_decay(self) -> float:
        """:math:`d_t` of the next update."""
        t = self.updates
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        """Fold the parameters' current values into the average (after an optimiser step)."""
        weight = 1.0 - self.current_decay()
        torch._foreach_lerp_(list(self.average.values()),
                             [p.detach() for p in self.params.values()], weight)
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the parameters hold the average; afterwards their own values again."""
        saved = {name: p.detach().clone() for name, p in self.params.items()}
        self.copy_to_params()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(saved[name])

    @torch.no_grad()
    def copy_to_params(self) -> None:
        """Overwrite the parameters with the average."""
        for name, p in self.params.items():
            p.copy_(self.average[name])

    def state_dict(self) -> dict[str, Any]:
        """The decay, the number of updates and a copy of the averaged tensors."""
        return {"decay": self.decay, "updates": self.updates,
                "average": {name: t.clone() for name, t in self.average.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a ``ValueError`` if it averages other parameters."""
        missing = set(self.average) ^ set(state["average"])
        if missing:
            raise ValueError(f"the saved average has other parameters: {sorted(missing)}")
        self.decay = float(state["decay"])
        self.updates = int(state["updates"])
        with torch.no_grad():
            for name, t in state["average"].items():
                self.average[name].copy_(t)


__all__ = ["ExponentialAverage"]
