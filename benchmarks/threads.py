"""
Benchmark: how many torch threads a training run should use on CPU.

Three models at pyrogen's own defaults (``pyrogen train FAMILY --dataset D``'s network, batch
size and step) are trained for timed epochs on synthetic images of their data set's shape, each
in a fresh process, at 1, 2 and all of the machine's cores as torch threads, twice: on the
machine as found (its load average is recorded: idle, or shared with whatever else runs), and
with every core made busy by another process (one single-threaded matrix-product
loop per core, as on a shared machine or beside a second run). The figure is images per second
of training, the median of ``--rounds`` epochs after a warm-up epoch; the ratios compare each
thread count with one thread in the same condition of the same run.

Usage::

    python benchmarks/threads.py                    # about 3 minutes on 2 cores
    python benchmarks/threads.py --rounds 5 --scale 2

The last line printed is one JSON object; ``benchmarks/results/threads.json`` holds the last
result, and ``pyrogen.train.config.default_threads`` the default chosen from it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

#: (name, family, data set of the defaults, image shape, training images per epoch)
MODELS = (("digits-vae", "vae", "digits", (1, 8, 8), 20000),
          ("mnist-vae", "vae", "mnist", (1, 28, 28), 10000),
          ("mnist-gan", "gan", "mnist", (1, 28, 28), 640))


def child(name: str, threads: int, scale: float, rounds: int) -> None:
    """Train one model at its defaults with ``threads`` torch threads; print images/second."""
    import pyro
    import torch

    from pyrogen.data import DataSplits, Split
    from pyrogen.families import get
    from pyrogen.train import TrainConfig, Trainer

    torch.set_num_threads(threads)
    _, family_name, dataset, shape, images = next(m for m in MODELS if m[0] == name)
    images = max(200, int(images * scale))
    family = get(family_name)
    settings = family.defaults(dataset)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(images, *shape, generator=g)
    y = torch.randint(0, 10, (images,), generator=g)
    options = dict(settings["model"])
    binarize = family.default_binarize(dataset, options)
    if binarize == "static":
        x = torch.bernoulli(x, generator=g)
    split = Split(x, y, binarize)
    small = Split(x[:100], y[:100], binarize)
    data = DataSplits(dataset, split, small, small, binarize, shape, 10)
    family.complete(options, data)
    pyro.set_rng_seed(0)
    model = family.build(options, data)
    train = {**settings["train"], "device": "cpu", "epochs": rounds + 1, "model": family.name,
             "binarize": binarize, "threads": threads}
    config = TrainConfig(**train)
    trainer = Trainer(model, data, config, None, step=family.step(config, data), progress=False)
    trainer.threads = trainer.set_threads()
    speeds = []
    for epoch in range(rounds + 1):
        start = time.perf_counter()
        trainer.step.run_epoch(trainer)
        trainer.epoch += 1
        if epoch:  # the first epoch compiles and warms the caches
            steps = len(data.train) // config.batch_size
            speeds.append(steps * config.batch_size / (time.perf_counter() - start))
    print(json.dumps({"images_per_second": statistics.median(speeds),
                      "threads": torch.get_num_threads(), "batch_size": config.batch_size}))


def _loaders(count: int) -> list[subprocess.Popen]:
    code = ("import torch; torch.set_num_threads(1); a = torch.randn(256, 256)\n"
            "while True: a = torch.tanh(a @ a)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]


def main(args: argparse.Namespace) -> dict:
    cores = os.cpu_count() or 1
    counts = sorted({1, min(2, cores), cores})
    results: dict = {"cores": cores, "thread_counts": counts, "scale": args.scale,
                     "rounds": args.rounds, "conditions": {}}
    for condition in ("as found", "loaded"):
        loaders = _loaders(cores) if condition == "loaded" else []
        try:
            time.sleep(1 if loaders else 0)
            table = {"load_average_1min_before": round(os.getloadavg()[0], 2)}
            for name, *_ in MODELS:
                row = {}
                for n in counts:
                    env = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
                    done = subprocess.run([sys.executable, __file__, "--child", name, str(n),
                                           "--scale", str(args.scale), "--rounds", str(args.rounds)],
                                          env=env, capture_output=True, text=True, check=True)
                    row[n] = json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"]
                table[name] = {"images_per_second": {str(n): round(v, 1) for n, v in row.items()},
                               "ratio_vs_1_thread": {str(n): round(v / row[1], 3) for n, v in row.items()}}
                print(condition, name, table[name], file=sys.stderr, flush=True)
            results["conditions"][condition] = table
        finally:
            for p in loaders:
                p.kill()
                p.wait()
    return results


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        p = argparse.ArgumentParser()
        p.add_argument("--child", nargs=2)
        p.add_argument("--scale", type=float)
        p.add_argument("--rounds", type=int)
        a = p.parse_args()
        child(a.child[0], int(a.child[1]), a.scale, a.rounds)
    else:
        p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
        p.add_argument("--scale", type=float, default=1.0,
                       help="multiply each model's training images per epoch (20000, 10000, 640)")
        p.add_argument("--rounds", type=int, default=3, help="timed epochs per setting")
        print(json.dumps(main(p.parse_args())))
