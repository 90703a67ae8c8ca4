"""
Benchmark: how close to the FLOP floor can an importance-sampled log-likelihood get on this
machine? Hand-written routes for one IS-K evaluation of Burda et al.'s VAE (784-200-200-50
tanh, Bernoulli pixels), timed in one process against the floor, each on the same draws:

- ``floor``: the decoder's matrix products alone (``torch.mm`` into preallocated outputs, no
  bias, activation or likelihood), the 1x of ``benchmarks/iwae_eval.py``'s target;
- ``eager_bce``: the chunk written in torch ops with ``binary_cross_entropy_with_logits``
  (``iwae_eval.py``'s hand-written estimator);
- ``eager_blocked``: the same with pyrogen's evaluation form of the Bernoulli log-density
  (one logarithm per block of 16 pixels, :func:`pyrogen.models.likelihoods._bernoulli_log_prob_sum`);
- ``inductor``: the whole chunk compiled by ``torch.compile`` (what ``log_likelihood(...,
  backend="inductor")`` compiles from Pyro's traces);
- ``hybrid``: the products and tanh in eager torch (``addmm``, in-place ``tanh_``), and only the
  log-density and log-sum-exp compiled: inductor's vectorised tanh is many times slower than
  eager ``torch.tanh`` on this CPU, while its fused log-density reads the decoder output once.

Every route's estimate must equal ``eager_bce``'s to float rounding (``max_abs_difference``).
Compilation is done before timing. Prints one JSON object: each route's seconds over the floor,
and (``pointwise_ns_per_element``) the nanoseconds per element of ``exp``, ``log1p`` and
``tanh`` on one chunk's decoder output, eager against compiled by inductor: the reason the
compiled routes stop where they do.

Usage::

    python benchmarks/is_floor_routes.py --threads 1 --chunk-size 10
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from pyrogen.models.likelihoods import _bernoulli_log_prob_sum

IMAGES, PIXELS, HIDDEN, LATENT = 100, 784, 200, 50


def layer(generator: torch.Generator, fan_in: int, fan_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.randn(fan_out, fan_in, generator=generator) / fan_in ** 0.5,
            0.1 * torch.randn(fan_out, generator=generator))


def _seconds_per_call(f, values: torch.Tensor, calls: int = 50) -> float:
    f(values)
    start = time.perf_counter()
    for _ in range(calls):
        f(values)
    return (time.perf_counter() - start) / calls


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(args.seed)
    enc = [layer(g, PIXELS, HIDDEN), layer(g, HIDDEN, HIDDEN), layer(g, HIDDEN, LATENT),
           layer(g, HIDDEN, LATENT)]
    dec = [layer(g, LATENT, HIDDEN), layer(g, HIDDEN, HIDDEN), layer(g, HIDDEN, PIXELS)]
    x = (torch.rand(IMAGES, PIXELS, generator=g) < 0.2).float()
    c, k = args.chunk_size, args.iw_samples

    def encode() -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(F.linear(x, *enc[0]))
        h = torch.tanh(F.linear(h, *enc[1]))
        return F.linear(h, *enc[2]), F.linear(h, *enc[3]).exp()

    def eager(loc, scale, eps, blocked: bool) -> torch.Tensor:
        z = loc + scale * eps
        h = torch.tanh(F.linear(z, *dec[0]))
        h = torch.tanh(F.linear(h, *dec[1]))
        logits = F.linear(h, *dec[2])
        if blocked:
            log_px = _bernoulli_log_prob_sum(logits, x, 1)
        else:
            log_px = -F.binary_cross_entropy_with_logits(
                logits, x.expand_as(logits), reduction="none").sum(-1)
        log_w = log_px - 0.5 * (z * z).sum(-1) + 0.5 * (eps * eps).sum(-1) + scale.log().sum(-1)
        return torch.logsumexp(log_w, 0)

    def epilogue(products, bias, z, eps, log_scale):
        logits = products.view(z.shape[0], z.shape[1], -1) + bias
        log_px = _bernoulli_log_prob_sum(logits, x, 1)
        log_w = log_px - 0.5 * (z * z).sum(-1) + 0.5 * (eps * eps).sum(-1) + log_scale
        return torch.logsumexp(log_w, 0)

    compiled_chunk = torch.compile(lambda loc, scale, eps: eager(loc, scale, eps, True))
    compiled_epilogue = torch.compile(epilogue)

    def hybrid(loc, scale, eps) -> torch.Tensor:
        rows = eps.shape[0] * eps.shape[1]
        z = torch.addcmul(loc, scale, eps)
        h = torch.addmm(dec[0][1], z.view(rows, LATENT), dec[0][0].t()).tanh_()
        h = torch.addmm(dec[1][1], h, dec[1][0].t()).tanh_()
        return compiled_epilogue(torch.mm(h, dec[2][0].t()), dec[2][1], z, eps,
                                 scale.log().sum(-1))

    routes = {"eager_bce": lambda *a: eager(*a, False), "eager_blocked": lambda *a: eager(*a, True),
              "inductor": compiled_chunk, "hybrid": hybrid}

    @torch.no_grad()
    def estimate(chunk) -> torch.Tensor:
        loc, scale = encode()
        draws = torch.Generator().manual_seed(args.seed + 1)
        parts = [chunk(loc, scale, torch.randn(c, IMAGES, LATENT, generator=draws))
                 for _ in range(k // c)]
        return torch.logsumexp(torch.stack(parts), 0) - math.log(k // c * c)

    shapes = [(LATENT, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, PIXELS)]
    inputs = [torch.randn(c * IMAGES, i) for i, _ in shapes]
    outputs = [torch.empty(c * IMAGES, o) for _, o in shapes]
    weights = [w.t() for w, _ in dec]

    def floor() -> None:
        for _ in range(k // c):
            for a, w, out in zip(inputs, weights, outputs):
                torch.mm(a, w, out=out)

    reference = estimate(routes["eager_bce"])
    differences = {name: float((estimate(f) - reference).abs().max()) for name, f in routes.items()}
    best: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, against drift on a shared machine
        for name, f in [("floor", floor)] + [(n, (lambda r=r: estimate(r))) for n, r in routes.items()]:
            start = time.perf_counter()
            f()
            best[name] = min(best.get(name, math.inf), time.perf_counter() - start)
    flops = 2 * IMAGES * (k // c * c) * sum(i * o for i, o in shapes)
    pointwise = {}
    for name, op in [("exp", torch.exp), ("log1p", torch.log1p), ("tanh", torch.tanh)]:
        values, compiled = torch.randn(c * IMAGES, PIXELS), torch.compile(op)
        compiled(values)
        pointwise[name] = {label: min(_seconds_per_call(f, values) for _ in range(args.repeats))
                           / values.numel() * 1e9
                           for label, f in [("eager", op), ("inductor", compiled)]}
    return {
        "benchmark": "is_floor_routes",
        "over_floor": {name: best[name] / best["floor"] for name in routes},
        "floor_sec": best["floor"],
        "matmul_flops_per_sec": flops / best["floor"],
        "seconds": best,
        "max_abs_difference": differences,
        "pointwise_ns_per_element": pointwise,
        "iw_samples": k // c * c,
        "chunk_size": c,
        "images": IMAGES,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iw-samples", type=int, default=1000)
    p.add_argument("--chunk-size", type=int, default=10, help="particles per chunk")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    print(json.dumps(main(p.parse_args())))
