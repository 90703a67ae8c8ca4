"""
Posterior diagnostics in ArviZ for amortised posteriors :math:`q(z \\mid x)`.

:func:`to_inference_data` exports draws of any pyrogen model/guide pair; the functions of
:mod:`pyrogen.diagnostics.checks` read them (per-data-point PSIS :math:`\\hat k`,
importance-sampling ESS, the ELBO-to-log-likelihood gap, posterior predictive checks, active
units and the aggregate posterior); :func:`diagnose` writes them all to a report folder.
"""

from pyrogen.diagnostics._arviz import from_netcdf, to_netcdf
from pyrogen.diagnostics.checks import (
    aggregate_posterior_kl,
    importance_ess,
    khat_threshold,
    latent_usage,
    pareto_khat,
    pointwise,
    ppc_pvalues,
    ppc_statistics,
    worst_points,
)
from pyrogen.diagnostics.export import history_dataset, to_inference_data

__all__ = [
    "aggregate_posterior_kl",
    "from_netcdf",
    "history_dataset",
    "importance_ess",
    "khat_threshold",
    "latent_usage",
    "pareto_khat",
    "pointwise",
    "ppc_pvalues",
    "ppc_statistics",
    "to_inference_data",
    "to_netcdf",
    "worst_points",
]
