"""
The deep feature-consistent VAE
===============================

The deep feature-consistent VAE: reconstruct in the feature space of a classifier that
pyrogen trains itself (no downloaded weights), beside a plain VAE.

1. train an :class:`~pyrogen.models.ImageClassifier` on the data (its relu1-3 activations
   become the feature loss);
2. train a plain VAE and a DFC-VAE with the same networks;
3. compare reconstructions and the Frechet distance of samples in the classifier's
   penultimate features.

::

    python examples/dfcvae_digits.py --out runs/dfcvae-example
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro
import torch

from pyrogen.data import load_dataset
from pyrogen.metrics import frechet_distance_features
from pyrogen.models import DFCVAE, VAE, ImageClassifier
from pyrogen.train import TrainConfig, Trainer
from pyrogen.viz import save_image_grid


def train(model, data, name: str, epochs: int, device: str) -> None:
    config = TrainConfig(model=name, model_config=dict(getattr(model, "config", {})),
                         epochs=epochs, batch_size=50, device=device)
    Trainer(model, data, config, None, progress=False).fit()


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("digits", limit=300 if args.smoke else None).to(args.device)  # grey levels
    epochs = 1 if args.smoke else args.epochs
    pyro.set_rng_seed(0)
    classifier = ImageClassifier(data.shape, num_classes=10)
    train(classifier, data, "classifier", 2 if args.smoke else 15, args.device)
    classifier.eval()
    accuracy = classifier.accuracy(data.test.images, data.test.labels)

    models = {"vae": VAE(data.shape, latent_dim=8, hidden=(64,), likelihood="gaussian"),
              "dfcvae": DFCVAE(data.shape, classifier, latent_dim=8, hidden=(64,), arch="mlp")}
    x = data.test.images
    rows, pictures = {}, [x[:10]]
    for name, model in models.items():
        train(model, data, name, epochs, args.device)
        model.eval()
        rec = model.reconstruct(x).clamp(0, 1)
        pictures.append(rec[:10])
        samples = model.sample(len(x)).clamp(0, 1)
        rows[name] = {
            "classifier_accuracy_on_reconstructions": classifier.accuracy(rec, data.test.labels),
            "frechet_distance": frechet_distance_features(classifier.embed(samples), classifier.embed(x)),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    save_image_grid(torch.cat(pictures), args.out / "reconstructions.png", nrow=10)
    result = {"classifier_accuracy": accuracy, **rows}
    print(result)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("runs/dfcvae-example"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a slice of the data")
    main(p.parse_args())
