r"""
Diagnostics of an amortised posterior, computed from the groups that
:func:`~pyrogen.diagnostics.to_inference_data` writes.

**Importance weights per data point.** For each :math:`x_n` the guide's draws give log weights
:math:`\log w_{kn}`, :math:`k = 1..K`. Their Pareto shape :math:`\hat k_n` (PSIS, Vehtari et al.
2024; as a variational diagnostic, Yao et al. 2018) measures how heavy the tail of
:math:`p(z \mid x_n) / q(z \mid x_n)` is: :math:`\hat k_n` below
:math:`\min(1 - 1/\log_{10} K,\ 0.7)` means the importance-sampled estimate is reliable with
:math:`K` draws, above it the guide misses posterior mass. Pyro's ``psis_diagnostic`` sums the
log weights over the data plate, which is meaningless for local latents; here every data point
has its own :math:`\hat k_n`. With normalised weights :math:`\bar w_{kn}` the effective sample
size is :math:`\mathrm{ESS}_n = 1 / \sum_k \bar w_{kn}^2`, and

.. math::
    \log \hat p(x_n) - \mathrm{ELBO}_n
    = \log \tfrac1K \textstyle\sum_k w_{kn} - \tfrac1K \sum_k \log w_{kn} \;\ge\; 0

is the gap between the importance-sampled log-likelihood and the ELBO.

**Latent usage.** Unit :math:`u` is active when
:math:`A_u = \mathrm{Cov}_x\big(\mathbb E_{q(z \mid x)}[z_u]\big) > 10^{-2}` (Burda et al. 2016);
its KL is :math:`\frac1N \sum_n \mathrm{KL}(q(z_u \mid x_n) \,\|\, p(z_u))` in closed form for
Gaussian guides. The aggregate posterior :math:`q(z) = \frac1N \sum_n q(z \mid x_n)` is compared
with the prior through their Gaussian moment fits.

**Why no LOO or WAIC.** PSIS-LOO and WAIC estimate how well the posterior of *shared*
parameters predicts a held-out point. Here each :math:`z_n` belongs to one data point: leaving
out :math:`x_n` leaves nothing to infer :math:`z_n` from, so the "leave-one-out predictive" of
:math:`x_n` is the prior predictive and ``az.loo`` / ``az.waic`` on ``log_likelihood`` return
meaningless figures (hundreds of effective parameters for a few dozen points).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from pyrogen.diagnostics._arviz import get_group, psislw


def khat_threshold(num_samples: int) -> float:
    r"""The sample-size-dependent :math:`\hat k` threshold :math:`\min(1 - 1/\log_{10} K, 0.7)`
    (Vehtari et al. 2024): above it, :math:`K` draws do not give a reliable estimate."""
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 2:
        raise ValueError(f"num_samples must be an integer >= 2; got {num_samples!r}")
    return min(1.0 - 1.0 / math.log10(num_samples), 0.7)


def _log_weights(source: Any) -> xr.DataArray:
    """The log weights as a DataArray (obs, sample), from an InferenceData or an array (..., K)."""
    if isinstance(source, torch.Tensor):
        source = source.detach().cpu().numpy()
    if isinstance(source, (np.ndarray, list)):
        array = np.asarray(source, np.float64)
        if array.ndim != 2:
            raise ValueError(f"log weights must have shape (num_samples, num_points); got {array.shape}")
        return xr.DataArray(array.T, dims=("obs", "sample"))
    lw = get_group(source, "sample_stats")["log_weight"]
    return lw.stack(sample=("chain", "draw")).transpose("obs", "sample").astype(np.float64)


def pareto_khat(source: Any) -> xr.DataArray:
    r"""
    Per-data-point PSIS :math:`\hat k_n` (ArviZ's ``psislw`` over each point's draws).

    :param source: an InferenceData from :func:`to_inference_data`, or log weights
        ``(num_samples, num_points)`` as from :func:`pyrogen.infer.log_importance_weights`.
    :returns: a DataArray over ``obs``.
    """
    lw = _log_weights(source)
    _, k = psislw(lw.values)
    return xr.DataArray(k, dims=("obs",), coords=_obs_coords(lw), name="khat")


def _obs_coords(lw: xr.DataArray) -> dict[str, xr.DataArray]:
    return {c: lw[c] for c in lw.coords if "sample" not in lw[c].dims}


def importance_ess(source: Any) -> xr.DataArray:
    r"""Per-data-point importance-sampling ESS :math:`1 / \sum_k \bar w_{kn}^2`, in draws."""
    lw = _log_weights(source)
    values = lw.values - lw.values.max(axis=1, keepdims=True)
    w = np.exp(values)
    w /= w.sum(axis=1, keepdims=True)
    return xr.DataArray(1.0 / (w**2).sum(axis=1), dims=("obs",), name="ess",
                        coords=_obs_coords(lw))


def _logmeanexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).mean(axis=axis, keepdims=True))).squeeze(axis)


def pointwise(idata: Any) -> pd.DataFrame:
    """
    One row per data point: ``khat``, ``ess``, ``log_likelihood`` (importance-sampled),
    ``elbo``, ``gap`` (their difference), ``reconstruction`` (the mean of
    :math:`\\log p(x_n \\mid z)` over the guide's draws) and the ``label`` when there is one;
    indexed by ``obs``.
    """
    lw = _log_weights(idata)
    loglik = get_group(idata, "log_likelihood")
    recon = sum(loglik[v] for v in loglik.data_vars).mean(("chain", "draw"))
    table = pd.DataFrame({
        "khat": pareto_khat(idata).values,
        "ess": importance_ess(idata).values,
        "log_likelihood": _logmeanexp(lw.values, 1),
        "elbo": lw.values.mean(1),
        "reconstruction": recon.values.astype(np.float64),
    }, index=pd.Index(lw["obs"].values, name="obs"))
    table["gap"] = table["log_likelihood"] - table["elbo"]
    if "label" in lw.coords:
        table.insert(0, "label", lw["label"].values)
    return table


def worst_points(table: pd.DataFrame, num: int = 16, by: str = "khat") -> pd.DataFrame:
    """The ``num`` data points the encoder handles worst: highest ``khat`` (or lowest ESS when
    ``by="ess"``, largest ``gap`` when ``by="gap"``) first."""
    if by not in ("khat", "ess", "gap"):
        raise ValueError(f"by must be 'khat', 'ess' or 'gap'; got {by!r}")
    return table.sort_values(by, ascending=(by == "ess")).head(int(num))


def latent_usage(idata: Any, name: str = "z", threshold: float = 1e-2) -> pd.DataFrame:
    r"""
    Per latent dimension: ``activity`` :math:`A_u`, ``active`` (:math:`A_u >` ``threshold``),
    ``kl`` (mean closed-form KL of :math:`q(z_u \mid x)` from :math:`p(z_u)`, in nats), and the
    aggregate posterior's ``aggregate_mean`` and ``aggregate_std``. Needs the
    ``latent_moments`` group (Gaussian guide and prior).
    """
    moments = _moments(idata, name)
    qm, qs, pm, ps = (moments[f"{name}_{k}"].values.astype(np.float64)
                      for k in ("q_mean", "q_std", "prior_mean", "prior_std"))
    kl = np.log(ps / qs) + (qs**2 + (qm - pm) ** 2) / (2 * ps**2) - 0.5
    activity = qm.var(axis=0)
    usage = pd.DataFrame({
        "activity": activity,
        "active": activity > threshold,
        "kl": kl.mean(axis=0),
        "aggregate_mean": qm.mean(axis=0),
        "aggregate_std": np.sqrt((qs**2).mean(axis=0) + qm.var(axis=0)),
    }, index=pd.Index(np.arange(qm.shape[1]), name="latent"))
    usage.attrs["name"] = name
    return usage


def _moments(idata: Any, name: str) -> xr.Dataset:
    try:
        moments = get_group(idata, "latent_moments")
    except (AttributeError, KeyError):
        moments = None
    if moments is None or f"{name}_q_mean" not in moments:
        raise ValueError(
            f"this InferenceData has no Gaussian moments of {name!r} (group latent_moments): "
            "latent usage needs a Gaussian guide and prior"
        )
    return moments


def aggregate_posterior_kl(idata: Any, name: str = "z") -> float:
    r"""
    :math:`\mathrm{KL}(\mathcal N(m_q, \Sigma_q) \,\|\, \mathcal N(m_p, \Sigma_p))` between the
    moment fits of the aggregate posterior :math:`\frac1N\sum_n q(z \mid x_n)` and of the
    aggregate prior (the prior itself when it does not depend on :math:`x`), in nats. Zero when
    the codes fill the prior as the model assumes; large when the aggregate posterior is
    shifted, shrunk or correlated.
    """
    moments = _moments(idata, name)

    def fit(mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cov = np.diag((std**2).mean(axis=0))
        if len(mean) > 1:
            cov = cov + np.cov(mean, rowvar=False, bias=True)
        return mean.mean(axis=0), cov

    mq, cq = fit(*(moments[f"{name}_q_{k}"].values.astype(np.float64) for k in ("mean", "std")))
    mp, cp = fit(*(moments[f"{name}_prior_{k}"].values.astype(np.float64)
                   for k in ("mean", "std")))
    d = len(mq)
    cp_inv = np.linalg.inv(cp)
    diff = mp - mq
    _, logdet_p = np.linalg.slogdet(cp)
    _, logdet_q = np.linalg.slogdet(cq)
    return float(0.5 * (np.trace(cp_inv @ cq) + diff @ cp_inv @ diff - d + logdet_p - logdet_q))


def ppc_statistics(idata: Any, name: str = "x") -> Any:
    r"""
    Summary statistics of the observed and predictive draws of ``name``, as an InferenceData
    that ArviZ's ``plot_ppc`` and ``plot_bpv`` read directly:

    - ``mean_intensity`` (…, obs): the mean of each data point over its dimensions;
    - ``pixel_marginal`` (…, pixel): the mean over data points of each dimension, the
      per-pixel marginal :math:`\frac1N\sum_n x_{nd}`.

    Groups ``posterior_predictive``, ``prior_predictive`` and ``observed_data``.
    """
    from pyrogen.diagnostics._arviz import make_inference_data

    groups = {}
    for group in ("posterior_predictive", "prior_predictive", "observed_data"):
        da = get_group(idata, group)[name]
        event = [d for d in da.dims if d not in ("chain", "draw", "obs")]
        flat = da.astype(np.float32).stack(pixel=event) if event else da.astype(np.float32)
        stats = {"mean_intensity": flat.mean("pixel") if event else flat}
        if event:
            stats["pixel_marginal"] = flat.mean("obs").drop_vars(
                [c for c in flat.coords if c in event or c == "pixel"]
            ).assign_coords(pixel=np.arange(flat.sizes["pixel"]))
        groups[group] = xr.Dataset(stats)
    return make_inference_data(groups)


def ppc_pvalues(stats: Any) -> dict[str, float]:
    r"""
    Posterior predictive p-values :math:`P(T(\tilde x) > T(x)) + \frac12 P(T(\tilde x) = T(x))`
    (the mid-p-value, so that pixels that are always 0 in data and draws count as 0.5, not
    extreme) of the statistics of :func:`ppc_statistics`: of the mean intensity averaged over
    data points, and the share of pixels whose marginal has a two-sided p-value below 0.05.
    """
    pp, obs = get_group(stats, "posterior_predictive"), get_group(stats, "observed_data")

    def mid_p(rep: xr.DataArray, observed: xr.DataArray) -> xr.DataArray:
        return ((rep > observed).astype(float) + 0.5 * (rep == observed)).mean(("chain", "draw"))

    out = {"mean_intensity_pvalue": float(
        mid_p(pp["mean_intensity"].mean("obs"), obs["mean_intensity"].mean("obs")))}
    if "pixel_marginal" in pp:
        p = mid_p(pp["pixel_marginal"], obs["pixel_marginal"])
        out["pixel_marginal_extreme_share"] = float(((p < 0.025) | (p > 0.975)).mean())
    return out
