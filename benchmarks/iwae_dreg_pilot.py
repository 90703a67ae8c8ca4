"""
Benchmark (a pilot): the IWAE (k = 5) of Burda et al.'s network trained with the bound's own
reparameterised gradient against Tucker et al.'s doubly reparameterised gradient (DReG) for the
encoder, in a hand-written PyTorch loop so that the two differ in the estimator only: the same
seed, Glorot-uniform initial weights, minibatches of 25 and their binarisation draws; Adam at
1e-3 with a cosine to 2e-4 over ``--epochs``; IS-500 of the raw and of the averaged weights
(ema 0.99995) on the first 1,000 MNIST test images (one fixed binarisation) every 10 epochs.

DReG: log w_k = log p(x, z_k) - log q(z_k; mu, sigma held fixed), z_k = mu + sigma eps_k;
the decoder gets sum_k w~_k grad log w_k, the encoder sum_k w~_k^2 (d log w_k / d z_k) dz_k/dphi
(a hook on z_k multiplies its gradient by w~_k). This is what ``Trace_IWAE(gradient="dreg")``
computes through Pyro's traces.

Usage (one process per estimator, side by side; each line printed is one JSON object, the
last the summary)::

    python benchmarks/iwae_dreg_pilot.py --data-dir ../shared/data/mnist --grad iwae
    python benchmarks/iwae_dreg_pilot.py --data-dir ../shared/data/mnist --grad dreg
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn
from torch.distributions import Normal

from _common import load_mnist

LATENT, K, BATCH = 50, 5, 25


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(m, n)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.zeros_(linear.bias)
        layers += [linear] + ([nn.Tanh()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def log_weights(enc: nn.Module, dec: nn.Module, x: torch.Tensor, k: int,
                detach_q: bool) -> tuple[torch.Tensor, torch.Tensor]:
    h = enc(x)
    mu, sigma = h[:, :LATENT], h[:, LATENT:].exp()
    z = mu + sigma * torch.randn(k, *mu.shape)
    q = Normal(mu.detach(), sigma.detach()) if detach_q else Normal(mu, sigma)
    logits = dec(z)
    log_px = -nn.functional.binary_cross_entropy_with_logits(
        logits, x.expand_as(logits), reduction="none").sum(-1)
    return log_px + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1), z


@torch.no_grad()
def is_nll(enc: nn.Module, dec: nn.Module, x: torch.Tensor, k: int = 500, chunk: int = 100) -> float:
    out = []
    for xb in x.split(100):
        lw = torch.cat([log_weights(enc, dec, xb, chunk, False)[0] for _ in range(k // chunk)])
        out.append(torch.logsumexp(lw, 0) - math.log(k))
    return float(-torch.cat(out).mean())


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = load_mnist(args.data_dir, seed=args.seed)
    train = data.train.images.reshape(-1, 784)
    test = torch.bernoulli(data.test.images.reshape(-1, 784)[:1000],
                           generator=torch.Generator().manual_seed(123))
    enc, dec = mlp([784, 200, 200, 2 * LATENT]), mlp([LATENT, 200, 200, 784])
    pair = nn.ModuleList([enc, dec])
    opt = torch.optim.Adam(pair.parameters(), lr=1e-3)
    steps = train.shape[0] // BATCH
    total = args.epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    ema = torch.optim.swa_utils.AveragedModel(
        pair, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.99995))
    gen = torch.Generator().manual_seed(args.seed)
    curve = []
    for epoch in range(1, args.epochs + 1):
        start, bound_sum = time.time(), 0.0
        perm = torch.randperm(train.shape[0], generator=gen)
        for i in range(steps):
            x = torch.bernoulli(train[perm[i * BATCH:(i + 1) * BATCH]], generator=gen)
            lw, z = log_weights(enc, dec, x, K, detach_q=args.grad == "dreg")
            bound = torch.logsumexp(lw, 0) - math.log(K)
            if args.grad == "iwae":
                loss = -bound.mean()
            else:
                w = torch.softmax(lw, 0).detach()
                z.register_hook(lambda grad, w=w: grad * w.unsqueeze(-1))
                loss = -(w * lw).sum(0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(pair)
            bound_sum += float(bound.detach().mean())
        record = {"epoch": epoch, "train_bound": bound_sum / steps, "sec": time.time() - start}
        if epoch % 10 == 0 or epoch == args.epochs:
            record["is500"] = is_nll(enc, dec, test)
            record["is500_ema"] = is_nll(ema.module[0], ema.module[1], test)
            curve.append(record)
        print(json.dumps(record), flush=True)
    return {"benchmark": "iwae_dreg_pilot", "grad": args.grad, "seed": args.seed,
            "epochs": args.epochs, "curve": curve, "torch": torch.__version__}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--grad", choices=["iwae", "dreg"], required=True)
    p.add_argument("--epochs", type=int, default=41)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", required=True)
    print(json.dumps(main(p.parse_args())))
