"""
The ``pyrogen`` command: ``train``, ``evaluate``, ``sample``, ``reconstruct``, ``encode`` and
``diagnose`` (the arguments
are in :mod:`pyrogen.cli_parser`).

Run ``pyrogen --help`` or ``pyrogen COMMAND --help`` for every flag.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrogen.cli_parser import ADVERSARIAL, build_parser
from pyrogen.cli_quality import ENCODER_MODELS, diagnosable, quality
from pyrogen.data import load_dataset
from pyrogen.train.config import TrainConfig

def _default_binarize(args: argparse.Namespace) -> str:
    if args.binarize is not None:
        return args.binarize
    if args.dataset == "binarized-mnist":
        return "static"
    if args.model in ("classifier", "dfcvae") + ADVERSARIAL:
        return "none"
    if args.model == "mixture":  # EM fits one fixed data set
        return "none" if args.component == "gaussian" else "static"
    return "dynamic" if args.likelihood == "bernoulli" else "none"


_MODEL_FLAGS = {
    "cvae": ("condition", "quadrants", "baseline_epochs"),
    "mixture": ("num_components", "component", "covariance", "reg_covar", "em", "em_steps", "tol",
                "init"),
    "dfcvae": ("features", "feature_layers", "feature_weight"),
    "gan": ("generator_loss", "reg_draws"),
    "aae": ("recon_weight", "prior"),
    "ali": ("generator", "ali_loss"),
}
#: flags that several model families take
_SHARED_FLAGS = {
    "encoder": ("aae", "ali"),
    "reg_weight": ("gan", "aae"),
    **{name: ADVERSARIAL for name in ("d_steps", "g_steps", "d_lr", "channels", "batch_norm",
                                      "iterations_per_epoch")},
}


def _adversarial_config(args: argparse.Namespace) -> dict[str, Any]:
    """The facade options of a gan, aae or ali given on the command line (the rest default)."""
    options = dict(latent_dim=args.latent_dim, hidden=list(args.hidden), arch=args.arch,
                   channels=args.channels, batch_norm=args.batch_norm, encoder=args.encoder)
    options |= {
        "gan": dict(generator_loss=args.generator_loss, reg_weight=args.reg_weight,
                    reg_draws=args.reg_draws),
        "aae": dict(prior=args.prior, recon_weight=args.recon_weight, reg_weight=args.reg_weight),
        "ali": dict(generator=args.generator, loss=args.ali_loss),
    }[args.model]
    if args.model == "gan":
        del options["encoder"]
    return {k: v for k, v in options.items() if v is not None}


def _model_config(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    config = dict(latent_dim=args.latent_dim, hidden=list(args.hidden), arch=args.arch,
                  likelihood=args.likelihood, activation=args.activation)
    for model, names in _MODEL_FLAGS.items():
        given = ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]
        if given and args.model != model:
            parser.error(f"{', '.join(given)} only apply to `pyrogen train {model}`")
    for name, models in _SHARED_FLAGS.items():
        if getattr(args, name) is not None and args.model not in models:
            flag = "--no-batch-norm" if name == "batch_norm" else "--" + name.replace("_", "-")
            parser.error(f"{flag} only applies to `pyrogen train {'|'.join(models)}`")
    if args.model in ADVERSARIAL:
        if (args.kl_warmup or args.beta != 1.0 or args.objective != "elbo" or args.num_particles != 1
                or args.batch_schedule or args.ema_decay):
            parser.error(f"a {args.model} is trained by adversarial losses: --objective, "
                         "--num-particles, --beta, --kl-warmup, --batch-schedule and "
                         "--ema-decay do not apply")
        return _adversarial_config(args)
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
        batch_size=args.batch_size, batch_schedule=list(args.batch_schedule),
        ema_decay=args.ema_decay,
        objective=args.objective, num_particles=args.num_particles,
        optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, lr_decay=args.lr_decay, lr_min=args.lr_min,
        lr_milestones=list(args.lr_milestones), clip_norm=args.clip_norm, beta=args.beta,
        kl_warmup=args.kl_warmup, patience=args.patience, jit=args.jit, device=args.device,
        seed=args.seed, mcem_proposals=args.mcem_proposals, mcmc_steps=args.mcmc_steps,
        mcmc_step_size=args.mcmc_step_size, **_em_options(args), **_adversarial_options(args),
    )


def _adversarial_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {"d_steps": args.d_steps, "g_steps": args.g_steps, "d_lr": args.d_lr,
               "iterations_per_epoch": args.iterations_per_epoch,
               "betas": args.betas or ([0.5, 0.999] if args.model in ADVERSARIAL else None)}
    return {k: v for k, v in options.items() if v is not None}


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
    from pyrogen.train import AdversarialTrainer, Trainer, load_checkpoint

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
    from pyrogen.train.distributed import world_size

    if config.model == "mixture" and world_size() > 1:
        raise ValueError("a mixture is fitted by EM in one process; run it without torchrun")
    if config.model == "mixture" and args.resume is not None:
        raise ValueError("a mixture is fitted by EM in one go and cannot be resumed; start a new run")
    if config.model in ("classifier", "mixture") and (config.beta != 1.0 or config.kl_warmup):
        raise ValueError(f"a {config.model} has no KL term: --beta and --kl-warmup do not apply")
    if config.model == "mixture" and (config.batch_schedule or config.ema_decay):
        raise ValueError("a mixture is fitted by EM on the whole training split: "
                         "--batch-schedule and --ema-decay do not apply")
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
    if config.model in ADVERSARIAL:
        config.model_config = {k: v for k, v in model.config.items() if k != "data_shape"}
        trainer = AdversarialTrainer(model, data, config, run_dir, progress=args.progress)
    else:
        trainer = Trainer(model, data, config, run_dir, progress=args.progress)
    if args.resume is not None:
        trainer.resume()
    history = trainer.fit()
    keys = ("train_loss", "valid_loss", "binarize", "iterations")
    summary = {"run": str(run_dir), "epochs": len(history), **{
        k: v for k, v in history[-1].items() if k in keys or k.startswith("loss_")}}
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
    if config.model in ADVERSARIAL and args.features is None:
        article = "an" if config.model[0] in "aeiou" else "a"
        raise ValueError(f"{article} {config.model} has no likelihood to estimate: pass --features RUN, a "
                         "`pyrogen train classifier` run on the same data set, for its sample-quality "
                         "metrics")
    data = load_data(config, args.data_dir).to(args.device)
    split = getattr(data, args.split)
    torch.manual_seed(config.seed)
    if config.model in ADVERSARIAL:
        result = {"split": args.split, "num_points": len(split), "binarize": data.binarize,
                  **quality(args, model, config, data, split)}
        (args.run / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
        return result
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
    if args.features is not None:
        result.update(quality(args, model, config, data, split))
    (args.run / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _loaded_split(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from pyrogen.train import load_run

    model, config = load_run(args.run, args.checkpoint, args.device)
    if config.model not in ENCODER_MODELS:
        raise ValueError(f"run {args.run} trained a {config.model}, which has no encoder of x "
                         f"alone (reconstruct and encode take {', '.join(ENCODER_MODELS)} runs)")
    data = load_data(config, args.data_dir).to(args.device)
    split = getattr(data, args.split)
    if len(split) == 0:
        raise ValueError(f"run {args.run} has an empty {args.split} split")
    return model, config, split


def _reconstruct(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.viz import save_image_grid

    model, config, split = _loaded_split(args)
    x = next(iter(split.batches(min(args.num, len(split)), seed=config.seed))).x
    rec = model.reconstruct(x)
    nrow = min(len(x), 8)
    rows = [t for i in range(0, len(x), nrow) for t in (x[i:i + nrow], rec[i:i + nrow])]
    save_image_grid(torch.cat(rows), args.out, nrow=nrow)
    return {"out": str(args.out), "num": len(x), "split": args.split,
            "rows": "data points above their reconstructions"}


def _encode(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from pyrogen.train.checkpoint import atomic_write

    model, config, split = _loaded_split(args)
    locs, scales, indices, labels = [], [], [], []
    for batch in split.batches(500, seed=config.seed):
        loc, scale = model.encode(batch.x)
        locs.append(loc.cpu())
        scales.append(scale.cpu())
        indices.append(batch.index.cpu())
        if batch.y is not None:
            labels.append(batch.y.cpu())
    arrays = {"loc": torch.cat(locs).numpy(), "scale": torch.cat(scales).numpy(),
              "index": torch.cat(indices).numpy()}
    if labels:
        arrays["label"] = torch.cat(labels).numpy()
    out = args.out if args.out.suffix == ".npz" else args.out.with_name(args.out.name + ".npz")
    atomic_write(out, lambda f: np.savez(f, **arrays))
    return {"out": str(out), "split": args.split, "num_points": len(arrays["loc"]),
            "latent_dim": int(arrays["loc"].shape[1]), "arrays": sorted(arrays)}


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
    from pyrogen.train import load_run, read_metrics

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
    history = read_metrics(args.run) if (args.run / "metrics.jsonl").is_file() else None
    out = args.out or args.run / f"diagnostics-{args.split}"
    pyro.set_rng_seed(args.seed)
    inputs = getattr(model, "inputs", lambda b: (b.x,))(batch)
    # a conditional model: diagnose q(z|x,y) against p(z|y)
    extra = {"condition": inputs[1]} if len(inputs) > 1 else {}
    generative, surrogate = diagnosable(model, config, inputs[0])
    summary = diagnose(generative, model.guide, inputs[0], out, labels=batch.y, **extra,
                       obs_index=batch.index.tolist(), num_samples=args.num_samples,
                       num_predictive=args.num_predictive, history=history)
    if surrogate is not None:
        summary["surrogate_scale"] = surrogate
    width = max(map(len, summary))
    for name, value in summary.items():
        print(f"{name:<{width}}  {value:.6g}")
    return {"out": str(out), "split": args.split, "binarize": data.binarize, **summary}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyrogen`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from pyrogen.data import DataFormatError
    from pyrogen.train import CheckpointError, NonFiniteLossError

    from pyrogen.train.distributed import init_distributed, rank, shutdown

    me = 0
    try:
        if args.command == "train":
            init_distributed(args.device)  # under torchrun: join the process group
            me = rank()
            result = _train(args, parser)
            shutdown(wait=True)  # every rank done before any leaves the group
        elif args.command == "evaluate":
            result = _evaluate(args)
        elif args.command == "diagnose":
            result = _diagnose(args)
        elif args.command == "reconstruct":
            result = _reconstruct(args)
        elif args.command == "encode":
            result = _encode(args)
        else:
            result = _sample(args)
    except (ValueError, FileNotFoundError, CheckpointError, DataFormatError,
            NonFiniteLossError) as e:
        where = f" (rank {rank()})" if rank() else ""
        print(f"pyrogen {args.command}{where}: error: {e}", file=sys.stderr)
        return 1
    finally:
        shutdown()
    if me == 0:  # under torchrun, rank 0 speaks for the job
        print(json.dumps(result))
    return 0


def console() -> None:
    """
    The ``pyrogen`` command (and ``python -m pyrogen``): :func:`main`, then exit with its code.

    A process launched by ``torchrun`` leaves by ``os._exit`` once its output is flushed:
    with torch 2.13 the gloo backend sometimes aborts the interpreter's shutdown (SIGABRT,
    "terminate called without an active exception") after the work is done and the process
    group destroyed, which would turn a finished run into a failed job.
    """
    from pyrogen.train.distributed import launched_by_torchrun

    code = main()
    if launched_by_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
