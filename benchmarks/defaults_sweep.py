"""
Benchmark: choose a family's defaults by measurement. Each setting is trained through the
command line (``pyrogen train FAMILY --dataset D OPTIONS``), timed, and scored by
``pyrogen evaluate RUN --features CLASSIFIER_RUN`` (and the importance-sampled likelihood
where the family has one): the classes the samples cover and the rarest class's share, the
class histogram's KL to the data's, precision and recall, and the Frechet distance over its
real-vs-real floor.

Usage::

    python benchmarks/defaults_sweep.py --family gan --dataset digits --features runs/clf \\
        --setting "" --setting "--epochs 60" --setting "--epochs 60 --lr 2e-4" --out sweeps/gan

Each ``--setting`` is a string of ``pyrogen train`` options ("" is the bare command). One
JSON line per setting is printed (and appended to ``OUT/results.jsonl``); the last line is
one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from pyrogen.families import get

SCORES = ("classes_covered", "min_class_share", "rarest_class", "class_kl", "precision", "recall",
          "frechet_distance", "frechet_floor", "nll", "accuracy", "linear_probe_accuracy",
          "reconstruction_ratio", "conditional_accuracy", "conditional_accuracy_min")


def _pyrogen(*argv: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-m", "pyrogen", *argv], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pyrogen {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_setting(args: argparse.Namespace, index: int, setting: str) -> dict:
    run_dir = args.out / f"run{index}"
    options = shlex.split(setting)
    start = time.perf_counter()
    summary = _pyrogen("train", args.family, "--dataset", args.dataset, *options,
                       *(["--data-dir", str(args.data_dir)] if args.data_dir else []),
                       "--device", args.device, "--no-progress", "--out", str(run_dir),
                       threads=args.threads)
    minutes = (time.perf_counter() - start) / 60
    evaluate = ["evaluate", str(run_dir), "--device", args.device]
    if get(args.family).importance_sampled:  # gan, aae, ali and the classifier have no likelihood
        evaluate += ["--iw-samples", str(args.iw_samples)]
    if args.family != "classifier":
        evaluate += ["--features", str(args.features), "--num-samples", str(args.num_samples)]
    scores = _pyrogen(*evaluate, threads=args.threads)
    row = {"family": args.family, "dataset": args.dataset, "setting": setting,
           "minutes": round(minutes, 2), "epochs": summary.get("epochs"),
           **{k: scores[k] for k in SCORES if k in scores}}
    if "frechet_distance" in row:
        row["fd_over_floor"] = row["frechet_distance"] / row["frechet_floor"]
    return row


def main(args: argparse.Namespace) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, setting in enumerate(args.setting):
        row = run_setting(args, index, setting)
        rows.append(row)
        print(json.dumps(row), flush=True)
        with open(args.out / "results.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    return {"benchmark": "defaults_sweep", "family": args.family, "dataset": args.dataset,
            "threads": args.threads, "rows": rows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", required=True)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--features", type=Path, required=True, help="a `pyrogen train classifier` run")
    p.add_argument("--setting", action="append", default=None,
                   help="pyrogen train options of one setting (repeat; default: the bare command)")
    p.add_argument("--num-samples", type=int, default=1000)
    p.add_argument("--iw-samples", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.setting = args.setting or [""]
    return args


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
