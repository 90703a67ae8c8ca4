"""
Benchmark: the adversarial step's throughput against a hand-written PyTorch loop of the same
networks and losses, in the same run.

For each case (the GAN with DCGAN networks, the GAN with MLPs, the AAE with MLPs, ALI with
DCGAN networks and the swapped, non-saturating loss; batch 64,
Adam 2e-4 with DCGAN's betas, one discriminator step and one step of the other player per
iteration) two copies with the same initial weights are trained on the MNIST training
split:

* ``plain``: a hand-written loop calling the same modules directly. The GAN's
  discriminator step is ``softplus(-D(x)).mean() + softplus(D(G(z))).mean()`` with ``G(z)``
  drawn under ``torch.no_grad``, its generator step ``softplus(-D(G(z))).mean()`` with the
  discriminator's ``requires_grad`` switched off; the AAE's discriminator step is
  ``softplus(D(E(x))).mean() + softplus(-D(z)).mean()`` on codes drawn under
  ``torch.no_grad``, its autoencoder step ``softplus(-D(E(x))).mean()`` plus the summed
  squared reconstruction error per point, averaged; ALI's discriminator step is
  ``softplus(-D(x, E(x))).mean() + softplus(D(G(z), z)).mean()`` with both pairs drawn under
  ``torch.no_grad``, its encoder/generator step ``softplus(D(x, E(x))).mean() +
  softplus(-D(G(z), z)).mean()``. One ``torch.optim.Adam`` per player (torch's default
  kernels), ``backward()`` and ``step()``.
* ``pyrogen``: ``pyrogen.train.Trainer`` with the family's Pyro losses
  (:class:`~pyrogen.infer.adversarial.Trace_GAN`, :class:`~pyrogen.infer.adversarial.Trace_AAE`),
  timed over ``trainer.step.run_epoch(trainer)``: the effect handlers, the divergence
  guard, each player's gradient taken with respect to its own parameters, and the end of
  epoch's sample-diversity signal of the collapse alarm (64 samples), all included.

Both take their minibatches from the same ``Split.batches`` iterator. One round is one epoch of
``--steps`` iterations per method; a warm-up round is not timed; the methods then alternate,
in an order rotated every round, for ``--rounds`` timed rounds, and the median images per
second is reported. ``ratio_vs_plain`` is pyrogen's throughput over the hand-written loop's
for each case (target >= 0.9).

Usage::

    python benchmarks/gan_throughput.py --data-dir ../shared/data/mnist --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F

from _common import ParamStoreSlot, median, truncate_train
from pyrogen.data import load_dataset
from pyrogen.models import AAE, ALI, GAN
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device

#: case -> (facade, its keywords)
CASES = {
    "gan_dcgan": (GAN, dict(arch="conv", channels=[32, 64], batch_norm=True, latent_dim=100)),
    "gan_mlp": (GAN, dict(arch="mlp", hidden=[512, 512], batch_norm=False, latent_dim=100)),
    "aae_mlp": (AAE, dict(arch="mlp", hidden=[512, 512], latent_dim=8, encoder="gaussian")),
    "ali_dcgan": (ALI, dict(arch="conv", channels=[32, 64], batch_norm=True, latent_dim=32,
                            encoder="gaussian", loss="swapped")),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(case: str, seed: int, device: str):
    facade, options = CASES[case]
    torch.manual_seed(seed)
    return facade((1, 28, 28), **options).to(device)


class Plain:
    """The hand-written loop of one case."""

    def __init__(self, case: str, data, args: argparse.Namespace) -> None:
        self.case, self.data, self.args = case, data, args
        self.model = build(case, args.seed, args.device)
        players = self.model.players()
        self.optimizers = {name: torch.optim.Adam([p for m in modules for p in m.parameters()],
                                                  lr=2e-4, betas=(0.5, 0.999), foreach=True)
                           for name, modules in players.items()}
        self.latent = self.model.config["latent_dim"]

    def run(self, epoch: int) -> int:
        # the plain torch networks inside pyrogen's Pyro modules, called with no Pyro at all
        D = self.model.get_submodule("discriminator.discriminator")
        generator = self.model.get_submodule("model.generator")

        def G(z: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(generator(z))
        d_opt = self.optimizers["discriminator"]
        other = [name for name in self.optimizers if name != "discriminator"][0]
        o_opt = self.optimizers[other]
        steps = 0
        for batch in self.data.train.batches(self.args.batch_size, shuffle=True, drop_last=True,
                                             epoch=epoch, seed=self.args.seed):
            x = batch.x
            n = x.shape[0]
            if self.case.startswith("gan"):
                with torch.no_grad():
                    fake = G(torch.randn(n, self.latent, device=x.device))
                d_loss = F.softplus(-D(x)).mean() + F.softplus(D(fake)).mean()
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
                D.requires_grad_(False)
                g_loss = F.softplus(-D(G(torch.randn(n, self.latent, device=x.device)))).mean()
                o_opt.zero_grad(set_to_none=True)
                g_loss.backward()
                o_opt.step()
                D.requires_grad_(True)
            elif self.case.startswith("ali"):
                encoder = self.model.get_submodule("guide.encoder")

                def pairs():
                    loc, scale = encoder(x)
                    z = torch.randn(n, self.latent, device=x.device)
                    return (x, loc + scale * torch.randn_like(loc)), (G(z), z)
                with torch.no_grad():
                    real, fake = pairs()
                d_loss = F.softplus(-D(*real)).mean() + F.softplus(D(*fake)).mean()
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
                D.requires_grad_(False)
                real, fake = pairs()
                eg_loss = F.softplus(D(*real)).mean() + F.softplus(-D(*fake)).mean()
                o_opt.zero_grad(set_to_none=True)
                eg_loss.backward()
                o_opt.step()
                D.requires_grad_(True)
            else:
                encoder = self.model.get_submodule("guide.encoder")
                with torch.no_grad():
                    loc, scale = encoder(x)
                    code = loc + scale * torch.randn_like(loc)
                d_loss = (F.softplus(D(code)).mean()
                          + F.softplus(-D(torch.randn(n, self.latent, device=x.device))).mean())
                d_opt.zero_grad(set_to_none=True)
                d_loss.backward()
                d_opt.step()
                D.requires_grad_(False)
                loc, scale = encoder(x)
                z = loc + scale * torch.randn_like(loc)
                recon = (x - G(z)).pow(2).flatten(1).sum(-1).mean()
                ae_loss = F.softplus(-D(z)).mean() + recon
                o_opt.zero_grad(set_to_none=True)
                ae_loss.backward()
                o_opt.step()
                D.requires_grad_(True)
            steps += 1
        return steps


class Pyrogen:
    """pyrogen's trainer on the same case."""

    def __init__(self, case: str, data, args: argparse.Namespace) -> None:
        model = build(case, args.seed, args.device)
        config = TrainConfig(model=CASES[case][0].__name__.lower(), model_config=model.config,
                             dataset="mnist", data_dir=str(args.data_dir), validation_size=0,
                             epochs=args.rounds + 1, batch_size=args.batch_size, lr=2e-4,
                             betas=[0.5, 0.999], device=args.device, seed=args.seed)
        self.trainer = Trainer(model, data, config, run_dir=None, progress=False)

    def run(self, epoch: int) -> int:
        self.trainer.epoch = epoch
        record = self.trainer.step.run_epoch(self.trainer)
        return record["iterations_in_epoch"]


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_dataset("mnist", args.data_dir, binarize="none", validation_size=0,
                        seed=args.seed, limit=args.limit)  # grey levels, as the GANs train
    data = truncate_train(data, args.steps * args.batch_size).to(args.device)
    results = {}
    for case in args.cases:
        # each method keeps its own param store: both copies use the same parameter names
        slots = {"plain": ParamStoreSlot(), "pyrogen": ParamStoreSlot()}
        methods = {}
        for name, kind in (("plain", Plain), ("pyrogen", Pyrogen)):
            with slots[name].active():
                methods[name] = kind(case, data, args)
                methods[name].run(0)  # warm-up, not timed
        per_round: dict[str, list[float]] = {name: [] for name in methods}
        names = list(methods)
        for r in range(args.rounds):
            for name in names[r % 2:] + names[:r % 2]:
                with slots[name].active():
                    _sync(device)
                    start = time.perf_counter()
                    iterations = methods[name].run(r + 1)
                    _sync(device)
                per_round[name].append(iterations * args.batch_size / (time.perf_counter() - start))
        throughput = {name: median(v) for name, v in per_round.items()}
        results[case] = {"images_per_sec": throughput, "per_round_images_per_sec": per_round,
                         "ratio_vs_plain": throughput["pyrogen"] / throughput["plain"]}
        print(json.dumps({case: results[case]["ratio_vs_plain"]}), flush=True)
    return {"benchmark": "gan_throughput", "cases": results, "target_ratio": 0.9,
            "batch_size": args.batch_size, "iterations_per_round": args.steps,
            "rounds": args.rounds, "device": args.device, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "pyro": pyro.__version__}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100, help="iterations per method per round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    p.add_argument("--cases", type=lambda s: s.split(","), default=list(CASES),
                   help=f"comma-separated subset of {','.join(CASES)}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    print(json.dumps(main(args)))
