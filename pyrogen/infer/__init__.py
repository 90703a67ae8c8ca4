"""Losses and estimators: importance-weighted bounds, log-likelihoods (importance sampling and
annealed importance sampling with BDMC bounds), adversarial losses."""

from pyrogen.infer.adversarial import AdversarialLoss, Trace_AAE, Trace_GAN
from pyrogen.infer.annealed import AISResult, ais, bdmc
from pyrogen.infer.ali import Trace_ALI

from pyrogen.infer.em import e_step, exact_em, generalised_em
from pyrogen.infer.importance import bits_per_dim, elbo, log_importance_weights, log_likelihood
from pyrogen.infer.iwae import Trace_IWAE
from pyrogen.infer.compiled import CompiledLoss
from pyrogen.infer.mcem import SIRPosterior, Trace_MCEM

__all__ = [
    "AISResult",
    "AdversarialLoss",
    "Trace_AAE",
    "Trace_ALI",
    "Trace_GAN",
    "CompiledLoss",
    "SIRPosterior",
    "Trace_IWAE",
    "Trace_MCEM",
    "ais",
    "bdmc",
    "bits_per_dim",
    "e_step",
    "elbo",
    "exact_em",
    "generalised_em",
    "log_importance_weights",
    "log_likelihood",
]
