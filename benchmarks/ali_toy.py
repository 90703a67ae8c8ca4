"""
Benchmark: ALI's encoder/generator losses on a 2-D toy, 8 Gaussians on a ring, to test one of
the paper's revelations: Su's loss (its equation (37)) drops two terms of the complete one
"with careful training". Each loss trains the same networks from the same initial weights
and data order through ``pyrogen.train.Trainer``; the script reports, per loss:

* mode coverage of 2,500 samples: a mode is covered when at least 1% of the samples lie
  within 3 standard deviations of its centre, and the share of samples near any mode;
* the encoder's codes: mean ``|E(x)|`` over the test points (the prior's is about 1.25 in
  two dimensions) and the mean squared error of ``E(G(z))`` against ``z``;
* the cosine between each loss's encoder gradient and the complete loss's (the paper's loss
  plus the dropped terms, at the current weights), averaged over batches of the trained
  paper-loss model and of the model at initialisation.

Usage::

    python benchmarks/ali_toy.py --out runs/ali-toy            # about 5 minutes on 1 core

The pictures (``OUT/LOSS.png``: samples over the data, and the codes of the data over the
prior's) and one JSON line per loss are written; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pyro
import torch

from pyrogen.data.split import DataSplits, Split
from pyrogen.infer.ali import Trace_ALI
from pyrogen.models import ALI
from pyrogen.train import TrainConfig, Trainer

MODES = 8
RADIUS, STD, CENTRE = 0.35, 0.02, 0.5
LOSSES = ("paper", "minimax", "swapped", "paper-sleep")


def ring(num: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` points of the 8-Gaussian ring as ``(num, 1, 1, 2)`` "images" in [0, 1]."""
    labels = torch.randint(MODES, (num,), generator=generator)
    angle = 2 * math.pi * labels.float() / MODES
    centre = CENTRE + RADIUS * torch.stack([angle.cos(), angle.sin()], -1)
    points = centre + STD * torch.randn(num, 2, generator=generator)
    return points.clamp(0, 1).reshape(num, 1, 1, 2), labels


def centres() -> torch.Tensor:
    angle = 2 * math.pi * torch.arange(MODES).float() / MODES
    return CENTRE + RADIUS * torch.stack([angle.cos(), angle.sin()], -1)


def toy_data() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    train, valid, test = (Split(*ring(n, g)) for n in (20000, 1000, 2000))
    return DataSplits(name="digits", train=train, valid=valid, test=test, binarize="none",
                      shape=(1, 1, 2), num_classes=MODES)


def coverage(samples: torch.Tensor) -> dict[str, float]:
    points = samples.reshape(-1, 2)
    distance = torch.cdist(points, centres())
    nearest = distance.min(-1)
    good = nearest.values < 3 * STD
    counts = torch.bincount(nearest.indices[good], minlength=MODES)
    return {"modes_covered": int((counts >= 0.01 * len(points)).sum()),
            "high_quality_share": float(good.float().mean())}


def encoder_gradient(ali: ALI, loss: Trace_ALI, x: torch.Tensor) -> torch.Tensor:
    params = [p for p in ali.guide.parameters()]
    for p in params:
        p.grad = None
    value = loss.differentiable_loss(ali.model, ali.guide, x, num_data=len(x))
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, params)])


def gradient_cosines(ali: ALI, data: DataSplits, batches: int = 20) -> dict[str, float]:
    """The cosine of each loss's encoder gradient with the complete loss's first-order
    gradient (the paper's loss plus the sleep term at weight 1), over ``batches`` batches."""
    complete = Trace_ALI(ali.discriminator, "encoder-generator", loss="paper-sleep", sleep_weight=1.0)
    sums = {name: 0.0 for name in ("paper", "minimax", "swapped")}
    for index, batch in enumerate(data.test.batches(100, shuffle=True, seed=0)):
        if index == batches:
            break
        state = torch.get_rng_state()
        reference = encoder_gradient(ali, complete, batch.x)
        for name in sums:
            torch.set_rng_state(state)  # the same z draws as the reference
            g = encoder_gradient(ali, Trace_ALI(ali.discriminator, "encoder-generator", loss=name), batch.x)
            sums[name] += float(torch.nn.functional.cosine_similarity(g, reference, dim=0)) / batches
    return sums


def code_figures(ali: ALI, data: DataSplits) -> dict[str, float]:
    with torch.no_grad():
        codes = ali.encode(data.test.images)[0]
        z = torch.randn(2000, ali.config["latent_dim"])
        inverted = ali.encode(ali.decode(z))[0]
    return {"mean_abs_code": float(codes.norm(dim=-1).mean()),
            "inversion_mse": float((inverted - z).pow(2).sum(-1).mean())}


def picture(ali: ALI, data: DataSplits, samples: torch.Tensor, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2))
    real = data.test.images.reshape(-1, 2)
    axes[0].scatter(real[:, 0], real[:, 1], s=1, c="0.75", label="data")
    axes[0].scatter(samples[:, 0], samples[:, 1], s=1, c="C3", label="G(z)")
    axes[0].set(xlim=(0, 1), ylim=(0, 1), title=f"{title}: samples", aspect="equal")
    with torch.no_grad():
        codes = ali.encode(data.test.images)[0]
    prior = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    axes[1].scatter(prior[:, 0], prior[:, 1], s=1, c="0.75")
    axes[1].scatter(codes[:, 0], codes[:, 1], s=1, c=data.test.labels, cmap="tab10")
    lim = max(4.0, float(codes.abs().max()) * 1.05)
    axes[1].set(xlim=(-lim, lim), ylim=(-lim, lim), title="E(x) over N(0, I)", aspect="equal")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def run_loss(args: argparse.Namespace, loss: str, data: DataSplits) -> dict:
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    options = {"sleep_weight": args.sleep_weight} if loss == "paper-sleep" else {}
    ali = ALI(data.shape, latent_dim=2, arch="mlp", hidden=(128, 128), batch_norm=False,
              encoder="gaussian", loss=loss, **options)
    start_cosines = gradient_cosines(ali, data) if loss == "paper" else None
    config = TrainConfig(model="ali", epochs=args.epochs, batch_size=100, lr=args.lr,
                         betas=[0.5, 0.999], device="cpu", seed=args.seed)
    start = time.perf_counter()
    Trainer(ali, data, config, args.out / loss, progress=False).fit()
    seconds = time.perf_counter() - start
    ali.eval()
    torch.manual_seed(1)
    with torch.no_grad():
        samples = ali.sample(2500).reshape(-1, 2)
    row = {"loss": loss, "epochs": args.epochs, "train_seconds": round(seconds, 1),
           **coverage(samples), **code_figures(ali, data)}
    if loss == "paper-sleep":
        row["sleep_weight"] = args.sleep_weight
    if start_cosines is not None:
        row["encoder_gradient_cosine_with_complete"] = {
            "at_initialisation": start_cosines, "trained": gradient_cosines(ali, data)}
    picture(ali, data, samples, args.out / f"{loss}.png", loss)
    return row


def main(args: argparse.Namespace) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    data = toy_data()
    rows = []
    for loss in args.losses:
        row = run_loss(args, loss, data)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"benchmark": "ali_toy", "modes": MODES, "epochs": args.epochs, "lr": args.lr,
            "seed": args.seed, "rows": rows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--losses", type=lambda s: s.split(","), default=list(LOSSES))
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--sleep-weight", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
