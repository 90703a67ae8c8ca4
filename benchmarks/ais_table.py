"""
Benchmark: one log-likelihood for every model (the paper's point: VAE, GAN, AAE and ALI are
one family of variational models). Each trained run's decoder is scored on the same MNIST test
points, in grey levels, under the Gaussian observation model of Wu et al. (2017),
:math:`p(x \\mid z) = N(\\bar x(z), \\sigma^2 I)` with :math:`\\sigma` the best of pyrogen's
grid by a short AIS on ``--sigma-points`` validation points (the same rule for every model), by annealed
importance sampling (``pyrogen.infer.ais``: a stochastic lower bound with its standard error),
with the gap of bidirectional Monte Carlo on points simulated from each model (how far the
schedule is from converged), beside the run's sample-quality scores.

Usage (run folders of ``pyrogen train FAMILY --dataset mnist``, the classifier run that scores
samples)::

    python benchmarks/ais_table.py --data-dir DATA/mnist --features CLF \\
        --run vae=RUNS/vae --run iwae=RUNS/iwae --run gan=RUNS/gan ... \\
        --points 100 --steps 300 --chains 8 --bdmc 20 --out benchmarks/results/ais_table_mnist.json

Without ``--features`` the sample-quality scores (and a VAE's own IS NLL) are read from each
run's ``evaluation.json``, written by an earlier ``pyrogen evaluate RUN --features CLF``. An
hour of AIS is best split over the cores: one invocation per core, each with ``--out``, then
``--merge A.json B.json ... --out TABLE.json`` combines them (their settings must agree). The
last line printed is one JSON object: the settings and one row per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pyrogen.data import Split, load_dataset
from pyrogen.families import get
from pyrogen.families.base import Request
from pyrogen.families.runs import load_classifier, load_run

#: the sample-quality figures the table shows
QUALITY_KEYS = ("classes_covered", "min_class_share", "precision", "recall", "fd_over_floor")


def _grey(split: Split) -> Split:
    return Split(split.images, split.labels, "none")


def _quality(run: Path, args: argparse.Namespace) -> dict:
    """The run's sample quality: computed with ``--features``, else read from the
    ``RUN/evaluation.json`` of an earlier ``pyrogen evaluate RUN --features CLF``; and the
    run's own importance-sampled NLL where it has a likelihood of images."""
    if args.features:
        from pyrogen.families.quality import quality

        model, config = load_run(run, "best", "cpu")
        data = load_dataset("mnist", args.data_dir, binarize=config.binarize,
                            validation_size=config.validation_size, seed=config.seed)
        request = Request(features=args.features, num_samples=1000,
                          classifier=lambda: load_classifier(args.features, data, "cpu"))
        torch.manual_seed(config.seed)
        found = quality(request, model, data, data.test)
    else:
        path = run / "evaluation.json"
        found = json.loads(path.read_text()) if path.exists() else {}
    row = {}
    if "frechet_distance" in found:
        found["fd_over_floor"] = round(found["frechet_distance"] / found["frechet_floor"], 2)
        row = {k: found[k] for k in QUALITY_KEYS if k in found}
    if "nll" in found and not found.get("feature_space"):
        row["is_nll"] = found["nll"]
    return row


def score(name: str, run: Path, args: argparse.Namespace) -> dict:
    model, config = load_run(run, "best", "cpu")
    family = get(config.model)
    data = load_dataset("mnist", args.data_dir, binarize="none",
                        validation_size=config.validation_size, seed=config.seed)
    data.train, data.valid, data.test = _grey(data.train), _grey(data.valid), _grey(data.test).head(args.points)
    request = Request(ais=args.steps, ais_chains=args.chains, ais_observation="gaussian",
                      bdmc=args.bdmc or None, batch_size=args.batch_size, sigma_points=args.sigma_points)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    found = family.evaluate_ais(model, config, data, data.test, request)
    row = {"model": name, "family": config.model,
           "log_likelihood": found["log_likelihood"], "stderr": found["stderr"], "sigma": found["sigma"],
           "sigma_scores": found["sigma_scores"], "accept_rate": found["accept_rate"],
           **{f"bdmc_{k}": found["bdmc"][k] if "bdmc" in found else None for k in ("gap", "lower", "upper")},
           "seconds": round(time.perf_counter() - start, 1)}
    row.update(_quality(run, args))
    return row


#: the settings every merged result must share
SHARED = ("data", "observation", "steps", "chains", "schedule", "bdmc_points")


def merge(paths: list[Path]) -> dict:
    """One table from the results of several invocations (e.g. one per core), which must share
    their settings; a model scored twice keeps its later row."""
    results = [json.loads(p.read_text()) for p in paths]
    for other in results[1:]:
        differ = [k for k in SHARED if other.get(k) != results[0].get(k)]
        if differ:
            raise SystemExit(f"--merge: the results differ in {', '.join(differ)}")
    rows = {row["model"]: row for result in results for row in result["rows"]}
    return {**{k: v for k, v in results[0].items() if k != "rows"}, "rows": list(rows.values())}


def main(args: argparse.Namespace) -> dict:
    if args.merge:
        return merge(args.merge)
    if not args.run or not args.data_dir:
        raise SystemExit("give --data-dir and --run NAME=RUN (or --merge RESULTS)")
    torch.set_num_threads(args.threads)
    rows = []
    for item in args.run:
        name, _, path = item.partition("=")
        row = score(name, Path(path), args)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {"benchmark": "ais_table", "data": f"MNIST test, first {args.points} points, grey levels",
            "observation": "N(x(z), sigma^2 I), sigma the best of (0.025, 0.05, 0.1, 0.2, 0.4) by AIS "
                           f"(a tenth of the schedule, 4 chains) on {args.sigma_points} validation points",
            "steps": args.steps, "chains": args.chains, "schedule": "sigmoid",
            "bdmc_points": args.bdmc, "threads": args.threads, "rows": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="the MNIST files")
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN",
                        help="a run folder to score, under a name for the table (repeat)")
    parser.add_argument("--features", type=Path, default=None,
                        help="classifier run that scores the samples (default: read RUN/evaluation.json)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="RESULT",
                        help="combine the results of earlier invocations into one table")
    parser.add_argument("--points", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--bdmc", type=int, default=20, help="simulated points for BDMC (0: none)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--sigma-points", type=int, default=100,
                        help="validation points that choose sigma (pyrogen evaluate's: 100)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    arguments = parser.parse_args()
    result = main(arguments)
    if arguments.out:
        arguments.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
