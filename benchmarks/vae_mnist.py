"""
Benchmark: the VAE of Burda et al. (2016) on dynamically binarised MNIST.

Architecture: 784-200-200-50 tanh encoder, 50-200-200-784 tanh decoder,
Bernoulli likelihood, trained with ``Trace_ELBO`` (JIT-compiled) on all 60,000
training images, each epoch a fresh Bernoulli draw. Reports the test negative
log-likelihood by importance sampling with 5000 samples on the full 10,000 test
images (one fixed binarisation draw of the test set), the test ELBO, the
training curve, seconds per epoch, evaluation time and peak memory.

Reference: Burda et al. report 86.76 nats for this VAE after 3280 epochs, and 85.54 for the
IWAE with k = 5 (``--objective iwae --num-particles 5``).

Usage::

    python benchmarks/vae_mnist.py --data-dir ../shared/data/mnist --out runs/bench-vae-mnist

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch

from pyrogen.families.options import batch_schedule
from pyrogen.data import load_dataset
from pyrogen.infer import elbo, log_likelihood
from pyrogen.models import VAE
from pyrogen.nn import glorot_init_
from pyrogen.train import TrainConfig, Trainer
from pyrogen.train.config import default_device


# Burda et al. (2016), table 1, one stochastic layer: the IWAE's test NLL for k = 5 and 50;
# the VAE trained with one sample (86.76) is the reference for every ELBO objective
IWAE_REFERENCE_NLL = {5: 85.54, 50: 84.78}


def reference_nll(objective: str, num_particles: int) -> float | None:
    """Burda et al.'s test NLL for the objective this run trains (nats); None for an IWAE
    whose k they did not report."""
    if objective == "iwae":
        return IWAE_REFERENCE_NLL.get(num_particles)
    return 86.76


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def curve_callback(test_x: torch.Tensor, every: int, num_samples: int):
    def callback(trainer: Trainer, record: dict) -> None:
        if record["epoch"] % every == 0 or record["epoch"] == trainer.config.epochs:
            model = trainer.model
            ll = log_likelihood(model.model, model.guide, test_x, num_samples=num_samples)
            record[f"test_subset_nll_is{num_samples}"] = float(-ll.mean())
            shown = {"test_subset_nll": record[f"test_subset_nll_is{num_samples}"]}
            if trainer.average is not None:
                with trainer.averaged():
                    ll = log_likelihood(model.model, model.guide, test_x, num_samples=num_samples)
                record[f"test_subset_nll_is{num_samples}_averaged"] = float(-ll.mean())
                shown["averaged"] = record[f"test_subset_nll_is{num_samples}_averaged"]
            print(json.dumps({k: record[k] for k in ("epoch", "train_loss", "lr", "beta", "sec")}
                             | shown), flush=True)
    return callback


def glorot_init(vae: VAE, train_images: torch.Tensor, seed: int) -> None:
    """Burda et al.'s initialisation: Glorot-uniform weights, zero biases, and the decoder's
    output bias at the logit of the mean training pixel (so the first steps need not learn it)."""
    g = torch.Generator().manual_seed(seed)
    for m in vae.modules():
        glorot_init_(m, generator=g)
    out = [m for m in vae.model.decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    mean = train_images.reshape(len(train_images), -1).mean(0).clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        out.bias.copy_(torch.logit(mean))


def score(vae: VAE, test_x: torch.Tensor, args: argparse.Namespace) -> dict:
    """Test NLL by IS-``args.iw_samples`` (with its standard error), test ELBO, and the seconds
    the IS estimate took."""
    torch.manual_seed(args.seed)
    test_elbo = elbo(vae.model, vae.guide, test_x, batch_size=500)
    start = time.perf_counter()
    ll = log_likelihood(vae.model, vae.guide, test_x, num_samples=args.iw_samples, batch_size=100,
                        backend=args.eval_backend)
    return {"test_nll": float(-ll.mean()), "test_nll_stderr": float(ll.std() / len(ll) ** 0.5),
            "test_elbo": float(test_elbo.mean()), "eval_sec": time.perf_counter() - start}


def main(args: argparse.Namespace) -> dict:
    data = load_dataset("mnist", args.data_dir, binarize="dynamic", validation_size=0,
                        seed=args.seed, limit=args.limit)
    vae = VAE((1, 28, 28), latent_dim=50, hidden=(200, 200), activation="tanh",
              likelihood="bernoulli")
    if args.init == "glorot":
        glorot_init(vae, data.train.images, args.seed)
    config = TrainConfig(
        model="vae", model_config=vae.config, dataset="mnist", data_dir=str(args.data_dir),
        binarize="dynamic", validation_size=0, limit=args.limit, epochs=args.epochs,
        batch_size=args.batch_size, batch_schedule=args.batch_schedule, lr=args.lr,
        lr_schedule="cosine", lr_min=args.lr_min, ema_decay=args.ema_decay,
        kl_warmup=args.kl_warmup, objective=args.objective, num_particles=args.num_particles,
        iwae_gradient=args.iwae_gradient, device=args.device, seed=args.seed,
    )
    # one fixed Bernoulli draw of the test set (seed 0 whatever the training seed), so every
    # model and every training seed is scored on the same images
    test_x = torch.cat([b.x for b in data.test.batches(1000, seed=0)]).to(args.device)
    callbacks = [curve_callback(test_x[: args.curve_points], args.curve_every, args.curve_samples)]
    trainer = Trainer(vae, data, config, args.out, progress=False, callbacks=callbacks)
    if args.resume:
        trainer.resume()
    history = trainer.fit()

    vae.eval()
    last_weights = {}
    if trainer.average is not None:
        if args.score_last_weights:  # the last step's own weights, scored before the average
            last_weights = {f"{k}_last_weights": v for k, v in score(vae, test_x, args).items()}
        trainer.average.copy_to_params()  # the run's result: the averaged weights
    scores = score(vae, test_x, args)
    key = f"test_subset_nll_is{args.curve_samples}"
    return {
        "benchmark": "vae_mnist",
        **{k: v for k, v in scores.items() if k != "eval_sec"},
        "epochs": len(history),
        "binarization": "dynamic",
        "iw_samples": args.iw_samples,
        "test_points": len(test_x),
        "sec_per_epoch": sum(r["sec"] for r in history) / len(history),
        "eval_sec": scores["eval_sec"],
        "peak_rss_mb": peak_rss_mb(),
        "batch_size": args.batch_size,
        "batch_schedule": args.batch_schedule,
        "schedule": f"adam lr {args.lr} cosine to {args.lr_min}, kl warm-up {args.kl_warmup} epochs"
                    + (f", weights averaged (ema {args.ema_decay})" if args.ema_decay else ""),
        "init": args.init,
        "objective": args.objective,
        "num_particles": args.num_particles,
        "iwae_gradient": args.iwae_gradient,
        "ema_decay": args.ema_decay,
        "eval_backend": args.eval_backend,
        **last_weights,
        "reference_nll": reference_nll(args.objective, args.num_particles),
        "curve": [{"epoch": r["epoch"], "train_loss": r["train_loss"], "lr": r["lr"],
                   "test_subset_nll": r.get(key)}
                  | ({"test_subset_nll_averaged": r[key + "_averaged"]} if key + "_averaged" in r else {})
                  for r in history if key in r],
        "device": args.device,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder with the MNIST IDX files")
    p.add_argument("--device", default=default_device())
    p.add_argument("--out", type=Path, default=Path("runs/bench-vae-mnist"))
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--epochs", type=int, default=328)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--batch-schedule", type=batch_schedule, default=[], metavar="EPOCH:SIZE,...",
                   help="later batch sizes, EPOCH:SIZE[,EPOCH:SIZE...]: from that (1-based) "
                   "epoch on, e.g. 165:25")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-min", type=float, default=1e-5)
    p.add_argument("--kl-warmup", type=int, default=None,
                   help="epochs of KL annealing (default 10; 0 for --objective iwae, which has no "
                        "KL term)")
    p.add_argument("--ema-decay", type=float, default=0.0,
                   help="score an exponential moving average of the weights with this decay "
                   "(0: none); the last step's own weights are scored too (*_last_weights)")
    p.add_argument("--iw-samples", type=int, default=5000)
    p.add_argument("--eval-backend", choices=("eager", "export", "inductor"), default="eager",
                   help="log_likelihood's backend for the final IS estimate (the same draws)")
    p.add_argument("--no-last-weights", dest="score_last_weights", action="store_false",
                   help="with --ema-decay: score the averaged weights only (the last step's own "
                   "weights are scored too by default)")
    p.add_argument("--curve-every", type=int, default=25)
    p.add_argument("--curve-points", type=int, default=1000)
    p.add_argument("--curve-samples", type=int, default=500)
    p.add_argument("--limit", type=int, default=None, help="smoke runs: first N points per split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--objective", choices=("elbo", "meanfield", "iwae"), default="elbo",
                   help="elbo: Trace_ELBO (sampled KL); meanfield: TraceMeanField_ELBO "
                        "(the same bound, KL in closed form); iwae: the importance-weighted bound "
                        "of Burda et al. with --num-particles K samples per image")
    p.add_argument("--num-particles", type=int, default=1,
                   help="particles per image for the gradient (the same bound, less noise)")
    p.add_argument("--iwae-gradient", choices=("reparam", "dreg"), default="reparam",
                   help="--objective iwae: the encoder's gradient, reparam (the bound's own) or "
                        "dreg (Tucker et al.'s doubly reparameterised estimator; runs eagerly)")
    p.add_argument("--init", choices=("default", "glorot"), default="default",
                   help="default: PyTorch's layer init; glorot: Burda et al.'s Glorot-uniform "
                        "weights, zero biases, decoder output bias at the logit of the pixel means")
    args = p.parse_args()
    if args.objective == "iwae":  # refused here, in one line, before the data are loaded
        if args.kl_warmup:
            p.error(f"--kl-warmup {args.kl_warmup}: --objective iwae has no KL term to anneal")
        if args.num_particles < 2:
            p.error("--objective iwae needs --num-particles K >= 2 (with one it is the ELBO)")
    elif args.iwae_gradient != "reparam":
        p.error(f"--iwae-gradient {args.iwae_gradient}: needs --objective iwae")
    if args.kl_warmup is None:
        args.kl_warmup = 0 if args.objective == "iwae" else 10
    print(json.dumps(main(args)))
