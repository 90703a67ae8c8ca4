"""What a training run writes besides checkpoints: config, metrics, pictures, TensorBoard."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pyrogen
from pyrogen.data import DataSplits
from pyrogen.models.base import Facade
from pyrogen.train.checkpoint import atomic_write, remove_stale_temporaries

try:  # POSIX; elsewhere run folders are not locked
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

#: the lock file of a run folder being written
LOCK_NAME = ".lock"


class RunFolderBusy(ValueError):
    """Another process is writing the run folder."""
from pyrogen.viz import image_grid, save_image_grid


#: entries of an epoch's record that are not figures of the epoch (or are said otherwise): the
#: epoch line and the curves leave them out
NOT_FIGURES = ("epoch", "lr", "sec", "steps", "threads", "batch_size", "beta", "binarize",
               "iterations", "iterations_in_epoch")


def interactive() -> bool:
    """Whether standard error is a terminal or a Jupyter kernel's (where a bar can redraw)."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) or "ipykernel" in sys.modules


def epoch_line(record: dict[str, Any], epochs: int, images: int) -> str:
    """One plain line for an epoch's record: its losses and figures, the learning rate, the
    seconds and the images per second, e.g.
    ``epoch 3/10: train_loss 45.21, valid_loss 46.02; lr 0.000854; 1.2 s, 48,700 images/s``."""
    figures = [f"{k} {v:.5g}" for k, v in record.items()
               if k not in NOT_FIGURES and isinstance(v, (int, float)) and not isinstance(v, bool)]
    parts = [f"epoch {record['epoch']}/{epochs}: " + ", ".join(figures)]
    if "lr" in record:
        parts.append(f"lr {record['lr']:.3g}")
    seconds = record.get("sec")
    if seconds:
        speed = f", {images / seconds:,.0f} images/s" if images else ""
        parts.append(f"{seconds:.1f} s{speed}")
    if record.get("rolled_back"):
        parts.append(f"rerun after {len(record['rolled_back'])} rollback(s)")
    return "; ".join(parts)


def _tensorboard_writer(folder: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an optional extra
        return None
    return SummaryWriter(log_dir=str(folder))


class RunLogger:
    """
    Writes a run folder's ``config.json``, ``metrics.jsonl``, pictures and
    TensorBoard events. Does nothing when ``run_dir`` is None or ``enabled``
    is False (every rank but 0).
    """

    def __init__(
        self,
        run_dir: Path | None,
        model: nn.Module,
        data: DataSplits,
        config: Any,
        enabled: bool = True,
        step_every: int = 50,
    ) -> None:
        self.run_dir = run_dir if enabled else None
        self.model, self.data, self.config = model, data, config
        self.step_every = step_every
        self.writer = None
        self.last_checkpoint: tuple[Path, int] | None = None
        self._lock: Any = None
        self.tracker: Any = None  # an MLflowTracker with config.mlflow

    def lock(self) -> None:
        """Take the run folder for this process (an exclusive ``flock`` on ``run_dir/.lock``,
        released when the run ends or the process dies), or raise :class:`RunFolderBusy`
        naming the process that holds it; then delete temporary files a killed run left."""
        if self.run_dir is None or self._lock is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.run_dir / LOCK_NAME, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise RunFolderBusy(
                    f"run folder {self.run_dir} is being written by another process (pid "
                    f"{holder}); wait for it to finish, or choose another folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle
        for folder in (self.run_dir, self.run_dir / "checkpoints"):
            remove_stale_temporaries(folder)

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None

    def start(self) -> None:
        if self.run_dir is None:
            return
        self.lock()
        config = {
            "pyrogen_version": pyrogen.__version__,
            "train": self.config.to_dict(),
            "model": self.config.model,
            "model_config": dict(self.model.config) if isinstance(self.model, Facade) else {},
            "data": self.data.describe(),
        }
        text = json.dumps(config, indent=2) + "\n"
        atomic_write(self.run_dir / "config.json", lambda f: f.write(text.encode()))
        if self.writer is None:
            self.writer = _tensorboard_writer(self.run_dir / "tensorboard")
        if getattr(self.config, "mlflow", None) and self.tracker is None:
            from pyrogen.train.tracking import MLflowTracker

            self.tracker = MLflowTracker(self.config.mlflow, self.run_dir)
            self.tracker.start(config)

    def step(self, global_step: int, loss: float, name: str = "step_loss") -> None:
        if self.writer is not None and global_step % self.step_every == 0:
            self.writer.add_scalar(f"train/{name}", loss, global_step)

    def epoch_end(self, record: dict[str, Any], pictures: dict[str, torch.Tensor]) -> None:
        if self.run_dir is None:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        for name, images in pictures.items():
            save_image_grid(images, self.run_dir / f"{name}.png")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.writer.add_scalar(f"epoch/{key}", value, record["epoch"])
            for name, images in pictures.items():
                self.writer.add_image(name, image_grid(images), record["epoch"], dataformats="HWC")
            self.writer.flush()
        if self.tracker is not None:
            self.tracker.epoch(record)

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """On resume: metrics.jsonl holds exactly the checkpoint's epochs."""
        if self.run_dir is None:
            return
        text = "".join(json.dumps(r) + "\n" for r in history)
        atomic_write(self.run_dir / "metrics.jsonl", lambda f: f.write(text.encode()))

    def saved(self, path: Path, epoch: int) -> None:
        self.last_checkpoint = (path, epoch)

    def last_good_message(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint had been written yet"
        path, epoch = self.last_checkpoint
        return f"the last good checkpoint (after epoch {epoch}) is kept at {path}"

    def finish(self) -> None:
        """The run ended well: MLflow gets the pictures, curves and best checkpoint."""
        if self.tracker is not None:
            self.tracker.finish("FINISHED")
            self.tracker = None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.tracker is not None:  # not finished: the run stopped with an error
            self.tracker.finish("FAILED")
            self.tracker = None
        self.unlock()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl``. A last line cut short (a
    run killed while writing it; resuming rewrites the file from the checkpoint) is left out;
    any other line that is not a JSON record raises a ``ValueError`` naming the file and line."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text().split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: a write cut short
                break
            raise ValueError(f"{path}, line {number}: not a JSON record ({e.msg}, column "
                             f"{e.colno})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {number}: not a JSON record (got {type(record).__name__})")
        records.append(record)
    return records
