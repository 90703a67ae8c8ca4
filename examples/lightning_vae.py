"""
A pyrogen VAE in PyTorch Lightning
==================================

A pyrogen VAE trained inside PyTorch Lightning, for users who already run their training
there (the optional extra ``pip install "pyrogen-vi[lightning]"``; pyrogen itself never imports
Lightning).

The model and guide are ``PyroModule``s, so the ``LightningModule`` holds the facade as a
plain submodule, its ``training_step`` returns Pyro's own ``Trace_ELBO`` differentiable loss
(per data point, with the plate scaled to the full data set), and Lightning's optimiser,
devices and strategies do the rest, ``strategy="ddp"`` included: Lightning shards the data
and averages the gradients, as ``torchrun -m pyrogen train`` does.

    python examples/lightning_vae.py --out runs/lightning-vae                # digits, CPU
    python examples/lightning_vae.py --devices 2 --strategy ddp --accelerator gpu
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import pyro
import torch
from pyro.infer import Trace_ELBO
from torch.utils.data import DataLoader, TensorDataset

from pyrogen.data import load_dataset
from pyrogen.infer import log_likelihood
from pyrogen.models import VAE


class LitVAE(L.LightningModule):
    """The ELBO of a pyrogen VAE as a Lightning training objective."""

    def __init__(self, vae: VAE, num_data: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.vae, self.num_data, self.lr = vae, num_data, lr
        self.elbo = Trace_ELBO()

    def training_step(self, batch, batch_idx):
        (x,) = batch
        x = torch.bernoulli(x)  # dynamic binarisation: a fresh draw every time
        loss = self.elbo.differentiable_loss(self.vae.model, self.vae.guide, x, num_data=self.num_data)
        self.log("train_loss", loss / self.num_data, prog_bar=True)  # nats per image
        return loss / self.num_data

    def configure_optimizers(self):
        return torch.optim.Adam(self.vae.parameters(), lr=self.lr)


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("digits", limit=300 if args.smoke else None)
    pyro.set_rng_seed(0)
    vae = VAE(data.shape, latent_dim=8, hidden=(256,))
    loader = DataLoader(TensorDataset(data.train.images), batch_size=100, shuffle=True)
    trainer = L.Trainer(max_epochs=1 if args.smoke else args.epochs, accelerator=args.accelerator,
                        devices=args.devices, strategy=args.strategy, default_root_dir=args.out,
                        logger=False, enable_checkpointing=False, enable_progress_bar=not args.smoke)
    trainer.fit(LitVAE(vae, len(data.train)), loader)
    vae.eval()
    test = torch.bernoulli(data.test.images, generator=torch.Generator().manual_seed(0))
    ll = log_likelihood(vae.model, vae.guide, test, num_samples=10 if args.smoke else 500)
    result = {"test_nll": float(-ll.mean()), "binarization": "dynamic"}
    if trainer.is_global_zero:
        print(result)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--devices", default="auto")
    p.add_argument("--strategy", default="auto")
    p.add_argument("--out", type=Path, default=Path("runs/lightning-vae"))
    p.add_argument("--device", default=None, help="cpu or cuda: sets --accelerator")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a slice of the data")
    args = p.parse_args()
    if args.device is not None:
        args.accelerator = "gpu" if args.device.startswith("cuda") else "cpu"
    main(args)
