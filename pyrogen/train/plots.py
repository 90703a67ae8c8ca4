"""
A run's loss curves as a PNG (``RUN/curves.png``): written by the trainer at the end of every
run and by ``pyrogen plot RUN``, from the run's ``metrics.jsonl``.

One panel per kind of figure, against the epoch: the objective (``train_loss`` and
``valid_loss``: the negative ELBO in nats per data point for the ELBO family, the
discriminator's loss for the adversarial family), every player's loss (``loss_*``), the other
figures the epoch records (e.g. ``sample_diversity``, ``converged``), and the learning rate on a
log scale; epochs that were rerun after a rollback are marked.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from pyrogen.files import atomic_write
from pyrogen.train.logging import NOT_FIGURES, read_metrics

#: the name of the picture in the run folder
CURVES_NAME = "curves.png"


def _panels(history: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    keys: list[str] = []
    for record in history:
        keys += [k for k, v in record.items() if k not in keys and k not in NOT_FIGURES
                 and isinstance(v, (int, float)) and not isinstance(v, bool)]
    objective = [k for k in ("train_loss", "valid_loss") if k in keys]
    players = [k for k in keys if k.startswith("loss_") and k not in objective]
    others = [k for k in keys if k not in objective and k not in players]
    panels = [("objective (per data point)", objective)] if objective else []
    if players:
        panels.append(("players' losses", players))
    panels += [(k, [k]) for k in others]
    return panels


def plot_history(history: list[dict[str, Any]], out: str | os.PathLike, title: str = "") -> Path:
    """Write the curves of ``history`` (the trainer's per-epoch records) to the PNG ``out``
    (atomically); returns its path."""
    from matplotlib.figure import Figure  # no pyplot: a user's backend and figures are left alone

    if not history:
        raise ValueError("the run has no completed epoch to plot")
    panels = _panels(history)
    lrs = [r["lr"] for r in history if isinstance(r.get("lr"), (int, float))]
    count = len(panels) + (1 if lrs else 0)
    columns = min(3, count)
    rows = -(-count // columns)
    fig = Figure(figsize=(4.2 * columns, 3.0 * rows))
    axes = fig.subplots(rows, columns, squeeze=False)
    epochs = [r["epoch"] for r in history]
    rolled = [r["epoch"] for r in history if r.get("rolled_back")]
    flat = list(axes.flat)
    for ax, (name, keys) in zip(flat, panels):
        for key in keys:
            points = [(r["epoch"], r[key]) for r in history if isinstance(r.get(key), (int, float))]
            ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=key)
        for epoch in rolled:
            ax.axvline(epoch, color="red", alpha=0.3, linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        if len(keys) > 1:
            ax.legend(fontsize=8)
    if lrs:
        ax = flat[len(panels)]
        ax.plot(epochs[: len(lrs)], lrs, color="grey")
        ax.set_yscale("log")
        ax.set_title("learning rate", fontsize=10)
        ax.set_xlabel("epoch")
    for ax in flat[count:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return atomic_write(out, lambda f: f.write(buffer.getvalue()))


def plot_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the curves of the run folder ``run_dir`` (its ``metrics.jsonl``) to ``out``
    (default ``RUN/curves.png``); returns its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        raise ValueError(f"{run_dir} holds no metrics.jsonl: not a pyrogen run folder, or a run "
                         "stopped before its first epoch")
    title = run_dir.name
    config = run_dir / "config.json"
    if config.is_file():
        import json

        settings = json.loads(config.read_text()).get("train", {})
        title = f"{run_dir.name}: {settings.get('model', '?')} on {settings.get('dataset', '?')}"
    return plot_history(read_metrics(run_dir), out or run_dir / CURVES_NAME, title)


__all__ = ["CURVES_NAME", "plot_history", "plot_run"]
