r"""
Export an amortised posterior to ArviZ.

ArviZ's ``from_pyro`` reads an MCMC run; a VAE-like model has instead a guide
:math:`q_\phi(z \mid x)` that gives, for each data point :math:`x_n`, independent draws
:math:`z_{kn} \sim q_\phi(z \mid x_n)`. :func:`to_inference_data` runs the guide and the model
over a data set, vectorised over draws, and lays out every quantity with named dimensions:

.. math::
    \log w_{kn} = \underbrace{\log p_\theta(x_n \mid z_{kn})}_{\texttt{log\_likelihood}}
        + \log p_\theta(z_{kn}) - \log q_\phi(z_{kn} \mid x_n)
        \quad (\texttt{sample\_stats.log\_weight}),

posterior predictive draws :math:`\tilde x_{kn} \sim p_\theta(x \mid z_{kn})` (the model under
``poutine.uncondition``, replayed on the guide's draws: ``Predictive`` alone returns the
observed :math:`x`), and prior and prior predictive draws
:math:`z_{kn} \sim p_\theta(z),\ \tilde x_{kn} \sim p_\theta(x \mid z_{kn})`.
There is one chain: the draws are independent, not a Markov chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
import xarray as xr
from pyro.poutine.util import site_is_subsample

from pyrogen.diagnostics._arviz import make_inference_data

_DRAWS = "diagnostics_draws"
_DATA_GROUPS = ("posterior_predictive", "prior_predictive", "observed_data")

#: names of the event dimensions of an observed site, by the number of event dimensions
_DATA_DIMS = {1: ("feature",), 2: ("row", "column"), 3: ("channel", "row", "column")}


def _check_args(model: Callable, data: torch.Tensor, labels: Any, num_samples: int,
                num_predictive: int | None, batch_size: int | None) -> None:
    if not isinstance(data, torch.Tensor) or data.dim() < 2:
        got = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ValueError(f"data must be a tensor of shape (N, *data_shape); got {got}")
    if len(data) == 0:
        raise ValueError("data is empty: at least one data point is needed")
    for name, value in (("num_samples", num_samples), ("num_predictive", num_predictive),
                        ("batch_size", batch_size)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if num_predictive is not None and num_predictive > num_samples:
        raise ValueError(
            f"num_predictive ({num_predictive}) must not exceed num_samples ({num_samples})"
        )
    if isinstance(model, torch.nn.Module):
        tensors = [*model.parameters(), *model.buffers()]
        if tensors and tensors[0].device != data.device:
            raise ValueError(
                f"data is on {data.device} but the model on {tensors[0].device}; "
                f"move the data with data.to({str(tensors[0].device)!r})"
            )
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.shape != (len(data),):
            raise ValueError(
                f"labels must have shape ({len(data)},), one per data point; got {tuple(labels.shape)}"
            )


def _latent_dims(name: str, event_dim: int, several: bool) -> tuple[str, ...]:
    if event_dim == 0:
        return ()
    if event_dim == 1:
        return (f"{name}_latent",) if several else ("latent",)
    return tuple(f"{name}_dim_{i}" for i in range(event_dim))


def _data_dims(name: str, event_dim: int, several: bool) -> tuple[str, ...]:
    if event_dim == 0:
        return ()
    dims = _DATA_DIMS.get(event_dim, tuple(f"dim_{i}" for i in range(event_dim)))
    return tuple(f"{name}_{d}" for d in dims) if several else dims


def _compact(array: np.ndarray) -> np.ndarray:
    """Store integer-valued draws (binary pixels, counts) as the smallest signed integer type
    that holds them, ``int8`` or ``int16``: 4-8x less memory than float32/64, and a kind
    (``'i'``) that ArviZ's predictive plots accept (``az.plot_ppc`` refuses unsigned ``'u'``)."""
    if array.dtype.kind != "f" or not array.size or not np.array_equal(array, np.round(array)):
        return array
    low, high = array.min(), array.max()
    for kind in (np.int8, np.int16):
        if np.iinfo(kind).min <= low and high <= np.iinfo(kind).max:
            return array.astype(kind)
    return array


def _normal_moments(fn: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(mean, std)`` of a (possibly Independent) Normal, else None."""
    base = fn
    while isinstance(base, (dist.Independent, torch.distributions.Independent)):
        base = base.base_dist
    if isinstance(base, torch.distributions.Normal):
        return base.loc, base.scale
    return None


class _Collector:
    """Accumulates per-batch arrays of each variable, then concatenates along ``obs``."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, str], list[np.ndarray]] = {}
        self.dims: dict[tuple[str, str], tuple[tuple[str, ...], int]] = {}

    def add(self, group: str, name: str, value: torch.Tensor, dims: tuple[str, ...],
            obs_axis: int) -> None:
        key = (group, name)
        self.parts.setdefault(key, []).append(value.detach().cpu().numpy())
        self.dims[key] = (dims, obs_axis)

    def groups(self, coords: dict[str, Any]) -> dict[str, xr.Dataset]:
        out: dict[str, dict[str, xr.DataArray]] = {}
        for (group, name), parts in self.parts.items():
            dims, axis = self.dims[(group, name)]
            array = np.concatenate(parts, axis=axis)
            if group in _DATA_GROUPS:
                array = _compact(array)
            if dims[:2] == ("chain", "draw"):
                array = array[None]  # one chain
            out.setdefault(group, {})[name] = xr.DataArray(array, dims=dims)
        groups = {}
        for group, variables in out.items():
            ds = xr.Dataset(variables)
            ds = ds.assign_coords({k: v for k, v in coords.items() if _uses(variables, k, v)})
            if "draw" in ds.dims:
                ds = ds.assign_coords(draw=np.arange(ds.sizes["draw"]))
            groups[group] = ds
        return groups


def _uses(variables: dict[str, xr.DataArray], key: str, value: Any) -> bool:
    dim = value[0] if isinstance(value, tuple) else key
    return any(dim in v.dims for v in variables.values())


@torch.no_grad()
def _run_batch(model: Callable, guide: Callable, args: tuple, num_samples: int,
               num_predictive: int, kwargs: dict, out: _Collector) -> None:
    x = args[0]
    with pyro.plate(_DRAWS, num_samples, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(
            poutine.replay(poutine.uncondition(model), trace=guide_trace)
        ).get_trace(*args, **kwargs)
    with pyro.plate(_DRAWS, num_predictive, dim=-2):
        prior_trace = poutine.trace(poutine.uncondition(model)).get_trace(*args, **kwargs)

    latents = [n for n, s in guide_trace.nodes.items()
               if s["type"] == "sample" and not s["is_observed"] and not site_is_subsample(s)]
    observed = [n for n, s in model_trace.nodes.items()
                if s["type"] == "sample" and s["infer"].get("was_observed")]
    if not latents:
        raise ValueError("the guide has no latent sample sites: there is no posterior to export")
    if not observed:
        raise ValueError("the model has no observed sample site: pass the data it conditions on")
    batch = len(x)
    draws = ("chain", "draw")
    log_w = torch.zeros(num_samples, batch, dtype=torch.float64, device=x.device)
    for name in latents:
        q_site, p_site = guide_trace.nodes[name], model_trace.nodes[name]
        event_dim = q_site["fn"].event_dim
        dims = ("obs",) + _latent_dims(name, event_dim, len(latents) > 1)
        out.add("posterior", name, q_site["value"], draws + dims, obs_axis=1)
        out.add("prior", name, prior_trace.nodes[name]["value"], draws + dims, obs_axis=1)
        log_w += (p_site["fn"].log_prob(q_site["value"])
                  - q_site["fn"].log_prob(q_site["value"])).expand(num_samples, batch)
        q_moments, p_moments = _normal_moments(q_site["fn"]), _normal_moments(p_site["fn"])
        if event_dim == 1 and q_moments is not None and p_moments is not None:
            shape = (num_samples, batch, q_site["value"].shape[-1])
            for tag, (mean, std) in (("q", q_moments), ("prior", p_moments)):
                out.add("latent_moments", f"{name}_{tag}_mean", mean.expand(shape)[0], dims,
                        obs_axis=0)
                out.add("latent_moments", f"{name}_{tag}_std", std.expand(shape)[0], dims,
                        obs_axis=0)
    for name in observed:
        site = model_trace.nodes[name]
        obs = site["infer"]["obs"]
        dims = ("obs",) + _data_dims(name, site["fn"].event_dim, len(observed) > 1)
        log_lik = site["fn"].log_prob(obs).expand(num_samples, batch)
        log_w += log_lik
        out.add("log_likelihood", name, log_lik, draws + ("obs",), obs_axis=1)
        out.add("posterior_predictive", name, site["value"][:num_predictive], draws + dims,
                obs_axis=1)
        out.add("prior_predictive", name, prior_trace.nodes[name]["value"], draws + dims,
                obs_axis=1)
        out.add("observed_data", name, obs, dims, obs_axis=0)
    out.add("sample_stats", "log_weight", log_w, draws + ("obs",), obs_axis=1)


def _auto_batch_size(num_samples: int, num_dims: int, budget: int = 256 * 2**20) -> int:
    # the decoder output and its log-density for num_samples draws: ~ 4 float tensors each
    return max(1, budget // (16 * num_samples * max(num_dims, 1)))


def history_dataset(history: Sequence[dict[str, Any]]) -> xr.Dataset:
    """
    A training history (the records of ``metrics.jsonl``) as a dataset over ``epoch``:
    one variable per numeric field (NaN where an epoch lacks it); text fields that are the same
    in every record become attributes.
    """
    if not history:
        raise ValueError("history is empty: it needs at least one epoch record")
    epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(history)]
    numeric: dict[str, list[float]] = {}
    attrs: dict[str, str] = {}
    for i, record in enumerate(history):
        for key, value in record.items():
            if key == "epoch":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                numeric.setdefault(key, [np.nan] * len(history))[i] = float(value)
            elif isinstance(value, str):
                attrs[key] = value if attrs.get(key, value) == value else "varies"
    data = {k: ("epoch", np.asarray(v)) for k, v in numeric.items()}
    return xr.Dataset(data, coords={"epoch": epochs}, attrs=attrs)


def to_inference_data(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    *,
    labels: torch.Tensor | Sequence[int] | None = None,
    condition: torch.Tensor | None = None,
    num_samples: int = 100,
    num_predictive: int | None = None,
    batch_size: int | None = None,
    history: Sequence[dict[str, Any]] | None = None,
    obs_index: Iterable[int] | None = None,
    **kwargs: Any,
) -> Any:
    r"""
    Draw from an amortised posterior and its model, and return them as an ArviZ
    ``InferenceData`` (an ``xarray.DataTree`` under ArviZ 1.x).

    Groups, with their dimensions (``z`` and an image ``x`` as in a VAE; other sites are
    named after themselves):

    - ``posterior``: ``z`` (chain, draw, obs, latent), draws of :math:`q_\phi(z \mid x_n)`;
    - ``posterior_predictive``: ``x`` (chain, draw, obs, channel, row, column), draws of
      :math:`p_\theta(x \mid z_{kn})`;
    - ``prior``, ``prior_predictive``: the same variables drawn from the model alone;
    - ``log_likelihood``: ``x`` (chain, draw, obs), :math:`\log p_\theta(x_n \mid z_{kn})`;
    - ``sample_stats``: ``log_weight`` (chain, draw, obs), :math:`\log w_{kn}`;
    - ``observed_data``: ``x`` (obs, channel, row, column);
    - ``latent_moments`` (Gaussian guides and priors): ``z_q_mean``, ``z_q_std``,
      ``z_prior_mean``, ``z_prior_std`` (obs, latent), the parameters of
      :math:`q_\phi(z \mid x_n)` and :math:`p_\theta(z)`;
    - ``training_history`` (when ``history`` is given): the loss terms per ``epoch``.

    Coordinates: ``obs`` is the data point's index (``obs_index``, default ``0..N-1``), with the
    class ``label`` as a coordinate on ``obs`` when ``labels`` are given; ``chain`` is ``[0]``
    (draws are independent); ``draw`` counts draws. Binary draws are stored as ``int8``.

    :param model: a pyrogen model (``model(x, **kwargs)``), its data plate at dim -1.
    :param guide: its guide.
    :param torch.Tensor data: ``(N, *data_shape)`` on the model's device.
    :param labels: ``(N,)`` class labels, kept as a coordinate.
    :param condition: for a conditional model, its condition ``y`` (``(N, ...)``), passed
        as the second positional argument ``model(x, y)``; the groups are then
        conditional on it (e.g. :math:`p(z \mid y)` as the prior).
    :param int num_samples: :math:`K`, guide draws per data point (posterior,
        ``log_likelihood``, ``sample_stats``).
    :param int num_predictive: draws per data point of the predictive and prior groups
        (default ``min(num_samples, 100)``: they hold whole images).
    :param int batch_size: data points per vectorised pass (default: as fit in 256 MiB).
    :param history: epoch records, e.g. the lines of a run's ``metrics.jsonl``.
    :param kwargs: passed to the model and guide.
    """
    _check_args(model, data, labels, num_samples, num_predictive, batch_size)
    num_predictive = min(num_samples, 100) if num_predictive is None else int(num_predictive)
    batch_size = batch_size or _auto_batch_size(num_samples, data[0].numel())
    index = np.arange(len(data)) if obs_index is None else np.asarray(list(obs_index))
    if index.shape != (len(data),):
        raise ValueError(f"obs_index must have one entry per data point ({len(data)}); "
                         f"got shape {index.shape}")
    collector = _Collector()
    if condition is not None:
        if not isinstance(condition, torch.Tensor) or condition.shape[:1] != data.shape[:1]:
            got = tuple(condition.shape) if isinstance(condition, torch.Tensor) else type(condition).__name__
            raise ValueError(f"condition must be a tensor with one entry per data point "
                             f"({len(data)}, ...); got {got}")
        chunks = zip(data.split(int(batch_size)), condition.split(int(batch_size)))
    else:
        chunks = ((x,) for x in data.split(int(batch_size)))
    for args in chunks:
        _run_batch(model, guide, tuple(args), int(num_samples), num_predictive, kwargs, collector)
    coords: dict[str, Any] = {"chain": [0], "obs": index}
    if labels is not None:
        coords["label"] = ("obs", torch.as_tensor(labels).cpu().numpy())
    groups = collector.groups(coords)
    if history is not None:
        groups["training_history"] = history_dataset(history)
    attrs = {"inference_library": "pyrogen", "num_samples": int(num_samples),
             "num_predictive": num_predictive,
             "note": "independent draws from an amortised guide q(z|x); one chain"}
    for ds in groups.values():
        ds.attrs.update(attrs)
    return make_inference_data(groups)
