"""
Posterior diagnostics in ArviZ
==============================

Posterior diagnostics of a VAE in ArviZ, from Python (the notebook-style twin of
``pyrogen diagnose RUN``).

Trains a small VAE (or loads a run with ``--run``), exports its amortised posterior
q(z|x) on test images to an ArviZ InferenceData, and walks through the diagnostics:
per-image Pareto k-hat and importance-sampling ESS, the ELBO-to-log-likelihood gap, the
images the encoder handles worst, active units and KL per dimension, the aggregate posterior
against the prior, and posterior predictive checks drawn by ArviZ itself.

    python examples/diagnose_vae.py                          # digits, trains 30 epochs (~20 s)
    python examples/diagnose_vae.py --run runs/my-mnist-vae  # a run of `pyrogen train vae`
"""

from __future__ import annotations

import argparse
from pathlib import Path

import arviz as az
import pyro

from pyrogen import diagnostics
from pyrogen.data import load_dataset
from pyrogen.models import VAE
from pyrogen.families import load_run
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device


def trained_vae(args: argparse.Namespace):
    """The VAE of ``--run``, or a small one trained here on the embedded digits."""
    if args.run is not None:
        vae, config = load_run(args.run, device=args.device)
        data = load_dataset(config.dataset, args.data_dir or config.data_dir,
                            binarize=config.binarize, validation_size=config.validation_size,
                            seed=config.seed, limit=config.limit)
        history = None
        return vae, data.to(args.device), history
    data = load_dataset("digits", binarize="dynamic", limit=200 if args.smoke else None)
    pyro.set_rng_seed(args.seed)
    vae = VAE(data.shape, latent_dim=8, hidden=(128,), activation="tanh")
    config = TrainConfig(model="vae", model_config=vae.config, dataset="digits",
                         epochs=2 if args.smoke else 30, batch_size=50, lr=3e-3,
                         device=args.device, seed=args.seed)
    history = Trainer(vae, data, config, run_dir=None, progress=False).fit()
    return vae.eval(), data.to(args.device), history


def main(args: argparse.Namespace) -> dict:
    vae, data, history = trained_vae(args)
    # one fixed binarisation draw of the test images, with their labels
    batch = next(iter(data.test.batches(args.num_points, seed=args.seed)))
    pyro.set_rng_seed(args.seed)

    # 1. Export: posterior, posterior_predictive, prior, log_likelihood, sample_stats, ...
    idata = diagnostics.to_inference_data(
        vae.model, vae.guide, batch.x, labels=batch.y, obs_index=batch.index.tolist(),
        num_samples=args.num_samples, num_predictive=20, history=history)
    print(idata)

    # 2. Per-image importance weights: k-hat, ESS and the ELBO gap, worst k-hat first
    table = diagnostics.pointwise(idata)
    threshold = diagnostics.khat_threshold(args.num_samples)
    print(f"k-hat threshold for {args.num_samples} draws: {threshold:.3f}; "
          f"{(table['khat'] > threshold).mean():.0%} of the images are above it")
    print(diagnostics.worst_points(table, 5).round(3))

    # 3. Latent usage: active units, KL per dimension, the aggregate posterior vs the prior
    usage = diagnostics.latent_usage(idata)
    print(f"active units: {int(usage['active'].sum())} of {len(usage)}; "
          f"KL per dimension: {usage['kl'].round(2).tolist()}")
    print(f"KL(aggregate posterior || prior) = {diagnostics.aggregate_posterior_kl(idata):.3f} nats")

    # 4. Posterior predictive checks on summary statistics, drawn by ArviZ
    stats = diagnostics.ppc_statistics(idata)
    print(diagnostics.ppc_pvalues(stats))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ax = az.plot_ppc(stats, var_names=["mean_intensity"], num_pp_samples=20, random_seed=0)
    ax.get_figure().savefig(out / "ppc_mean_intensity.png")

    # 5. Save for later: ArviZ reads it back with az.from_netcdf
    path = diagnostics.to_netcdf(idata, out / "inference_data.nc")
    back = az.from_netcdf(path)
    print(f"wrote {path}: groups {back.groups()}")
    return {"khat_mean": float(table["khat"].mean()), "active_units": int(usage["active"].sum())}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    p.add_argument("--run", type=Path, default=None, help="a run folder of `pyrogen train vae`")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--num-points", type=int, default=200, help="test images to diagnose")
    p.add_argument("--num-samples", type=int, default=1000, help="guide draws per image")
    p.add_argument("--out", default="runs/diagnose-example", help="where the files go")
    p.add_argument("--device", default=default_device())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="a few seconds: tiny data, 2 epochs")
    args = p.parse_args()
    if args.smoke:
        args.num_points, args.num_samples = 20, 100
    print(main(args))
