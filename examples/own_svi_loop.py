"""
Your own SVI loop for every family
==================================

Your own Pyro SVI loop for every pyrogen family, with per-point figures and a checkpoint.

Each family's facade is built at its defaults for the data set (the same network
``pyrogen train FAMILY`` builds), then trained by plain ``pyro.infer.SVI`` steps:

* the ELBO family (``vae``, ``cvae``, ``dfcvae``, ``mixture``): one ``SVI`` on
  ``facade.model``/``facade.guide`` with ``Trace_ELBO``; a minibatch step given
  ``num_data=N`` returns the loss of the *whole data set* (the data plate scales the
  minibatch by N / batch), so divide by N for nats per data point;
* the adversarial family (``gan``, ``aae``, ``ali``): one ``SVI`` per player, each with its
  own Pyro loss from ``facade.losses()`` and its own optimiser, stepped in the order of
  ``facade.players()`` (discriminator first); a step returns that player's minibatch loss.

A checkpoint of your own is ``facade.state_dict()`` plus each optimiser's
``get_state()``: Pyro's ``get_param_store().save`` would not hold the networks, which are
``PyroModule`` parameters and never enter the parameter store.

    python examples/own_svi_loop.py                      # every family on digits
    python examples/own_svi_loop.py --family cvae --epochs 20
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from pyrogen.data import load_dataset
from pyrogen.families import get

FAMILIES = ("vae", "cvae", "mixture", "gan", "aae", "ali")


def build(name: str, data) -> torch.nn.Module:
    """The facade ``pyrogen train NAME --dataset digits`` builds."""
    family = get(name)
    options = dict(family.defaults(data.name)["model"])
    family.complete(options, data)
    return family.build(options, data)


def train(name: str, epochs: int, batch_size: int, seed: int, limit: int | None, out: Path) -> dict:
    pyro.set_rng_seed(seed)
    family = get(name)
    binarize = family.default_binarize("digits", dict(family.defaults("digits")["model"]))
    data = load_dataset("digits", binarize=binarize, limit=limit)
    facade = build(name, data)
    n = len(data.train)
    if facade.fit == "adversarial":
        losses = facade.losses()  # keep the dict: a regularised loss holds its snapshot
        svis = {player: SVI(facade.model, facade.guide, Adam({"lr": 2e-4, "betas": (0.5, 0.999)}),
                            losses[player]) for player in facade.players()}
    else:
        svis = {"elbo": SVI(facade.model, facade.guide, Adam({"lr": 1e-3}), Trace_ELBO())}
    if facade.fit == "em":
        facade.init_from_data(data.train.images.flatten(1) if len(facade.data_shape) == 1
                              else data.train.images, seed=seed)
    history = []
    for epoch in range(epochs):
        totals = dict.fromkeys(svis, 0.0)
        steps = 0
        for batch in data.train.batches(batch_size, shuffle=True, epoch=epoch, seed=seed):
            args = facade.inputs(batch)
            for player, svi in svis.items():
                if facade.fit == "adversarial":
                    totals[player] += svi.step(*args)  # this player's minibatch loss
                else:  # the whole data set's loss, estimated from the minibatch
                    totals[player] += svi.step(*args, num_data=n) / n
            steps += 1
        history.append({k: v / steps for k, v in totals.items()})
        print(f"{name} epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in history[-1].items()))

    # per-point figures: the ELBO family's per-image negative ELBO (nats), from one SVI loss
    figures = {}
    if facade.fit != "adversarial":
        x = facade.inputs(next(iter(data.test.batches(len(data.test), seed=seed))))
        elbo = Trace_ELBO()
        per_point = [elbo.loss(facade.model, facade.guide, *[a[i:i + 1] for a in x]) for i in range(5)]
        figures["test_loss_of_first_points"] = [round(v, 3) for v in per_point]

    # a checkpoint of one's own: the facade's weights and every optimiser's state
    path = out / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    optimisers = {k: svi.optim.get_state() for k, svi in svis.items()}
    torch.save({"facade": facade.state_dict(), "optimisers": optimisers}, path)
    restored = copy.deepcopy(facade)
    with torch.no_grad():
        for p in restored.parameters():
            p.zero_()
    saved = torch.load(path, weights_only=True)
    restored.load_state_dict(saved["facade"])
    for k, svi in svis.items():  # a resumed loop: the same SVI objects, their optimisers restored
        svi.optim.set_state(saved["optimisers"][k])
    same = all(torch.equal(a, b) for a, b in zip(facade.state_dict().values(), restored.state_dict().values()))
    return {"family": name, "last_epoch": history[-1], "checkpoint_restores": same,
            "optimiser_states": {k: len(v) for k, v in optimisers.items()}, **figures}


def main(args: argparse.Namespace) -> list[dict]:
    names = FAMILIES if args.family == "all" else (args.family,)
    results = [train(name, 1 if args.smoke else args.epochs, args.batch_size, args.seed,
                     300 if args.smoke else None, args.out) for name in names]
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--family", choices=("all",) + FAMILIES, default="all")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="(the loop above runs on the CPU)")
    p.add_argument("--out", type=Path, default=Path("runs/own-loop"))
    p.add_argument("--smoke", action="store_true", help="a few seconds: 300 points, 1 epoch")
    main(p.parse_args())
