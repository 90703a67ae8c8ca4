"""
Monte Carlo EM
==============

Monte Carlo EM with a user's own Pyro SVI loop, beside a VAE with the same decoder.

The E-step draws from the decoder's posterior by sampling-importance-resampling from the
prior and a few MALA steps (:class:`pyrogen.infer.SIRPosterior`); ``Trace_MCEM`` turns that
into one Pyro loss whose gradient is the M-step for the decoder and the ELBO's for the
encoder, which serves as the proposal for the importance-sampled log-likelihood.

    python examples/mcem_digits.py
"""

from __future__ import annotations

import argparse

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrogen.data import load_dataset
from pyrogen.infer import Trace_MCEM, log_likelihood
from pyrogen.models import VAE


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("digits", binarize="dynamic", limit=300 if args.smoke else None).to(args.device)
    epochs = 1 if args.smoke else args.epochs
    test = torch.cat([b.x for b in data.test.batches(500, seed=0)])
    result = {}
    for name, loss in (("vae", Trace_ELBO()), ("mcem", Trace_MCEM(num_proposals=16, mcmc_steps=5))):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        vae = VAE(data.shape, latent_dim=4, hidden=(64,)).to(args.device)
        svi = SVI(vae.model, vae.guide, Adam({"lr": 1e-3}), loss)
        for epoch in range(epochs):
            for batch in data.train.batches(50, shuffle=True, epoch=epoch):
                svi.step(batch.x, num_data=len(data.train))
        ll = log_likelihood(vae.model, vae.guide, test, num_samples=10 if args.smoke else 1000)
        result[f"{name}_test_nll"] = float(-ll.mean())
    print(result)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="a few seconds on a slice of the data")
    main(p.parse_args())
