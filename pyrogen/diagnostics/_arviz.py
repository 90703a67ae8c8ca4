"""
The one place where pyrogen touches ArviZ's API, so that its differences between releases stay
here.

ArviZ 0.x holds results in an ``arviz.InferenceData`` and has ``arviz.psislw``; ArviZ 1.x holds
them in an ``xarray.DataTree``, changes ``from_dict`` to nested groups and moves ``psislw`` to
``arviz_stats``. pyrogen builds every group as an :class:`xarray.Dataset` itself (so
``from_dict`` is never needed) and wraps the groups here. The 0.x path is what installs and
is tested with this project; under 1.x the groups go into an ``xarray.DataTree`` (building,
writing and reading it is tested here, on xarray's own class) and ``psislw`` comes from
``arviz_stats`` (not tested: 1.x does not install here).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import xarray as xr


def arviz():
    """Import ArviZ without the ``FutureWarning`` that 0.23 prints on every import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz as az
    return az


def major_version() -> int:
    return int(arviz().__version__.split(".")[0])


def make_inference_data(groups: dict[str, xr.Dataset], *, legacy: bool | None = None) -> Any:
    """
    Wrap named groups of datasets: an ``arviz.InferenceData`` on ArviZ 0.x, an
    ``xarray.DataTree`` (what ArviZ 1.x uses) on 1.x or when ``legacy`` is False.
    """
    legacy = major_version() < 1 if legacy is None else legacy
    if legacy:
        return arviz().InferenceData(**groups)
    return xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})


def group_names(idata: Any) -> list[str]:
    """The groups of an ``InferenceData`` or a ``DataTree``."""
    if isinstance(idata, xr.DataTree):
        return list(idata.children)
    return list(idata.groups())


def get_group(idata: Any, name: str) -> xr.Dataset:
    """One group as an :class:`xarray.Dataset`."""
    if isinstance(idata, xr.DataTree):
        return idata[name].to_dataset()
    return getattr(idata, name)


def to_netcdf(idata: Any, path: str | os.PathLike) -> str:
    """
    Write ``idata`` to a NetCDF4 file with the ``h5netcdf`` engine (ArviZ's own dependency),
    atomically: a temporary file renamed over ``path``.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp"
    idata.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)
    return path


def from_netcdf(path: str | os.PathLike, *, legacy: bool | None = None) -> Any:
    """Read a file written by :func:`to_netcdf` fully into memory (the file is closed after)."""
    legacy = major_version() < 1 if legacy is None else legacy
    if legacy:
        idata = arviz().from_netcdf(os.fspath(path))
        for name in idata.groups():
            getattr(idata, name).load()
        return idata
    with xr.open_datatree(os.fspath(path), engine="h5netcdf") as tree:
        return tree.load().copy()


def psislw(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""
    Pareto-smoothed importance sampling over the last axis of ``log_weights``
    (Vehtari et al. 2024): the smoothed, normalised log weights and the Pareto shape
    estimate :math:`\hat k` of every leading index.

    Where all the weights of an index are equal to rounding (a spread below
    :math:`10^{-5} \max(1, |\log w|)`: the guide is the exact posterior) there is no tail to
    fit and ArviZ's fit degenerates (to :math:`\pm\infty` or noise); those indices get
    :math:`\hat k = -\infty`, the limit of ever shorter tails, and uniform weights.
    """
    log_weights = np.asarray(log_weights, dtype=np.float64)
    spread = log_weights.max(axis=-1) - log_weights.min(axis=-1)
    flat = spread <= 1e-5 * np.maximum(1.0, np.abs(log_weights).max(axis=-1))
    if not flat.any():
        return _psislw(log_weights)
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, log_weights.shape[-1]), log_weights.shape)
    lw, k = _psislw(np.where(flat[..., None], ramp, log_weights))
    uniform = -np.log(log_weights.shape[-1])
    return np.where(flat[..., None], uniform, lw), np.where(flat, -np.inf, k)


def _psislw(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    az = arviz()
    if hasattr(az, "psislw"):
        with warnings.catch_warnings():
            # ArviZ warns when some k-hat is large; pyrogen reports k-hat itself
            warnings.filterwarnings("ignore", message=".*Pareto.*", category=UserWarning)
            lw, k = az.psislw(log_weights, reff=1.0)
        return np.asarray(lw), np.asarray(k)
    try:  # pragma: no cover - ArviZ 1.x only
        from arviz_stats import psislw as stats_psislw
    except ImportError as e:  # pragma: no cover
        raise ImportError(
            "this ArviZ has no psislw; ArviZ 1.x keeps it in arviz-stats: pip install arviz-stats"
        ) from e
    da = xr.DataArray(log_weights, dims=[f"dim_{i}" for i in range(log_weights.ndim - 1)]
                      + ["__sample__"])  # pragma: no cover
    lw, k = stats_psislw(da, r_eff=1.0)  # pragma: no cover
    return np.asarray(lw), np.asarray(k)  # pragma: no cover
