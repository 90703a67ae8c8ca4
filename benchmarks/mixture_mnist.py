"""
Benchmark: Bernoulli mixtures fitted by exact EM on binarised MNIST.

Two settings, each reporting the exact test negative log-likelihood (a mixture's
log p(x) is a log-sum-exp over its components, no estimator needed):

1. Larochelle's binarized MNIST (``--binarized-dir``; the standard static
   binarisation, 50,000 train / 10,000 valid / 10,000 test), K components chosen
   by validation NLL; literature: a mixture of 500 Bernoullis reaches 137.64 nats
   (Larochelle and Murray 2011, the NADE paper's baseline).
2. MNIST with one fixed Bernoulli draw of the training images and the *same*
   fixed draw of the 10,000 test images as ``benchmarks/vae_mnist`` scores, so the
   mixture's test NLL stands beside the VAE's (87.90 nats, IS-5000) on identical
   images.

Usage::

    python benchmarks/mixture_mnist.py --data-dir ../shared/data/mnist \\
        --binarized-dir ../shared/data/binarized-mnist

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from _common import peak_rss_mb
from pyrogen.data import load_dataset
from pyrogen.infer import exact_em
from pyrogen.models import Mixture
from pyrogen.train.config import default_device


def fixed_draw(split, seed: int) -> torch.Tensor:
    """The whole split as one fixed binarisation draw (as the VAE benchmark scores its test set)."""
    return torch.cat([b.x for b in split.batches(1000, seed=seed)])


def fit(train: torch.Tensor, k: int, args: argparse.Namespace) -> tuple[Mixture, list[float], float]:
    mixture = Mixture(train.shape[1:], num_components=k, component="bernoulli").to(args.device)
    mixture.init_from_data(train, method="kmeans++", seed=args.seed)
    start = time.perf_counter()
    history = exact_em(mixture, train, num_iters=args.iters, tol=args.tol)
    return mixture, history, time.perf_counter() - start


def nll(mixture: Mixture, x: torch.Tensor) -> float:
    return float(-torch.cat([mixture.log_likelihood(b) for b in x.split(1000)]).mean())


def main(args: argparse.Namespace) -> dict:
    results: dict = {"benchmark": "mixture_mnist", "iters_max": args.iters, "tol": args.tol}
    if args.binarized_dir is not None:
        data = load_dataset("binarized-mnist", args.binarized_dir, limit=args.limit).to(args.device)
        train, valid, test = (fixed_draw(s, args.seed) for s in (data.train, data.valid, data.test))
        rows = []
        for k in args.components:
            mixture, history, sec = fit(train, k, args)
            rows.append({"components": k, "iterations": len(history) - 1, "train_nll": -history[-1],
                         "valid_nll": nll(mixture, valid), "test_nll": nll(mixture, test),
                         "fit_sec": sec})
            print(json.dumps(rows[-1]), flush=True)
        best = min(rows, key=lambda r: r["valid_nll"])
        results["binarized_mnist"] = {"rows": rows, "chosen_by_valid": best,
                                      "binarization": "static (Larochelle's)",
                                      "reference": {"components": 500, "test_nll": 137.64}}
    if args.data_dir is not None:
        data = load_dataset("mnist", args.data_dir, binarize="dynamic", validation_size=0,
                            seed=args.seed, limit=args.limit).to(args.device)
        torch.manual_seed(args.seed)
        train = fixed_draw(data.train, args.seed + 1)
        test = fixed_draw(data.test, args.seed)  # the draw benchmarks/vae_mnist scores
        k = args.vae_components
        mixture, history, sec = fit(train, k, args)
        row = {"components": k, "iterations": len(history) - 1, "train_nll": -history[-1],
               "test_nll": nll(mixture, test), "fit_sec": sec,
               "binarization": "one fixed draw of the training images; the vae_mnist test draw",
               "vae_mnist_test_nll": 87.90}
        print(json.dumps(row), flush=True)
        results["mnist_beside_vae"] = row
    results.update(peak_rss_mb=peak_rss_mb(), device=args.device, threads=torch.get_num_threads())
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=None, help="folder with the MNIST IDX files")
    p.add_argument("--binarized-dir", type=Path, default=None,
                   help="folder with Larochelle's binarized MNIST .amat files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--components", type=lambda s: [int(v) for v in s.split(",")],
                   default=[50, 100, 200, 500])
    p.add_argument("--vae-components", type=int, default=500)
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--tol", type=float, default=1e-3)
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--seed", type=int, default=0)
    print(json.dumps(main(p.parse_args())))
