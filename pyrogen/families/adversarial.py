"""
What the adversarial families (GAN, AAE, ALI) share: their networks' options, Adam's betas
of DCGAN, the sample-quality evaluation (they have no likelihood to estimate) and the
diagnosis of a Gaussian encoder against a surrogate Gaussian likelihood.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pyrogen.families.base import Family, Request
from pyrogen.families.options import Option, int_list, non_negative_float
from pyrogen.families.vae import LATENT
from pyrogen.models.base import Facade
from pyrogen.models.generator import NOISES
from pyrogen.train import AdversarialStep, TrainConfig

HIDDEN = Option("hidden", "hidden layer sizes of the MLP networks, e.g. 512,512: the "
                "discriminator's (and the encoder's); the generator mirrors them", type=int_list)
ARCH = Option("arch", "mlp, or conv (DCGAN, 28x28 or 64x64 images)", choices=("mlp", "conv"))
CHANNELS = Option("channels", "--arch conv: channels of the stride-2 stages, e.g. 64,128",
                  type=int_list)
BATCH_NORM = Option("batch_norm", "batch normalisation in generator and discriminator", boolean=True)
ENCODER = Option("encoder", "deterministic (delta) or gaussian encoder", choices=NOISES)
INSTANCE_NOISE = Option("instance_noise", "std of the Gaussian noise the discriminator sees on "
                        "every image, real and generated, while training (instance noise; 0: "
                        "none): binarised data would otherwise let it win by the 0/1 values "
                        "alone", type=non_negative_float)
#: the options of every adversarial facade's networks
NETWORK = (LATENT, ARCH, HIDDEN, CHANNELS, BATCH_NORM)
#: the 8x8 digits are too small for the DCGAN networks: MLPs, trained for about 3,800
#: iterations at DCGAN's rate (benchmarks/defaults_sweep.py; docs/families.rst has the table)
DIGITS = {"arch": "mlp", "epochs": 200, "batch_size": 64, "lr": 2e-4}
#: the 28x28 data sets: DCGAN's rate and batch, a few epochs (about 940 iterations each)
MNIST = {"batch_size": 64, "lr": 2e-4}
#: DCGAN networks at half DCGAN's width, with batch norm and two generator steps per
#: iteration: the arm of benchmarks/gan_regulariser.py that trained best on MNIST
MNIST_DCGAN = {**MNIST, "arch": "conv", "channels": [32, 64], "batch_norm": True, "g_steps": 2}


class AdversarialFamily(Family):
    """A family fitted by alternating players (``fit = "adversarial"``)."""

    #: DCGAN's Adam
    train_overrides = {"betas": [0.5, 0.999]}

    binarize_text = "none; static for binarized-mnist"

    def binarize_for(self, model_options: dict[str, Any]) -> str:
        """Grey levels (``"none"``) whatever the options: the adversarial players read the
        data as they are, and no Bernoulli likelihood scores them (``binarized-mnist`` still
        gets its static draw, :meth:`default_binarize`)."""
        return "none"

    def step(self, config: TrainConfig | None = None, data: Any = None) -> AdversarialStep:
        """The adversarial step, watching the classes of its samples with the classifier of
        ``config.watch_classes`` where the run names one."""
        if config is None or config.watch_classes is None:
            return AdversarialStep()
        from pyrogen.families.runs import load_classifier
        from pyrogen.train.checkpoint import CheckpointError

        try:
            classifier = load_classifier(Path(config.watch_classes), data, config.device)
        except (ValueError, CheckpointError) as e:
            message = str(e)
            if "--features" in message:
                raise ValueError(message.replace("--features", "--watch-classes")) from None
            raise ValueError(f"--watch-classes {config.watch_classes}: {message}") from None
        return AdversarialStep(classifier=classifier)

    def evaluate(self, model: Facade, config: TrainConfig, data: Any, split: Any,
                 request: Request) -> dict[str, Any]:
        """Sample quality in a classifier's feature space (``--features``): an adversarial
        model has no likelihood to estimate."""
        from pyrogen.families.quality import quality

        if request.features is None and not request.ais:
            article = "an" if self.name[0] in "aeiou" else "a"
            raise ValueError(f"{article} {self.name} has no likelihood to estimate: pass --features "
                             "RUN, a `pyrogen train classifier` run on the same data set, for its "
                             "sample-quality metrics, or --ais STEPS for a log-likelihood under a "
                             "Gaussian observation model")
        self.check_ais(model, request)
        result: dict[str, Any] = {}
        if request.features is not None:
            result.update(quality(request, model, data, split))
        if request.ais:
            result["ais"] = self.evaluate_ais(model, config, data, split, request)
        return result

    #: no likelihood to importance-sample (``--iw-samples`` is refused)
    importance_sampled = False

    #: a generator's x is exactly G(z): ``--ais`` observes it through Gaussian noise
    default_observation = "gaussian"

    def ais_model(self, model: Facade) -> Any:
        """Refused: the generator's own :math:`x = G(z)` is a point mass, with no density."""
        raise ValueError(f"a {self.name}'s generator gives x = G(z) exactly, with no density to "
                         "anneal; --ais needs --ais-observation gaussian (the default here)")

    def gaussian_observation(self, model: Facade, sigma: float) -> Any:
        r""":math:`x \mid z \sim \mathcal{N}(G(z), \sigma^2 I)` around the generator."""
        return model.model.with_gaussian_noise(sigma)

    def diagnosable(self, model: Facade, x: torch.Tensor) -> tuple[Any, float | None]:
        """A Gaussian encoder against the generator's likelihood, or, for a ``Delta``
        generator, against :math:`N(G(\\mu(x)), s^2 I)` with the maximum-likelihood ``s``."""
        if not model.has_encoder or model.guide.noise != "gaussian":
            raise ValueError(f"a {self.name} run has no Gaussian encoder p(z|x) to diagnose (a gan "
                             "has none; train an aae or ali with --encoder gaussian)")
        if model.model.noise == "gaussian":
            return model.model, None
        with torch.no_grad():
            scale = float((x - model.reconstruct(x)).pow(2).mean().sqrt().clamp(min=1e-3))
        return model.model.with_gaussian_noise(scale), scale


__all__ = ["AdversarialFamily", "ARCH", "BATCH_NORM", "CHANNELS", "DIGITS", "ENCODER", "INSTANCE_NOISE", "MNIST", "MNIST_DCGAN",
           "NETWORK"]
