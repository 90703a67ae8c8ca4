"""
ALI/BiGAN: the paper's loss and the others
==========================================

ALI/BiGAN with the paper's encoder/generator loss against the standard minimax and the
swapped non-saturating ones, on the same networks and data order.

Each model is trained by ``pyrogen.train.Trainer`` with ``Trace_ALI``; the
encoder is judged by how well G(E(x)) reconstructs x (against random pairs) and by a linear
probe on its codes, which the adversarial game alone has to make informative.

    python examples/ali_losses.py --out runs/ali-example             # digits, no download
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro
import torch

from pyrogen.data import load_dataset
from pyrogen.metrics import linear_probe_accuracy, reconstruction_error
from pyrogen.models import ALI
from pyrogen.train import TrainConfig, Trainer
from pyrogen.viz import save_image_grid


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("digits", limit=300 if args.smoke else None).to(args.device)
    x, y = data.test.images, data.test.labels
    results = {}
    for loss in ("paper", "minimax", "swapped"):
        pyro.set_rng_seed(0)
        ali = ALI(data.shape, latent_dim=8, arch="mlp", hidden=(256, 256), loss=loss)
        config = TrainConfig(model="ali", epochs=1 if args.smoke else args.epochs, batch_size=64,
                             lr=2e-4, betas=[0.5, 0.999], device=args.device)
        Trainer(ali, data, config, args.out / loss, progress=False).fit()
        ali.eval()
        rec = ali.reconstruct(x)
        save_image_grid(torch.cat([x[:16], rec[:16]]), args.out / f"{loss}-reconstructions.png", nrow=16)
        result = reconstruction_error(x, rec, generator=torch.Generator().manual_seed(0))
        result["linear_probe_accuracy"] = linear_probe_accuracy(
            ali.encode(data.train.images)[0], data.train.labels, ali.encode(x)[0], y)
        results[loss] = {k: round(v, 4) for k, v in result.items()}
    print(results)
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("runs/ali-example"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a slice of the data")
    main(p.parse_args())
