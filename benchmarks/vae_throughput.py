"""
Benchmark: training throughput of pyrogen's training loop against a hand-written
PyTorch loop of the same network, in the same run.

The network is the VAE of Burda et al. (2016) (784-200-200-50 tanh encoder and
mirrored decoder, Bernoulli likelihood) on the MNIST training split with
dynamic binarisation, Adam with learning rate 1e-3. Four ways of training it
are timed, each on its own freshly initialised copy (same initial weights):

* ``plain``: a hand-written loop: the same encoder and decoder modules called
  directly, reparameterised ``z``, ``binary_cross_entropy_with_logits`` summed,
  analytic Gaussian KL, the loss scaled by ``num_data / batch`` as pyrogen's
  is, one ``torch.optim.Adam``.
* ``plain_compiled``: the same loop with its loss function compiled by ``torch.compile``
  (the hand-written loop "compiled the same way" as ``pyrogen_inductor``).
* ``pyrogen``: ``pyrogen.train.Trainer`` with its defaults (the loss recorded once by
  ``torch.export``, :class:`~pyrogen.infer.CompiledLoss`), timed over its step's epoch,
  ``trainer.step.run_epoch(trainer)`` (what ``fit`` runs, minus the per-epoch checkpoint,
  which ``run_dir=None`` skips anyway).
* ``pyrogen_inductor``: the same with ``inductor=True`` (the recorded graph compiled by
  ``torch.compile``).
* ``svi``: the naive Pyro way, ``SVI(vae.model, vae.guide, pyro.optim.Adam,
  Trace_ELBO())`` and ``svi.step(x, num_data=N)``, with Pyro's defaults.
* ``jit_svi``: the same with ``JitTrace_ELBO``.

All four take their minibatches from the same ``Split.batches`` iterator (same
permutation, same dynamic Bernoulli draws, last incomplete batch dropped), so
the data cost is identical. One round is one epoch of ``--steps`` batches per
method; a warm-up round (recording and compilation) is not timed; the methods then
alternate, in an order rotated every round, for ``--rounds`` timed rounds, and
the median images/second per method is reported. Each method keeps its own
Pyro parameter store, swapped in for its turn, because all copies of the model
use the same parameter names.

Usage::

    python benchmarks/vae_throughput.py --data-dir ../shared/data/mnist --device cpu
    python benchmarks/vae_throughput.py --data-dir ../shared/data/mnist --limit 2000 --rounds 2

The last line printed is one JSON object; ``ratio_vs_plain`` is pyrogen's
throughput over the hand-written loop's (the target is >= 1.0), beside the same for
``pyrogen_inductor`` and for the hand-written loop compiled by ``torch.compile``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pyro
import pyro.optim
import torch
import torch.nn.functional as F
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO

from _common import ParamStoreSlot, burda_vae, load_mnist, median, truncate_train
from pyrogen.data import DataSplits
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device

METHODS = ("plain", "plain_compiled", "pyrogen", "pyrogen_inductor", "svi", "jit_svi")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Method:
    """A way of training: ``run(epoch)`` trains one epoch and returns (steps, total loss)."""

    def __init__(self, name: str, data: DataSplits, args: argparse.Namespace) -> None:
        self.name, self.data, self.args = name, data, args
        self.device = torch.device(args.device)
        self.num_data = len(data.train)
        self.slot = ParamStoreSlot()
        self.seconds: list[float] = []
        self.last_loss = float("nan")

    def batches(self, epoch: int):
        return self.data.train.batches(self.args.batch_size, shuffle=True, drop_last=True,
                                       epoch=epoch, seed=self.args.seed)

    def run(self, epoch: int) -> tuple[int, float]:
        raise NotImplementedError

    def timed_round(self, epoch: int) -> float:
        """Train one epoch; return its images per second."""
        with self.slot.active():
            _sync(self.device)
            start = time.perf_counter()
            steps, total = self.run(epoch)
            _sync(self.device)
            sec = time.perf_counter() - start
        self.seconds.append(sec)
        self.last_loss = total / max(steps, 1) / self.num_data
        return steps * self.args.batch_size / sec


class Plain(Method):
    def __init__(self, name: str, data: DataSplits, args: argparse.Namespace,
                 compiled: bool = False) -> None:
        super().__init__(name, data, args)
        vae = burda_vae(args.seed).to(self.device)
        self.encoder, self.decoder = vae.guide.encoder, vae.model.decoder
        params = list(self.encoder.parameters()) + list(self.decoder.parameters())
        self.optimizer = torch.optim.Adam(params, lr=args.lr)
        self.loss = torch.compile(self.negative_elbo) if compiled else self.negative_elbo

    def negative_elbo(self, x: torch.Tensor) -> torch.Tensor:
        loc, scale = self.encoder(x)
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (loc.pow(2) + scale.pow(2) - 1).sum() - scale.log().sum()
        return (nll + kl) * (self.num_data / x.shape[0])

    def run(self, epoch: int) -> tuple[int, float]:
        steps, total = 0, 0.0
        for batch in self.batches(epoch):
            loss = self.loss(batch.x)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item()
            steps += 1
        return steps, total


class Pyrogen(Method):
    def __init__(self, name: str, data: DataSplits, args: argparse.Namespace,
                 inductor: bool = False) -> None:
        super().__init__(name, data, args)
        vae = burda_vae(args.seed)
        config = TrainConfig(
            model="vae", model_config=vae.config, dataset="mnist", data_dir=str(args.data_dir),
            binarize="dynamic", validation_size=0, limit=args.limit, epochs=args.rounds + 1,
            batch_size=args.batch_size, lr=args.lr, device=args.device, seed=args.seed,
            inductor=inductor,
        )  # everything else pyrogen's defaults: objective "elbo", jit=True, constant lr
        with self.slot.active():
            self.trainer = Trainer(vae, data, config, run_dir=None, progress=False)

    def run(self, epoch: int) -> tuple[int, float]:
        self.trainer.epoch = epoch  # fit() advances it after every epoch
        start = self.trainer.global_step
        record = self.trainer.step.run_epoch(self.trainer)
        steps = self.trainer.global_step - start
        return steps, record["train_loss"] * steps * self.num_data


class Svi(Method):
    def __init__(self, name: str, data: DataSplits, args: argparse.Namespace, jit: bool) -> None:
        super().__init__(name, data, args)
        vae = burda_vae(args.seed).to(self.device)
        loss = JitTrace_ELBO() if jit else Trace_ELBO()
        self.svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": args.lr}), loss)

    def run(self, epoch: int) -> tuple[int, float]:
        steps, total = 0, 0.0
        for batch in self.batches(epoch):
            total += self.svi.step(batch.x, num_data=self.num_data)
            steps += 1
        return steps, total


def build_methods(data: DataSplits, args: argparse.Namespace) -> dict[str, Method]:
    builders: dict[str, Callable[[], Method]] = {
        "plain": lambda: Plain("plain", data, args),
        "plain_compiled": lambda: Plain("plain_compiled", data, args, compiled=True),
        "pyrogen": lambda: Pyrogen("pyrogen", data, args),
        "pyrogen_inductor": lambda: Pyrogen("pyrogen_inductor", data, args, inductor=True),
        "svi": lambda: Svi("svi", data, args, jit=False),
        "jit_svi": lambda: Svi("jit_svi", data, args, jit=True),
    }
    return {name: builders[name]() for name in args.methods}


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_mnist(args.data_dir, args.limit, args.seed).to(args.device)
    if args.steps is not None:
        if args.steps * args.batch_size > len(data.train):
            raise ValueError(f"--steps {args.steps} x --batch-size {args.batch_size} is more "
                             f"than the {len(data.train)} training images")
        data = truncate_train(data, args.steps * args.batch_size)
    steps = len(data.train) // args.batch_size
    methods = build_methods(data, args)

    # warm-up round (epoch 0): recording, compilation, allocator and caches; not timed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the recorders' and compilers' warnings
        for method in methods.values():
            method.timed_round(0)
    for method in methods.values():
        method.seconds.clear()

    per_round: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            per_round[name].append(methods[name].timed_round(r + 1))
        print(json.dumps({"round": r + 1} | {k: round(v[-1], 1) for k, v in per_round.items()}),
              flush=True)

    throughput = {name: median(values) for name, values in per_round.items()}
    result: dict = {
        "benchmark": "vae_throughput",
        "images_per_sec": throughput,
        "per_round_images_per_sec": per_round,
        "last_train_loss": {name: m.last_loss for name, m in methods.items()},
    }
    if "plain" in throughput:
        for name, key in (("pyrogen", "ratio_vs_plain"), ("svi", "svi_ratio_vs_plain"),
                          ("jit_svi", "jit_svi_ratio_vs_plain"),
                          ("pyrogen_inductor", "inductor_ratio_vs_plain"),
                          ("plain_compiled", "plain_compiled_ratio_vs_plain")):
            if name in throughput:
                result[key] = throughput[name] / throughput["plain"]
    if "plain_compiled" in throughput and "pyrogen_inductor" in throughput:
        result["inductor_ratio_vs_plain_compiled"] = (throughput["pyrogen_inductor"]
                                                      / throughput["plain_compiled"])
    return result | {
        "network": "burda vae 784-200-200-50 tanh, bernoulli",
        "binarization": "dynamic",
        "train_images": len(data.train),
        "batch_size": args.batch_size,
        "steps_per_round": steps,
        "rounds": args.rounds,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "pyro": pyro.__version__,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per method per round (default: one epoch of the training split)")
    p.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS),
                   help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    print(json.dumps(main(args)))
