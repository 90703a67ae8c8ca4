"""
Annealed importance sampling against an exact likelihood
========================================================

Probabilistic PCA, :math:`z \\sim N(0, I_d)`, :math:`x \\mid z \\sim N(Wz + \\mu, \\sigma^2 I_D)`,
has the marginal likelihood :math:`x \\sim N(\\mu, WW^\\top + \\sigma^2 I_D)` in closed form, so
it shows what :func:`pyrogen.infer.ais` and :func:`pyrogen.infer.bdmc` do: as the number of
intermediate distributions grows, the AIS lower bound rises to the exact value, and the
bidirectional (BDMC) upper bound comes down to meet it. The picture plots both, in nats per
point from the exact value, against the schedule's length.

    python examples/ais_ppca.py --out runs/ais-ppca
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyro
import pyro.distributions as dist
import torch

from pyrogen.infer import ais, bdmc


def ppca(data_dim: int, latent_dim: int, sigma: float, seed: int, device: str):
    """A PPCA model (a Pyro model of ``x``) and its exact marginal distribution, on ``device``."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(data_dim, latent_dim, generator=g).to(device)
    mu = torch.randn(data_dim, generator=g).to(device)

    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(latent_dim, device=device), 1.0)
                            .expand([x.shape[0], latent_dim]).to_event(1))
            pyro.sample("x", dist.Normal(z @ W.T + mu, sigma).to_event(1), obs=x)

    return model, dist.MultivariateNormal(mu, W @ W.T + sigma ** 2 * torch.eye(data_dim, device=device))


def main(args: argparse.Namespace) -> dict:
    model, marginal = ppca(args.data_dim, args.latent_dim, args.sigma, args.seed, args.device)
    pyro.set_rng_seed(args.seed)
    x = torch.zeros(args.points, args.data_dim, device=args.device)  # BDMC simulates its own data
    rows = []
    for steps in args.steps:
        found = bdmc(model, x, num_steps=steps, num_chains=args.chains)
        exact = marginal.log_prob(found["x"]["x"]).cpu()
        forward = ais(model, found["x"]["x"], num_steps=steps, num_chains=args.chains)
        rows.append({"steps": steps,
                     "ais_minus_exact": float((forward.log_likelihood - exact).mean()),
                     "bdmc_lower_minus_exact": float((found["lower"].log_likelihood - exact).mean()),
                     "bdmc_upper_minus_exact": float((found["upper"].log_likelihood - exact).mean()),
                     "gap": found["gap"], "accept_rate": float(forward.accept_rate.mean())})
        print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.2))
    ax = fig.subplots()
    steps = [r["steps"] for r in rows]
    ax.plot(steps, [r["bdmc_lower_minus_exact"] for r in rows], "o-", label="AIS (lower bound)")
    ax.plot(steps, [r["bdmc_upper_minus_exact"] for r in rows], "s-", label="reverse AIS (upper bound)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("intermediate distributions")
    ax.set_ylabel("nats per point from exact")
    ax.set_title("PPCA: AIS and BDMC against log p(x)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "ais_convergence.png", dpi=100)
    result = {"rows": rows, "picture": str(args.out / "ais_convergence.png")}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")],
                   default=[2, 5, 10, 20, 50, 100, 200, 500])
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--points", type=int, default=10)
    p.add_argument("--data-dim", type=int, default=8)
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--sigma", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("runs/ais-ppca"))
    p.add_argument("--smoke", action="store_true", help="a few seconds: short schedules, few chains")
    args = p.parse_args()
    if args.smoke:
        args.steps, args.chains, args.points = [2, 10, 40], 4, 4
    main(args)
