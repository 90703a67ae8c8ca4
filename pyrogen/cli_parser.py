"""
The ``pyrogen`` command's arguments: one sub-parser per command, with argparse-style errors
for bad values. :func:`build_parser` is used by :func:`pyrogen.cli.main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pyrogen.data import BINARIZATIONS, DATASETS
from pyrogen.infer.adversarial import GAN_GENERATOR_LOSSES
from pyrogen.infer.ali import ALI_LOSSES
from pyrogen.models import CONDITIONS, LIKELIHOODS
from pyrogen.models.generator import NOISES, PRIORS
from pyrogen.nn import ACTIVATIONS
from pyrogen.train.config import OBJECTIVES, OPTIMIZERS, SCHEDULES, default_device

MODEL_NAMES = ("vae", "cvae", "mixture", "dfcvae", "classifier", "gan", "aae", "ali")
#: the adversarial families, trained by alternating steps of their players
ADVERSARIAL = ("gan", "aae", "ali")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def batch_schedule(text: str) -> list[list[int]]:
    """``"165:25,250:10"`` as ``[[165, 25], [250, 10]]`` (argparse type of ``--batch-schedule``)."""
    try:
        pairs = [[int(v) for v in item.split(":")] for item in text.replace(",", " ").split()]
    except ValueError:
        pairs = None
    if not pairs or any(len(pair) != 2 or min(pair) < 1 for pair in pairs):
        raise argparse.ArgumentTypeError(
            f"expected EPOCH:SIZE pairs of positive integers separated by commas, e.g. 165:25, got {text!r}"
        )
    if any(b[0] <= a[0] for a, b in zip(pairs, pairs[1:])):
        raise argparse.ArgumentTypeError(f"the epochs must increase, got {text!r}")
    return pairs


def _positive(kind: type, name: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}")
        return value

    return parse


_positive_int = _positive(int, "a positive integer")
_positive_float = _positive(float, "a positive number")


def _ema_decay(text: str) -> float:
    """A decay in [0, 1) (argparse type of ``--ema-decay``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) (0: none), got {text!r}")
    return value


def _at_least_two(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


def _betas(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if len(values) != 2 or not all(0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected two numbers in [0, 1), e.g. 0.5,0.999, got {text!r}")
    return values


def _validation_size(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a count (e.g. 10000) or a fraction (e.g. 0.1), got {text!r}"
            )


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=default_device(),
                   help="torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)")


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train a model; writes config.json, metrics.jsonl, "
                       "checkpoints/{last,best}.pt and pictures to the run folder (--out).")
    p.add_argument("model", choices=MODEL_NAMES, help="the model family")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="data set (default: %(default)s, scikit-learn's 8x8 digits, no download)")
    d.add_argument("--data-dir", help="folder holding the data set's files (all but digits)")
    d.add_argument("--binarize", choices=BINARIZATIONS, default=None,
                   help="dynamic: a fresh Bernoulli draw of every pixel each epoch; static: one "
                   "fixed draw; none: grey levels (default: dynamic for the Bernoulli "
                   "likelihood, static for binarized-mnist, none otherwise)")
    d.add_argument("--validation-size", type=_validation_size, default=None,
                   help="validation points taken from the training files: a count or a fraction "
                   "(default: the data set's; 0 for none)")
    d.add_argument("--limit", type=_positive_int, default=None,
                   help="use only the first N points of each split (for quick trials)")
    m = p.add_argument_group("model")
    m.add_argument("--latent-dim", type=_positive_int, default=50, help="dimension of z (default: %(default)s)")
    m.add_argument("--hidden", type=_int_list, default=[400],
                   help="hidden layer sizes of the MLP encoder, e.g. 200,200; the decoder "
                   "mirrors them (default: 400)")
    m.add_argument("--arch", choices=("mlp", "conv"), default="mlp",
                   help="mlp, or conv (DCGAN-style, 28x28 or 64x64 images) (default: %(default)s)")
    m.add_argument("--activation", choices=tuple(ACTIVATIONS), default=None,
                   help="hidden activation (default: relu for mlp, leaky_relu/relu for conv)")
    m.add_argument("--likelihood", choices=LIKELIHOODS, default="bernoulli",
                   help="p(x|z) (default: %(default)s)")
    c = p.add_argument_group("conditional VAE (cvae)")
    c.add_argument("--condition", choices=CONDITIONS, default=None,
                   help="prior-network: p(z|y) network, q(z|x,y), p(x|z,y), after a baseline "
                   "network (Sohn et al.); encoder-decoder: N(0,I) prior, q(z|x,y), p(x|z,y); "
                   "class-mean: p(z|y) = N(mu_y, I), q(z|x), p(x|z) (default: encoder-decoder)")
    c.add_argument("--quadrants", type=int, choices=(1, 2, 3), default=None,
                   help="condition on this many visible quadrants of each image (the "
                   "quadrant-completion task) instead of the class label")
    c.add_argument("--baseline-epochs", type=int, default=None,
                   help="epochs of baseline-network training before a prior-network CVAE "
                   "(default: 10)")
    e = p.add_argument_group("mixture, fitted by EM (--epochs counts EM iterations, default 100)")
    e.add_argument("--num-components", type=_positive_int, default=None, help="K (default: 10)")
    e.add_argument("--component", choices=("bernoulli", "gaussian"), default=None,
                   help="Bernoulli pixels (static binarisation) or a Gaussian over the flattened "
                   "grey-level image (default: bernoulli)")
    e.add_argument("--covariance", choices=("full", "diag"), default=None,
                   help="Gaussian components' covariance (default: full)")
    e.add_argument("--reg-covar", type=float, default=None,
                   help="added to the Gaussian covariances' diagonal, as scikit-learn (default: 1e-6)")
    e.add_argument("--em", choices=("exact", "generalised"), default=None,
                   help="exact: closed-form M-steps; generalised: --em-steps SVI steps per E-step "
                   "(default: exact)")
    e.add_argument("--em-steps", type=_positive_int, default=None, help="(default: 1)")
    e.add_argument("--tol", type=float, default=None,
                   help="exact EM stops when the mean log-likelihood changes less (default: 1e-3)")
    e.add_argument("--init", choices=("kmeans++", "random"), default=None,
                   help="seeding of the components (default: kmeans++)")
    f = p.add_argument_group("DFC-VAE (deep feature-consistent VAE)")
    f.add_argument("--features", type=Path, default=None, metavar="RUN|FILE",
                   help="the fixed feature network (required for dfcvae): the run folder of a "
                   "`pyrogen train classifier` run on the same data set, or a file of torchvision "
                   "VGG19 weights (a state dict saved with torch.save)")
    f.add_argument("--feature-layers", default=None,
                   help="comma-separated layers of the feature network (default: relu1,relu2,relu3 "
                   "of a classifier, the paper's relu1_1,relu2_1,relu3_1 of VGG19)")
    f.add_argument("--feature-weight", type=_positive_float, default=None,
                   help="weight of the feature loss against the KL term (default: 0.5, the paper's)")
    a = p.add_argument_group("adversarial models (gan, aae, ali)")
    a.add_argument("--d-steps", type=_positive_int, default=None,
                   help="discriminator steps per iteration (default: 1)")
    a.add_argument("--g-steps", type=_positive_int, default=None,
                   help="steps of the other player (generator, autoencoder, encoder-generator) "
                   "per iteration; a regularised player whose snapshot caches its draws runs "
                   "them all on one minibatch (default: 1; the regularisers act from the "
                   "second step on)")
    a.add_argument("--iterations-per-epoch", type=_positive_int, default=None,
                   help="iterations per epoch, cycling through fresh shuffles of the data (default: "
                   "one pass over the training data)")
    a.add_argument("--d-lr", type=_positive_float, default=None,
                   help="the discriminator's learning rate (default: --lr)")
    a.add_argument("--betas", type=_betas, default=None,
                   help="Adam's beta1,beta2 (default: 0.5,0.999 for gan, aae, ali; 0.9,0.999 otherwise)")
    a.add_argument("--channels", type=_int_list, default=None,
                   help="--arch conv: channels of the stride-2 stages, e.g. 64,128 (default: DCGAN's)")
    a.add_argument("--no-batch-norm", dest="batch_norm", action="store_false", default=None,
                   help="no batch normalisation in generator and discriminator (default: with it "
                   "for gan and ali, without for aae)")
    a.add_argument("--generator-loss", choices=GAN_GENERATOR_LOSSES, default=None,
                   help="gan: minimax log(1 - D(G(z))), nonsaturating -log D(G(z)), or regularised: "
                   "-log D(G(z)) + reg-weight * mean (G(z) - G_old(z))^2, Su's complete loss "
                   "(default: nonsaturating)")
    a.add_argument("--reg-draws", choices=("cached", "fresh"), default=None,
                   help="gan, regularised: cached (Su's code: the generator's steps of an iteration "
                   "reuse one batch of z and G_old(z)) or fresh (new z each step, G_old kept as "
                   "weights) (default: cached)")
    a.add_argument("--reg-weight", type=float, default=None,
                   help="gan: lambda of the regulariser (default: 5, Su's); aae: weight of the "
                   "analogous regulariser on the encoder (default: 0, off)")
    a.add_argument("--recon-weight", type=float, default=None,
                   help="aae: lambda, the weight of ||x - G(E(x))||^2 (default: 1)")
    a.add_argument("--encoder", choices=NOISES, default=None,
                   help="aae, ali: deterministic (delta) or gaussian encoder (default: delta for "
                   "aae, gaussian for ali)")
    a.add_argument("--generator", choices=NOISES, default=None,
                   help="ali: deterministic (delta) or gaussian generator, with learned noise "
                   "(default: delta)")
    a.add_argument("--prior", choices=PRIORS, default=None,
                   help="aae: the target prior q(z): gaussian N(0, I) or mixture (10 Gaussians on "
                   "a circle) (default: gaussian)")
    a.add_argument("--ali-loss", choices=ALI_LOSSES, default=None,
                   help="ali: the encoder/generator loss: paper (Su's), minimax, swapped "
                   "(non-saturating), or complete (Su's with the two dropped terms; needs "
                   "gaussian encoder and generator) (default: paper)")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=_positive_int, default=None,
                   help="number of epochs (default: 10; with --resume, the run's own)")
    o.add_argument("--batch-size", type=_positive_int, default=100, help="(default: %(default)s)")
    o.add_argument("--objective", choices=OBJECTIVES, default="elbo",
                   help="elbo (Trace_ELBO), meanfield (TraceMeanField_ELBO, analytic KL), "
                   "iwae (importance-weighted bound) or mcem (Monte Carlo EM on the decoder: "
                   "E-step by resampling prior draws and MALA steps; the encoder is fitted "
                   "beside it by the ELBO, as a proposal) (default: %(default)s)")
    o.add_argument("--mcem-proposals", type=_positive_int, default=16,
                   help="mcem: prior draws per data point for the E-step (default: %(default)s)")
    o.add_argument("--mcmc-steps", type=int, default=5,
                   help="mcem: MALA steps after resampling (default: %(default)s)")
    o.add_argument("--mcmc-step-size", type=_positive_float, default=0.2,
                   help="mcem: MALA step size (default: %(default)s)")
    o.add_argument("--num-particles", type=_positive_int, default=1,
                   help="particles per data point (default: %(default)s)")
    o.add_argument("--batch-schedule", type=batch_schedule, default=[], metavar="EPOCH:SIZE,...",
                   help="later batch sizes as EPOCH:SIZE[,EPOCH:SIZE...]: from that (1-based) "
                   "epoch on, minibatches of SIZE, e.g. 165:25 (SVI models only; default: "
                   "--batch-size throughout)")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="(default: %(default)s)")
    o.add_argument("--lr", type=_positive_float, default=1e-3, help="learning rate (default: %(default)s)")
    o.add_argument("--weight-decay", type=float, default=0.0, help="(default: %(default)s)")
    o.add_argument("--lr-schedule", choices=SCHEDULES, default="constant",
                   help="per-epoch schedule: exponential multiplies by --lr-decay each epoch, "
                   "cosine anneals to --lr-min, step multiplies by --lr-decay at each of "
                   "--lr-milestones (default: %(default)s)")
    o.add_argument("--lr-decay", type=_positive_float, default=0.1, help="(default: %(default)s)")
    o.add_argument("--lr-min", type=float, default=0.0, help="(default: %(default)s)")
    o.add_argument("--lr-milestones", type=_int_list, default=[],
                   help="epochs at which the step schedule decays, e.g. 100,200")
    o.add_argument("--ema-decay", type=_ema_decay, default=0.0, metavar="D",
                   help="keep an exponential moving average of the weights with decay D in "
                   "(0, 1), e.g. 0.999 (memory about 1/(1-D) steps); validation, the best "
                   "checkpoint, pictures, evaluate and sample use it (SVI models only; "
                   "default: 0, none)")
    o.add_argument("--clip-norm", type=_positive_float, default=None, help="clip the gradient norm")
    o.add_argument("--beta", type=_positive_float, default=1.0, help="weight of the KL term (default: 1)")
    o.add_argument("--kl-warmup", type=int, default=0,
                   help="epochs of linear KL warm-up from beta/N to beta (default: 0, none)")
    o.add_argument("--patience", type=int, default=0,
                   help="stop after N epochs without a better validation loss (default: 0, never)")
    o.add_argument("--no-jit", dest="jit", action="store_false",
                   help="do not compile the loss with torch.jit (then the last, smaller batch "
                   "of each epoch is kept)")
    r = p.add_argument_group("run")
    _add_device(r)
    r.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    r.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/MODEL-DATASET-TIME); must not hold a run already")
    r.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="continue the stopped run in folder RUN from its last checkpoint; the "
                   "run's own options are used, except --epochs, --device and --data-dir")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a trained run on its test split",
                       description="Print the test ELBO and the importance-sampled log-likelihood "
                       "(nats per data point, and bits per dimension) of a run; also written to "
                       "RUN/evaluation.json.")
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--iw-samples", type=_positive_int, default=1000,
                   help="importance samples per data point (default: %(default)s)")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test", help="(default: %(default)s)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=100, help="(default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--features", type=Path, default=None, metavar="RUN",
                   help="a `pyrogen train classifier` run on the same data set: adds sample-quality "
                   "metrics in its feature space (Frechet distance with its real-vs-real floor, "
                   "precision and recall, mode coverage) and, for models with an encoder, the "
                   "reconstruction error and a linear probe on the codes; required for gan, aae, ali")
    p.add_argument("--num-samples", type=_at_least_two, default=None,
                   help="generated samples for the sample-quality metrics (default: the split's size)")
    _add_device(p)


def _add_run_split(p: argparse.ArgumentParser, out_help: str) -> None:
    """The arguments of the commands that read one split through a run's encoder."""
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--split", choices=("test", "valid", "train"), default="test", help="(default: %(default)s)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    _add_device(p)


def _add_reconstruct_parser(sub: Any) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct data points through a trained encoder",
                       description="Save a PNG of the first --num points of a split (odd rows) above "
                       "their reconstructions G(E(x)) (even rows), for models with an encoder "
                       "(vae, dfcvae, aae, ali).")
    _add_run_split(p, "the PNG file to write")
    p.add_argument("--num", type=_positive_int, default=32, help="number of data points (default: %(default)s)")


def _add_encode_parser(sub: Any) -> None:
    p = sub.add_parser("encode", help="encode a split through a trained encoder",
                       description="Write the codes of every point of a split to a NumPy .npz file: "
                       "loc and scale of the encoder (N, latent_dim), the labels (when the data set "
                       "has them) and the points' indices, for models with an encoder (vae, dfcvae, "
                       "aae, ali).")
    _add_run_split(p, "the .npz file to write")


def _add_sample_parser(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Save a grid of the means of p(x|z), z ~ p(z), as a PNG; for a cvae, "
                       "of p(x|z,y), z ~ p(z|y), for the classes in --label, or completions of "
                       "test images for a quadrant cvae.")
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--num", type=_positive_int, default=64, help="number of samples (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    p.add_argument("--nrow", type=_positive_int, default=None, help="images per row (default: square)")
    p.add_argument("--label", type=int, default=None,
                   help="class to draw, for a label-conditioned cvae (default: classes 0, 1, ... in turn)")
    p.add_argument("--completions", type=_positive_int, default=3,
                   help="for a quadrant cvae: completions drawn per test image; the picture "
                   "shows --num test images (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder (quadrant cvae)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_device(p)


def _add_diagnose_parser(sub: Any) -> None:
    p = sub.add_parser(
        "diagnose", help="posterior diagnostics of a trained run, in ArviZ",
        description="Draw from the run's guide on data points of a split and write a report "
                    "folder: summary.csv (also printed), points.csv (per data point, worst "
                    "Pareto k-hat first), latents.csv, ArviZ plots as PNG, and the "
                    "InferenceData as inference_data.nc (NetCDF; arviz.from_netcdf opens it).")
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--out", type=Path, default=None,
                   help="the report folder (default: RUN/diagnostics-SPLIT)")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test", help="(default: %(default)s)")
    p.add_argument("--num-points", type=_positive_int, default=1000,
                   help="the first N data points of the split (default: %(default)s)")
    p.add_argument("--num-samples", type=_at_least_two, default=1000,
                   help="guide draws per data point for k-hat and ESS; k-hat's threshold is "
                        "min(1 - 1/log10(N), 0.7) (default: %(default)s)")
    p.add_argument("--num-predictive", type=_positive_int, default=100,
                   help="posterior predictive draws per data point (default: %(default)s)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_device(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyrogen", description="Deep generative models as Pyro model/guide pairs."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_sample_parser(sub)
    _add_reconstruct_parser(sub)
    _add_encode_parser(sub)
    _add_diagnose_parser(sub)
    return parser
