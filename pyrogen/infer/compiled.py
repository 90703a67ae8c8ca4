r"""
A Pyro loss captured once as a plain PyTorch graph, with no Pyro work per step.

Pyro's losses run their effect handlers (trace, replay, the plates) in Python on every
step, which costs a small VAE about a third of its training speed against a hand-written
loop. :class:`CompiledLoss` runs the loss once under ``torch.export.export`` in non-strict
mode: the Python of Pyro's handlers runs as usual while PyTorch records the tensor
operations it leads to, random draws included (they stay random on every call). Later
steps call only the recorded graph (``ExportedProgram.module()``), which shares the
model's parameters and buffers, so an optimiser's steps, ``load_state_dict`` and batch
normalisation's running statistics all act on the same tensors.

Pyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO`` cannot be recorded as they are: they test
the loss for NaN with a Python ``if`` and return ``loss + (surrogate - surrogate.item())``,
both of which read a value the recorder does not have. For these two, the graph recorded is
the same estimator written from Pyro's own traces (:func:`trace_elbo_loss`):

.. math::

    -\frac{1}{S}\sum_{s=1}^{S}\Big[\log p(x, z_s) - \log q(z_s \mid x)\Big],
    \qquad z_s \sim q(z \mid x) \text{ reparameterised},

with, for ``TraceMeanField_ELBO``, the analytic :math:`\mathrm{KL}(q(z \mid x) \,\|\, p(z))`
of every latent site whose pair has one registered in place of its Monte Carlo term, as
Pyro does. Its value and gradients equal Pyro's for the same random draws (the tests check
it). Any other loss (pyrogen's :class:`~pyrogen.infer.Trace_IWAE`, a user's own) is recorded
through its own ``differentiable_loss``. A loss that cannot be recorded (a guide site
without ``rsample``, a data-dependent branch) runs eagerly through Pyro instead, with one
warning that says why.

``backend="inductor"`` additionally compiles the recorded graph with ``torch.compile``
(fused kernels; a compilation of some seconds per batch shape, and a C++ compiler on CPU).
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import pyro
import pyro.poutine as poutine
import torch

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample
from torch import nn
from torch.distributions import kl_divergence, transform_to

#: how :class:`CompiledLoss` runs the loss: a graph recorded by torch.export (``"export"``),
#: that graph compiled by torch.compile (``"inductor"``), or Pyro's loss itself (``"eager"``)
BACKENDS = ("export", "inductor", "eager")

#: the name of the vectorised particles' plate, as Pyro's ELBOs name it
_PARTICLES = "num_particles_vectorized"


def _latent(site: dict[str, Any]) -> bool:
    """A latent sample site (not observed, not a plate's subsample)."""
    return site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site)


def _site_terms(site: dict[str, Any]) -> torch.Tensor:
    """A sample site's scaled and masked log-density, summed (Pyro's ``log_prob_sum``)."""
    log_p = site["fn"].log_prob(site["value"], *site["args"], **site["kwargs"])
    if site["mask"] is not None:
        log_p = log_p * site["mask"]
    return (log_p * site["scale"]).sum()


def trace_elbo_loss(elbo: Trace_ELBO | TraceMeanField_ELBO, model: Callable, guide: Callable,
                    *args: Any, **kwargs: Any) -> torch.Tensor:
    r"""
    The negative ELBO of ``elbo`` (a ``Trace_ELBO`` or ``TraceMeanField_ELBO``) for a guide
    whose latent sites are all reparameterised, computed from Pyro's traces with no Python
    branch on a tensor's value, so that a graph recorder can hold it:
    :math:`-\frac{1}{S}\sum_s [\log p(x, z_s) - \log q(z_s \mid x)]` over ``elbo``'s
    ``num_particles`` :math:`S` (vectorised in a plate when ``elbo`` vectorises them), and
    for ``TraceMeanField_ELBO`` each latent site's analytic KL where one is registered.
    Equal in value and gradient to ``elbo.differentiable_loss`` for the same draws.
    """
    mean_field = isinstance(elbo, TraceMeanField_ELBO)
    particles = elbo.num_particles
    if elbo.vectorize_particles and particles > 1:
        plate = pyro.plate(_PARTICLES, particles, dim=-(elbo.max_plate_nesting + 1))
        guide, model = plate(guide), plate(model)
        rounds = 1
    else:
        rounds = particles
    total = 0.0
    for _ in range(rounds):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        elbo_particle = 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["is_observed"] or not mean_field:
                elbo_particle = elbo_particle + _site_terms(site)
                continue
            q = guide_trace.nodes[name]
            try:
                kl = kl_divergence(q["fn"], site["fn"])
            except NotImplementedError:  # no closed form: the Monte Carlo term, as Pyro
                elbo_particle = elbo_particle + _site_terms(site) - _site_terms(q)
                continue
            if q["mask"] is not None:
                kl = kl * q["mask"]
            elbo_particle = elbo_particle - (kl * q["scale"]).sum()
        if not mean_field:
            for site in guide_trace.nodes.values():
                if _latent(site):
                    elbo_particle = elbo_particle - _site_terms(site)
        total = total + elbo_particle
    return -total / particles


class _Objective(nn.Module):
    """The loss of one set of keyword arguments as a module that owns the model and guide,
    so that ``torch.export`` records their parameters and buffers as the module's. Pyro's
    param sites (``pyro.param``, a ``PyroModule``'s attributes) are replayed with values
    computed from the module's own parameters, which are what the recorder tracks (the
    global param store holds the same tensors outside the recording)."""

    def __init__(self, loss: Callable, model: Callable, guide: Callable, kwargs: dict,
                 sites: dict[str, tuple[str, Any]]) -> None:
        super().__init__()
        self.model, self.guide = model, guide  # registered: their parameters are ours
        self.loss = loss
        self.kwargs = kwargs
        self.sites = sites  # param site -> (this module's parameter name, constraint)

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        own = dict(self.named_parameters())
        values = {}
        for site, (name, constraint) in self.sites.items():
            unconstrained = own[name]
            value = transform_to(constraint)(unconstrained)
            value.unconstrained = weakref.ref(unconstrained)  # what Pyro's replay expects
            values[site] = value
        return poutine.replay(self.loss, params=values)(*args, **self.kwargs)


class CompiledLoss(nn.Module):
    r"""
    ``elbo.differentiable_loss(model, guide, *args, **kwargs)``, recorded as a PyTorch graph
    on its first call for each distinct set of keyword arguments (constants of the graph,
    like ``num_data`` and ``beta``), of input shapes and of training mode (``model.eval()``
    changes what batch normalisation does), and replayed afterwards; the
    positional arguments are the graph's inputs (a new shape, e.g. another batch size, is
    recorded anew rather than trusting the recorder to have kept every size symbolic).

    Random draws (the reparameterised :math:`z \sim q(z \mid x)`) are part of the graph and
    fresh on every call. As an ``nn.Module`` its ``parameters()`` are those of the model
    and the guide, so a torch optimiser takes them directly.

    Example::

        loss = CompiledLoss(Trace_ELBO(), vae.model, vae.guide)
        optim = torch.optim.Adam(loss.parameters(), lr=1e-3)
        for x in batches:
            optim.zero_grad()
            loss(x, num_data=60000).backward()
            optim.step()

    A loss that says it cannot be recorded (``exportable`` false, as
    :class:`~pyrogen.infer.Trace_IWAE` with ``gradient="dreg"``), or that fails to record,
    runs eagerly through Pyro, with one warning.

    :param pyro.infer.ELBO elbo: any Pyro loss with a ``differentiable_loss``.
    :param model: a Pyro model (a ``PyroModule``, so its parameters are found).
    :param guide: its guide.
    :param str backend: ``"export"`` (the recorded graph), ``"inductor"`` (that graph
        compiled by ``torch.compile``) or ``"eager"`` (Pyro's loss on every call).
    """

    def __init__(self, elbo: Any, model: Callable, guide: Callable, backend: str = "export") -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.elbo = elbo
        self.model = model
        self.guide = guide
        self.backend = backend
        self._compiled: dict[tuple, Callable] = {}
        #: why the loss runs eagerly, once it was found that it cannot be recorded
        self.eager_reason: str | None = None

    def forward(self, *args: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """The loss on ``args`` (the graph's inputs) with ``kwargs`` (constants of the graph):
        the recorded graph of this shape and these keywords, recorded on its first call."""
        if self.backend == "eager" or self.eager_reason is not None:
            return self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
        key = (tuple((tuple(a.shape), a.dtype, a.device) for a in args), tuple(sorted(kwargs.items())),
               getattr(self.model, "training", True), getattr(self.guide, "training", True))
        if key not in self._compiled:
            compiled = self._compile(args, kwargs)
            if compiled is None:
                return self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
            self._compiled[key] = compiled
        return self._compiled[key](*args)

    def _loss(self, args: tuple, kwargs: dict) -> Callable:
        """The function to record: an exportable rewrite of Pyro's two trace ELBOs for a
        fully reparameterised guide, else the loss's own ``differentiable_loss``, unless the
        loss says it cannot be recorded (``exportable``)."""
        if not getattr(self.elbo, "exportable", True):
            raise _CannotRecord(f"{type(self.elbo).__name__} is not exportable: its gradient "
                                "hooks would not be recorded")
        if type(self.elbo) in (Trace_ELBO, TraceMeanField_ELBO):
            with poutine.block(), torch.no_grad():
                guide_trace = poutine.trace(self.guide).get_trace(*args, **kwargs)
            for name, site in guide_trace.nodes.items():
                if _latent(site) and not site["fn"].has_rsample:
                    raise _CannotRecord(f"guide site {name!r} has no rsample (Pyro's score-function "
                                        "gradient is not recorded)")
            return functools.partial(trace_elbo_loss, self.elbo)
        return self.elbo.differentiable_loss

    def _compile(self, args: tuple, kwargs: dict) -> Callable | None:
        # recording runs the loss (for its param sites, and a guide trace): under a forked
        # random state, so the draws of the calls that follow are those an eager run makes
        devices = sorted({a.device for a in args if isinstance(a, torch.Tensor) and a.is_cuda},
                         key=str)
        with torch.random.fork_rng(devices=devices):
            return self._record(args, kwargs)

    def _record(self, args: tuple, kwargs: dict) -> Callable | None:
        sites = self._param_sites(args, kwargs)
        try:
            loss = self._loss(args, kwargs)
            objective = _Objective(lambda *a, **k: loss(self.model, self.guide, *a, **k),
                                   self.model, self.guide, kwargs, sites)
            with pyro.validation_enabled(False), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                exported = torch.export.export(objective, tuple(args), strict=False)
        except _CannotRecord as e:
            return self._run_eagerly(str(e))
        except Exception as e:  # noqa: BLE001 - any recording failure: Pyro's eager loss, said once
            return self._run_eagerly(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        graph = exported.module(check_guards=False)
        if self.backend == "inductor":
            return _Inductor(graph)
        # the graph's own forward: the module's call would first run export's input checks
        # (about a millisecond a step), which the key of this graph (shapes, dtypes, devices
        # and keywords) already guarantees
        return graph.forward

    def _run_eagerly(self, why: str) -> None:
        self.eager_reason = why
        warnings.warn(f"CompiledLoss: {type(self.elbo).__name__} runs eagerly through Pyro ({why})",
                      RuntimeWarning, stacklevel=4)
        return None

    def _param_sites(self, args: tuple, kwargs: dict) -> dict[str, tuple[str, Any]]:
        """Each param site of the loss -> (the name of its unconstrained tensor among this
        module's parameters, its constraint); a ``RuntimeError`` if the param store holds
        a tensor that is not one of them (another model's, under the same name)."""
        with poutine.block(), poutine.trace(param_only=True) as capture, torch.no_grad():
            self.elbo.differentiable_loss(self.model, self.guide, *args, **kwargs)
        own = {id(p): name for name, p in self.named_parameters()}
        constraints = pyro.get_param_store().get_state()["constraints"]
        sites, strangers = {}, []
        for site in capture.trace.nodes:
            unconstrained = pyro.param(site).unconstrained()
            if id(unconstrained) in own:
                sites[site] = (own[id(unconstrained)], constraints[site])
            else:
                strangers.append(site)
        if strangers:
            raise RuntimeError(
                f"Pyro's param store holds {strangers} from another model under the same "
                "names as this one's parameters; call pyro.clear_param_store() before "
                "building the model"
            )
        return sites


class _Inductor:
    """The recorded graph compiled by ``torch.compile`` on its first call; where that fails
    (no C++ compiler on CPU, a backend error) the recorded graph runs as it is, with one
    warning."""

    def __init__(self, graph: Callable) -> None:
        self.graph = graph
        self.compiled: Callable | None = torch.compile(graph)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        if self.compiled is None:
            return self.graph(*args)
        try:
            return self.compiled(*args)
        except Exception as e:  # noqa: BLE001 - compilation failed: the recorded graph, said once
            self.compiled = None
            warnings.warn(f"CompiledLoss: torch.compile failed ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}); the recorded graph runs uncompiled",
                          RuntimeWarning, stacklevel=3)
            return self.graph(*args)


class _CannotRecord(Exception):
    """The loss cannot be recorded as a graph (it runs eagerly through Pyro)."""


__all__ = ["BACKENDS", "CompiledLoss", "trace_elbo_loss"]
