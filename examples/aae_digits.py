"""
An adversarial autoencoder with a mixture prior
===============================================

An adversarial autoencoder that shapes its 2-D codes into a mixture of ten Gaussians.

``pyrogen.train.Trainer`` (its adversarial step) alternates the discriminator's and the autoencoder's
steps (``Trace_AAE``); afterwards the codes of the test digits are plotted beside draws of
the prior, and the encoder is judged by its reconstruction error against random pairs and
by a linear probe on its codes.

    python examples/aae_digits.py --out runs/aae-example             # digits, no download
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402

from pyrogen.data import load_dataset  # noqa: E402
from pyrogen.metrics import linear_probe_accuracy, reconstruction_error  # noqa: E402
from pyrogen.models import AAE  # noqa: E402
from pyrogen.train import TrainConfig, Trainer  # noqa: E402


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("digits", limit=300 if args.smoke else None).to(args.device)
    pyro.set_rng_seed(0)
    aae = AAE(data.shape, latent_dim=2, hidden=(256, 256), prior="mixture", recon_weight=1.0)
    config = TrainConfig(model="aae", epochs=1 if args.smoke else args.epochs, batch_size=64,
                         lr=5e-4, betas=[0.5, 0.999], device=args.device)
    Trainer(aae, data, config, args.out, progress=False).fit()
    aae.eval()
    x, y = data.test.images, data.test.labels
    codes = aae.encode(x)[0].cpu()
    prior = aae.model.prior().sample((1000,)).cpu()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(prior[:, 0], prior[:, 1], s=2, c="lightgrey", label="prior q(z)")
    points = ax.scatter(codes[:, 0], codes[:, 1], s=6, c=y.cpu(), cmap="tab10", label="codes E(x)")
    fig.colorbar(points, ax=ax, label="digit")
    ax.legend(loc="upper right")
    fig.savefig(args.out / "codes.png", dpi=100)
    plt.close(fig)
    result = reconstruction_error(x, aae.reconstruct(x), generator=torch.Generator().manual_seed(0))
    result["linear_probe_accuracy"] = linear_probe_accuracy(
        aae.encode(data.train.images)[0], data.train.labels, codes, y)
    print(result)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--out", type=Path, default=Path("runs/aae-example"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a slice of the data")
    main(p.parse_args())
