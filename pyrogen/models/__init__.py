"""Model families: each a Pyro model/guide pair plus a facade."""

from __future__ import annotations

from pyrogen.models.base import FIT_KINDS, Facade
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
from pyrogen.models.vae import VAE, GaussianObservationModel, VAEGuide, VAEModel

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
    "GaussianObservationModel",
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
    "VAE",
    "VAEGuide",
    "VAEModel",
    "build_likelihood",
    "Facade",
    "FIT_KINDS",
]
