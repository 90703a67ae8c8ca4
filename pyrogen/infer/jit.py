r"""
A Pyro loss compiled once with ``torch.jit.trace``, with no Pyro work per step.

``pyro.infer.JitTrace_ELBO`` compiles the ELBO too, but on every call it looks
each parameter up in the param store and runs two effect handlers around the
compiled graph, which costs a small VAE about a tenth of its training speed.
:class:`CompiledLoss` captures the parameter tensors once, at compile time, and
afterwards only calls the compiled graph. That is sound as long as the
parameter tensors themselves stay the same objects: ``load_state_dict`` and
``module.to(...)`` update them in place, so they do; assigning new
``nn.Parameter`` objects to the modules afterwards does not (build a new
:class:`CompiledLoss` then).
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pyro
import pyro.infer.trace_elbo
import pyro.infer.trace_mean_field_elbo
import pyro.poutine as poutine
import torch
from torch import nn

#: Pyro modules whose losses call ``torch_item`` (see :func:`_items_stay_tensors`)
_ITEM_MODULES = (pyro.infer.trace_elbo, pyro.infer.trace_mean_field_elbo)


class CompiledLoss(nn.Module):
    r"""
    ``elbo.differentiable_loss(model, guide, *args, **kwargs)``, traced by
    ``torch.jit`` on its first call for each distinct set of keyword arguments
    (which are constants of the compiled graph, like ``num_data`` and
    ``beta``) and of input shapes, and replayed afterwards; the positional
    arguments are the graph's inputs (a new shape, e.g. another batch size, is
    traced anew rather than trusting the tracer to have kept every size symbolic).

    Random draws (the reparameterised :math:`z \sim q(z \mid x)`) are part of
    the graph and are fresh on every call. As an ``nn.Module`` its
    ``parameters()`` are those of the model and the guide, so a torch optimiser
    takes them directly.

    Example::

        loss = CompiledLoss(Trace_ELBO(), vae.model, vae.guide)
        optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
        for x in batches:
            optim.zero_grad()
            loss(x, num_data=60000).backward()
            optim.step()

    :param pyro.infer.ELBO elbo: any Pyro loss with a ``differentiable_loss``.
    :param model: a Pyro model (a ``PyroModule``, so its parameters are found).
    :param guide: its guide.
    """

    def __init__(self, elbo: Any, model: Callable, guide: Callable) -> None:
        super().__init__()
        self.elbo = elbo
        self.model = model
        self.guide = guide
        self._compiled: dict[tuple, tuple[Any, tuple[torch.Tensor, ...]]] = {}

    def forward(self, *args: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        key = (tuple(tuple(a.shape) for a in args), tuple(sorted(kwargs.items())))
        if key not in self._compiled:
            self._compiled[key] = self._compile(args, kwargs)
        compiled, params = self._compiled[key]
        return compiled(*params, *args)

    def _compile(self, args: tuple, kwargs: dict) -> tuple[Any, tuple[torch.Tensor, ...]]:
        loss = functools.partial(self.elbo.differentiable_loss, self.model, self.guide)
        with poutine.block(), poutine.trace(param_only=True) as capture:
            loss(*args, **kwargs)
        names = list(capture.trace.nodes)
        params = tuple(pyro.param(name).unconstrained() for name in names)
        own = {id(p) for p in self.parameters()}
        strangers = [name for name, p in zip(names, params) if id(p) not in own]
        if strangers:
            raise RuntimeError(
                f"Pyro's param store holds {strangers} from another model under the same "
                "names as this one's parameters; call pyro.clear_param_store() before "
                "building the model"
            )

        def replayed(*params_and_args: torch.Tensor) -> torch.Tensor:
            # the param store hands back these same unconstrained tensors (the
            # graph's inputs), so the tracer records every use of a parameter
            constrained = {name: pyro.param(name) for name in names}
            return poutine.replay(loss, params=constrained)(*params_and_args[len(names):], **kwargs)

        with warnings.catch_warnings(), pyro.validation_enabled(False), _items_stay_tensors():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            compiled = torch.jit.trace(replayed, params + tuple(args), check_trace=False)
        return compiled, params


def _detached_item(x: Any) -> Any:
    return x.detach() if isinstance(x, torch.Tensor) else x


@contextlib.contextmanager
def _items_stay_tensors() -> Iterator[None]:
    # Pyro's ELBOs return ``loss + (surrogate - torch_item(surrogate))``, the
    # value of ``loss`` with the gradient of ``surrogate``. Traced, ``.item()``
    # freezes into a constant: the compiled value becomes
    # ``loss(theta) + surrogate(theta) - surrogate(theta_0)``, with theta_0 the
    # parameters at compile time (for TraceMeanField_ELBO, whose ``loss`` is
    # a detached tensor under tracing, twice the true loss minus its value at
    # compile time). A detached tensor instead of a float keeps the value right
    # and the gradient unchanged.
    with contextlib.ExitStack() as stack:
        for module in _ITEM_MODULES:
            stack.enter_context(mock.patch.object(module, "torch_item", _detached_item))
        yield
