"""
Benchmark: MNIST quadrant completion with the prior-network CVAE (Sohn et al. 2015).

For 1, 2 and 3 visible quadrants, trains the baseline network and then the CVAE
(Pyro's example architecture: 500-500 ReLU networks, 200 latent dimensions) on
all 60,000 training images with dynamic binarisation, and reports on the full
10,000-image test set (one fixed binarisation draw), in nats per image over the
hidden pixels:

- the baseline network's negative log-likelihood (exact: it has no latent variable);
- the CVAE's 10-particle ELBO bound (what Pyro's tutorial reports);
- the CVAE's conditional NLL, -log p(x_hidden | x_visible), by importance sampling.

Reference (Pyro's tutorial, grey-level targets, 10-particle ELBO bound):
baseline 100.4 / 61.9 / 25.4, CVAE 71.8 / 51.0 / 24.2.

Usage::

    python benchmarks/cvae_quadrants.py --data-dir ../shared/data/mnist --out runs/bench-cvae

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
from pyrogen.data.quadrants import condition_on_quadrants
from pyrogen.infer import elbo, log_likelihood
from pyrogen.models import CVAE
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device
from pyrogen.viz import save_image_grid

#: Pyro's tutorial figures (10-particle ELBO bound), by number of visible quadrants
PYRO_REFERENCE = {1: {"baseline": 100.4, "cvae": 71.8}, 2: {"baseline": 61.9, "cvae": 51.0},
                  3: {"baseline": 25.4, "cvae": 24.2}}


def run_quadrants(args: argparse.Namespace, data, quadrants: int) -> dict:
    torch.manual_seed(args.seed)
    cvae = CVAE(data.shape, condition="prior-network", quadrants=quadrants,
                latent_dim=args.latent_dim, hidden=args.hidden, activation="relu",
                baseline_epochs=args.baseline_epochs)
    config = TrainConfig(
        model="cvae", model_config=cvae.config, dataset="mnist", data_dir=str(args.data_dir),
        binarize="dynamic", validation_size=0, limit=args.limit, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lr_schedule="cosine", lr_min=args.lr_min,
        kl_warmup=args.kl_warmup, device=args.device, seed=args.seed,
    )
    out = args.out / f"quadrants-{quadrants}"
    trainer = Trainer(cvae, data, config, out, progress=False)
    if args.resume and (out / "checkpoints" / "last.pt").exists():
        trainer.resume()
    start = time.perf_counter()
    history = trainer.fit()
    train_sec = time.perf_counter() - start

    cvae.eval()
    torch.manual_seed(args.seed)
    test_x = torch.cat([b.x for b in data.test.batches(1000, seed=args.seed)])
    inputs = (test_x, cvae.condition_of(test_x, None))
    baseline_nll = -elbo(*cvae.baseline_pair(), inputs, batch_size=500)
    bound = elbo(cvae.model, cvae.guide, inputs, num_particles=10, batch_size=500)
    start = time.perf_counter()
    ll = log_likelihood(cvae.model, cvae.guide, inputs, num_samples=args.iw_samples, batch_size=100)
    eval_sec = time.perf_counter() - start
    with torch.no_grad():
        shown = condition_on_quadrants(test_x[:10], cvae.visible).clamp(min=0)
        pictures = torch.cat([shown, test_x[:10], *cvae.complete(test_x[:10], 3)])
    save_image_grid(pictures, out / "completions_test.png", nrow=10)
    return {
        "quadrants": quadrants,
        "baseline_nll": float(baseline_nll.mean()),
        "cvae_elbo_bound_10": float(-bound.mean()),
        "cvae_nll": float(-ll.mean()),
        "cvae_nll_stderr": float(ll.std() / len(ll) ** 0.5),
        "pyro_reference": PYRO_REFERENCE[quadrants],
        "epochs": len(history),
        "baseline_epochs": args.baseline_epochs,
        "train_sec": train_sec,
        "eval_sec": eval_sec,
        "completions": str(out / "completions_test.png"),
    }


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("mnist", args.data_dir, binarize="dynamic", validation_size=0,
                        seed=args.seed, limit=args.limit).to(args.device)
    results = [run_quadrants(args, data, q) for q in args.quadrants]
    for r in results:
        print(json.dumps(r), flush=True)
    return {
        "benchmark": "cvae_quadrants",
        "results": results,
        "below_pyro_at_every_count": all(
            r["cvae_nll"] < r["pyro_reference"]["cvae"] for r in results),
        "binarization": "dynamic (training); one fixed draw of the test set",
        "iw_samples": args.iw_samples,
        "test_points": len(data.test),
        "schedule": f"adam lr {args.lr} cosine to {args.lr_min}, batch {args.batch_size}, "
                    f"kl warm-up {args.kl_warmup} epochs",
        "peak_rss_mb": peak_rss_mb(),
        "device": args.device,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--out", type=Path, default=Path("runs/bench-cvae-quadrants"))
    p.add_argument("--resume", action="store_true", help="continue runs found in --out")
    p.add_argument("--quadrants", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2, 3])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--baseline-epochs", type=int, default=10)
    p.add_argument("--kl-warmup", type=int, default=5, help="epochs of linear KL warm-up")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument("--latent-dim", type=int, default=200)
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[500, 500])
    p.add_argument("--iw-samples", type=int, default=500)
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--seed", type=int, default=0)
    print(json.dumps(main(p.parse_args())))
