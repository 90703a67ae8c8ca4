"""
A VAE with plain Pyro SVI
=========================

A user's own Pyro script: train pyrogen's VAE with plain ``pyro.infer.SVI``.

pyrogen's models are ordinary Pyro model/guide pairs, so nothing here is
pyrogen-specific except the imports of the data and the model. Then the
importance-sampled test log-likelihood is estimated with ``pyrogen.infer``.

    python examples/vae_svi.py                       # digits, no download
    python examples/vae_svi.py --dataset mnist --data-dir ../shared/data/mnist --epochs 20
"""

from __future__ import annotations

import argparse

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO
from pyro.optim import Adam

from pyrogen.data import load_dataset
from pyrogen.infer import Trace_IWAE, log_likelihood
from pyrogen.models import VAE

OBJECTIVES = {"elbo": Trace_ELBO, "meanfield": TraceMeanField_ELBO,
              "iwae": lambda: Trace_IWAE(num_particles=5)}


def main(args: argparse.Namespace) -> float:
    pyro.set_rng_seed(args.seed)
    data = load_dataset(args.dataset, args.data_dir, binarize="dynamic",
                        limit=200 if args.smoke else None).to(args.device)
    vae = VAE(data.shape, latent_dim=args.latent_dim, hidden=(args.hidden,)).to(args.device)
    pyro.clear_param_store()
    svi = SVI(vae.model, vae.guide, Adam({"lr": args.lr}), OBJECTIVES[args.objective]())
    epochs = 1 if args.smoke else args.epochs
    for epoch in range(epochs):
        total, steps = 0.0, 0
        for x, _, _ in data.train.batches(args.batch_size, shuffle=True, epoch=epoch, seed=args.seed):
            # the data plate scales each minibatch loss to the whole training set
            total += svi.step(x, num_data=len(data.train))
            steps += 1
        print(f"epoch {epoch + 1}: loss per data point {total / steps / len(data.train):.3f}")
    test = torch.cat([b.x for b in data.test.batches(500, seed=args.seed)])
    ll = log_likelihood(vae.model, vae.guide, test, num_samples=10 if args.smoke else 1000)
    print(f"test log-likelihood (importance sampling): {ll.mean():.3f} nats")
    return float(ll.mean())


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--objective", choices=tuple(OBJECTIVES), default="elbo")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--latent-dim", type=int, default=16)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds' run, for tests")
    main(p.parse_args())
