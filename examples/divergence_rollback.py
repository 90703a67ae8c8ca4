"""
Divergence rolled back
======================

Watch the trainer roll a diverged epoch back: a fault is injected at one step (its loss made a
million times too large, as a corrupt batch or a bad learning rate would), the trainer rolls
that epoch back to its start, halves the learning rates, runs it again, and the run ends as
a good one; ``metrics.jsonl`` records what happened.

    python examples/divergence_rollback.py --out runs/rollback
    python examples/divergence_rollback.py --fault nan --out runs/rollback-nan

With ``--fault nan`` the poisoned loss is NaN instead; ``--max-rollbacks 0`` shows the run
stopping with a ``DivergenceError`` instead of rolling back.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyro
import torch

from pyrogen.data import load_dataset
from pyrogen.infer import log_likelihood
from pyrogen.models import VAE
from pyrogen.train import DivergenceError, TrainConfig, Trainer, read_metrics


def inject_fault(trainer: Trainer, at_step: int, fault: str) -> None:
    """Poison the loss of global step ``at_step`` (1-based), the first time it is taken."""
    optimise, done = trainer.optimise, []

    def poisoned(loss, *args, **kwargs):
        if trainer.global_step + 1 == at_step and not done:
            done.append(True)
            loss = loss * 1e6 if fault == "blowup" else loss * float("nan")
        return optimise(loss, *args, **kwargs)

    trainer.optimise = poisoned


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("digits", binarize="dynamic", limit=300 if args.smoke else None)
    pyro.set_rng_seed(args.seed)
    vae = VAE(data.shape, latent_dim=8, hidden=(128,))
    config = TrainConfig(model="vae", model_config=vae.config, dataset="digits",
                         binarize="dynamic", limit=300 if args.smoke else None,
                         epochs=2 if args.smoke else args.epochs, batch_size=50,
                         max_rollbacks=args.max_rollbacks, device=args.device, seed=args.seed)
    trainer = Trainer(vae, data, config, args.out, progress=False)
    steps_per_epoch = len(data.train) // config.batch_size
    inject_fault(trainer, steps_per_epoch + 3, args.fault)  # the third step of epoch 2
    try:
        history = trainer.fit()
    except DivergenceError as e:
        print(f"stopped: {e}")
        return {"stopped": str(e)}
    events = [event for record in read_metrics(args.out) for event in record.get("rolled_back", [])]
    test = torch.cat([b.x for b in data.test.to(args.device).batches(500, seed=args.seed)])
    ll = log_likelihood(vae.model, vae.guide, test, num_samples=10 if args.smoke else 200)
    result = {"epochs": len(history), "rollbacks": events, "lr_first_and_last": [history[0]["lr"], history[-1]["lr"]],
              "test_nll": round(float(-ll.mean()), 2)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--fault", choices=("blowup", "nan"), default="blowup")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--max-rollbacks", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("runs/rollback"))
    p.add_argument("--smoke", action="store_true", help="a few seconds: 300 points, 2 epochs")
    main(p.parse_args())
