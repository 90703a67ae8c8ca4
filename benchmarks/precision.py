"""
Benchmark: what mixed precision costs in accuracy and gains (or loses) in speed. The same
command (``pyrogen train FAMILY --dataset D OPTIONS``, same seed) is trained at each
``--precision`` and evaluated in float32 (``pyrogen evaluate RUN --iw-samples K``): the final
validation loss, the ELBO and the importance-sampled NLL of the test split, and the training
seconds, each precision against float32's in the same run.

Usage::

    python benchmarks/precision.py --family vae --dataset digits --precisions 32,bf16
    python benchmarks/precision.py --family vae --dataset mnist --data-dir DATA/mnist \\
        --options "--epochs 10" --precisions 32,bf16

The last line printed is one JSON object: per precision the figures, and ``nll_change`` (nats
per point, positive: worse than float32) and ``time_ratio`` (float32's training seconds over
this precision's: above 1, faster).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def _pyrogen(*argv: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-m", "pyrogen", *argv], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pyrogen {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in args.precisions:
            run = Path(tmp) / f"precision-{precision}"
            data = ["--data-dir", str(args.data_dir)] if args.data_dir else []
            summary = _pyrogen("train", args.family, "--dataset", args.dataset, *data,
                               *shlex.split(args.options), "--precision", precision, "--device",
                               args.device, "--no-progress", "--out", str(run), threads=args.threads)
            seconds = sum(json.loads(line)["sec"] for line in (run / "metrics.jsonl").open())
            scores = _pyrogen("evaluate", str(run), "--device", args.device, "--iw-samples",
                              str(args.iw_samples), threads=args.threads)
            rows[precision] = {"valid_loss": summary.get("valid_loss"), "elbo": scores["elbo"],
                               "nll": scores["nll"], "train_seconds": seconds}
            print(json.dumps({precision: rows[precision]}), flush=True)
    base = rows.get("32")
    if base is not None:
        for row in rows.values():
            row["nll_change"] = row["nll"] - base["nll"]
            row["elbo_change"] = base["elbo"] - row["elbo"]
            row["time_ratio"] = base["train_seconds"] / row["train_seconds"]
    return {"benchmark": "precision", "family": args.family, "dataset": args.dataset,
            "options": args.options, "iw_samples": args.iw_samples, "device": args.device,
            "threads": args.threads, "results": rows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default="vae")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--options", default="", help="further pyrogen train options, one string")
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["32", "bf16"])
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(main(parse_args())))
