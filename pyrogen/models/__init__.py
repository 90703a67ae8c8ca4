"""Model families: each a Pyro model/guide pair plus a facade."""

from __future__ import annotations

from typing import Any

from torch import nn

from pyrogen.models.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    GaussianLikelihood,
    build_likelihood,
)
from pyrogen.models.aae import AAE
from pyrogen.models.ali import ALI
from pyrogen.models.classifier import Classifier, ClassifierGuide, ClassifierModel, ImageClassifier
from pyrogen.models.cvae import CONDITIONS, CVAE, CVAEGuide, CVAEModel
from pyrogen.models.dfcvae import DFCVAE, DFCVAEGuide, DFCVAEModel, FrozenFeatures
from pyrogen.models.gan import GAN, AdversarialFacade, EncoderFacade
from pyrogen.models.generator import Discriminator, EncoderGuide, GeneratorModel
from pyrogen.models.mixture import BernoulliMixtureModel, GaussianMixtureModel, MixtureModel
from pyrogen.models.mixture_posterior import Mixture, MixturePosterior
from pyrogen.models.vae import VAE, VAEGuide, VAEModel

#: model name -> facade class; every facade takes its ``config`` as keyword arguments.
MODELS: dict[str, type[nn.Module]] = {
    "vae": VAE,
    "cvae": CVAE,
    "mixture": Mixture,
    "dfcvae": DFCVAE,
    "classifier": ImageClassifier,
    "gan": GAN,
    "aae": AAE,
    "ali": ALI,
}


def build_model(name: str, **config: Any) -> nn.Module:
    """Build the model family ``name`` (a key of :data:`MODELS`) from its config."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {name!r}")
    return MODELS[name](**config)


__all__ = [
    "AAE",
    "ALI",
    "AdversarialFacade",
    "Discriminator",
    "EncoderFacade",
    "EncoderGuide",
    "GAN",
    "GeneratorModel",
    "BernoulliLikelihood",
    "BernoulliMixtureModel",
    "Classifier",
    "ClassifierGuide",
    "ClassifierModel",
    "DFCVAE",
    "DFCVAEGuide",
    "DFCVAEModel",
    "FrozenFeatures",
    "GaussianMixtureModel",
    "ImageClassifier",
    "Mixture",
    "MixtureModel",
    "MixturePosterior",
    "CONDITIONS",
    "CVAE",
    "CVAEGuide",
    "CVAEModel",
    "ContinuousBernoulliLikelihood",
    "GaussianLikelihood",
    "LIKELIHOODS",
    "MODELS",
    "VAE",
    "VAEGuide",
    "VAEModel",
    "build_likelihood",
    "build_model",
]
