"""
Benchmark: data-parallel scaling of pyrogen's trainer over torch.distributed.

Trains Burda et al.'s VAE (784-200-200-50, MNIST, dynamic binarisation, batch 100 per
process) with ``pyrogen.train.Trainer`` in 1, 2, ... processes launched by ``torchrun``, each
process with ``--threads`` threads, and measures the images per second of the whole job over
``--epochs`` timed epochs (after one warm-up epoch that pays the JIT compilation). The
scaling efficiency of P processes is ``throughput(P) / (P * throughput(1))``.

On this machine (2 CPU cores) the processes are 1 and 2 with one thread each; on a GPU
machine pass ``--device cuda --procs 1,2,4,8`` (one GPU per process, NCCL).

Usage::

    python benchmarks/scaling.py --data-dir ../shared/data/mnist --device cpu --procs 1,2

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def worker(args: argparse.Namespace) -> None:
    """One rank of a torchrun job: train, time, and (rank 0) write the result."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _common import BURDA_VAE

    from pyrogen.data import load_dataset
    from pyrogen.models import VAE
    from pyrogen.train import TrainConfig, Trainer
    from pyrogen.train.distributed import init_distributed, rank, shutdown, world_size

    torch.set_num_threads(args.threads)
    init_distributed(args.device)
    try:
        data = load_dataset("mnist", args.data_dir, binarize="dynamic", validation_size=0, limit=args.limit)
        torch.manual_seed(0)
        config = TrainConfig(epochs=1 + args.epochs, batch_size=args.batch_size, device=args.device,
                             validation_size=0)
        trainer = Trainer(VAE(**BURDA_VAE), data, config, None, progress=False)
        trainer.step.run_epoch(trainer)  # warm-up: JIT compilation
        trainer.epoch += 1
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.epochs):
            record = trainer.step.run_epoch(trainer)
            trainer.epoch += 1
        if torch.device(args.device).type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        per_rank = (len(data.train) // world_size() // args.batch_size) * args.batch_size
        if rank() == 0:
            result = {"procs": world_size(), "seconds": seconds,
                      "images": per_rank * world_size() * args.epochs,
                      "images_per_sec": per_rank * world_size() * args.epochs / seconds,
                      "last_train_loss": record["train_loss"]}
            Path(args.result).write_text(json.dumps(result))
    finally:
        shutdown()


def launch(procs: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               str(procs), __file__, "--worker", "--result", str(result), "--data-dir", str(args.data_dir),
               "--device", args.device, "--threads", str(args.threads), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size)] + (["--limit", str(args.limit)] if args.limit else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"torchrun with {procs} processes failed:\n{done.stderr[-3000:]}")
        return json.loads(result.read_text())


def main(args: argparse.Namespace) -> dict:
    runs = {}
    for _ in range(args.rounds):  # interleaved rounds: the machine's load drifts
        for procs in args.procs:
            runs.setdefault(procs, []).append(launch(procs, args))
    best = {p: max(r["images_per_sec"] for r in rs) for p, rs in runs.items()}
    base = best[min(best)]
    return {
        "benchmark": "scaling", "model": "Burda VAE 784-200-200-50, Trace_ELBO (compiled)",
        "dataset": "mnist", "binarization": "dynamic", "device": args.device,
        "threads_per_process": args.threads, "batch_size_per_process": args.batch_size,
        "timed_epochs": args.epochs, "rounds": args.rounds,
        "images_per_sec": {str(p): v for p, v in best.items()},
        "scaling_efficiency": {str(p): v / (p / min(best) * base) for p, v in best.items()},
        "runs": {str(p): rs for p, rs in runs.items()},
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--procs", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="threads per process")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs after one warm-up epoch")
    p.add_argument("--batch-size", type=int, default=100, help="per process")
    p.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best is kept")
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N images")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.worker:
        worker(arguments)
    else:
        print(json.dumps(main(arguments)))
