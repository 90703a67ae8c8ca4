"""
The ``pyrogen`` command's arguments: one sub-parser per command, and under ``train`` one per
registered family (:mod:`pyrogen.families`), built from the family's own options and the
shared groups its training step reads, with the family's real defaults in the help.
:func:`build_parser` is used by :func:`pyrogen.cli.main`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pyrogen.families import TRAIN_OPTIONS, Family, Option, families
from pyrogen.families.options import RUN_FOLDER_OPTIONS, at_least_two, positive_int, show
from pyrogen.train.config import default_device

#: the titles of the shared option groups in ``pyrogen train FAMILY --help``
GROUP_TITLES = {
    "data": "data", "run": "run", "optimisation": "optimisation",
    "schedule": "learning-rate schedule", "stopping": "early stopping",
    "svi": "SVI loop", "elbo": "objective (ELBO family)",
    "adversarial": "adversarial players", "em": "EM",
}
#: the `pyrogen train FAMILY` parsers of the last :func:`build_parser`, by family
FAMILY_PARSERS: dict[str, argparse.ArgumentParser] = {}
#: defaults that read better in words than as a value
_DEFAULT_WORDS = {
    "dataset": "digits",
    "validation_size": "the data set's",
    "limit": "all",
    "device": f"{default_device()} (cuda when a GPU is visible)",
    "d_lr": "--lr",
    "clip_norm": "none",
    "activation": "the network's: relu for mlp, leaky_relu/relu for conv",
    "features": "none; required",
    "channels": "DCGAN's",
}


def _default_text(family: Family, option: Option, kind: str) -> str:
    """The default of ``option`` as the help shows it: the generic value, then the data sets
    whose own default differs."""
    if option.name == "binarize":
        return family.binarize_text
    if option.name == "dataset":
        return "digits"
    if option.name == "device":
        return _DEFAULT_WORDS["device"]
    generic = family.defaults(None)[kind].get(option.name)
    text = _DEFAULT_WORDS.get(option.name) if generic is None else show(generic)
    text = "none" if text is None else text
    special = [f"{dataset}: {show(values[option.name])}"
               for dataset, values in family.dataset_defaults.items()
               if option.name in values and values[option.name] != generic]
    return "; ".join([text] + special)


def add_family_parser(sub: Any, family: Family) -> argparse.ArgumentParser:
    """``pyrogen train FAMILY``: the family's options, then the shared groups it reads."""
    p = sub.add_parser(
        family.name, help=family.summary,
        description=f"Train a {family.name} ({family.summary}); writes config.json, "
        "metrics.jsonl, checkpoints/{last,best}.pt and pictures to the run folder (--out).")
    own = p.add_argument_group(f"{family.name} options")
    for option in family.options:
        option.add_to(own, default_text=_default_text(family, option, "model"))
    for group in family.train_groups():
        if group not in TRAIN_OPTIONS:
            continue
        g = p.add_argument_group(GROUP_TITLES[group], family.group_notes.get(group))
        for option in TRAIN_OPTIONS[group]:
            option.add_to(g, default_text=_default_text(family, option, "train"))
        if group == "run":
            for option in RUN_FOLDER_OPTIONS:
                text = "" if option.name != "progress" else "on"
                option.add_to(g, default_text=text)
    return p


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=default_device(),
                   help="torch device, e.g. cpu, cuda, cuda:1 (default: %(default)s)")


def _add_train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model and write a run folder",
                       description="Train a model of one family; `pyrogen train FAMILY --help` "
                       "lists that family's options.")
    families_parser = p.add_subparsers(dest="family", required=True, metavar="FAMILY",
                                       title="families")
    for family in families():
        FAMILY_PARSERS[family.name] = add_family_parser(families_parser, family)


def _add_evaluate_parser(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a trained run on its test split",
                       description="Print the test ELBO and the importance-sampled log-likelihood "
                       "(nats per data point, and bits per dimension) of a run, its family's "
                       "figures, and with --features the sample-quality metrics; also written to "
                       "RUN/evaluation.json.")
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--iw-samples", type=positive_int, default=None,
                   help="importance samples per data point, for the families whose likelihood is "
                   "importance-sampled (default: 1000)")
    p.add_argument("--inductor", action="store_true", default=None,
                   help="compile the importance-sampling chunks with torch.compile (fused "
                   "kernels: faster for long estimates, such as --iw-samples 5000 on a test set, "
                   "after some seconds of compilation; the same draws, so the same estimate)")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test", help="(default: %(default)s)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=100, help="(default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--features", type=Path, default=None, metavar="RUN",
                   help="a `pyrogen train classifier` run on the same data set: adds sample-quality "
                   "metrics in its feature space (Frechet distance with its real-vs-real floor, "
                   "precision and recall, mode coverage) and, for models with an encoder, the "
                   "reconstruction error and a linear probe on the codes; required for the "
                   "adversarial families (gan, aae, ali)")
    p.add_argument("--num-samples", type=at_least_two, default=None,
                   help="generated samples for the sample-quality metrics (default: the split's size)")
    p.add_argument("--ais", type=positive_int, default=None, metavar="STEPS",
                   help="also estimate log p(x) by annealed importance sampling with STEPS "
                   "intermediate distributions (HMC transitions; a lower bound, with its "
                   "standard error), for the families with a likelihood p(x|z)")
    p.add_argument("--ais-chains", type=positive_int, default=16,
                   help="--ais: chains per data point (default: %(default)s)")
    p.add_argument("--ais-observation", choices=("model", "gaussian"), default=None,
                   help="--ais: the likelihood p(x|z): the model's own, or N(x(z), sigma^2 I) "
                   "around the decoder's image with sigma chosen on validation points (Wu et al., "
                   "2017), the one scale on which every decoder can be compared (default: model; "
                   "gaussian for gan, aae, ali and dfcvae)")
    p.add_argument("--bdmc", type=positive_int, default=None, metavar="POINTS",
                   help="--ais: also run bidirectional Monte Carlo on POINTS points simulated from "
                   "the model: AIS forwards (a lower bound) and backwards from the simulating z "
                   "(an upper bound); their gap says whether STEPS is enough")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="score only the first N points of the split")
    _add_device(p)


def _add_run_split(p: argparse.ArgumentParser, out_help: str) -> None:
    """The arguments of the commands that read one split through a run's encoder."""
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--out", type=Path, required=True, help=out_help)
    p.add_argument("--split", choices=("test", "valid", "train"), default="test", help="(default: %(default)s)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    _add_device(p)


def _encoder_families() -> str:
    return ", ".join(f.name for f in families() if f.facade.has_encoder)


def _add_reconstruct_parser(sub: Any) -> None:
    p = sub.add_parser("reconstruct", help="reconstruct data points through a trained encoder",
                       description="Save a PNG of the first --num points of a split (odd rows) above "
                       "their reconstructions G(E(x)) (even rows), for models with an encoder "
                       f"({_encoder_families()}).")
    _add_run_split(p, "the PNG file to write")
    p.add_argument("--num", type=positive_int, default=32, help="number of data points (default: %(default)s)")


def _add_encode_parser(sub: Any) -> None:
    p = sub.add_parser("encode", help="encode a split through a trained encoder",
                       description="Write the codes of every point of a split to a NumPy .npz file: "
                       "loc and scale of the encoder (N, latent_dim), the labels (when the data set "
                       "has them) and the points' indices, for models with an encoder "
                       f"({_encoder_families()}).")
    _add_run_split(p, "the .npz file to write")


def _add_sample_parser(sub: Any) -> None:
    p = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Save a grid of the means of p(x|z), z ~ p(z), as a PNG; for a cvae, "
                       "of p(x|z,y), z ~ p(z|y), for the classes in --label, or completions of "
                       "test images for a quadrant cvae.")
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--num", type=positive_int, default=64, help="number of samples (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="the PNG file to write")
    p.add_argument("--nrow", type=positive_int, default=None, help="images per row (default: square)")
    p.add_argument("--label", type=int, default=None,
                   help="class to draw, for a label-conditioned cvae (default: classes 0, 1, ... in turn)")
    p.add_argument("--completions", type=positive_int, default=3,
                   help="for a quadrant cvae: completions drawn per test image; the picture "
                   "shows --num test images (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder (quadrant cvae)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_device(p)


def _add_runs_parser(sub: Any) -> None:
    p = sub.add_parser("runs", help="list the runs in a folder",
                       description="List the run folders in DIR (at any depth; or DIR itself): "
                       "family, data set, epochs done of those planned, the best epoch and its "
                       "figures, evaluate's figures if it ran. A table, then one JSON line.")
    p.add_argument("dir", type=Path, nargs="?", default=Path("runs"),
                   help="the folder of runs (default: %(default)s)")


def _add_plot_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="draw a run's loss curves as a PNG",
                       description="Draw the curves of a run's metrics.jsonl (the objective, each "
                       "player's loss, the other figures of an epoch, the learning rate) as a PNG; "
                       "every run also writes them to RUN/curves.png when it ends.")
    p.add_argument("run", type=Path, help="the run folder")
    p.add_argument("--out", type=Path, default=None, help="the PNG file (default: RUN/curves.png)")


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
    p.add_argument("--num-points", type=positive_int, default=1000,
                   help="the first N data points of the split (default: %(default)s)")
    p.add_argument("--num-samples", type=at_least_two, default=1000,
                   help="guide draws per data point for k-hat and ESS; k-hat's threshold is "
                        "min(1 - 1/log10(N), 0.7) (default: %(default)s)")
    p.add_argument("--num-predictive", type=positive_int, default=100,
                   help="posterior predictive draws per data point (default: %(default)s)")
    p.add_argument("--checkpoint", default="best", help="best, last or a .pt file (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="override the run's data folder")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_device(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``pyrogen`` command's argument parser: ``--version`` and the subcommands train,
    evaluate, sample, reconstruct, encode, diagnose, runs and plot."""
    parser = argparse.ArgumentParser(
        prog="pyrogen", description="Deep generative models as Pyro model/guide pairs."
    )
    from pyrogen import __version__

    parser.add_argument("--version", action="version",
                        version=f"pyrogen {__version__} (distribution pyrogen-vi)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train_parser(sub)
    _add_evaluate_parser(sub)
    _add_sample_parser(sub)
    _add_reconstruct_parser(sub)
    _add_encode_parser(sub)
    _add_diagnose_parser(sub)
    _add_runs_parser(sub)
    _add_plot_parser(sub)
    return parser


def unknown_option_message(family: str, tokens: list[str]) -> str:
    """The error for options ``pyrogen train FAMILY`` does not take: each named, with the
    families that take it."""
    parts = []
    for token in tokens:
        if not token.startswith("--"):
            continue
        flag = token.split("=", 1)[0]
        owners = [f.name for f in families() if flag in _flags(f)]
        where = f" (it applies to `pyrogen train {'|'.join(owners)}`)" if owners else ""
        parts.append(f"{flag} is not an option of `pyrogen train {family}`{where}")
    return "; ".join(parts) or f"unrecognized arguments: {' '.join(tokens)}"


def _flags(family: Family) -> set[str]:
    options = list(family.options) + [o for g in family.train_groups() for o in TRAIN_OPTIONS.get(g, ())]
    flags = set()
    for option in options:
        flags.add(option.cli)
        if option.boolean:
            flags.add("--no-" + option.cli[2:])
    return flags


__all__ = ["build_parser", "unknown_option_message"]
