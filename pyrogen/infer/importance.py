r"""
Per-data-point importance weights, and the estimators built on them.

For a model :math:`p_\theta(x, z)` with local latents and an amortised guide
:math:`q_\phi(z \mid x)`, the log importance weight of a draw
:math:`z_k \sim q_\phi(z \mid x_n)` is

.. math::
    \log w_{kn} = \log p_\theta(x_n, z_k) - \log q_\phi(z_k \mid x_n),

and :math:`\frac{1}{K} \sum_k w_{kn}` is an unbiased estimate of
:math:`p_\theta(x_n)`. Its logarithm is a lower bound in expectation
(Burda et al. 2016) that tightens as :math:`K` grows and equals the ELBO at
:math:`K = 1`.

Pyro's ``RenyiELBO(alpha=0)`` takes the log-sum-exp over particles of the whole
minibatch's weight, not per data point (pyro issue 3104), and
``pyro.infer.importance`` sums weights over the data plate; here every weight
keeps its data-point index.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyro
import pyro.distributions
import pyro.poutine as poutine
import torch
from pyro.distributions.util import detach
from pyro.poutine.util import site_is_subsample

from pyrogen.data.split import Batch
from pyrogen.infer.compiled import CompiledLoss

_PARTICLES = "num_particles_vectorized"


def _data_frame(site: dict) -> Any:
    for frame in site["cond_indep_stack"]:
        if frame.name == "data":
            return frame
    raise ValueError(
        f"sample site {site['name']!r} is outside the 'data' plate: per-data-point "
        "importance weights need every latent variable to be local to a data point"
    )


def _site_log_prob(site: dict, shape: torch.Size) -> torch.Tensor:
    log_prob = site["fn"].log_prob(site["value"])
    return log_prob.expand(shape) if log_prob.shape != shape else log_prob


def log_importance_weights(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_particles: int = 1,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | float]:
    r"""
    Draw ``num_particles`` latents per data point from the guide and return
    the log importance weights :math:`\log w_{kn}` of shape
    ``(num_particles, batch)``, with the minibatch scale of the ``"data"``
    plate (``num_data / batch``; 1 without subsampling).

    The particles form a vectorised plate at dim -2, so the model and guide
    must put their data plate at dim -1 and have no other plate; every sample
    site must sit inside the ``"data"`` plate. Differentiable when the guide is
    reparameterised.

    :param model: a Pyro model, e.g. :class:`~pyrogen.models.VAEModel`.
    :param guide: its guide.
    :param int num_particles: :math:`K`, draws per data point.
    """
    log_w, scale, _ = _weights_and_guide_trace(model, guide, args, kwargs, num_particles)
    return log_w, scale


def _weights_and_guide_trace(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, num_particles: int,
    detach_guide: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | float, poutine.Trace]:
    # detach_guide: log q(z) with the guide's distribution parameters detached (the value z
    # keeps its path), for the doubly reparameterised gradient of Trace_IWAE
    if int(num_particles) < 1:
        raise ValueError(f"num_particles must be a positive integer, got {num_particles}")
    plate = pyro.plate(_PARTICLES, int(num_particles), dim=-2)
    with plate:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    with plate:
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
    log_w: torch.Tensor | float = 0.0
    scale: torch.Tensor | float = 1.0
    shape = None
    for sign, trace in ((1.0, model_trace), (-1.0, guide_trace)):
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if trace is guide_trace and site["is_observed"]:
                continue
            frame = _data_frame(site)
            if shape is None:
                shape = torch.Size((int(num_particles), frame.size))
                if frame.full_size is not None and frame.full_size != frame.size:
                    scale = frame.full_size / frame.size
            if detach_guide and trace is guide_trace:
                site = dict(site, fn=detach(site["fn"]))
            log_w = log_w + sign * _site_log_prob(site, shape)
    if shape is None:
        raise ValueError("the model has no sample sites inside a 'data' plate")
    return log_w, scale, guide_trace


def _logmeanexp(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(log_w, dim) - math.log(log_w.shape[dim])


def _batches(data: Any, batch_size: int) -> Iterator[tuple]:
    # yields the positional arguments of model and guide for each chunk
    if isinstance(data, torch.Tensor):
        for x in data.split(batch_size):
            yield (x,)
    elif isinstance(data, tuple) and data and all(isinstance(a, torch.Tensor) for a in data):
        n = data[0].shape[0]
        if any(a.shape[0] != n for a in data):
            raise ValueError(f"the tensors of data must have the same first dimension, got "
                             f"{[tuple(a.shape) for a in data]}")
        yield from zip(*(a.split(batch_size) for a in data))
    else:
        for batch in data:
            if isinstance(batch, torch.Tensor):
                yield (batch,)
            elif isinstance(batch, Batch):
                yield (batch.x,)
            else:
                yield tuple(batch)


#: on a CPU, the bytes of one chunk's temporaries: small enough that the elementwise passes
#: over the decoder's output (biases, activations, the likelihood's log-density) run from the
#: cache instead of memory, which made IS-1000 of the Burda VAE 1.22x faster than chunks that
#: fill :func:`log_likelihood`'s 512 MiB budget (benchmarks/iwae_eval.py)
CPU_CHUNK_BYTES = 48 * 2**20


def _default_chunk(batch_size: int, num_dims: int, budget: int) -> int:
    # the decoder output, its log-density and their autograd-free temporaries
    # are about 4 tensors of K x batch x dims floats
    return max(1, budget // (4 * 4 * batch_size * max(num_dims, 1)))


def default_chunk(x: torch.Tensor, memory_budget: int) -> int:
    """The particles per chunk :func:`log_likelihood` takes for the minibatch ``x`` by default:
    as many as fit ``memory_budget`` bytes, and on a CPU no more than fit
    :data:`CPU_CHUNK_BYTES`."""
    budget = memory_budget if x.device.type != "cpu" else min(memory_budget, CPU_CHUNK_BYTES)
    return _default_chunk(x.shape[0], x[0].numel(), budget)


@torch.no_grad()
def log_likelihood(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Iterable[torch.Tensor],
    *,
    num_samples: int = 1000,
    batch_size: int = 100,
    chunk_size: int | None = None,
    memory_budget: int = 512 * 2**20,
    progress: bool = False,
    backend: str = "eager",
    **kwargs: Any,
) -> torch.Tensor:
    r"""
    The importance-sampled log-likelihood of every data point,

    .. math::
        \log \hat p(x_n) = \log \frac{1}{K} \sum_{k=1}^K
            \frac{p_\theta(x_n, z_k)}{q_\phi(z_k \mid x_n)},
        \qquad z_k \sim q_\phi(z \mid x_n),

    vectorised over particles and data points and chunked over both, so memory
    stays bounded whatever :math:`K` is.

    :param data: a tensor ``(N, *data_shape)``; a tuple of tensors with a common
        first dimension, the positional arguments of model and guide (e.g.
        ``(x, y)`` for a conditional model, whose estimate is then
        :math:`\log \hat p(x_n \mid y_n)`); or an iterable of minibatches, each a
        tensor, a tuple of arguments, or a :class:`~pyrogen.data.Batch` (whose ``x`` is used).
    :param int num_samples: :math:`K`, importance samples per data point.
    :param int batch_size: data points per chunk (tensor input only).
    :param int chunk_size: particles per chunk; by default as many as fit
        ``memory_budget`` bytes and, on a CPU, the cache-sized :data:`CPU_CHUNK_BYTES`
        (:func:`default_chunk`).
    :param bool progress: show a progress bar of the importance samples drawn (on a
        terminal only).
    :param str backend: how each chunk's :math:`\log \sum_k w_{kn}` is computed:
        ``"eager"`` (Pyro's handlers on every chunk), ``"export"`` (recorded once per chunk
        shape by ``torch.export`` and replayed, through
        :class:`~pyrogen.infer.CompiledLoss`) or ``"inductor"`` (that graph compiled by
        ``torch.compile``: fused elementwise work, after some seconds of compilation per
        shape; for the Burda VAE's IS-1000 of the MNIST test set 2.2x the FLOP floor of its
        decoder against 2.8x eagerly, benchmarks/iwae_eval.py). The draws are the same
        whichever runs, so the estimates agree to float rounding; under Pyro's validation
        switch one eager particle per batch, drawn under a forked random state, checks the
        data. A model that cannot be recorded runs eagerly, with one warning.
    :param kwargs: passed to model and guide.
    :returns: a CPU tensor of shape ``(N,)`` in nats.
    """
    from tqdm.auto import tqdm

    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    if chunk_size is not None and int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    chunk_fn = _chunk_function(model, guide, backend)
    results = []
    bar = tqdm(desc="importance samples per point", unit="sample", disable=None if progress else True,
               leave=False)
    for args in _batches(data, int(batch_size)):
        x = args[0]
        k_chunk = chunk_size or default_chunk(x, memory_budget)
        parts, done = [], 0
        validate = pyro.distributions.is_validation_enabled()
        if chunk_fn is not None and validate:
            # the recorded chunks run unchecked: one eager particle, drawn under a forked random
            # state (the estimate's draws stay those of an eager run), validates the batch
            devices = [x.device] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                log_importance_weights(model, guide, *args, num_particles=1, **kwargs)
        while done < num_samples:
            k = min(int(k_chunk), num_samples - done)
            if chunk_fn is not None:
                parts.append(chunk_fn(*args, num_particles=k, **kwargs))
            else:
                # the batch's first chunk validates its data and the distributions' arguments
                # under Pyro's switch; the other chunks repeat the same computation on other
                # draws, and their checks (a pass over every decoder output) would cost a tenth
                # of the time
                with pyro.validation_enabled(validate and done == 0):
                    log_w, _ = log_importance_weights(model, guide, *args, num_particles=k, **kwargs)
                parts.append(torch.logsumexp(log_w, 0))
            done += k
            bar.update(k * x.shape[0])
        results.append((torch.logsumexp(torch.stack(parts), 0) - math.log(num_samples)).cpu())
    bar.close()
    if not results:
        raise ValueError("data is empty")
    return torch.cat(results)


_BACKENDS = ("eager", "export", "inductor")


class _ChunkLogSumExp:
    r""":math:`\log \sum_k w_{kn}` of one chunk of particles, as the "loss" that
    :class:`~pyrogen.infer.CompiledLoss` records (it records any object with a
    ``differentiable_loss``)."""

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any,
                            num_particles: int, **kwargs: Any) -> torch.Tensor:
        log_w, _ = log_importance_weights(model, guide, *args, num_particles=num_particles,
                                          **kwargs)
        return torch.logsumexp(log_w, 0)


def _chunk_function(model: Callable, guide: Callable, backend: str) -> Callable | None:
    if backend == "eager":
        return None
    if not (isinstance(model, torch.nn.Module) and isinstance(guide, torch.nn.Module)):
        warnings.warn(f"log_likelihood: backend={backend!r} runs eagerly: its model and guide must "
                      f"be torch modules (PyroModules) for their parameters to be recorded, got "
                      f"{type(model).__name__} and {type(guide).__name__}", RuntimeWarning,
                      stacklevel=3)
        return None
    return CompiledLoss(_ChunkLogSumExp(), model, guide, backend=backend)


@torch.no_grad()
def estimated_seconds(model: Callable, guide: Callable, batches: list, num_samples: int,
                      memory_budget: int = 512 * 2**20, **kwargs: Any) -> float:
    """The seconds :func:`log_likelihood` of ``batches`` (a list of argument tuples) with
    ``num_samples`` samples per point would take, extrapolated from one chunk of the first
    (drawn under a forked random state, so the caller's draws stay as they were)."""
    import time

    args = tuple(batches[0]) if isinstance(batches[0], (tuple, list)) else (batches[0],)
    x = args[0]
    k = min(int(num_samples), default_chunk(x, memory_budget))
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the estimate draws nothing the caller sees
        start = time.perf_counter()
        log_importance_weights(model, guide, *args, num_particles=k, **kwargs)
        if devices:
            torch.cuda.synchronize(x.device)
        seconds = time.perf_counter() - start
    points = sum(len(b[0]) if isinstance(b, (tuple, list)) else len(b) for b in batches)
    return seconds * (num_samples / k) * (points / x.shape[0])


@torch.no_grad()
def elbo(
    model: Callable,
    guide: Callable,
    data: torch.Tensor | Iterable[torch.Tensor],
    *,
    num_particles: int = 1,
    batch_size: int = 100,
    **kwargs: Any,
) -> torch.Tensor:
    r"""
    A Monte Carlo estimate of every data point's ELBO,
    :math:`\frac{1}{K}\sum_k \log w_{kn}`, as a CPU tensor ``(N,)`` in nats.
    ``data`` is as in :func:`log_likelihood`.
    """
    results = []
    for args in _batches(data, int(batch_size)):
        log_w, _ = log_importance_weights(model, guide, *args, num_particles=num_particles, **kwargs)
        results.append(log_w.mean(0).cpu())
    if not results:
        raise ValueError("data is empty")
    return torch.cat(results)


def bits_per_dim(log_likelihood: torch.Tensor | float, num_dims: int) -> torch.Tensor | float:
    r"""Convert a log-likelihood in nats to bits per dimension, :math:`-\log p(x) / (D \ln 2)`."""
    if int(num_dims) < 1:
        raise ValueError(f"num_dims must be a positive integer, got {num_dims}")
    return -log_likelihood / (int(num_dims) * math.log(2.0))
