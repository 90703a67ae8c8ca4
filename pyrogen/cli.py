"""
The ``pyrogen`` command: ``train``, ``evaluate``, ``sample``, ``reconstruct``, ``encode`` and
``diagnose`` (the arguments are in :mod:`pyrogen.cli_parser`). What differs between model
families is asked of the family registry (:mod:`pyrogen.families`); no line here names one.

Run ``pyrogen --help`` or ``pyrogen COMMAND --help`` for every flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyro
import torch

from pyrogen.cli_parser import FAMILY_PARSERS, build_parser, unknown_option_message
from pyrogen.data import load_dataset
from pyrogen.families import Family, Request, families, get, load_run
from pyrogen.families.base import summary_of
from pyrogen.families.options import RUN_FOLDER_OPTIONS, show
from pyrogen.families.runs import load_classifier
from pyrogen.files import atomic_write, check_writable
from pyrogen.train.config import TrainConfig, default_device

_RUN_FOLDER = {o.name for o in RUN_FOLDER_OPTIONS}


def load_data(config: TrainConfig, data_dir: str | None = None):
    """The data set a run was trained on (``data_dir`` overrides the run's folder)."""
    return load_dataset(
        config.dataset, data_dir or config.data_dir, binarize=config.binarize,
        validation_size=config.validation_size, seed=config.seed, limit=config.limit,
    )


def _given(args: argparse.Namespace, family: Family) -> tuple[dict, dict, dict]:
    """What the user typed (every default is suppressed in the parser): the family's model
    options, the training options and the run-folder options."""
    typed = {k: v for k, v in vars(args).items() if k not in ("command", "family")}
    own = {o.name for o in family.options}
    model = {k: v for k, v in typed.items() if k in own}
    run = {k: v for k, v in typed.items() if k in _RUN_FOLDER}
    train = {k: v for k, v in typed.items() if k not in own and k not in _RUN_FOLDER}
    return model, train, run


def _train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Any]:
    from pyrogen.train import Trainer

    family = get(args.family)
    model_given, train_given, run = _given(args, family)
    if run.get("resume") is not None:
        config, model_config, run_dir = _resumed(family, run, model_given, train_given)
    else:
        dataset = train_given.get("dataset", "digits")
        settings = family.defaults(dataset)
        model_options = {**settings["model"], **family.dependent_defaults(model_given), **model_given}
        try:
            family.check(model_options)
        except ValueError as e:  # options that cannot go together: a usage error
            parser.error(str(e))
        train_options = {**settings["train"], **train_given}
        if "binarize" not in train_given:
            train_options["binarize"] = family.default_binarize(dataset, model_options)
        config = TrainConfig(model=family.name, **train_options)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = run.get("out") or Path("runs") / f"{family.name}-{dataset}-{stamp}"
        if run_dir.exists() and not run_dir.is_dir():
            parser.error(f"--out {run_dir} is a file; give the name of a run folder (new, or one "
                         "that a run stopped before its first checkpoint)")
        if (run_dir / "checkpoints" / "last.pt").exists():
            parser.error(f"--out {run_dir} already holds a run; pass --resume {run_dir} to "
                         "continue it, or choose another --out")
    check_writable(run_dir, folder=True)
    data = load_data(config)
    pyro.set_rng_seed(config.seed)  # the initial weights too depend on --seed only
    if run.get("resume") is not None:
        model = family.rebuild(model_config)
    else:
        family.complete(model_options, data)
        model = family.build(model_options, data)
        config.model_config = {k: v for k, v in model.config.items() if k != "data_shape"}
    trainer = Trainer(model, data, config, run_dir, step=family.step(config, data),
                      progress=run.get("progress", True))
    if run.get("resume") is not None:
        trainer.resume()
    history = trainer.fit()
    if trainer.rank == 0:
        from pyrogen.families import describe_run

        info = describe_run(run_dir)
        pictures = ", ".join(info["pictures"]) or "none"
        print(f"pyrogen: done: {_run_line(info)}; best weights in {run_dir / 'checkpoints' / 'best.pt'}; "
              f"pictures in {run_dir}: {pictures}", file=sys.stderr)
    return {"run": str(run_dir), **summary_of(history)}


def _resumed(family: Family, run: dict[str, Any], model_given: dict[str, Any],
             train_given: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any], Path]:
    """The configuration of a resumed run: the saved one, with the changes that may apply.
    A different family, a changed model option or a changed training option that would make
    it another run is refused, naming it."""
    from pyrogen.families import checkpoint_path
    from pyrogen.train import load_checkpoint
    from pyrogen.train.checkpoint import REQUIRED_KEYS
    from pyrogen.train.trainer import RESUMABLE_CHANGES

    run_dir = Path(run["resume"])
    state = load_checkpoint(checkpoint_path(run_dir, "last"), required=REQUIRED_KEYS)
    saved = state["config"]
    if saved["model"] != family.name:
        raise ValueError(f"run {run_dir} trained a {saved['model']}, not a {family.name}: resume it "
                         f"with `pyrogen train {saved['model']} --resume {run_dir}`")
    out = run.get("out")
    if out is not None and Path(out).resolve() != run_dir.resolve():
        raise ValueError(f"--out {out} differs from --resume {run_dir}: a resumed run continues "
                         "in its own folder")
    flags = {o.name: o.cli for o in family.options}
    for name, value in model_given.items():
        if name not in saved["model_config"]:
            raise ValueError(f"{flags[name]} cannot be given with --resume: the run keeps "
                             "what it was built with (its model is saved in it)")
        if _same(value, saved["model_config"][name]):
            continue
        raise ValueError(f"cannot resume {run_dir} with {flags[name]} {show(value)}: the run was "
                         f"trained with {show(saved['model_config'][name])}, and a model option "
                         "cannot change")
    values = dict(saved)
    for name, value in train_given.items():
        if _same(value, saved.get(name)):
            continue
        if name not in RESUMABLE_CHANGES:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"cannot resume {run_dir} with {flag} {show(value)}: the run was "
                             f"trained with {show(saved.get(name))}; only "
                             f"{', '.join('--' + n.replace('_', '-') for n in RESUMABLE_CHANGES)} "
                             "can change")
        values[name] = value
    values["device"] = train_given.get("device", default_device())
    return TrainConfig.from_dict(values), state["model_config"], run_dir


def _same(a: Any, b: Any) -> bool:
    """Equal as saved in a config (tuples and lists alike)."""
    norm = (lambda v: list(v) if isinstance(v, tuple) else v)
    return norm(a) == norm(b)


def _request(args: argparse.Namespace) -> Request:
    names = {f.name for f in dataclasses.fields(Request)}
    return Request(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    model, config = load_run(args.run, args.checkpoint, args.device)
    check_writable(args.run / "evaluation.json")
    family = get(config.model)
    if args.iw_samples is not None and not family.importance_sampled:
        raise ValueError(f"--iw-samples sets the importance samples of a likelihood estimate; a "
                         f"{family.name} run has none to estimate (leave the option out)")
    if args.inductor and not family.importance_sampled:
        raise ValueError(f"--inductor compiles the importance-sampled likelihood estimate; a "
                         f"{family.name} run has none to estimate (leave the option out)")
    data = load_data(config, args.data_dir).to(args.device)
    split = getattr(data, args.split)
    if len(split) == 0:
        raise ValueError(f"run {args.run} has no {args.split} split (its data set gives it no "
                         "points: e.g. trained with --validation-size 0); evaluate --split test")
    if args.limit is not None and args.limit < len(split):
        split = split.head(args.limit)
    request = _request(args)
    if args.features is not None:
        request.classifier = lambda: load_classifier(args.features, data, args.device)
    torch.manual_seed(config.seed)
    result = {"split": args.split, "num_points": len(split), "binarize": data.binarize,
              **({"limit": args.limit} if args.limit is not None else {}),
              **family.evaluate(model, config, data, split, request)}
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(args.run / "evaluation.json", lambda f: f.write(text.encode()))
    return result


def _loaded_split(args: argparse.Namespace) -> tuple[Any, Any, Any]:

    model, config = load_run(args.run, args.checkpoint, args.device)
    if not model.has_encoder:
        takers = ", ".join(f.name for f in families() if f.facade.has_encoder)
        raise ValueError(f"run {args.run} trained a {config.model}, which has no encoder of x "
                         f"alone (reconstruct and encode take {takers} runs)")
    data = load_data(config, args.data_dir).to(args.device)
    split = getattr(data, args.split)
    if len(split) == 0:
        raise ValueError(f"run {args.run} has an empty {args.split} split")
    return model, config, split


def _reconstruct(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.viz import save_image_grid

    model, config, split = _loaded_split(args)
    check_writable(args.out)
    x = next(iter(split.batches(min(args.num, len(split)), seed=config.seed))).x
    rec = model.reconstruct(x)
    nrow = min(len(x), 8)
    rows = [t for i in range(0, len(x), nrow) for t in (x[i:i + nrow], rec[i:i + nrow])]
    save_image_grid(torch.cat(rows), args.out, nrow=nrow)
    return {"out": str(args.out), "num": len(x), "split": args.split,
            "rows": "data points above their reconstructions"}


def _encode(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    model, config, split = _loaded_split(args)
    out = check_writable(args.out if args.out.suffix == ".npz" else args.out.with_name(args.out.name + ".npz"))
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
    atomic_write(out, lambda f: np.savez(f, **arrays))
    return {"out": str(out), "split": args.split, "num_points": len(arrays["loc"]),
            "latent_dim": int(arrays["loc"].shape[1]), "arrays": sorted(arrays)}


def _sample(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.viz import save_image_grid

    model, config = load_run(args.run, args.checkpoint, args.device)
    check_writable(args.out)
    family = get(config.model)
    torch.manual_seed(args.seed)
    data = None
    if family.needs_data_to_sample(model):
        data = load_data(config, args.data_dir).to(args.device)
    images, nrow, info = family.sample(model, config, data, _request(args))
    save_image_grid(images, args.out, nrow=args.nrow or nrow)
    return {"out": str(args.out), **info}


def _diagnose(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.diagnostics.report import diagnose
    from pyrogen.train import read_metrics

    if args.num_predictive > args.num_samples:
        raise ValueError(f"--num-predictive ({args.num_predictive}) must not exceed "
                         f"--num-samples ({args.num_samples})")
    model, config = load_run(args.run, args.checkpoint, args.device)
    out = check_writable(args.out or args.run / f"diagnostics-{args.split}", folder=True)
    family = get(config.model)
    data = load_data(config, args.data_dir).to(args.device)
    split = getattr(data, args.split)
    if len(split) == 0:
        raise ValueError(f"run {args.run} has an empty {args.split} split")
    # one fixed binarisation draw, as `evaluate` scores
    batch = next(iter(split.batches(min(args.num_points, len(split)), seed=config.seed)))
    history = read_metrics(args.run) if (args.run / "metrics.jsonl").is_file() else None
    pyro.set_rng_seed(args.seed)
    inputs = model.inputs(batch)
    # a conditional model: diagnose q(z|x,y) against p(z|y)
    extra = {"condition": inputs[1]} if len(inputs) > 1 else {}
    generative, surrogate = family.diagnosable(model, inputs[0])
    summary = diagnose(generative, model.guide, inputs[0], out, labels=batch.y, **extra,
                       obs_index=batch.index.tolist(), num_samples=args.num_samples,
                       num_predictive=args.num_predictive, history=history)
    if surrogate is not None:
        summary["surrogate_scale"] = surrogate
    width = max(map(len, summary))
    for name, value in summary.items():
        print(f"{name:<{width}}  {value:.6g}")
    return {"out": str(out), "split": args.split, "binarize": data.binarize, **summary}


def _runs(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.families import list_runs

    runs = list_runs(args.dir)
    for run in runs:
        print(_run_line(run))
    if not runs:
        print(f"no runs in {args.dir}")
    return {"dir": str(args.dir), "runs": runs}


def _run_line(run: dict[str, Any]) -> str:
    """One line for a run of :func:`~pyrogen.families.list_runs`."""
    figures = ", ".join([f"{k[5:]} {v:.5g}" for k, v in run.items() if k.startswith("best_") and k != "best_epoch"]
                        + [f"evaluated {k[5:]} {v:.5g}" for k, v in run.items() if k.startswith("eval_")])
    best = f"best epoch {run['best_epoch']}" if run.get("best_epoch") is not None else "no checkpoint"
    return (f"{run['run']}: {run['family']} on {run['dataset']}, {run['epochs_done']}/{run['epochs']} "
            f"epochs, {best}" + (f" ({figures})" if figures else ""))


def _plot(args: argparse.Namespace) -> dict[str, Any]:
    from pyrogen.train.plots import plot_run

    if args.out is not None:
        check_writable(args.out)
    return {"out": str(plot_run(args.run, args.out))}


def _error_message(e: BaseException) -> str | None:
    """The one line a user sees for an error of their input or machine, or None for a
    ``RuntimeError`` that is neither running out of memory nor anything pyrogen raised."""
    text = str(e)
    if isinstance(e, MemoryError) or isinstance(e, torch.OutOfMemoryError) or (
            isinstance(e, RuntimeError) and ("can't allocate memory" in text
                                             or "out of memory" in text)):
        asked = re.search(r"allocate (\d+) bytes", text) or re.search(r"allocate ([\d.]+ [KMGT]iB)", text)
        size = ""
        if asked:
            size = asked.group(1)
            if size.isdigit():
                size = f"{int(size) / 2**30:.3g} GiB"
            size = f" (it asked for {size})"
        return (f"out of memory{size}: the sizes asked for (e.g. --hidden, --batch-size, "
                "--num-particles, --iw-samples, --num) need more memory than this machine has")
    from pyrogen.train.step import NonFiniteLossError

    if isinstance(e, RuntimeError) and not isinstance(e, NonFiniteLossError):
        return None
    if isinstance(e, OSError) and e.filename is not None:
        return f"{e.filename}: {e.strerror or text}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyrogen`` command; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command == "train":
        FAMILY_PARSERS[args.family].error(unknown_option_message(args.family, unknown))
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from pyrogen.data import DataFormatError
    from pyrogen.train import CheckpointError, NonFiniteLossError

    from pyrogen.train.distributed import init_distributed, rank, shutdown

    me = 0
    try:
        if args.command == "train":
            init_distributed(vars(args).get("device", default_device()))  # under torchrun: join the group
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
        elif args.command == "runs":
            result = _runs(args)
        elif args.command == "plot":
            result = _plot(args)
        else:
            result = _sample(args)
    except (ValueError, OSError, CheckpointError, DataFormatError, NonFiniteLossError,
            MemoryError, RuntimeError) as e:
        message = _error_message(e)
        if message is None:  # not a user's error: a bug, shown with its traceback
            raise
        where = f" (rank {rank()})" if rank() else ""
        print(f"pyrogen {args.command}{where}: error: {message}", file=sys.stderr)
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

    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # output piped into a reader that stopped (`pyrogen runs | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    if launched_by_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
