"""
Benchmark: why a class is rare among a model's samples. For each class k, a classifier run's
reading of

* the real test images of class k (its recall there: how well the judge reads real ones),
* the model's reconstructions of those images (for a model with an encoder: the recall the
  judge keeps when the model redraws them),
* the model's samples (the share it calls k, the figure ``min_class_share`` bounds).

A class whose reconstructions are read far worse than its real images is lost to the
decoder's blur, not to the prior: a better prior cannot bring it back. Usage::

    python benchmarks/class_readings.py --run runs/vae-fashion --features runs/clf-fashion \\
        --data-dir DATA/fashion-mnist --limit 5000 --num-samples 2000

One JSON object is printed: per class, ``real_recall``, ``reconstruction_recall``,
``reconstruction_share`` and ``sample_share``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pyrogen.data import load_dataset
from pyrogen.families.runs import load_classifier, load_run


def readings(model, classifier, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
             num_samples: int) -> dict:
    """The per-class readings of ``classifier`` (see the module's docstring)."""
    real = classifier.predict(images)
    samples = classifier.predict(model.sample(num_samples))
    rows = []
    recon = classifier.predict(model.reconstruct(images)) if model.has_encoder else None
    for k in range(num_classes):
        of_k = labels == k
        row = {"class": k, "real_recall": (real[of_k] == k).double().mean().item(),
               "sample_share": (samples == k).double().mean().item()}
        if recon is not None:
            row["reconstruction_recall"] = (recon[of_k] == k).double().mean().item()
            row["reconstruction_share"] = (recon == k).double().mean().item()
        rows.append(row)
    return {"classes": rows, "test_points": len(labels), "num_samples": num_samples}


def main(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    model, config = load_run(args.run, device="cpu")
    if config.model in ("cvae", "classifier", "mixture"):
        raise SystemExit(f"{args.run} is a {config.model} run: the readings are of an unconditional "
                         "model with a decoder (a CVAE's per-class figure is evaluate's "
                         "conditional_accuracy)")
    data = load_dataset(config.dataset, args.data_dir or config.data_dir, binarize="none")
    if data.num_classes is None:
        raise SystemExit(f"{config.dataset} has no labels: the readings need a labelled test split")
    classifier = load_classifier(args.features, data, "cpu")
    images, labels = data.test.images[:args.limit], data.test.labels[:args.limit]
    with torch.no_grad():
        result = readings(model, classifier, images, labels, data.num_classes, args.num_samples)
    return {"benchmark": "class_readings", "run_family": config.model, "dataset": config.dataset,
            **result}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, required=True, help="a trained run folder")
    p.add_argument("--features", type=Path, required=True, help="a `pyrogen train classifier` run")
    p.add_argument("--data-dir", type=Path, default=None, help="default: the run's own")
    p.add_argument("--limit", type=int, default=5000, help="test images read (default 5000)")
    p.add_argument("--num-samples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
