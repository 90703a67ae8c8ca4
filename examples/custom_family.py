"""
Adding a model family
=====================

Add a model family to pyrogen: a facade (a Pyro model/guide pair) and a
:class:`~pyrogen.families.Family` registered under the name a user types. The command
line, the trainer, ``evaluate``, ``sample`` and ``reconstruct`` then serve it like the
built-in families, with no change to their code (``docs/families.rst``).

The family here is a *linear VAE*: probabilistic PCA's generative model
:math:`z \\sim N(0, I)`, :math:`x \\mid z \\sim N(Wz + b, \\sigma^2 I)` (``likelihood="gaussian"``)
with an amortised linear guide :math:`q(z \\mid x) = N(Ax + c, \\mathrm{diag}(s(x))^2)`.

    python examples/custom_family.py --out runs/linear-vae             # digits, no download
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from pyrogen.cli import main as pyrogen
from pyrogen.families import Family, Option, names, register
from pyrogen.families.options import positive_int
from pyrogen.models import LIKELIHOODS, VAEGuide, VAEModel
from pyrogen.models.vae import AmortisedFacade
from pyrogen.nn import MLPDecoder, MLPEncoder


class LinearVAE(AmortisedFacade):
    """A VAE whose encoder and decoder are affine maps (no hidden layer)."""

    def __init__(self, data_shape: Sequence[int], latent_dim: int = 8,
                 likelihood: str = "gaussian") -> None:
        super().__init__()
        data_shape = tuple(int(d) for d in data_shape)
        self.config = dict(data_shape=list(data_shape), latent_dim=int(latent_dim),
                           likelihood=likelihood)
        decoder = MLPDecoder(latent_dim, data_shape, hidden=())
        self.model = VAEModel(decoder, latent_dim, data_shape, likelihood)
        self.guide = VAEGuide(MLPEncoder(data_shape, latent_dim, hidden=()), data_shape)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.likelihood.mean(self.model.decoder(z))


class LinearVAEFamily(Family):
    name = "linear-vae"
    summary = "VAE with affine encoder and decoder (probabilistic PCA with an amortised guide)"
    facade = LinearVAE  # fit = "svi", inherited: the trainer runs its ELBO step
    options = (
        Option("latent_dim", "dimension of z", type=positive_int),
        Option("likelihood", "p(x|z)", choices=LIKELIHOODS),
    )
    # the facade's signature gives the defaults; a data set may have its own
    dataset_defaults = {"mnist": {"latent_dim": 20}, "fashion-mnist": {"latent_dim": 20}}
    # training options whose default differs for this family (the learned Gaussian scale
    # needs a larger step than TrainConfig's 1e-3 to leave its start within 30 epochs)
    train_overrides = {"lr": 1e-2}


def main(args: argparse.Namespace) -> dict:
    if LinearVAEFamily.name not in names():  # register once per process
        register(LinearVAEFamily)
    out = str(args.out)
    epochs = "1" if args.smoke else str(args.epochs)
    limit = ["--limit", "300"] if args.smoke else []
    common = ["--device", args.device]
    assert pyrogen(["train", "linear-vae", "--epochs", epochs, *limit, "--out", out,
                    "--no-progress", *common]) == 0
    assert pyrogen(["evaluate", out, "--iw-samples", "10" if args.smoke else "1000", *common]) == 0
    assert pyrogen(["reconstruct", out, "--out", str(args.out / "reconstructions_test.png"),
                    *common]) == 0
    result = json.loads((args.out / "evaluation.json").read_text())
    print(f"linear VAE on digits: test NLL {result['nll']:.2f} nats "
          f"(IS-{result['iw_samples']}), pictures in {out}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/linear-vae"))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds, for the test suite")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
