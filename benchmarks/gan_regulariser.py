"""
Benchmark: the paper's GAN experiment on MNIST, measured, and ALI with its three
encoder/generator losses.

``--experiment gan`` (Su 2018, section 3: "experiment 1: a plain DCGAN, one generator and one
discriminator batch per iteration; experiment 2: the DCGAN without batch norm, five batches
each per iteration"). DCGAN networks for 28x28 images, batch 64, Adam 2e-4 with beta1 0.5,
grey levels. Arms:

* ``bn-1:1``: batch norm, 1 discriminator step and 1 generator step per iteration,
  non-saturating loss;
* ``bn-1:2``: the same with 2 generator steps (the control for the next arm's extra step);
* ``bn-1:2-reg``: Su's code: the regularised loss (lambda 5), the generator step run twice
  against one cached G_old(z);
* ``nobn-5:5``: no batch norm, 5 discriminator and 5 generator steps per iteration;
* ``nobn-5:5-reg``: the same with the regularised loss, each generator step on fresh z
  against the generator before the iteration's updates;
* ``bn-1:2-reg-sum``, ``nobn-5:5-reg-sum``: the two regularised arms with lambda = 5 on the
  *sum* of the squared pixel differences (``reg_weight`` 5 x 784 on pyrogen's mean), the other
  reading of the paper's norm: at the mean, lambda = 5 makes a penalty about 1e-4 of the
  adversarial term.

``--experiment ali``: ALI (Gaussian encoder, deterministic generator, batch norm, 1:1) with
the paper's, the standard minimax and the swapped non-saturating loss.

Every run is scored at ``--scores`` equally spaced iteration counts, in the feature space of a
classifier trained here on MNIST (``pyrogen.metrics``): Frechet distance against the test
images (with the real-vs-real floor), precision and recall, the share of classes generated
and the class-histogram KL; for ALI also the reconstruction error against random pairs and a
linear probe on the codes. Seeds vary the initial weights and the data order.

Usage::

    python benchmarks/gan_regulariser.py --data-dir ../shared/data/mnist --out runs/bench-gan
    python benchmarks/gan_regulariser.py --experiment ali --data-dir ../shared/data/mnist --out runs/bench-ali

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from _common import peak_rss_mb
from pyrogen.data import load_dataset
from pyrogen.metrics import (
    frechet_distance_features,
    linear_probe_accuracy,
    mode_coverage,
    precision_recall,
    reconstruction_error,
)
from pyrogen.models import ALI, GAN, ImageClassifier
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device
from pyrogen.viz import save_image_grid

GAN_ARMS = {
    "bn-1:1": dict(batch_norm=True, d_steps=1, g_steps=1, generator_loss="nonsaturating"),
    "bn-1:2": dict(batch_norm=True, d_steps=1, g_steps=2, generator_loss="nonsaturating"),
    "bn-1:2-reg": dict(batch_norm=True, d_steps=1, g_steps=2, generator_loss="regularised",
                       reg_draws="cached"),
    "nobn-5:5": dict(batch_norm=False, d_steps=5, g_steps=5, generator_loss="nonsaturating"),
    "nobn-5:5-reg": dict(batch_norm=False, d_steps=5, g_steps=5, generator_loss="regularised",
                         reg_draws="fresh"),
    # lambda = 5 on the sum over the 784 pixels (the norm read literally) instead of their mean
    "bn-1:2-reg-sum": dict(batch_norm=True, d_steps=1, g_steps=2, generator_loss="regularised",
                           reg_draws="cached", reg_weight=5.0 * 784),
    "nobn-5:5-reg-sum": dict(batch_norm=False, d_steps=5, g_steps=5, generator_loss="regularised",
                             reg_draws="fresh", reg_weight=5.0 * 784),
}
ALI_ARMS = {f"ali-{loss}": dict(loss=loss) for loss in ("paper", "minimax", "swapped")}
SUMMARY_KEYS = ("frechet_distance", "precision", "recall", "classes_covered", "class_kl",
                "reconstruction_ratio", "linear_probe_accuracy")


def classifier(data, args) -> ImageClassifier:
    path = args.out / "classifier.pt"
    torch.manual_seed(1234)
    clf = ImageClassifier(data.shape, num_classes=data.num_classes)
    if path.is_file():
        clf.load_state_dict(torch.load(path, weights_only=True))
    else:
        config = TrainConfig(model="classifier", epochs=args.classifier_epochs, batch_size=100,
                             device=args.device, seed=1234)
        Trainer(clf, data, config, None, progress=False).fit()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(clf.state_dict(), path)
    return clf.eval()


def build(arm: str, options: dict, data, args) -> tuple[torch.nn.Module, dict]:
    options = dict(options)
    train = {k: options.pop(k) for k in ("d_steps", "g_steps") if k in options}
    if arm.startswith("ali"):
        model = ALI(data.shape, latent_dim=args.latent_dim, arch="conv", channels=args.channels,
                    encoder="gaussian", generator="delta", batch_norm=True, **options)
    else:
        options.setdefault("reg_weight", args.reg_weight)
        model = GAN(data.shape, latent_dim=args.latent_dim, arch="conv", channels=args.channels,
                    **options)
    return model, train


_REAL: dict = {}


@torch.no_grad()
def real_features(clf, data, n: int) -> dict:
    """The test images' features and the real-vs-real floors, computed once per process."""
    if not _REAL:
        feats = clf.embed(data.test.images[:n])
        reference = clf.embed(data.train.images[:n])
        floor = precision_recall(feats, reference)
        _REAL.update(feats=feats, frechet_floor=frechet_distance_features(feats, reference),
                     precision_floor=floor["precision"], recall_floor=floor["recall"])
    return _REAL


@torch.no_grad()
def score(model, clf, data, args, iteration: int, seconds: float) -> dict:
    model.eval()
    n = args.num_samples
    real, labels = data.test.images[:n], data.test.labels[:n]
    cached = real_features(clf, data, n)
    torch.manual_seed(0)
    samples = torch.cat([model.sample(min(500, n - i)) for i in range(0, n, 500)])
    feats = clf.embed(samples)
    result = {"iteration": iteration, "train_seconds": seconds,
              "frechet_distance": frechet_distance_features(cached["feats"], feats),
              **{k: cached[k] for k in ("frechet_floor", "precision_floor", "recall_floor")},
              **precision_recall(cached["feats"], feats),
              **mode_coverage(clf.predict(samples), labels, data.num_classes)}
    if hasattr(model, "encode"):
        rec = torch.cat([model.reconstruct(b) for b in real.split(500)])
        result.update(reconstruction_error(real, rec, generator=torch.Generator().manual_seed(0)))
        codes = lambda x: torch.cat([model.encode(b)[0] for b in x.split(500)])  # noqa: E731
        probe_train = data.train.images[: args.probe_train]
        result["linear_probe_accuracy"] = linear_probe_accuracy(
            codes(probe_train), data.train.labels[: args.probe_train], codes(real), labels)
    model.train()
    return result


def run_arm(arm: str, options: dict, seed: int, data, clf, args) -> list[dict]:
    torch.manual_seed(seed)
    model, steps = build(arm, options, data, args)
    per_epoch = args.iterations // args.scores
    config = TrainConfig(model="ali" if arm.startswith("ali") else "gan",
                         model_config=dict(model.config), dataset="mnist", epochs=args.scores,
                         batch_size=64, lr=2e-4, betas=[0.5, 0.999], device=args.device, seed=seed,
                         iterations_per_epoch=per_epoch, validation_size=0, **steps)
    scores: list[dict] = []
    start = time.perf_counter()

    def callback(trainer, record):
        scores.append(score(trainer.model, clf, data, args, record["iterations"],
                            time.perf_counter() - start))
        record.update({f"score_{k}": v for k, v in scores[-1].items() if isinstance(v, float)})
        print(json.dumps({"arm": arm, "seed": seed, **scores[-1]}), flush=True)

    folder = args.out / arm / f"seed{seed}"
    trainer = Trainer(model, data, config, folder, progress=False, callbacks=[callback])
    trainer.fit()
    model.eval()
    torch.manual_seed(0)
    save_image_grid(model.sample(64), args.out / f"{arm}-seed{seed}-samples.png", nrow=8)
    return scores


def summarise(results: dict) -> dict:
    table = {}
    for arm, seeds in results.items():
        final = [runs[-1] for runs in seeds.values()]
        row = {}
        for key in SUMMARY_KEYS:
            values = [r[key] for r in final if key in r]
            if values:
                row[key] = statistics.fmean(values)
                row[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["per_seed_frechet"] = [round(r["frechet_distance"], 2) for r in final]
        table[arm] = row
    return table


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist", args.data_dir, binarize="none", validation_size=0,
                        limit=args.limit).to(args.device)
    clf = classifier(data, args)
    accuracy = clf.accuracy(data.test.images, data.test.labels)
    arms = GAN_ARMS if args.experiment == "gan" else ALI_ARMS
    if args.arms:
        arms = {k: v for k, v in arms.items() if k in args.arms.split(",")}
    results: dict = {}
    for seed in args.seeds:
        for arm, options in arms.items():
            results.setdefault(arm, {})[seed] = run_arm(arm, options, seed, data, clf, args)
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
    runs = next(iter(next(iter(results.values())).values()))
    first = runs[-1]
    return {
        "benchmark": f"gan_regulariser/{args.experiment}",
        "dataset": "mnist", "binarization": "none (grey levels)",
        "iterations": args.iterations, "scores_at": [r["iteration"] for r in runs],
        "seeds": args.seeds, "batch_size": 64, "optimizer": "adam 2e-4 betas (0.5, 0.999)",
        "channels": args.channels, "latent_dim": args.latent_dim, "reg_weight": args.reg_weight,
        "num_samples": args.num_samples, "classifier_test_accuracy": accuracy,
        "frechet_floor": first["frechet_floor"], "precision_floor": first["precision_floor"],
        "recall_floor": first["recall_floor"],
        "summary_at_last_count": summarise(results), "peak_rss_mb": peak_rss_mb(),
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--out", type=Path, default=Path("runs/bench-gan"))
    p.add_argument("--experiment", choices=("gan", "ali"), default="gan")
    p.add_argument("--arms", default=None, help="comma-separated subset of the arms")
    p.add_argument("--seeds", type=lambda s: [int(v) for v in s.split(",")], default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=2000,
                   help="iterations per run (each: d-steps discriminator and g-steps generator steps)")
    p.add_argument("--scores", type=int, default=4, help="equally spaced scoring points")
    p.add_argument("--num-samples", type=int, default=5000,
                   help="generated samples (and test images) per score")
    p.add_argument("--probe-train", type=int, default=10000, help="training codes for the linear probe")
    p.add_argument("--channels", type=lambda s: [int(v) for v in s.split(",")], default=[32, 64],
                   help="DCGAN channels (default: half of DCGAN's 64,128, for the CPU budget)")
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--reg-weight", type=float, default=5.0)
    p.add_argument("--classifier-epochs", type=int, default=3)
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
