"""
Benchmark: importance-sampled test log-likelihood (IS-K, Burda et al. 2016) with
``pyrogen.infer.log_likelihood`` against a hand-written vectorised estimator of
the same network, in the same run.

The network is the VAE of Burda et al. (784-200-200-50 tanh, Bernoulli
pixels): freshly initialised (the weights do not change the cost), or the
model of a trained pyrogen run folder (``--run``, its ``last`` checkpoint;
then the estimates are the real test NLL). The data are the 10,000 MNIST test
images, one fixed Bernoulli draw (``data.test.batches(1000, seed=0)``).

The hand-written estimator runs the encoder once per batch of
``--batch-size`` images and the decoder on ``(K_chunk, batch, 50)`` latents,
writes ``log p(x|z) + log p(z) - log q(z|x)`` with torch operations and takes
the log-sum-exp over K, chunked over K into the same chunks as pyrogen's
(``--chunk-size``, default pyrogen's rule: on a CPU, cache-sized chunks).

Every (estimator, K) pair runs in its own subprocess (``--worker``), so each
reports its own peak resident memory; ``--samples-list 500,5000`` shows that
the peak stays flat in K thanks to the chunking.

Both workers seed torch alike, and pyrogen's guide draws ``z = loc + scale *
eps`` from the same random stream as the hand-written ``torch.randn``, so the
two estimators see the same ``eps`` and their estimates agree to float
rounding (``nll_difference``, and the largest per-image difference), a
stricter check than agreement within Monte Carlo error; ``nll_stderr`` is the
standard error of the mean NLL over the test images.

Usage::

    python benchmarks/iwae_eval.py --data-dir ../shared/data/mnist --device cpu
    python benchmarks/iwae_eval.py --data-dir ../shared/data/mnist --device cpu \\
        --run runs/bench-vae-mnist --samples-list 500,5000
    python benchmarks/iwae_eval.py --data-dir ../shared/data/mnist --limit 200 --iw-samples 100

The last line printed is one JSON object; ``ratio_vs_plain`` is the
hand-written estimator's seconds over pyrogen's (>= ~1.0: pyrogen no slower), and
``pyrogen_over_floor`` pyrogen's seconds (with ``--backend``'s compilation, if any) over the
FLOP floor of its decoder work: the
decoder's matrix products for every (image, sample) pair, ``2 N K sum(in x out)`` FLOPs, at
the best rate a third worker measures for plain matrix products of the same shapes (no bias,
activation or likelihood) on this machine, on the rows of pyrogen's chunks or on those of
chunks filling 512 MiB, whichever is faster (target <= 1.5).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from _common import burda_vae, load_mnist, peak_rss_mb
from pyrogen.infer import log_likelihood
from pyrogen.infer.importance import default_chunk
from pyrogen.families import load_run
from pyrogen.train.config import default_device

ESTIMATORS = ("plain", "pyrogen")
MEMORY_BUDGET = 512 * 2**20  # pyrogen's default memory_budget


def chunk_size(batch: int, num_dims: int, given: int | None, device: str = "cpu") -> int:
    """Particles per chunk: ``given``, or what pyrogen's ``log_likelihood`` picks by default."""
    return given or default_chunk(torch.empty(batch, num_dims, device=device), MEMORY_BUDGET)


@torch.no_grad()
def plain_log_likelihood(encoder: nn.Module, decoder: nn.Module, data: torch.Tensor,
                         num_samples: int, batch_size: int, k_chunk: int | None) -> torch.Tensor:
    """
    The IS-K estimate of ``log p(x)`` for every image, written out in torch:
    ``z = loc + scale * eps``, ``log w = log p(x|z) + log p(z) - log q(z|x)``.
    """
    results = []
    for x in data.split(batch_size):
        batch = x.shape[0]
        flat = x.reshape(batch, -1)
        loc, scale = encoder(x)
        latent_dim = loc.shape[-1]
        norm = 0.5 * latent_dim * math.log(2 * math.pi)
        log_scale = scale.log().sum(-1)
        k_step = chunk_size(batch, flat.shape[-1], k_chunk, x.device.type)
        parts, done = [], 0
        while done < num_samples:
            k = min(k_step, num_samples - done)
            eps = torch.randn(k, batch, latent_dim, device=x.device, dtype=loc.dtype)
            z = loc + scale * eps
            logits = decoder(z).reshape(k, batch, -1)
            log_px = -F.binary_cross_entropy_with_logits(
                logits, flat.expand_as(logits), reduction="none").sum(-1)
            log_pz = -0.5 * z.pow(2).sum(-1) - norm
            log_qz = -0.5 * eps.pow(2).sum(-1) - log_scale - norm
            parts.append(torch.logsumexp(log_px + log_pz - log_qz, 0))
            done += k
        results.append((torch.logsumexp(torch.stack(parts), 0) - math.log(num_samples)).cpu())
    return torch.cat(results)


def decoder_shapes(decoder: nn.Module) -> list[tuple[int, int]]:
    """The (in, out) sizes of the decoder's linear layers, in order."""
    return [(m.in_features, m.out_features) for m in decoder.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def matmul_rate(shapes: list[tuple[int, int]], rows: int, device: torch.device,
                seconds: float = 5.0) -> float:
    """FLOP/s of plain matrix products of the decoder's shapes on ``rows`` rows (no bias, no
    activation, no likelihood): the machine's rate for the decoder's work, which sets the floor."""
    weights = [torch.randn(i, o, device=device) for i, o in shapes]
    x = torch.randn(rows, shapes[0][0], device=device)
    flops = 2 * rows * sum(i * o for i, o in shapes)

    def once() -> None:
        h = x
        for w in weights:
            h = h @ w
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    once()
    start, reps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        once()
        reps += 1
    return flops * reps / (time.perf_counter() - start)


def load_network(args: argparse.Namespace) -> nn.Module:
    if args.run is not None:
        vae, _ = load_run(args.run, "last", device=args.device)
        return vae
    return burda_vae(args.seed).to(args.device).eval()


def test_images(args: argparse.Namespace) -> torch.Tensor:
    data = load_mnist(args.data_dir, args.limit, args.seed)
    # one fixed Bernoulli draw of the test set, as in benchmarks/vae_mnist.py
    return torch.cat([b.x for b in data.test.batches(1000, seed=args.seed)]).to(args.device)


def worker(args: argparse.Namespace) -> dict:
    """Run one estimator at one K in this process; save the per-image estimates."""
    if args.threads:
        torch.set_num_threads(args.threads)
    vae = load_network(args)
    x = test_images(args)
    if args.worker == "floor":
        shapes = decoder_shapes(vae.model.decoder)
        batch = min(args.batch_size, len(x))
        rows = chunk_size(batch, x[0].numel(), args.chunk_size, x.device.type) * batch
        # the machine's best rate for these shapes: on the chunk's rows, or on the rows of
        # chunks that fill the 512 MiB budget, whichever is faster (a floor no chunking beats)
        big = max(1, min(args.iw_samples, MEMORY_BUDGET // (16 * batch * x[0].numel()))) * batch
        rate = max(matmul_rate(shapes, r, torch.device(args.device)) for r in {rows, big})
        flops = 2 * len(x) * args.iw_samples * sum(i * o for i, o in shapes)
        return {"estimator": "floor", "iw_samples": args.iw_samples, "decoder_flops": flops,
                "matmul_flops_per_sec": rate, "sec": flops / rate, "rows": rows,
                "shapes": shapes, "threads": torch.get_num_threads()}
    rss_before = peak_rss_mb()
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    if args.worker == "pyrogen":
        ll = log_likelihood(vae.model, vae.guide, x, num_samples=args.iw_samples,
                            batch_size=args.batch_size, chunk_size=args.chunk_size,
                            backend=args.backend)
    else:
        ll = plain_log_likelihood(vae.guide.encoder, vae.model.decoder, x, args.iw_samples,
                                  args.batch_size, args.chunk_size)
    sec = time.perf_counter() - start  # both return CPU tensors, so the device is done
    if args.worker_out is not None:
        torch.save(ll, args.worker_out)
    return {
        "estimator": args.worker,
        "iw_samples": args.iw_samples,
        "sec": sec,
        "nll": float(-ll.mean()),
        "nll_stderr": float(ll.std() / len(ll) ** 0.5) if len(ll) > 1 else float("nan"),
        "test_points": len(ll),
        "chunk_size": chunk_size(min(args.batch_size, len(x)), x[0].numel(), args.chunk_size, x.device.type),
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
        "threads": torch.get_num_threads(),
    }


def run_worker(args: argparse.Namespace, estimator: str, num_samples: int, out: Path) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", estimator,
               "--worker-out", str(out), "--data-dir", str(args.data_dir),
               "--device", args.device, "--iw-samples", str(num_samples),
               "--batch-size", str(args.batch_size), "--seed", str(args.seed)]
    for flag, value in (("--limit", args.limit), ("--run", args.run), ("--backend", args.backend),
                        ("--chunk-size", args.chunk_size), ("--threads", args.threads)):
        if value is not None:
            command += [flag, str(value)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise RuntimeError(f"worker {estimator} K={num_samples} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> dict:
    samples = args.samples_list or [args.iw_samples]
    per_k = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, k in enumerate(samples):
            # alternate which estimator goes first, against drift in a noisy machine
            order = ESTIMATORS if i % 2 == 0 else tuple(reversed(ESTIMATORS))
            runs, lls = {}, {}
            for estimator in order:
                out = Path(tmp) / f"{estimator}-{k}.pt"
                runs[estimator] = run_worker(args, estimator, k, out)
                lls[estimator] = torch.load(out)
                print(json.dumps(runs[estimator]), flush=True)
            diff = lls["pyrogen"] - lls["plain"]  # same draws: zero up to float rounding
            p, q = runs["pyrogen"], runs["plain"]
            floor = run_worker(args, "floor", k, Path(tmp) / f"floor-{k}.pt")
            print(json.dumps(floor), flush=True)
            per_k.append({
                "iw_samples": k,
                "ratio_vs_plain": q["sec"] / p["sec"],
                "floor_sec": floor["sec"],
                "pyrogen_over_floor": p["sec"] / floor["sec"],
                "plain_over_floor": q["sec"] / floor["sec"],
                "matmul_flops_per_sec": floor["matmul_flops_per_sec"],
                "pyrogen_sec": p["sec"],
                "plain_sec": q["sec"],
                "pyrogen_nll": p["nll"],
                "plain_nll": q["nll"],
                "nll_stderr": p["nll_stderr"],
                "nll_difference": p["nll"] - q["nll"],
                "nll_difference_stderr": float(diff.std() / len(diff) ** 0.5) if len(diff) > 1
                else float("nan"),
                "max_abs_difference": float(diff.abs().max()),
                "pyrogen_peak_rss_mb": p["peak_rss_mb"],
                "plain_peak_rss_mb": q["peak_rss_mb"],
                "rss_before_mb": p["rss_before_mb"],
                "chunk_size": p["chunk_size"],
                "test_points": p["test_points"],
            })
            threads = p["threads"]
    main_k = next((r for r in per_k if r["iw_samples"] == args.iw_samples), per_k[-1])
    return {
        "benchmark": "iwae_eval",
        **{key: main_k[key] for key in ("iw_samples", "ratio_vs_plain", "pyrogen_over_floor",
                                        "plain_over_floor", "floor_sec", "pyrogen_sec", "plain_sec",
                                        "pyrogen_nll", "plain_nll", "nll_stderr", "nll_difference",
                                        "nll_difference_stderr", "test_points", "chunk_size")},
        "peak_rss_mb": max(max(r["pyrogen_peak_rss_mb"], r["plain_peak_rss_mb"]) for r in per_k),
        "peak_rss_mb_by_k": {str(r["iw_samples"]): {"pyrogen": r["pyrogen_peak_rss_mb"],
                                                    "plain": r["plain_peak_rss_mb"]}
                             for r in per_k},
        "by_k": per_k,
        "network": f"run {args.run} (last checkpoint)" if args.run
        else f"fresh burda vae (seed {args.seed})",
        "binarization": "dynamic, one fixed draw of the test set",
        "batch_size": args.batch_size,
        "backend": args.backend,
        "device": args.device,
        "threads": threads,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--iw-samples", type=int, default=5000, help="K, importance samples per image")
    p.add_argument("--samples-list", type=lambda s: [int(v) for v in s.split(",")], default=None,
                   help="comma-separated Ks to run in turn, e.g. 500,5000 (default: --iw-samples)")
    p.add_argument("--batch-size", type=int, default=100, help="test images per batch")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="particles per chunk (default: pyrogen's rule, default_chunk)")
    p.add_argument("--run", type=Path, default=None, help="a pyrogen run folder to evaluate")
    p.add_argument("--backend", choices=("eager", "export", "inductor"), default="eager",
                   help="pyrogen's log_likelihood backend (the time includes any compilation)")
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N test points")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads in the workers")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=ESTIMATORS + ("floor",), default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    print(json.dumps(worker(args) if args.worker else main(args)))
