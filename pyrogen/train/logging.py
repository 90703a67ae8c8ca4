"""What a training run writes besides checkpoints: config, metrics, pictures, TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

import pyrogen
from pyrogen.data import DataSplits
from pyrogen.models.base import Facade
from pyrogen.train.checkpoint import atomic_write
from pyrogen.viz import image_grid, save_image_grid


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

    def start(self) -> None:
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
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

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
