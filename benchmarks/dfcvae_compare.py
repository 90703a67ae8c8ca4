"""
Benchmark: the DFC-VAE against the plain VAE on MNIST and Fashion-MNIST.

For each data set (grey levels, no binarisation):

1. two classifiers (:class:`pyrogen.models.ImageClassifier`) with different seeds: the
   *feature* classifier, whose relu1-3 activations are the DFC-VAE's reconstruction
   features, and the *judge*, in whose penultimate features the Frechet distance is
   measured (a judge that the DFC-VAE never saw, so the metric does not reward it for
   matching its own training features);
2. a plain VAE (Gaussian likelihood with a learned scale, the same encoder and decoder)
   and a DFC-VAE, trained for the same epochs with the same schedule;
3. on the 10,000 test images: Frechet distance between the judge's features of the test
   images and of 10,000 samples (means of p(x|z)), with the real-vs-real floor (10,000
   training images against the test images); pixel MSE of reconstructions; the judge's
   accuracy on the reconstructions; and pictures: reconstructions side by side
   (rows: test images, VAE, DFC-VAE) and sample grids.

Usage::

    python benchmarks/dfcvae_compare.py --data-root ../shared/data --out runs/bench-dfcvae

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
from pyrogen.metrics import frechet_distance_features
from pyrogen.models import DFCVAE, VAE, ImageClassifier
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device
from pyrogen.viz import save_image_grid


def train(model, data, name: str, args: argparse.Namespace, out: Path, epochs: int, seed: int,
          **options) -> float:
    config = TrainConfig(model=name, model_config=dict(getattr(model, "config", {})),
                         dataset=data.name, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                         lr_schedule="cosine", lr_min=args.lr * 0.01, device=args.device,
                         seed=seed, validation_size=0, **options)
    start = time.perf_counter()
    Trainer(model, data, config, out, progress=False).fit()
    return time.perf_counter() - start


def compare(dataset: str, args: argparse.Namespace) -> dict:
    data = load_dataset(dataset, args.data_root / dataset, binarize="none", validation_size=0,
                        limit=args.limit).to(args.device)
    out = args.out / dataset
    classifiers = {}
    for role, seed in (("features", args.seed), ("judge", args.seed + 1)):
        torch.manual_seed(seed)
        clf = ImageClassifier(data.shape, num_classes=data.num_classes)
        sec = train(clf, data, "classifier", args, out / f"classifier-{role}", args.classifier_epochs, seed)
        clf.eval()
        classifiers[role] = (clf, clf.accuracy(data.test.images, data.test.labels), sec)
    judge = classifiers["judge"][0]
    test_x, test_y = data.test.images, data.test.labels
    real = judge.embed(test_x)
    floor = frechet_distance_features(judge.embed(data.train.images[: len(test_x)]), real)

    torch.manual_seed(args.seed)
    models = {
        "vae": VAE(data.shape, latent_dim=args.latent_dim, hidden=args.hidden, likelihood="gaussian"),
        "dfcvae": DFCVAE(data.shape, classifiers["features"][0], latent_dim=args.latent_dim,
                         hidden=args.hidden, arch="mlp"),
    }
    rows, recon = {}, [test_x[:12]]
    for name, model in models.items():
        sec = train(model, data, name, args, out / name, args.epochs, args.seed)
        model.eval()
        torch.manual_seed(args.seed)
        samples = torch.cat([model.sample(1000) for _ in range(len(test_x) // 1000)]).clamp(0, 1)
        rec = torch.cat([model.reconstruct(b) for b in test_x.split(1000)]).clamp(0, 1)
        rows[name] = {
            "frechet_distance": frechet_distance_features(judge.embed(samples), real),
            "recon_pixel_mse": float(((rec - test_x) ** 2).mean()),
            "judge_accuracy_on_reconstructions": judge.accuracy(rec, test_y),
            "train_sec": sec,
        }
        print(json.dumps({"dataset": dataset, "model": name, **rows[name]}), flush=True)
        recon.append(rec[:12])
        save_image_grid(samples[:64], out / f"{name}_samples.png")
    save_image_grid(torch.cat(recon), out / "reconstructions_side_by_side.png", nrow=12)
    return {
        "dataset": dataset,
        "classifier_test_accuracy": {r: c[1] for r, c in classifiers.items()},
        "frechet_floor_real_vs_real": floor,
        "models": rows,
        "pictures": [str(out / "reconstructions_side_by_side.png"), str(out / "vae_samples.png"),
                     str(out / "dfcvae_samples.png")],
    }


def main(args: argparse.Namespace) -> dict:
    results = [compare(d, args) for d in args.datasets]
    return {
        "benchmark": "dfcvae_compare", "results": results,
        "settings": {"epochs": args.epochs, "classifier_epochs": args.classifier_epochs,
                     "latent_dim": args.latent_dim, "hidden": args.hidden,
                     "batch_size": args.batch_size, "lr": args.lr,
                     "dfcvae": "layers relu1,relu2,relu3, feature_weight 0.5, reduction sum"},
        "peak_rss_mb": peak_rss_mb(), "device": args.device, "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, required=True,
                   help="folder holding mnist/ and fashion-mnist/ with their IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--out", type=Path, default=Path("runs/bench-dfcvae"))
    p.add_argument("--datasets", type=lambda s: s.split(","), default=["mnist", "fashion-mnist"])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[512, 256])
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--seed", type=int, default=0)
    print(json.dumps(main(p.parse_args())))
