"""
A diagnostics report folder: the summary table, the per-data-point table, ArviZ's plots as PNG
and the InferenceData as NetCDF. ``pyrogen diagnose RUN`` calls :func:`diagnose`.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pyrogen.diagnostics import checks
from pyrogen.diagnostics._arviz import arviz, get_group, group_names, to_netcdf
from pyrogen.diagnostics.export import to_inference_data

#: the files :func:`diagnose` writes, by name, with what each holds
REPORT_FILES = {
    "summary.csv": "one row per diagnostic: name, value",
    "points.csv": "one row per data point, worst k-hat first",
    "latents.csv": "one row per latent dimension: activity, active, KL, aggregate moments",
    "inference_data.nc": "the InferenceData (NetCDF4, opens with arviz.from_netcdf)",
    "khat.png": "per-data-point Pareto k-hat with the threshold",
    "worst.png": "the data points with the highest k-hat (images only)",
    "ppc_mean_intensity.png": "posterior predictive check of the mean intensity per data point",
    "ppc_pixel_marginal.png": "posterior predictive check of the per-pixel marginals",
    "bpv_mean_intensity.png": "Bayesian p-value of the mean intensity",
    "latent_kl.png": "KL per latent dimension, active units marked",
    "aggregate_posterior.png": "aggregate posterior marginals of the most active units vs the prior",
}


@contextlib.contextmanager
def _quiet_arviz():
    """ArviZ 0.23's plots warn about its own internals (matplotlib 3.11's ``normalize_kwargs``,
    arrays in ``plot_khat``); nothing a user of pyrogen can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        warnings.filterwarnings("ignore", message=".*alias_mapping.*")
        yield


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def _figure(axes: Any) -> Any:
    ax = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
    return ax.get_figure()


def _plot_khat(khat: np.ndarray, threshold: float, path: Path) -> None:
    az = arviz()
    shown = np.where(np.isfinite(khat), khat, -0.5)  # exact guides: -inf, drawn at the bottom
    ax = az.plot_khat(shown, show_bins=False, figsize=(7, 3.5))
    ax.axhline(threshold, color="C3", ls="--", lw=1, label=f"threshold {threshold:.2f}")
    ax.set_ylabel("Pareto k-hat")
    ax.legend(loc="upper right")
    _save(_figure(ax), path)


def _plot_latents(latents: pd.DataFrame, idata: Any, name: str, path_kl: Path,
                  path_agg: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.18 * len(latents) + 2), 3))
    colors = np.where(latents["active"], "C0", "C7")
    ax.bar(latents.index, latents["kl"], color=colors)
    ax.set_xlabel("latent dimension (grey: inactive)")
    ax.set_ylabel("mean KL(q || prior), nats")
    _save(fig, path_kl)

    az = arviz()
    z = get_group(idata, "posterior")[name]
    unit_dim = z.dims[-1]
    top = latents.sort_values("activity", ascending=False).index[: min(4, len(latents))]
    fig, axes = plt.subplots(1, len(top), figsize=(3 * len(top), 2.6), squeeze=False)
    moments = get_group(idata, "latent_moments")
    for ax, u in zip(axes[0], top):
        draws = z.isel({unit_dim: int(u)}).values.ravel()
        az.plot_kde(draws, ax=ax, plot_kwargs={"color": "C0"}, label="aggregate posterior")
        pm = float(moments[f"{name}_prior_mean"].isel({unit_dim: int(u)}).mean())
        ps = float(moments[f"{name}_prior_std"].isel({unit_dim: int(u)}).mean())
        grid = np.linspace(pm - 4 * ps, pm + 4 * ps, 200)
        ax.plot(grid, np.exp(-0.5 * ((grid - pm) / ps) ** 2) / (ps * math.sqrt(2 * math.pi)),
                color="C1", ls="--", label="prior")
        ax.set_title(f"{name}[{u}]")
    axes[0][0].legend(fontsize=7)
    _save(fig, path_agg)


def _plot_ppc(stats: Any, out: Path, num_pp_samples: int) -> list[str]:
    az = arviz()
    written = []
    pp = get_group(stats, "posterior_predictive")
    for var in ("mean_intensity", "pixel_marginal"):
        if var not in pp:
            continue
        axes = az.plot_ppc(stats, var_names=[var], num_pp_samples=num_pp_samples,
                           random_seed=0, figsize=(6, 3.5))
        _save(_figure(axes), out / f"ppc_{var}.png")
        written.append(f"ppc_{var}.png")
    axes = az.plot_bpv(stats, kind="t_stat", t_stat="mean", var_names=["mean_intensity"],
                       figsize=(5, 3.5))
    _save(_figure(axes), out / "bpv_mean_intensity.png")
    written.append("bpv_mean_intensity.png")
    return written


def _worst_images(idata: Any, worst: pd.DataFrame, path: Path) -> bool:
    from pyrogen.viz import save_image_grid

    x = get_group(idata, "observed_data")["x"]
    if x.ndim != 4:  # (obs, channel, row, column) images only
        return False
    images = torch.as_tensor(x.sel(obs=worst.index.values).values.astype(np.float32))
    save_image_grid(images, path, nrow=min(8, len(images)), scale=max(1, 64 // images.shape[-1]))
    return True


def summarise(idata: Any, table: pd.DataFrame, stats: Any | None,
              latents: pd.DataFrame | None) -> dict[str, float]:
    """The figures of ``summary.csv``: means over data points and the global checks."""
    num_samples = get_group(idata, "sample_stats").sizes["draw"]
    threshold = checks.khat_threshold(num_samples)
    finite = table["khat"].replace(-np.inf, np.nan)
    summary: dict[str, float] = {
        "num_points": float(len(table)),
        "num_samples": float(num_samples),
        "khat_threshold": threshold,
        "khat_mean": float(finite.mean()) if finite.notna().any() else float("-inf"),
        "khat_max": float(table["khat"].max()),
        "share_khat_above_threshold": float((table["khat"] > threshold).mean()),
        "ess_mean": float(table["ess"].mean()),
        "ess_min": float(table["ess"].min()),
        "log_likelihood_mean": float(table["log_likelihood"].mean()),
        "elbo_mean": float(table["elbo"].mean()),
        "gap_mean": float(table["gap"].mean()),
        "reconstruction_mean": float(table["reconstruction"].mean()),
    }
    if latents is not None:
        summary |= {
            "active_units": float(latents["active"].sum()),
            "latent_dims": float(len(latents)),
            "kl_total": float(latents["kl"].sum()),
            "aggregate_posterior_kl": checks.aggregate_posterior_kl(idata, latents.attrs["name"]),
        }
    if stats is not None:
        summary |= checks.ppc_pvalues(stats)
    return summary


def diagnose(
    model: Callable,
    guide: Callable,
    data: torch.Tensor,
    out_dir: str | os.PathLike,
    *,
    labels: torch.Tensor | None = None,
    obs_index: Sequence[int] | None = None,
    num_samples: int = 1000,
    num_predictive: int = 100,
    history: Sequence[dict[str, Any]] | None = None,
    num_worst: int = 16,
    **kwargs: Any,
) -> dict[str, float]:
    """
    Run every diagnostic on ``data`` and write the report folder ``out_dir``
    (see :data:`REPORT_FILES`; pictures that do not apply, such as ``worst.png`` for data that
    are not images, are left out). Returns the summary.

    :param int num_samples: guide draws per data point for the importance weights; k-hat needs
        hundreds (its threshold rises with them, up to 0.7 from about 2200).
    :param int num_predictive: posterior predictive draws per data point.
    """
    if int(num_samples) < 2:
        raise ValueError(f"num_samples must be >= 2 for k-hat; got {num_samples}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    idata = to_inference_data(model, guide, data, labels=labels, obs_index=obs_index,
                              num_samples=num_samples, num_predictive=num_predictive,
                              history=history, **kwargs)
    table = checks.pointwise(idata).sort_values("khat", ascending=False)
    # the first latent site with Gaussian guide and prior ("z" in every pyrogen model so far)
    gaussian = ([v[: -len("_q_mean")] for v in get_group(idata, "latent_moments").data_vars
                 if v.endswith("_q_mean")] if "latent_moments" in group_names(idata) else [])
    latents = checks.latent_usage(idata, gaussian[0]) if gaussian else None
    pixels = "x" in get_group(idata, "observed_data")
    stats = checks.ppc_statistics(idata) if pixels else None
    summary = summarise(idata, table, stats, latents)

    to_netcdf(idata, out / "inference_data.nc")
    _write_csv(pd.DataFrame({"name": list(summary), "value": list(summary.values())}),
               out / "summary.csv", index=False)
    _write_csv(table, out / "points.csv")
    with _quiet_arviz():
        _plot_khat(table.sort_index()["khat"].values, summary["khat_threshold"],
                   out / "khat.png")
    _worst_images(idata, checks.worst_points(table, num_worst), out / "worst.png")
    with _quiet_arviz():
        if stats is not None:
            _plot_ppc(stats, out, min(num_predictive, 50))
        if latents is not None:
            _write_csv(latents, out / "latents.csv")
            _plot_latents(latents, idata, latents.attrs["name"], out / "latent_kl.png",
                          out / "aggregate_posterior.png")
    return summary


def _write_csv(frame: pd.DataFrame, path: Path, index: bool = True) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=index)
    os.replace(tmp, path)
