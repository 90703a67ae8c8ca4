"""
Training a VAE with pyrogen's trainer
=====================================

Train a VAE with pyrogen's trainer from Python, then score and picture it.

The trainer writes a run folder (config, metrics.jsonl, atomic checkpoints,
pictures, TensorBoard); the same folder works with ``pyrogen evaluate`` and
``pyrogen sample``::

    python examples/train_vae.py --out runs/example          # digits, no download
    python examples/train_vae.py --dataset mnist --data-dir ../shared/data/mnist \\
        --hidden 200,200 --latent-dim 50 --epochs 50 --ema-decay 0.999 --out runs/mnist

With ``--ema-decay`` the trainer also keeps a moving average of the weights; the
example scores and pictures the average (``trainer.averaged()``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyro
import torch

from pyrogen.data import load_dataset
from pyrogen.infer import bits_per_dim, log_likelihood
from pyrogen.models import VAE
from pyrogen.train import TrainConfig, Trainer
from pyrogen.viz import save_image_grid


def main(args: argparse.Namespace) -> dict:
    hidden = [int(h) for h in args.hidden.split(",")]
    data = load_dataset(args.dataset, args.data_dir, binarize="dynamic",
                        limit=300 if args.smoke else None)
    pyro.set_rng_seed(args.seed)
    vae = VAE(data.shape, latent_dim=args.latent_dim, hidden=hidden, activation="tanh")
    config = TrainConfig(
        model="vae", model_config=vae.config, dataset=args.dataset, data_dir=args.data_dir,
        binarize="dynamic", limit=300 if args.smoke else None,
        epochs=1 if args.smoke else args.epochs, batch_size=args.batch_size,
        lr_schedule="cosine", lr_min=1e-5, kl_warmup=0 if args.smoke else 5,
        device=args.device, seed=args.seed, ema_decay=0.9 if args.smoke else args.ema_decay,
    )
    trainer = Trainer(vae, data, config, args.out, progress=not args.smoke)
    history = trainer.fit()

    test = torch.cat([b.x for b in data.test.to(args.device).batches(500, seed=args.seed)])
    with trainer.averaged():  # the averaged weights, if ema_decay > 0
        ll = log_likelihood(vae.model, vae.guide, test, num_samples=10 if args.smoke else 1000)
        save_image_grid(vae.sample(64), args.out / "example_samples.png")
    result = {"epochs": len(history), "valid_loss": history[-1].get("valid_loss"),
              "test_nll": float(-ll.mean()), "bits_per_dim": float(bits_per_dim(ll.mean(), test[0].numel()))}
    print(result)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--hidden", default="256")
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="average the weights with this decay, e.g. 0.999 (default: 0, none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("runs/example"))
    p.add_argument("--smoke", action="store_true", help="a few seconds' run, for tests")
    main(p.parse_args())
