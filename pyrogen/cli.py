"""
The ``pyrogen`` command: ``train``, ``evaluate`` and ``sample``.

Run ``pyrogen --help`` or ``pyrogen COMMAND --help`` for every flag.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrogen.data import BINARIZATIONS, DATASETS, load_dataset
from pyrogen.models import CONDITIONS, LIKELIHOODS
from pyrogen.nn import ACTIVATIONS
from pyrogen.train.config import OBJECTIVES, OPTIMIZERS, SCHEDULES, TrainConfig, default_device

MODEL_NAMES = ("vae", "cvae", "mixture", "dfcvae", "classifier")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


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


def _at_least_two(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2, got {text!r}")
    return value


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
    _add_device(p)


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
    _add_diagnose_parser(sub)
    return parser


def _default_binarize(args: argparse.Namespace) -> str:
    if args.binarize is not None:
        return args.binarize
    if args.dataset == "binarized-mnist":
        return "static"
    if args.model in ("classifier", "dfcvae"):
        return "none"
    if args.model == "mixture":  # EM fits one fixed data set
        return "none" if args.component == "gaussian" else "static"
    return "dynamic" if args.likelihood == "bernoulli" else "none"


_MODEL_FLAGS = {
    "cvae": ("condition", "quadrants", "baseline_epochs"),
    "mixture": ("num_components", "component", "covariance", "reg_covar", "em", "em_steps", "tol",
                "init"),
    "dfcvae": ("features", "feature_layers", "feature_weight"),
}


def _model_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    config = dict(latent_dim=args.latent_dim, hidden=list(args.hidden), arch=args.arch,
                  likelihood=args.likelihood, activation=args.activation)
    for model, names in _MODEL_FLAGS.items():
        given = ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]
        if given and args.model != model:
            parser.error(f"{', '.join(given)} only apply to `pyrogen train {model}`")
    if args.model == "mixture":
        return dict(num_components=args.num_components or 10,
                    component=args.component or "bernoulli", covariance=args.covariance or "full",
                    reg_covar=1e-6 if args.reg_covar is None else args.reg_covar)
    if args.model == "classifier":
        return {}
    if args.model == "dfcvae":
        if args.features is None:
            parser.error("pyrogen train dfcvae needs --features RUN, a `pyrogen train classifier` "
                         "run on the same data set")
        default = "relu1_1,relu2_1,relu3_1" if args.features.is_file() else "relu1,relu2,relu3"
        layers = (args.feature_layers or default).replace(" ", "").split(",")
        config.pop("likelihood")  # the reconstruction term is the feature loss
        return config | dict(layers=layers, feature_weight=args.feature_weight or 0.5)
    if args.model != "cvae":
        return config
    if args.baseline_epochs is not None and args.baseline_epochs < 0:
        parser.error(f"--baseline-epochs: expected an integer >= 0, got {args.baseline_epochs}")
    condition = args.condition or "encoder-decoder"
    if condition == "class-mean" and args.quadrants is not None:
        parser.error("--condition class-mean conditions on class labels; it cannot take --quadrants")
    if args.arch != "mlp":
        parser.error("the conditional VAE is built from MLPs: --arch must be mlp")
    return config | dict(condition=condition, quadrants=args.quadrants,
                         baseline_epochs=10 if args.baseline_epochs is None else args.baseline_epochs)


def _train_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TrainConfig:
    return TrainConfig(
        model=args.model,
        model_config=_model_config(args, parser),
        dataset=args.dataset, data_dir=args.data_dir, binarize=_default_binarize(args),
        validation_size=args.validation_size, limit=args.limit,
        epochs=args.epochs or (100 if args.model == "mixture" else 10),
        batch_size=args.batch_size, objective=args.objective, num_particles=args.num_particles,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, lr_decay=args.lr_decay, lr_min=args.lr_min,
        lr_milestones=list(args.lr_milestones), clip_norm=args.clip_norm, beta=args.beta,
        kl_warmup=args.kl_warmup, patience=args.patience, jit=args.jit, device=args.device,
        seed=args.seed, mcem_proposals=args.mcem_proposals, mcmc_steps=args.mcmc_steps,
        mcmc_step_size=args.mcmc_step_size, **_em_options(args),
    )


def _em_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"em": args.em, "em_steps": args.em_steps, "tol": args.tol, "init": args.init}
    return {k: v for k, v in options.items() if v is not None}


def load_data(config: TrainConfig, data_dir: str | None = None):
    """The data set a run was trained on (``data_dir`` overrides the run's folder)."""
    return load_dataset(
        config.dataset, data_dir or config.data_dir, binarize=config.binarize,
        validation_size=config.validation_size, seed=config.seed, limit=config.limit,
    )


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    from pyrogen.train import Trainer, load_checkpoint

    if args.resume is not None:
        from pyrogen.train.runs import checkpoint_path

        state = load_checkpoint(checkpoint_path(args.resume, "last"))
        config = TrainConfig.from_dict({
            **state["config"],
            "device": args.device,
            "epochs": args.epochs or state["config"]["epochs"],
            "data_dir": args.data_dir or state["config"]["data_dir"],
        })
        run_dir = args.resume
    else:
        config = _train_config(args, parser)
        run_dir = args.out or Path("runs") / f"{args.model}-{args.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (run_dir / "checkpoints").exists():
            parser.error(f"--out {run_dir} already holds a run; pass --resume {run_dir} to "
                         "continue it, or choose another --out")
    if config.model == "mixture" and args.resume is not None:
        raise ValueError("a mixture is fitted by EM in one go and cannot be resumed; start a new run")
    if config.model in ("classifier", "mixture") and (config.beta != 1.0 or config.kl_warmup):
        raise ValueError(f"a {config.model} has no KL term: --beta and --kl-warmup do not apply")
    data = load_data(config)
    _complete_model_config(config, data, args)
    pyro.set_rng_seed(config.seed)  # the initial weights too depend on --seed only
    model = _build(config, data, args)
    if config.model == "mixture":
        from pyrogen.train.em import fit_mixture

        history = fit_mixture(model, data, config, run_dir)
        return {"run": str(run_dir), "em": config.em, "iterations": history[-1]["epoch"],
                **{k: history[-1][k] for k in ("train_loss", "valid_loss", "binarize")
                   if k in history[-1]}}
    trainer = Trainer(model, data, config, run_dir, progress=args.progress)
    if args.resume is not None:
        trainer.resume()
    history = trainer.fit()
    summary = {"run": str(run_dir), "epochs": len(history), **{
        k: history[-1][k] for k in ("train_loss", "valid_loss", "binarize") if k in history[-1]}}
    return summary


def _complete_model_config(config: TrainConfig, data: Any, args: argparse.Namespace) -> None:
    """Options that depend on the data set: the number of classes, the image shape."""
    labelled = config.model == "classifier" or (
        config.model == "cvae" and config.model_config.get("quadrants") is None)
    if labelled:
        if data.num_classes is None:
            hint = "; use --quadrants 1, 2 or 3" if config.model == "cvae" else ""
            raise ValueError(f"a {config.model} conditions on class labels, but data set "
                             f"{config.dataset!r} has none{hint}")
        config.model_config.setdefault("num_classes", data.num_classes)
    if config.model == "mixture" and config.model_config.get("component") == "gaussian":
        config.model_config.setdefault("image_shape", list(data.shape))


def _build(config: TrainConfig, data: Any, args: argparse.Namespace) -> Any:
    from pyrogen.models import DFCVAE, build_model

    options = {k: v for k, v in config.model_config.items() if k != "data_shape"}
    if config.model == "mixture" and options.get("component") == "gaussian":
        return build_model("mixture", data_shape=(math.prod(data.shape),), **options)
    if config.model == "dfcvae" and "feature_net" not in options and args.features.is_file():
        from pyrogen.nn import load_vgg19_features

        model = DFCVAE(data.shape, load_vgg19_features(args.features), **options)
        config.model_config = {k: v for k, v in model.config.items() if k != "data_shape"}
        return model
    if config.model == "dfcvae" and "feature_net" not in options:
        from pyrogen.train import load_run

        classifier, clf_config = load_run(args.features, "best", "cpu")
        if clf_config.model != "classifier":
            raise ValueError(f"--features {args.features} is a {clf_config.model} run; it must "
                             "be a `pyrogen train classifier` run")
        if tuple(classifier.data_shape) != tuple(data.shape):
            raise ValueError(f"--features {args.features} was trained on images of shape "
                             f"{tuple(classifier.data_shape)}, but data set {config.dataset!r} "
                             f"has shape {tuple(data.shape)}")
        model = DFCVAE(data.shape, classifier, **options)
        # the classifier's architecture is saved with the run; its weights travel in checkpoints
        config.model_config = {k: v for k, v in model.config.items() if k != "data_shape"}
        return model
    return build_model(config.model, data_shape=data.shape, **options)


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.infer import bits_per_dim, elbo, log_likelihood
    from pyrogen.train import load_run

    model, config = load_run(args.run, args.checkpoint, args.device)
    data = load_data(config, args.data_dir).to(args.device)
    split = getattr(data, args.split)
    torch.manual_seed(config.seed)
    inputs = getattr(model, "inputs", lambda b: (b.x,))
    batches = [inputs(b) for b in split.batches(args.batch_size, seed=config.seed)]
    if config.model == "classifier":  # no latent variable: the exact log p(y | x) and accuracy
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        result = {"split": args.split, "num_points": len(split), "binarize": data.binarize,
                  "accuracy": model.accuracy(x, y),
                  "nll": float(-elbo(model.model, model.guide, batches).mean())}
        (args.run / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
        return result
    start = time.perf_counter()
    elbos = elbo(model.model, model.guide, batches)
    lls = log_likelihood(model.model, model.guide, batches, num_samples=args.iw_samples)
    num_dims = split.num_dims
    if getattr(model, "visible", None) is not None:  # scored on the hidden pixels only
        num_dims = int((~model.visible).sum())
    result = {
        "split": args.split,
        "num_points": len(split),
        "binarize": data.binarize,
        "elbo": float(elbos.mean()),
        "log_likelihood": float(lls.mean()),
        "nll": float(-lls.mean()),
        "bits_per_dim": float(bits_per_dim(lls.mean(), num_dims)),
        "iw_samples": args.iw_samples,
        "seconds": time.perf_counter() - start,
    }
    if config.model == "dfcvae":  # an unnormalised log-density of classifier features
        result["feature_space"] = True
        del result["bits_per_dim"]
    if config.model == "cvae":
        result["conditional_on"] = (f"{model.config['quadrants']} visible quadrants"
                                    if model.config["quadrants"] else "class label")
        pair = model.baseline_pair()
        if pair is not None:  # no latent variable: the estimate is exact
            result["baseline_nll"] = float(-elbo(*pair, batches).mean())
    (args.run / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _sample(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.train import load_run
    from pyrogen.viz import save_image_grid

    model, config = load_run(args.run, args.checkpoint, args.device)
    needs_labels = getattr(model, "needs_labels", None)
    if args.label is not None and not needs_labels:
        raise ValueError(f"--label needs a label-conditioned model; run {args.run} trained a "
                         f"{config.model}" + (" on quadrants" if needs_labels is False else ""))
    if args.label is not None and not 0 <= args.label < model.config["num_classes"]:
        raise ValueError(f"--label must lie in [0, {model.config['num_classes']}), got {args.label}")
    torch.manual_seed(args.seed)
    if needs_labels is False:  # quadrant completion of the first test images
        data = load_data(config, args.data_dir).to(args.device)
        x = next(iter(data.test.batches(args.num, seed=config.seed))).x
        from pyrogen.data.quadrants import condition_on_quadrants

        shown = condition_on_quadrants(x, model.visible).clamp(min=0)
        completions = model.complete(x, args.completions)
        images = torch.cat([shown, x, *completions])
        save_image_grid(images, args.out, nrow=args.nrow or len(x))
        return {"out": str(args.out), "num": len(x), "completions": args.completions,
                "rows": "visible quadrants, truth, then one completion per row"}
    images = model.sample(args.num) if args.label is None else model.sample(args.num, y=args.label)
    save_image_grid(images, args.out, nrow=args.nrow)
    return {"out": str(args.out), "num": args.num, **({"label": args.label} if args.label is not None else {})}


def _diagnose(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.diagnostics.report import diagnose
    from pyrogen.train import load_run

    if args.num_predictive > args.num_samples:
        raise ValueError(f"--num-predictive ({args.num_predictive}) must not exceed "
                         f"--num-samples ({args.num_samples})")
    model, config = load_run(args.run, args.checkpoint, args.device)
    if not hasattr(model, "guide"):
        raise ValueError(f"run {args.run} trained a {config.model}, which has no guide q(z|x) "
                         "to diagnose")
    data = load_data(config, args.data_dir).to(args.device)
    split = getattr(data, args.split)
    if len(split) == 0:
        raise ValueError(f"run {args.run} has an empty {args.split} split")
    # one fixed binarisation draw, as `evaluate` scores
    batch = next(iter(split.batches(min(args.num_points, len(split)), seed=config.seed)))
    history = _read_history(args.run)
    out = args.out or args.run / f"diagnostics-{args.split}"
    pyro.set_rng_seed(args.seed)
    inputs = getattr(model, "inputs", lambda b: (b.x,))(batch)
    # a conditional model: diagnose q(z|x,y) against p(z|y)
    extra = {"condition": inputs[1]} if len(inputs) > 1 else {}
    summary = diagnose(model.model, model.guide, inputs[0], out, labels=batch.y, **extra,
                       obs_index=batch.index.tolist(), num_samples=args.num_samples,
                       num_predictive=args.num_predictive, history=history)
    width = max(map(len, summary))
    for name, value in summary.items():
        print(f"{name:<{width}}  {value:.6g}")
    return {"out": str(out), "split": args.split, "binarize": data.binarize, **summary}


def _read_history(run: Path) -> list[dict[str, Any]] | None:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyrogen`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from pyrogen.data import DataFormatError
    from pyrogen.train import CheckpointError, NonFiniteLossError

    try:
        if args.command == "train":
            result = _train(args, parser)
        elif args.command == "evaluate":
            result = _evaluate(args)
        elif args.command == "diagnose":
            result = _diagnose(args)
        else:
            result = _sample(args)
    except (ValueError, FileNotFoundError, CheckpointError, DataFormatError,
            NonFiniteLossError) as e:
        print(f"pyrogen {args.command}: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
