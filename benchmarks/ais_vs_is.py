"""
Benchmark: annealed importance sampling against importance sampling on a trained VAE, and AIS's
convergence in the number of intermediate distributions.

Both estimators give stochastic lower bounds on ``log p(x)`` under the model's own likelihood.
On the first ``--points`` test images of the run (its own binarisation: one fixed draw), IS with
``--iw-samples`` samples from the encoder (``pyrogen.infer.log_likelihood``) and AIS with each
schedule of ``--steps`` (``pyrogen.infer.ais``, ``--chains`` chains, HMC with 10 leapfrog steps);
per schedule the mean estimate, the paired difference AIS - IS per image with its standard error
over images, the chains' standard error, the acceptance rate and the seconds. With ``--plot``, the
convergence picture: AIS's mean against the steps, IS's as a line.

Usage::

    python benchmarks/ais_vs_is.py --run RUNS/vae-mnist --data-dir DATA/mnist \\
        --points 100 --iw-samples 5000 --steps 10,30,100,300,1000 --chains 16 \\
        --out benchmarks/results/ais_vs_is_mnist.json --plot docs/_static/ais_vs_is_mnist.png

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from pyrogen.data import load_dataset
from pyrogen.families.runs import load_run
from pyrogen.infer import ais, log_likelihood


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model, config = load_run(args.run, "best", "cpu")
    data = load_dataset(config.dataset, args.data_dir, binarize=config.binarize,
                        validation_size=config.validation_size, seed=config.seed)
    batches = [b for b in data.test.head(args.points).batches(args.batch_size, seed=config.seed)]
    inputs = [model.inputs(b) for b in batches]
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    is_values = log_likelihood(model.model, model.guide, inputs, num_samples=args.iw_samples)
    is_seconds = time.perf_counter() - start
    rows = []
    for steps in args.steps:
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        found = [ais(model.model, *a, num_steps=steps, num_chains=args.chains) for a in inputs]
        values = torch.cat([f.log_likelihood for f in found])
        chains_se = torch.cat([f.stderr for f in found])
        diff = values - is_values
        rows.append({"steps": steps, "log_likelihood": float(values.mean()),
                     "minus_is": float(diff.mean()),
                     "minus_is_stderr": float(diff.std() / math.sqrt(len(diff))),
                     "chains_stderr": float(chains_se.pow(2).sum().sqrt() / len(chains_se)),
                     "accept_rate": float(torch.cat([f.accept_rate for f in found]).mean()),
                     "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "ais_vs_is", "run": str(args.run.name), "family": config.model,
              "dataset": config.dataset, "points": len(is_values), "binarize": data.binarize,
              "is": {"iw_samples": args.iw_samples, "log_likelihood": float(is_values.mean()),
                     "seconds": round(is_seconds, 1)},
              "ais": {"chains": args.chains, "schedule": "sigmoid", "leapfrog_steps": 10,
                      "rows": rows}, "threads": args.threads}
    if args.plot:
        _plot(result, args.plot)
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["ais"]["rows"]
    steps = [r["steps"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
    ax.errorbar(steps, [-r["log_likelihood"] for r in rows],
                yerr=[2 * r["minus_is_stderr"] for r in rows], marker="o", capsize=3,
                label=f"AIS, {result['ais']['chains']} chains")
    ax.axhline(-result["is"]["log_likelihood"], color="k", ls="--",
               label=f"IS-{result['is']['iw_samples']} (encoder proposal)")
    ax.set_xscale("log")
    ax.set_xlabel("intermediate distributions")
    ax.set_ylabel("test NLL (nats), lower is tighter")
    ax.set_title(f"{result['family']} on {result['dataset']}, {result['points']} test images", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a pyrogen vae (or cvae) run folder")
    parser.add_argument("--data-dir", default=None, help="override the run's data folder")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[10, 30, 100, 300, 1000])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    arguments = parser.parse_args()
    output = main(arguments)
    if arguments.out:
        arguments.out.write_text(json.dumps(output, indent=2) + "\n")
    print(json.dumps(output))
