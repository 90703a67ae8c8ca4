"""
Benchmark: Monte Carlo EM against the VAE, same decoder, on dynamically binarised MNIST.

Both models have the same generative network (10 latent dimensions, 200-200 tanh decoder,
Bernoulli pixels) and train for the same epochs with the same optimiser:

- the VAE with ``Trace_ELBO`` and its amortised encoder;
- Monte Carlo EM (``--objective mcem``, :class:`pyrogen.infer.Trace_MCEM`): the decoder's
  gradient is the Monte Carlo M-step on draws of :class:`pyrogen.infer.SIRPosterior`
  (sampling-importance-resampling from the prior, then MALA steps); an encoder of the same
  architecture is fitted beside it by the ELBO, as a proposal, and does not steer the decoder.

The test NLL is importance sampling with ``--iw-samples`` samples on all 10,000 test images
(one fixed binarisation draw), first with each model's own encoder, then, so that the
proposal cannot favour either decoder, with a fresh encoder fitted to each frozen decoder by
``Trace_ELBO`` for ``--proposal-epochs`` epochs.

Usage::

    python benchmarks/mcem_mnist.py --data-dir ../shared/data/mnist --out runs/bench-mcem

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
import torch

from _common import peak_rss_mb
from pyrogen.data import load_dataset
from pyrogen.infer import CompiledLoss, log_likelihood
from pyrogen.models import VAE
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device


def build(args: argparse.Namespace) -> VAE:
    torch.manual_seed(args.seed)
    return VAE((1, 28, 28), latent_dim=args.latent_dim, hidden=args.hidden, activation="tanh")


def train(vae: VAE, data, args: argparse.Namespace, out: Path, objective: str) -> float:
    config = TrainConfig(model="vae", model_config=vae.config, dataset="mnist",
                         binarize="dynamic", validation_size=0, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, lr_schedule="cosine",
                         lr_min=args.lr * 0.01, objective=objective,
                         mcem_proposals=args.num_proposals, mcmc_steps=args.mcmc_steps,
                         mcmc_step_size=args.step_size, device=args.device, seed=args.seed)
    start = time.perf_counter()
    Trainer(vae, data, config, out, progress=False).fit()
    return time.perf_counter() - start


def fit_proposal(vae: VAE, data, args: argparse.Namespace) -> float:
    """Fit a fresh encoder to the frozen decoder by Trace_ELBO; return the seconds taken."""
    torch.manual_seed(args.seed + 1)
    fresh = VAE((1, 28, 28), latent_dim=args.latent_dim, hidden=args.hidden, activation="tanh")
    vae.guide.load_state_dict(fresh.guide.state_dict())
    pyro.clear_param_store()
    loss = CompiledLoss(pyro.infer.Trace_ELBO(), vae.model, vae.guide)
    optim = torch.optim.Adam(vae.guide.parameters(), lr=args.lr)  # the decoder stays fixed
    start = time.perf_counter()
    for epoch in range(args.proposal_epochs):
        for batch in data.train.batches(args.batch_size, shuffle=True, drop_last=True,
                                        epoch=epoch, seed=args.seed + 1):
            optim.zero_grad(set_to_none=True)
            loss(batch.x, num_data=len(data.train)).backward()
            optim.step()
    return time.perf_counter() - start


def test_nll(vae: VAE, test_x: torch.Tensor, args: argparse.Namespace) -> tuple[float, float]:
    torch.manual_seed(args.seed)
    ll = log_likelihood(vae.model, vae.guide, test_x, num_samples=args.iw_samples, batch_size=100)
    return float(-ll.mean()), float(ll.std() / len(ll) ** 0.5)


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("mnist", args.data_dir, binarize="dynamic", validation_size=0,
                        seed=args.seed, limit=args.limit).to(args.device)
    torch.manual_seed(args.seed)
    test_x = torch.cat([b.x for b in data.test.batches(1000, seed=args.seed)])
    results = {}
    for name, objective in (("vae", "elbo"), ("mcem", "mcem")):
        vae = build(args)
        sec = train(vae, data, args, args.out / name, objective)
        vae.eval()
        own = test_nll(vae, test_x, args)
        fit_sec = fit_proposal(vae, data, args)
        refit = test_nll(vae, test_x, args)
        results[name] = {"train_sec": sec, "test_nll_own_encoder": own[0],
                         "test_nll_own_encoder_stderr": own[1], "test_nll_refit_encoder": refit[0],
                         "test_nll_refit_encoder_stderr": refit[1], "proposal_fit_sec": fit_sec}
        print(json.dumps({"model": name, **results[name]}), flush=True)
    return {
        "benchmark": "mcem_mnist", **results,
        "decoder": f"{args.latent_dim} latent, {args.hidden} tanh, Bernoulli",
        "e_step": f"SIR from the prior ({args.num_proposals} proposals) + {args.mcmc_steps} "
                  f"MALA steps (step {args.step_size})",
        "epochs": args.epochs, "proposal_epochs": args.proposal_epochs,
        "binarization": "dynamic (training); one fixed draw of the test set",
        "iw_samples": args.iw_samples, "test_points": len(test_x),
        "peak_rss_mb": peak_rss_mb(), "device": args.device, "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--out", type=Path, default=Path("runs/bench-mcem"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--proposal-epochs", type=int, default=20)
    p.add_argument("--latent-dim", type=int, default=10)
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[200, 200])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-proposals", type=int, default=16)
    p.add_argument("--mcmc-steps", type=int, default=5)
    p.add_argument("--step-size", type=float, default=0.2)
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--seed", type=int, default=0)
    print(json.dumps(main(p.parse_args())))
