r"""
Fitting a mixture model by EM into a run folder, as :class:`~pyrogen.train.Trainer`
does for models trained by SVI: ``config.json``, ``metrics.jsonl`` (one line per
EM iteration), ``checkpoints/{last,best}.pt`` (loadable by
:func:`~pyrogen.train.load_run`) and a picture of the components.

Exact EM takes closed-form M-steps (:func:`~pyrogen.infer.em.exact_em`);
generalised EM takes ``config.em_steps`` ``SVI`` steps of the exact expected
complete-data log-likelihood per E-step (:func:`~pyrogen.infer.em.generalised_em`).
EM works on the whole training split at once, so the data are a fixed tensor:
static binarisation for Bernoulli mixtures, grey levels for Gaussian ones.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import nn

from pyrogen.data import DataSplits, Split
from pyrogen.infer.em import exact_em, generalised_em
from pyrogen.train.checkpoint import get_rng_state, save_checkpoint
from pyrogen.train.config import TrainConfig, refuse_svi_only
from pyrogen.train.logging import RunLogger


def split_tensor(model: nn.Module, split: Split, seed: int) -> torch.Tensor:
    """A whole split as the mixture's input: one fixed draw, flattened for a Gaussian mixture."""
    return model.inputs(next(iter(split.batches(len(split), seed=seed))))[0]


def fit_mixture(model: nn.Module, data: DataSplits, config: TrainConfig,
                run_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """
    Initialise ``model`` (a :class:`~pyrogen.models.Mixture`) from the training
    data (``config.init``), fit it by ``config.em`` EM for at most
    ``config.epochs`` iterations, and write the run folder. Returns one record
    per iteration: ``train_loss`` is the mean negative log-likelihood per data
    point after that iteration (exact, not a bound).
    """
    refuse_svi_only(config, "EM")
    if data.binarize == "dynamic":
        raise ValueError("EM fits one fixed data set: load the data with binarize='static' "
                         "(--binarize static) for a Bernoulli mixture, not 'dynamic'")
    device = torch.device(config.device)
    model = model.to(device)
    data = data.to(device)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and (run_dir / "checkpoints" / "last.pt").exists():
        raise ValueError(f"run folder {run_dir} already holds a run; choose another run_dir")
    pyro.clear_param_store()
    pyro.set_rng_seed(config.seed)
    x = split_tensor(model, data.train, config.seed)
    logger = RunLogger(run_dir, model, data, config)
    logger.start()
    start = time.perf_counter()
    model.init_from_data(x, method=config.init, seed=config.seed)
    if config.em == "exact":
        lls = exact_em(model, x, num_iters=config.epochs, tol=config.tol)
    else:
        lls = generalised_em(model, x, num_iters=config.epochs, steps_per_iter=config.em_steps,
                             lr=config.lr, batch_size=min(config.batch_size, len(x)))
    seconds = time.perf_counter() - start
    history = [{"epoch": t, "train_loss": -ll, "em": config.em, "binarize": data.binarize}
               for t, ll in enumerate(lls[1:], start=1)]
    final = history[-1] if history else {"epoch": 0, "train_loss": -lls[0]}
    final["sec"] = seconds
    if len(data.valid):
        final["valid_loss"] = -float(model.log_likelihood(split_tensor(model, data.valid, config.seed)).mean())
    try:
        for record in history[:-1]:
            logger.epoch_end(record, {})
        logger.epoch_end(final, _pictures(model, config))
        if run_dir is not None:
            state = {
                "model_name": config.model, "model_config": dict(model.config),
                "model_state": model.state_dict(), "epoch": final["epoch"],
                "global_step": final["epoch"], "config": config.to_dict(), "history": history,
                "best_valid": final.get("valid_loss", final["train_loss"]), "bad_epochs": 0,
                "rng": get_rng_state(),
            }
            for name in ("last", "best"):
                save_checkpoint(state, run_dir / "checkpoints" / f"{name}.pt")
    finally:
        logger.close()
    return history or [final]


@torch.no_grad()
def _pictures(model: nn.Module, config: TrainConfig) -> dict[str, torch.Tensor]:
    means = model.component_means()
    if means.dim() != 4:  # not images
        return {}
    return {"components": means.clamp(0, 1), "samples": model.sample(config.num_pictures).clamp(0, 1)}
