"""
A GAN with Su's regulariser in a Pyro SVI loop
==============================================

A GAN with the paper's regulariser, trained by a user's own alternating Pyro SVI loop.

Each player's loss is a Pyro loss (``Trace_GAN``), so two ``SVI`` objects with their own
optimisers train the discriminator and the generator in turn; neither step moves the other
player's parameters. Before the generator's steps of each iteration, ``snapshot`` keeps
G_old and its draws z, and the two generator steps are scored against them
(Su's code: lambda = 5, the generator step run twice against one cached G_old(z)).
Sample quality is then measured in the feature space of a classifier trained here.

    python examples/gan_svi.py --out runs/gan-example            # digits, no download
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI
from pyro.optim import Adam

from pyrogen.data import load_dataset
from pyrogen.metrics import sample_quality
from pyrogen.models import GAN, ImageClassifier
from pyrogen.train import TrainConfig, Trainer
from pyrogen.viz import save_image_grid


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("digits", limit=300 if args.smoke else None).to(args.device)
    epochs = 1 if args.smoke else args.epochs
    args.out.mkdir(parents=True, exist_ok=True)
    pyro.set_rng_seed(0)
    gan = GAN(data.shape, latent_dim=16, arch="mlp", hidden=(256, 256), batch_norm=True,
              generator_loss=args.generator_loss).to(args.device)
    losses = gan.losses()
    adam = {"lr": 2e-4, "betas": (0.5, 0.999)}
    d_svi = SVI(gan.model, gan.guide, Adam(adam), losses["discriminator"])
    g_svi = SVI(gan.model, gan.guide, Adam(adam), losses["generator"])
    for epoch in range(epochs):
        for batch in data.train.batches(64, shuffle=True, drop_last=True, epoch=epoch):
            d_svi.step(batch.x)
            losses["generator"].snapshot(gan.model, gan.guide, batch.x)  # G_old, z
            for _ in range(2):
                g_svi.step(batch.x)
    gan.eval()
    save_image_grid(gan.sample(64), args.out / "samples.png", nrow=8)

    pyro.set_rng_seed(0)  # the judge: a classifier trained on the same data
    clf = ImageClassifier(data.shape, num_classes=data.num_classes).to(args.device)
    Trainer(clf, data, TrainConfig(model="classifier", epochs=1 if args.smoke else 20,
                                   device=args.device), progress=False).fit()
    clf.eval()
    result = sample_quality(gan, clf, data.test.images, data.test.labels, data.train.images,
                            data.num_classes)
    result = {k: round(v, 4) for k, v in result.items()}
    print(result)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--generator-loss", choices=("minimax", "nonsaturating", "regularised"),
                   default="regularised")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--out", type=Path, default=Path("runs/gan-example"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a slice of the data")
    main(p.parse_args())
